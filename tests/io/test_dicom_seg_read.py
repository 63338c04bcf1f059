"""DICOM SEG in: ``read_volume(seg)`` against highdicom's own reading, against the mask medseg
wrote, and against pydicom's raw frames of a third-party SEG (pydicom's ``liver_1frame.dcm``).

References: highdicom ``get_volume`` (array ``[slice, row, column]`` + LPS affine, mapped to RAS
world positions by hand here), the written mask, pydicom's raw pixel data and plane position.
"""

from __future__ import annotations

import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medseg.errors import MedsegWarning
from medseg.io import read_dicom_seg, read_volume, write_dicom_seg
from medseg.io.dicom_seg import is_dicom_seg, place_on_grid, seg_label_table
from medseg.io.labels import LabelTable, mask_label_table
from medseg.volume import Volume
from tests.helpers import write_dicom_series

TILT = np.radians(15.0)
ORIENTATION = (1.0, 0.0, 0.0, 0.0, float(np.cos(TILT)), float(-np.sin(TILT)))  # oblique (tilted about x)


@pytest.fixture(scope="module")
def oblique(tmp_path_factory):
    """A small oblique series, a mask with non-consecutive values 2 and 5, its SEG."""
    root = tmp_path_factory.mktemp("seg")
    pixels = (np.arange(14 * 12 * 7).reshape(14, 12, 7) % 251).astype(np.uint16)
    write_dicom_series(root / "series", pixels, spacing=(0.9, 0.6), orientation=ORIENTATION, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        src = read_volume(root / "series")
    mask = np.zeros(src.shape, np.uint8)
    mask[2:7, 3:9, 2:4] = 5
    mask[8:10, 1:4, 3:6] = 2
    table = LabelTable({"background": 0, "liver": 2, "tumour": 5}, {"tumour": (255, 255, 0)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        seg = write_dicom_seg(Volume(mask, src.affine), src, table, root / "seg.dcm")
    return src, mask, seg


def _world_labels(affine_ras: np.ndarray, array: np.ndarray) -> dict[tuple, int]:
    """{rounded RAS world position (0.01 mm): value} of every non-zero voxel."""
    idx = np.argwhere(array > 0)
    pos = (affine_ras @ np.c_[idx, np.ones(len(idx))].T)[:3].T
    return {tuple(np.round(p, 2)): int(array[tuple(i)]) for p, i in zip(pos, idx)}


def test_read_volume_of_a_seg_matches_highdicom_and_the_written_mask(oblique):
    src, mask, seg_path = oblique
    assert is_dicom_seg(seg_path) and not is_dicom_seg(src.meta["files"][0])
    vol = read_volume(seg_path)
    assert vol.meta["format"] == "dicom-seg" and vol.array.dtype == np.uint8
    assert vol.meta["segments"] == {2: "liver", 5: "tumour"}
    assert vol.meta["colors"][5] == (255, 255, 0)

    # highdicom's own volume: [slice, row, column] + LPS affine -> RAS positions by hand
    ref = hd.seg.segread(seg_path).get_volume(combine_segments=True, relabel=False, rtol=0.1)
    numbers_to_values = {1: 2, 2: 5}           # segments are numbered in ascending class value
    hd_arr = np.vectorize(lambda n: numbers_to_values.get(int(n), 0))(ref.array)
    hd_world = _world_labels(np.diag([-1.0, -1, 1, 1]) @ np.asarray(ref.affine), hd_arr)
    assert _world_labels(vol.affine, vol.array) == hd_world and len(hd_world) == int((mask > 0).sum())

    # the written mask: exactly on the source grid, by instance and by position
    on_src, names = read_dicom_seg(seg_path, src)
    assert names == {"liver": 2, "tumour": 5}
    np.testing.assert_array_equal(on_src.array, mask)
    placed = place_on_grid(vol, src.geometry)
    assert placed is not None and placed.same_grid(src.geometry)
    np.testing.assert_array_equal(placed.array, mask)
    # half a slice off is not the same grid
    shifted = vol.affine.copy()
    shifted[:3, 3] += 0.5 * vol.affine[:3, 2]
    assert place_on_grid(Volume(vol.array, shifted), src.geometry) is None

    t = seg_label_table(seg_path)
    assert t.labels == {"background": 0, "liver": 2, "tumour": 5} and t.colors["tumour"] == (255, 255, 0)
    assert mask_label_table(vol, seg_path).labels == t.labels


def test_a_seg_without_recorded_values_maps_segments_by_name(oblique, tmp_path):
    """A third-party SEG (no medseg label_value): values by name from a label table, else segment numbers."""
    src, mask, seg_path = oblique
    ds = pydicom.dcmread(seg_path)
    for item in ds.SegmentSequence:
        del item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    ds.save_as(tmp_path / "foreign.dcm")
    vol, names = read_dicom_seg(tmp_path / "foreign.dcm", src)
    assert names == {"liver": 1, "tumour": 2}
    np.testing.assert_array_equal(vol.array, np.select([mask == 2, mask == 5], [1, 2], 0))
    vol, names = read_dicom_seg(tmp_path / "foreign.dcm", src, labels={"background": 0, "tumour": 5, "liver": 2})
    assert names == {"liver": 2, "tumour": 5}
    np.testing.assert_array_equal(vol.array, mask)


def test_pydicom_liver_seg_reads_on_its_plane():
    try:
        from pydicom.data import get_testdata_file

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = get_testdata_file("liver_1frame.dcm")
    except Exception:  # noqa: BLE001
        path = None
    if path is None:
        pytest.skip("pydicom's liver_1frame.dcm test file is not installed")
    raw = pydicom.dcmread(path)
    vol = read_volume(path)
    assert vol.shape == (raw.Columns, raw.Rows, 1) and vol.meta["segments"] == {1: "Liver"}
    frame = raw.pixel_array.reshape(raw.Rows, raw.Columns)
    np.testing.assert_array_equal(vol.array[:, :, 0].T, frame)
    # world position of pixel (row r, column c): IPP + c * column step along the row + r * row step
    fg = raw.PerFrameFunctionalGroupsSequence[0]
    ipp = np.array([float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient])
    shared = raw.SharedFunctionalGroupsSequence[0]
    iop = np.array([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    dr, dc = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    r, c = 100, 37
    lps = ipp + c * dc * iop[:3] + r * dr * iop[3:]
    np.testing.assert_allclose((vol.affine @ [c, r, 0, 1])[:3], lps * [-1, -1, 1], atol=1e-4)
    assert np.dot(vol.affine[:3, 2], np.cross(iop[:3], iop[3:]) * [-1, -1, 1]) > 0   # k along the normal
    assert seg_label_table(path).colors["Liver"] == (221, 130, 101)
