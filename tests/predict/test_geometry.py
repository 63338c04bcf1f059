"""Predicted masks land on exactly the input grid (nibabel / SimpleITK as references), and the
prediction does not depend on how the same anatomy is stored (flips, axis order, rotation)."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.predict import Predictor
from tests.helpers import random_affine, rotation, write_dicom_series


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return Predictor.from_run(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def phantom(phantom_images):
    img = nib.load(phantom_images[0])
    return np.asarray(img.dataobj).astype(np.int16), img.affine


def _save(path, array, affine):
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def _reorder(array, affine, perm, flips):
    """The same anatomy stored with axes permuted then flipped; returns (array, affine) like
    nibabel's as_reoriented would (computed by hand here: column permutation + flip offset)."""
    arr = np.transpose(array, perm)
    aff = affine.copy()
    aff[:3, :3] = affine[:3, :3][:, perm]
    for ax in range(3):
        if flips[ax]:
            arr = np.flip(arr, ax)
            aff[:3, 3] = aff[:3, 3] + aff[:3, ax] * (arr.shape[ax] - 1)
            aff[:3, ax] = -aff[:3, ax]
    return np.ascontiguousarray(arr), aff


def test_mask_is_on_the_input_grid_for_oblique_flipped_anisotropic_nifti(tmp_path, predictor, phantom, cli):
    array, _ = phantom
    rng = np.random.default_rng(3)
    inputs = tmp_path / "in"
    inputs.mkdir()
    affines = {
        "oblique": random_affine(rng, flips=[1, 1, 1], spacing=[2.0, 2.0, 3.0], max_deg=25),
        "flipped": random_affine(rng, flips=[-1, 1, -1], spacing=[2.2, 1.9, 3.5], max_deg=0),
        "aniso": random_affine(rng, flips=[1, -1, 1], spacing=[0.9, 1.1, 6.0], max_deg=10),
    }
    for name, aff in affines.items():
        _save(inputs / f"{name}.nii.gz", array, aff)
    r = cli("predict", inputs, "--model", predictor.run_dir, "--out", tmp_path / "out", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    for name, aff in affines.items():
        src = nib.load(inputs / f"{name}.nii.gz")
        out = nib.load(tmp_path / "out" / f"{name}.nii.gz")
        assert out.shape == src.shape
        np.testing.assert_allclose(out.affine, src.affine, atol=1e-4)
        data = np.asarray(out.dataobj)
        assert np.issubdtype(data.dtype, np.integer)
        assert set(np.unique(data)) <= {0, 1, 2, 3, 4}


def test_prediction_follows_the_anatomy_not_the_storage_order(tmp_path, predictor, phantom):
    """Flipping / permuting the stored axes (same world grid) gives the same mask in world
    space; a rotated affine with the same voxels gives the same voxel mask."""
    from medseg.io import read_volume

    array, affine = phantom
    ref = predictor(read_volume(_save(tmp_path / "ref.nii.gz", array, affine))).array
    assert len(np.unique(ref)) > 1, "the tiny model should predict more than one class"
    for k, (perm, flips) in enumerate([((0, 1, 2), (1, 0, 0)), ((1, 0, 2), (0, 1, 1)), ((2, 0, 1), (1, 1, 0))]):
        arr, aff = _reorder(array, affine, perm, flips)
        mask = predictor(read_volume(_save(tmp_path / f"v{k}.nii.gz", arr, aff))).array
        expected, _ = _reorder(ref, affine, perm, flips)
        np.testing.assert_array_equal(mask, expected)
    rot = affine.copy()  # the same storage, turned by up to 20 degrees in the world
    rot[:3, :3] = rotation(np.random.default_rng(1), max_deg=20) @ affine[:3, :3]
    mask = predictor(read_volume(_save(tmp_path / "rot.nii.gz", array, rot))).array
    np.testing.assert_array_equal(mask, ref)


def test_dicom_series_mask_matches_simpleitk_geometry_and_nifti_prediction(tmp_path, predictor, phantom, cli):
    """A DICOM series (oblique, flipped slice order) and SimpleITK's NIfTI conversion of it
    give the same mask, on SimpleITK's grid."""
    array, _ = phantom
    study = tmp_path / "study"
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    pixels = np.ascontiguousarray(np.transpose(array, (1, 0, 2)) + 1024).astype(np.uint16)  # rows=j, cols=i
    write_dicom_series(study / "pat" / "ct", pixels, spacing=(2.0, 2.0), orientation=(c, s, 0, -s, c, 0),
                       slice_gap=3.0, intercept=-1024.0)
    ref_img = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(study / "pat" / "ct")))
    nifti_dir = tmp_path / "nifti"
    nifti_dir.mkdir()
    sitk.WriteImage(ref_img, str(nifti_dir / "ct.nii.gz"))
    out = tmp_path / "out"
    r = cli("predict", study, nifti_dir, "--model", predictor.run_dir, "--out", out, "--device", "cpu", "--quiet")
    assert r.returncode == 0, r.stderr
    dicom_mask = nib.load(out / "pat" / "ct.nii.gz")  # mirrors the study tree
    nifti_mask = nib.load(out / "ct.nii.gz")
    # SimpleITK's geometry (LPS) in RAS: origin and direction*spacing
    d = np.asarray(ref_img.GetDirection()).reshape(3, 3) * np.asarray(ref_img.GetSpacing())
    aff = np.eye(4)
    aff[:3, :3] = np.diag([-1, -1, 1]) @ d
    aff[:3, 3] = np.asarray(ref_img.GetOrigin()) * [-1, -1, 1]
    assert dicom_mask.shape == ref_img.GetSize()
    np.testing.assert_allclose(dicom_mask.affine, aff, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(dicom_mask.dataobj), np.asarray(nifti_mask.dataobj))
    assert len(np.unique(np.asarray(dicom_mask.dataobj))) > 1
