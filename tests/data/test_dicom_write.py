"""DICOM series writer: headers checked by hand, read back by medseg and by SimpleITK/GDCM."""

import numpy as np
import pydicom
import pytest

from medseg import GeometryError, OutputError, Volume, read_volume
from medseg.io.dicom_write import write_dicom_series
from tests.helpers import grid_points, random_affine, read_series_sitk, sitk_array_ijk, sitk_world_ras

IDS = {"patient_id": "P1", "study_uid": "1.2.3.4", "series_uid": "1.2.3.4.5", "series_number": 3,
       "description": "test"}


def _volume(rng, shape=(7, 5, 6), flips=(1, 1, 1), spacing=(0.7, 0.9, 2.5), max_deg=20.0) -> Volume:
    hu = rng.integers(-1024, 2000, size=shape).astype(np.int16)
    return Volume(hu, random_affine(rng, flips=flips, spacing=spacing, max_deg=max_deg))


def _lps_handed(vol: Volume) -> float:
    return float(np.linalg.det(np.diag([-1.0, -1.0, 1.0]) @ vol.affine[:3, :3]))


def test_headers_follow_the_dicom_convention(tmp_path):
    rng = np.random.default_rng(1)
    vol = _volume(rng)
    files = write_dicom_series(vol, tmp_path / "s", **IDS)
    assert [f.name for f in files] == [f"IM_{k:04d}.dcm" for k in range(6)]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine  # hand conversion RAS -> LPS
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        assert (ds.Rows, ds.Columns) == (5, 7)  # rows run along j, columns along i
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], (lps @ [0, 0, k, 1])[:3], atol=1e-6)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        np.testing.assert_allclose(iop[:3], lps[:3, 0] / 0.7, atol=1e-6)
        np.testing.assert_allclose(iop[3:], lps[:3, 1] / 0.9, atol=1e-6)
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.9, 0.7])  # rows, then columns
        assert float(ds.SliceThickness) == pytest.approx(2.5)
        assert int(ds.InstanceNumber) == k + 1 and ds.Modality == "CT" and ds.PatientID == "P1"
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, int(ds.SeriesNumber)) == ("1.2.3.4", "1.2.3.4.5", 3)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
        px = ds.pixel_array.astype(int) - 1024
        # pixel (row r, column c) of slice k is voxel [c, r, k]
        np.testing.assert_array_equal(px, vol.array[:, :, k].T)
    assert len({pydicom.dcmread(f).SOPInstanceUID for f in files}) == 6
    assert len({pydicom.dcmread(f).FrameOfReferenceUID for f in files}) == 1


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_medseg_and_simpleitk_read_back_the_same_grid(tmp_path, seed):
    rng = np.random.default_rng(seed)
    vol = _volume(rng, shape=(9, 8, 7), spacing=rng.uniform(0.5, 3.0, size=3))
    if _lps_handed(vol) < 0:  # make it right-handed in LPS so the slice order is kept
        vol = Volume(vol.array, vol.affine @ np.diag([1.0, 1.0, -1.0, 1.0]))
    write_dicom_series(vol, tmp_path / "s", **IDS)
    back = read_volume(tmp_path / "s")
    assert back.same_grid(vol, atol_mm=1e-3)
    np.testing.assert_array_equal(back.array, vol.array)
    img = read_series_sitk(tmp_path / "s")
    ijk = grid_points(vol.shape)
    assert np.max(np.abs(sitk_world_ras(img, ijk) - vol.geometry.index_to_world(ijk))) < 1e-3
    np.testing.assert_array_equal(sitk_array_ijk(img), vol.array)


def test_left_handed_volume_is_read_with_k_reversed(tmp_path):
    rng = np.random.default_rng(5)
    vol = _volume(rng, flips=(-1, 1, 1), max_deg=0.0)  # LAS: left-handed in LPS
    assert _lps_handed(vol) < 0
    write_dicom_series(vol, tmp_path / "s", **IDS)
    back = read_volume(tmp_path / "s")
    assert back.orientation == "LAI"
    np.testing.assert_array_equal(back.array, vol.array[:, :, ::-1])
    n = vol.shape[2] - 1
    first, last = back.geometry.index_to_world([0, 0, 0]), vol.geometry.index_to_world([0, 0, n])
    np.testing.assert_allclose(first, last, atol=1e-4)


def test_values_are_clipped_rounded_and_checked(tmp_path):
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    vol = Volume(np.array([-3000.0, -1024.4, 12.6, 3071.0]).reshape(2, 2, 1), aff)
    write_dicom_series(vol, tmp_path / "s", **IDS)
    np.testing.assert_array_equal(read_volume(tmp_path / "s").array.ravel(), [-1024, -1024, 13, 3071])
    with pytest.raises(OutputError, match="do not fit"):
        write_dicom_series(Volume(np.full((2, 2, 1), 70000.0), aff), tmp_path / "big", **IDS)
    with pytest.raises(OutputError, match="NaN"):
        write_dicom_series(Volume(np.full((2, 2, 1), np.nan), aff), tmp_path / "nan", **IDS)
    mr = Volume(np.array([-5, 0, 7, 900], np.int16).reshape(2, 2, 1), aff)
    write_dicom_series(mr, tmp_path / "mr", modality="MR", **IDS)
    back = read_volume(tmp_path / "mr")
    assert back.meta["modality"] == "MR"
    np.testing.assert_array_equal(back.array, mr.array)


def test_refusals_and_overwrite(tmp_path):
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    aff[1, 2] = 0.5  # gantry tilt
    with pytest.raises(GeometryError, match="sheared"):
        write_dicom_series(Volume(np.zeros((2, 2, 3), np.int16), aff), tmp_path / "t", **IDS)
    assert not (tmp_path / "t").exists()
    vol = Volume(np.zeros((2, 2, 3), np.int16), np.diag([0.8, 0.8, 2.0, 1.0]))
    first = write_dicom_series(vol, tmp_path / "s", **IDS)
    with pytest.raises(OutputError, match="already exists"):
        write_dicom_series(vol, tmp_path / "s", **IDS)
    with pytest.raises(OutputError, match="not supported"):
        write_dicom_series(vol, tmp_path / "x", modality="US", **IDS)
    again = write_dicom_series(vol.with_array(np.ones((2, 2, 3), np.int16)), tmp_path / "s", overwrite=True, **IDS)
    assert again == first
    assert read_volume(tmp_path / "s").array.min() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folders left behind
    # same series UID and slice -> same SOP instance UID (re-writing is reproducible)
    assert pydicom.dcmread(first[0]).SOPInstanceUID == pydicom.dcmread(again[0]).SOPInstanceUID
