"""NIfTI reading: geometry parity with nibabel and SimpleITK, qform/sform rules, shapes."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg import GeometryError, InputError, MedsegWarning, read_volume
from tests.helpers import grid_points, random_affine, sitk_array_ijk, sitk_world_ras


def _save(path, data, affine, cls=nib.Nifti1Image, scode=1, qcode=1):
    img = cls(data, affine)
    img.set_sform(affine, code=scode)
    img.set_qform(affine, code=qcode)
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cls, suffix", [(nib.Nifti1Image, ".nii.gz"), (nib.Nifti2Image, ".nii")])
def test_world_positions_match_nibabel_and_simpleitk(tmp_path, seed, cls, suffix):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(3, 12, size=3))
    data = rng.integers(-1000, 1000, size=shape).astype(np.int16)
    aff = random_affine(rng)  # oblique, random flips, anisotropic
    path = _save(tmp_path / f"img{suffix}", data, aff, cls)

    vol = read_volume(path)
    ijk = grid_points(shape)
    ours = vol.geometry.index_to_world(ijk)
    ref_nib = nib.affines.apply_affine(nib.load(str(path)).affine, ijk)
    assert np.max(np.abs(ours - ref_nib)) < 1e-3
    np.testing.assert_array_equal(vol.array, data)
    if cls is nib.Nifti1Image:  # SimpleITK has no NIfTI-2 reader
        img = sitk.ReadImage(str(path))
        assert np.max(np.abs(ours - sitk_world_ras(img, ijk))) < 1e-3
        np.testing.assert_array_equal(vol.array, sitk_array_ijk(img))
    assert vol.meta["nifti_version"] == (2 if cls is nib.Nifti2Image else 1)


def test_sform_wins_and_warning_names_both(tmp_path):
    data = np.zeros((4, 4, 4), np.uint8)
    sform = np.diag([2.0, 2.0, 2.0, 1.0])
    qform = np.diag([1.0, 1.0, 1.0, 1.0])
    img = nib.Nifti1Image(data, sform)
    img.set_sform(sform, code=1)
    img.set_qform(qform, code=1)
    path = tmp_path / "disagree.nii.gz"
    nib.save(img, str(path))
    with pytest.warns(MedsegWarning, match=r"sform.*qform.*disagree.*using the sform"):
        vol = read_volume(path)
    np.testing.assert_allclose(vol.affine, nib.load(str(path)).affine)  # nibabel's rule
    np.testing.assert_allclose(vol.affine, sform)


def test_agreeing_forms_do_not_warn(tmp_path, recwarn):
    path = _save(tmp_path / "ok.nii.gz", np.zeros((3, 3, 3), np.uint8), random_affine(np.random.default_rng(1)))
    read_volume(path)
    assert not [w for w in recwarn if issubclass(w.category, MedsegWarning)]


def test_neither_form_set_warns(tmp_path):
    path = _save(tmp_path / "none.nii", np.zeros((3, 3, 3), np.uint8), np.eye(4), scode=0, qcode=0)
    with pytest.warns(MedsegWarning, match="neither sform nor qform"):
        vol = read_volume(path)
    np.testing.assert_allclose(vol.affine, nib.load(str(path)).affine)


def test_scaled_data_is_applied_like_nibabel(tmp_path):
    img = nib.Nifti1Image(np.arange(27, dtype=np.int16).reshape(3, 3, 3), np.eye(4))
    img.header.set_slope_inter(0.5, -10)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, str(path))
    vol = read_volume(path)
    np.testing.assert_allclose(vol.array, nib.load(str(path)).get_fdata())


def test_trailing_singleton_and_2d_become_3d(tmp_path):
    p4 = _save(tmp_path / "t.nii.gz", np.ones((3, 4, 5, 1), np.uint8), np.eye(4))
    assert read_volume(p4).shape == (3, 4, 5)
    p2 = _save(tmp_path / "flat.nii.gz", np.ones((3, 4), np.uint8), np.eye(4))
    assert read_volume(p2).shape == (3, 4, 1)


def test_4d_is_refused_with_advice(tmp_path):
    p = _save(tmp_path / "four.nii.gz", np.ones((3, 4, 5, 2), np.uint8), np.eye(4))
    with pytest.raises(GeometryError, match=r"4D with shape \(3, 4, 5, 2\).*3D"):
        read_volume(p)


def test_truncated_gzip_is_found_at_read_time(tmp_path):
    p = _save(tmp_path / "big.nii.gz", np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32), np.eye(4))
    raw = p.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated or corrupt|damaged"):
        read_volume(cut)
