"""DICOM reading: slice order, geometry vs SimpleITK/GDCM and the headers, rescale, series
selection, spacing checks, and files that are not images."""

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medseg import GeometryError, InputError, MedsegWarning, read_volume, scan_dicom
from tests.helpers import (
    CT_JPEG,
    MR_DICOM,
    dicom_position_ras,
    grid_points,
    read_series_sitk,
    sitk_array_ijk,
    sitk_world_ras,
    write_dicom_series,
)

PYDICOM_FILES = __import__("pathlib").Path(pydicom.__file__).parent / "data" / "test_files"


def _pixels(shape=(6, 5, 7), seed=0):
    return np.random.default_rng(seed).integers(0, 3000, size=shape).astype(np.uint16)


def test_real_mr_series_matches_simpleitk_and_warns_on_jitter():
    with pytest.warns(MedsegWarning, match=r"not uniform.*6\.958.*7\.071"):
        vol = read_volume(MR_DICOM)
    img = read_series_sitk(MR_DICOM)
    assert vol.shape == (256, 256, 20)
    assert vol.spacing == pytest.approx((0.859375, 0.859375, 7.0005), abs=1e-3)
    ijk = grid_points(vol.shape)
    assert np.max(np.abs(vol.geometry.index_to_world(ijk) - sitk_world_ras(img, ijk))) < 1e-3
    np.testing.assert_array_equal(vol.array, sitk_array_ijk(img))
    assert vol.orientation == "LPS" and vol.geometry.is_oblique
    assert vol.meta["modality"] == "MR" and vol.meta["n_series"] == 1


@pytest.mark.filterwarnings("ignore::medseg.errors.MedsegWarning")  # the jitter warning, tested above
def test_real_mr_slices_sit_at_their_header_positions():
    vol = read_volume(MR_DICOM)
    for k, f in enumerate(vol.meta["files"]):
        # rounding of ImagePositionPatient (0.1 mm) is the only allowed difference
        assert np.allclose(vol.geometry.index_to_world([0, 0, k]), dicom_position_ras(f), atol=0.15)


@pytest.mark.parametrize(
    "orientation",
    [(1, 0, 0, 0, 1, 0), (0.9848078, 0.1736482, 0, -0.1736482, 0.9848078, 0), (1, 0, 0, 0, 0, -1), (0, 1, 0, 0, 0, -1)],
    ids=["axial", "axial-rotated", "coronal", "sagittal"],
)
def test_shuffled_series_order_and_geometry_match_simpleitk(tmp_path, orientation):
    px = _pixels()
    write_dicom_series(tmp_path, px, orientation=orientation, slope=1.0, intercept=-1024.0)
    vol = read_volume(tmp_path)
    img = read_series_sitk(tmp_path)
    ijk = grid_points(vol.shape)
    assert np.max(np.abs(vol.geometry.index_to_world(ijk) - sitk_world_ras(img, ijk))) < 1e-3
    np.testing.assert_array_equal(vol.array, sitk_array_ijk(img))
    # i = column, j = row, k = slice; HU = stored - 1024
    np.testing.assert_array_equal(vol.array, px.transpose(1, 0, 2).astype(np.int32) - 1024)
    assert vol.array.dtype == np.int16


def test_order_comes_from_positions_not_names_or_instance_numbers(tmp_path):
    px = _pixels()
    paths = write_dicom_series(tmp_path, px, shuffle_names=True, seed=3)
    vol = read_volume(tmp_path)
    for k, f in enumerate(vol.meta["files"]):
        assert np.allclose(vol.geometry.index_to_world([0, 0, k]), dicom_position_ras(f), atol=1e-4)
    # the files were written in slice order k = 0..n-1 (names shuffled)
    assert vol.meta["files"] == [str(p) for p in paths]


def test_fractional_rescale_gives_float(tmp_path):
    px = _pixels()
    write_dicom_series(tmp_path, px, slope=0.5, intercept=-10.25)
    vol = read_volume(tmp_path)
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, px.transpose(1, 0, 2) * 0.5 - 10.25)
    np.testing.assert_allclose(vol.array, sitk_array_ijk(read_series_sitk(tmp_path)), atol=1e-4)


