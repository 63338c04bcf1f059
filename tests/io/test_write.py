"""Writers: round trips, exact mask grids, atomicity, refusal to overwrite inputs."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import medseg.io as mio
from medseg import GeometryError, OutputError, Volume, read_volume, write_mask_like, write_volume
from tests.helpers import CT_NRRD, MR_DICOM, grid_points, random_affine, sha256, sitk_world_ras

SUFFIXES = [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_round_trip_keeps_voxels_and_affine(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    vol = Volume((rng.normal(size=(5, 6, 7)) * 50).astype(dtype), random_affine(rng))
    out = write_volume(vol, tmp_path / f"x{suffix}")
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_sheared_affine_round_trip(tmp_path, suffix):
    aff = np.eye(4)
    aff[:3, :3] = np.diag([0.8, 0.8, 2.5])
    aff[1, 2] = 0.6  # gantry tilt: k step drifts in y
    vol = Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5), aff)
    back = read_volume(write_volume(vol, tmp_path / f"t{suffix}"))
    np.testing.assert_allclose(back.affine, aff, atol=1e-5)
    if suffix == ".nii.gz":  # a sheared affine cannot be a qform: it must be switched off
        hdr = nib.load(str(tmp_path / "t.nii.gz")).header
        assert int(hdr["qform_code"]) == 0 and int(hdr["sform_code"]) == 1


def test_written_nifti_is_read_identically_by_nibabel_and_simpleitk(tmp_path):
    ct = read_volume(CT_NRRD)
    out = write_volume(ct, tmp_path / "ct.nii.gz")
    ijk = grid_points(ct.shape)
    ours = ct.geometry.index_to_world(ijk)
    assert np.max(np.abs(ours - nib.affines.apply_affine(nib.load(str(out)).affine, ijk))) < 1e-3
    assert np.max(np.abs(ours - sitk_world_ras(sitk.ReadImage(str(out)), ijk))) < 1e-3


def test_dicom_to_nifti_keeps_dicom_geometry(tmp_path):
    with pytest.warns(Warning):
        mr = read_volume(MR_DICOM)
    out = write_volume(mr, tmp_path / "mr.nii.gz")
    back = read_volume(out)
    assert back.same_grid(mr)
    np.testing.assert_array_equal(back.array, mr.array)
    # independent: nibabel's view of the written file vs SimpleITK's view of the DICOM series
    from tests.helpers import read_series_sitk

    ijk = grid_points(mr.shape)
    ref = sitk_world_ras(read_series_sitk(MR_DICOM), ijk)
    assert np.max(np.abs(nib.affines.apply_affine(nib.load(str(out)).affine, ijk) - ref)) < 1e-3


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_mask_on_source_grid_rereads_with_identical_affine(tmp_path, suffix):
    """Source and mask in the same format: the re-read affines are identical, bit for bit."""
    ct = read_volume(write_volume(read_volume(CT_NRRD), tmp_path / f"ct{suffix}"))
    mask = (ct.array > 200).astype(np.int64) * 3
    out = write_mask_like(mask, ct, tmp_path / f"bone{suffix}")
    back = read_volume(out)
    assert back.shape == ct.shape
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back.array, mask)
    np.testing.assert_array_equal(back.affine, ct.affine)


def test_mask_across_formats_within_float32_header_precision(tmp_path):
    """NIfTI stores the affine as float32: a NRRD source's grid survives to ~1e-5 mm."""
    ct = read_volume(CT_NRRD)
    out = write_mask_like(ct.array > 200, ct, tmp_path / "bone.nii.gz")
    back = read_volume(out)
    assert back.geometry.same_grid(ct.geometry, atol_mm=1e-4)
    np.testing.assert_allclose(nib.load(str(out)).affine, ct.affine, atol=1e-4)


def test_mask_like_refuses_wrong_shape_and_fractional_labels(tmp_path):
    ct = read_volume(CT_NRRD)
    with pytest.raises(GeometryError, match="shape"):
        write_mask_like(np.zeros((2, 2, 2)), ct, tmp_path / "m.nii.gz")
    with pytest.raises(OutputError, match="integer class ids"):
        write_mask_like(np.full(ct.shape, 0.5), ct, tmp_path / "m.nii.gz")
    assert not (tmp_path / "m.nii.gz").exists()


def test_writer_refuses_its_own_input_and_existing_files(tmp_path):
    src = tmp_path / "in.nii.gz"
    write_volume(Volume(np.zeros((3, 3, 3), np.uint8), np.eye(4)), src)
    before = sha256(src)
    vol = read_volume(src)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        write_volume(vol, src, overwrite=True)
    other = tmp_path / "other.nii.gz"
    other.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        write_volume(vol, other)
    assert other.read_bytes() == b"precious" and sha256(src) == before
    write_volume(vol, other, overwrite=True)
    assert read_volume(other).shape == (3, 3, 3)


def test_failed_write_leaves_old_file_and_no_temporaries(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"old content")

    def broken(volume, path):
        path.write_bytes(b"half a file")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    monkeypatch.setattr(mio, "write_nifti", broken)
    with pytest.raises(KeyboardInterrupt):
        write_volume(Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)), target, overwrite=True)
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_mhd_writes_header_and_data_atomically(tmp_path):
    vol = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    write_volume(vol, tmp_path / "a.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mhd", "a.zraw"]  # compressed data file
    np.testing.assert_array_equal(read_volume(tmp_path / "a.mhd").array, vol.array)


def test_unknown_output_suffix(tmp_path):
    with pytest.raises(OutputError, match=r"unknown output suffix.*\.nii\.gz"):
        write_volume(Volume(np.zeros((2, 2, 2)), np.eye(4)), tmp_path / "x.png")