def test_gantry_tilt_is_kept_in_a_sheared_affine(tmp_path):
    px = _pixels(shape=(6, 5, 8))
    step = np.array([0.0, 0.6, 2.5])  # LPS: slices advance in z and drift in y (about 13.5 deg)
    paths = write_dicom_series(tmp_path, px, step=step, shuffle_names=False)
    with pytest.warns(MedsegWarning, match=r"tilted by 13\.50 degrees"):
        vol = read_volume(tmp_path)
    assert vol.geometry.is_sheared
    for k, f in enumerate(paths):
        # every slice's first voxel sits exactly at its header position ...
        assert np.allclose(vol.geometry.index_to_world([0, 0, k]), dicom_position_ras(f), atol=1e-4)
        # ... and every voxel of the slice where SimpleITK places it when reading that file alone
        single = sitk.ReadImage(str(f))
        ij = np.array([[0, 0], [5, 0], [0, 4], [3, 2]])
        ours = vol.geometry.index_to_world(np.c_[ij, np.full(len(ij), k)])
        assert np.allclose(ours, sitk_world_ras(single, np.c_[ij, np.zeros(len(ij))]), atol=1e-3)


def test_multiple_series_default_and_choice(tmp_path, caplog):
    big, small = tmp_path / "study" / "a", tmp_path / "study" / "b" / "deep"
    write_dicom_series(big, _pixels((6, 5, 7)), series_uid="1.2.3.100", description="big")
    write_dicom_series(small, _pixels((4, 4, 3), seed=1), series_uid="1.2.3.200", description="small")
    scan = scan_dicom(tmp_path)
    assert [s.uid for s in scan.series] == ["1.2.3.100", "1.2.3.200"]
    with caplog.at_level("INFO", logger="medseg"):
        vol = read_volume(tmp_path)
    assert vol.meta["series_uid"] == "1.2.3.100" and vol.meta["n_series"] == 2
    assert "using 1.2.3.100" in caplog.text and "--series" in caplog.text
    other = read_volume(tmp_path, series_uid="1.2.3.200")
    assert other.shape == (4, 4, 3)
    with pytest.raises(InputError, match=r"1\.2\.3\.999 is not in .*1\.2\.3\.100"):
        read_volume(tmp_path, series_uid="1.2.3.999")


def test_real_multi_series_folder_from_pydicom():
    folder = PYDICOM_FILES / "dicomdirtests" / "98892001"
    vol = read_volume(folder)
    assert vol.meta["n_series"] == 2 and vol.meta["modality"] == "CT"
    series = scan_dicom(folder).series[0]
    assert vol.shape[2] == series.n_slices == max(s.n_slices for s in scan_dicom(folder).series)


def test_small_jitter_warns_missing_slice_errors_unless_allowed(tmp_path):
    px = _pixels(shape=(6, 5, 8))
    normal_pos = np.array([[-100.0, -120.0, 50.0 + 2.5 * k] for k in range(8)])
    jitter = normal_pos.copy()
    jitter[3, 2] += 0.05
    write_dicom_series(tmp_path / "jitter", px, positions=jitter)
    with pytest.warns(MedsegWarning, match=r"not uniform.*2\.55.*2\.45"):
        read_volume(tmp_path / "jitter")

    paths = write_dicom_series(tmp_path / "gap", px, positions=normal_pos)
    paths[4].unlink()  # paths are in slice order: an inner slice goes missing
    with pytest.raises(GeometryError, match=r"not uniform.*5.*1 slice\(s\) look missing.*--allow-nonuniform"):
        read_volume(tmp_path / "gap")
    with pytest.warns(MedsegWarning, match="allow-nonuniform"):
        vol = read_volume(tmp_path / "gap", allow_nonuniform=True)
    assert vol.shape[2] == 7


def test_duplicate_positions_are_refused(tmp_path):
    pos = np.array([[0.0, 0.0, 2.5 * (k // 2)] for k in range(6)])  # pairs at one position (2 echoes)
    write_dicom_series(tmp_path, _pixels((4, 4, 6)), positions=pos)
    with pytest.raises(GeometryError, match="same position"):
        read_volume(tmp_path)


def test_non_dicom_and_non_image_files_are_reported_not_fatal(tmp_path, caplog):
    write_dicom_series(tmp_path / "s", _pixels())
    (tmp_path / "s" / "notes.txt").write_text("hello")
    (tmp_path / "s" / "garbage.dcm").write_bytes(b"\x00" * 300)
    shutil.copy(PYDICOM_FILES / "rtstruct.dcm", tmp_path / "s" / "rtstruct.dcm")
    with caplog.at_level("INFO", logger="medseg"):
        vol = read_volume(tmp_path)
    assert vol.shape == (5, 6, 7)
    assert "3 file(s) skipped" in caplog.text and "notes.txt" in caplog.text and "RTSTRUCT" in caplog.text


def test_folder_without_images(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="holds no DICOM files"):
        read_volume(tmp_path)
    shutil.copy(PYDICOM_FILES / "rtstruct.dcm", tmp_path / "rs.dcm")
    with pytest.raises(InputError, match="no readable image series"):
        read_volume(tmp_path)


def test_single_file_and_compressed_fallback_match_simpleitk():
    vol = read_volume(CT_JPEG)  # JPEG lossless: pydicom has no decoder here, GDCM decodes it
    img = sitk.ReadImage(str(CT_JPEG))
    assert vol.shape == (512, 400, 1)
    ijk = grid_points(vol.shape)
    assert np.max(np.abs(vol.geometry.index_to_world(ijk) - sitk_world_ras(img, ijk))) < 1e-3
    np.testing.assert_array_equal(vol.array, sitk_array_ijk(img))


def test_pydicom_ct_small_hu_matches_simpleitk():
    path = PYDICOM_FILES / "CT_small.dcm"
    vol = read_volume(path)
    img = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(vol.array, sitk_array_ijk(img))
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.T.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.array[:, :, 0], hu)


def test_truncated_dicom_slice_is_reported(tmp_path):
    paths = write_dicom_series(tmp_path, _pixels())
    raw = paths[2].read_bytes()
    paths[2].write_bytes(raw[: len(raw) - 20])
    with pytest.raises(InputError, match=r"pixel data of .*img_.*could not be read"):
        read_volume(tmp_path)


def test_truncated_compressed_file_is_reported_as_truncated(tmp_path):
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(CT_JPEG.read_bytes()[:5000])
    with pytest.raises(InputError, match="ends early.*truncated"):
        read_volume(cut)


def test_enhanced_multiframe_matches_the_same_data_as_a_series(tmp_path):
    from tests.helpers import write_enhanced_multiframe

    px = _pixels(shape=(6, 5, 7))
    pos = np.array([[-100.0, -120.0, 50.0 + 2.5 * k] for k in range(7)])
    order = np.random.default_rng(4).permutation(7)  # frames stored out of order
    mf = write_enhanced_multiframe(tmp_path / "mf.dcm", px[:, :, order], pos[order], slope=0.5, intercept=-20)
    vol = read_volume(mf)
    write_dicom_series(tmp_path / "series", px, positions=pos, slope=0.5, intercept=-20)
    ref = read_volume(tmp_path / "series")  # checked against SimpleITK in the tests above
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6)
    np.testing.assert_allclose(vol.array, ref.array)
    # hand reference: voxel (0, 0, k) sits at frame k's position (LPS -> RAS)
    for k in range(7):
        assert np.allclose(vol.geometry.index_to_world([0, 0, k]), pos[k] * [-1, -1, 1])


@pytest.mark.parametrize("slope, intercept", [(1.0, -1024.0), (0.5, -10.25)])
def test_gdcm_fallback_applies_rescale_exactly_once(tmp_path, monkeypatch, slope, intercept):
    px = _pixels()
    write_dicom_series(tmp_path, px, slope=slope, intercept=intercept)
    direct = read_volume(tmp_path)

    def no_decoder(self):
        raise NotImplementedError("no pixel data handler for this transfer syntax")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    fallback = read_volume(tmp_path)
    np.testing.assert_allclose(fallback.array, direct.array, atol=1e-4)
    np.testing.assert_allclose(fallback.array, px.transpose(1, 0, 2) * slope + intercept, atol=1e-4)
