"""DICOM SEG writer/reader against independent references.

References: the source files' own headers and pixels read with pydicom (SOPInstanceUID,
ImagePositionPatient, ImageOrientationPatient; slice order = position along row x column,
computed here), the SEG read back with pydicom (raw per-frame functional groups and bit-
unpacked frames) and with highdicom's own lookup by source instance, and hand-placed boxes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from medseg import __version__
from medseg.errors import GeometryError, InputError, MedsegWarning, OutputError
from medseg.io import read_dicom_seg, read_volume, write_dicom_seg, write_volume
from medseg.volume import Volume
from tests.helpers import MR_DICOM, sha256, write_dicom_series

LPS = np.array([-1.0, -1.0, 1.0])


def _read(path) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)  # the MR sample's slightly uneven steps
        return read_volume(path)


def _sources_in_order(files) -> list[pydicom.Dataset]:
    """Source images (with pixels) sorted by ImagePositionPatient along the slice normal."""
    dss = [pydicom.dcmread(f) for f in files]
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    return sorted(dss, key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))


def _check_seg_frames(seg_path: Path, source: Volume, mask: np.ndarray, table: list[tuple[str, int]]):
    """Every SEG frame lies on its source instance and holds that instance's mask slice."""
    ordered = _sources_in_order(sorted(Path(f) for f in source.meta["files"]))
    # the source volume's [i, j, k] is (column, row, slice-along-normal) -- from the pixels
    for k, ds in enumerate(ordered):
        np.testing.assert_array_equal(source.array[:, :, k].T, apply_modality_lut(ds.pixel_array, ds))
    k_of_uid = {str(ds.SOPInstanceUID): k for k, ds in enumerate(ordered)}
    ipp_of_uid = {str(ds.SOPInstanceUID): [float(v) for v in ds.ImagePositionPatient] for ds in ordered}

    raw = pydicom.dcmread(seg_path)
    assert raw.Modality == "SEG" and raw.SegmentationType == "BINARY"
    frames = raw.pixel_array.reshape(int(raw.NumberOfFrames), raw.Rows, raw.Columns)
    seen = set()
    for f, fg in enumerate(raw.PerFrameFunctionalGroupsSequence):
        uid = str(fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        number = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        k = k_of_uid[uid]
        np.testing.assert_allclose([float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient],
                                   ipp_of_uid[uid], atol=1e-4)
        value = table[number - 1][1]
        np.testing.assert_array_equal(frames[f], (mask[:, :, k] == value).T.astype(np.uint8))
        seen.add((k, number))
    # every non-empty (slice, class) has its frame
    for number, (_, value) in enumerate(table, start=1):
        for k in range(mask.shape[2]):
            if np.any(mask[:, :, k] == value):
                assert (k, number) in seen

    # highdicom's own lookup by source instance agrees
    seg = hd.seg.segread(seg_path)
    uids = [str(ds.SOPInstanceUID) for ds in ordered]
    by_instance = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=True,
                                                    assert_missing_frames_are_empty=True)
    expected = np.zeros(mask.shape, np.uint8)
    for number, (_, value) in enumerate(table, start=1):
        expected[mask == value] = number
    np.testing.assert_array_equal(by_instance, expected.transpose(2, 1, 0))
    return raw, seg, expected


@pytest.fixture(scope="module")
def mr():
    return _read(MR_DICOM)


def _mr_mask(mr: Volume) -> np.ndarray:
    mask = (mr.array > 300).astype(np.uint8)         # a thresholded region
    mask[10:40, 60:90, 5:9] = 2                        # columns 10-39, rows 60-89, slices 5-8
    return mask


def test_mr_oblique_series_frames_land_on_their_source_slices(mr, tmp_path):
    mask = _mr_mask(mr)
    table = [("bright tissue", 1), ("box", 2), ("not found", 3)]
    out = write_dicom_seg(Volume(mask, mr.affine), mr, dict(table), tmp_path / "seg.dcm", model_id="unet-v3")
    raw, seg, expected = _check_seg_frames(out, mr, mask, table)

    # the hand-placed box: in DICOM terms rows 60-89, columns 10-39 of the 6th..9th slice
    ordered = _sources_in_order(sorted(MR_DICOM.glob("*.dcm")))
    for k in range(5, 9):
        px = seg.get_pixels_by_source_instance([str(ordered[k].SOPInstanceUID)], segment_numbers=[2])[0, :, :, 0]
        assert px[60:90, 10:40].all() and px.sum() == 30 * 30

    # segments, algorithm, references
    labels = [str(s.SegmentLabel) for s in raw.SegmentSequence]
    assert labels == ["bright tissue", "box", "not found"]      # the empty class is kept
    for s in raw.SegmentSequence:
        assert s.SegmentAlgorithmType == "AUTOMATIC" and s.SegmentAlgorithmName == "medseg"
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Tissue"
        algo = s.SegmentationAlgorithmIdentificationSequence[0]
        assert algo.AlgorithmVersion == __version__ and "unet-v3" in str(algo.AlgorithmParameters)
    src0 = pydicom.dcmread(ordered[0].filename, stop_before_pixels=True)
    assert raw.StudyInstanceUID == src0.StudyInstanceUID and raw.FrameOfReferenceUID == src0.FrameOfReferenceUID
    assert raw.SeriesInstanceUID != src0.SeriesInstanceUID and raw.SeriesDescription == "medseg segmentation"
    [ref_series] = raw.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == src0.SeriesInstanceUID
    assert {str(i.ReferencedSOPInstanceUID) for i in ref_series.ReferencedInstanceSequence} == \
        {str(ds.SOPInstanceUID) for ds in ordered}
    # the slice step (not the GE 'gap' the source stores as SpacingBetweenSlices)
    step = float(raw.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices)
    assert step == pytest.approx(7.0, abs=0.05)

    # medseg's reader: on the source grid exactly, and from the SEG alone within the
    # rounding of the source positions (0.1 mm)
    vol, names = read_dicom_seg(out, mr)
    assert names == {"bright tissue": 1, "box": 2, "not found": 3}
    np.testing.assert_array_equal(vol.array, mask)
    assert vol.same_grid(mr.geometry) and vol.array.dtype == np.uint8
    alone, names2 = read_dicom_seg(out)
    assert names2 == names
    assert alone.shape == mr.shape                 # the threshold reaches every slice
    np.testing.assert_array_equal(alone.array, mask)
    assert alone.geometry.same_grid(mr.geometry, atol_mm=0.1)


def test_flipped_anisotropic_synthetic_series(tmp_path):
    rows, cols, n = 12, 9, 7
    pixels = (np.arange(rows * cols * n).reshape(rows, cols, n) % 997).astype(np.uint16)
    ori = (-1.0, 0.0, 0.0, 0.0, 0.0, -1.0)              # coronal: rows run right->left, columns feet-wards
    normal = np.cross(ori[:3], ori[3:])
    files = write_dicom_series(tmp_path / "series", pixels, spacing=(1.3, 0.7), orientation=ori,
                               origin=(20.0, 30.0, 40.0), step=-3.0 * normal, seed=3)   # files written against the normal
    src = _read(tmp_path / "series")
    assert src.shape == (cols, rows, n) and src.geometry.spacing == pytest.approx((0.7, 1.3, 3.0))
    mask = np.zeros(src.shape, np.int32)
    mask[1:4, 2:9, 2:4] = 7                               # class values need not be 1..n
    mask[8, 11, 6] = 3
    table = [("lesion", 3), ("organ", 7)]
    before = sha256(tmp_path / "series")
    with pytest.warns(MedsegWarning, match="FrameOfReferenceUID"):
        out = write_dicom_seg(Volume(mask, src.affine), src, {"organ": 7, "lesion": 3, "background": 0},
                              tmp_path / "out" / "seg.dcm")
    assert sha256(tmp_path / "series") == before
    _check_seg_frames(out, src, mask, table)

    # the class values medseg recorded per segment come back (not the segment numbers 1, 2)
    vol, names = read_dicom_seg(out, src)
    assert names == {"lesion": 3, "organ": 7}
    np.testing.assert_array_equal(vol.array, mask)
    np.testing.assert_array_equal(vol.affine, src.affine)
    # from the SEG alone: the slab of slices 2..6 that hold frames, exactly on the source grid
    alone, _ = read_dicom_seg(out)
    np.testing.assert_array_equal(alone.array, mask[:, :, 2:])
    assert alone.geometry.same_grid(src.crop((0, 0, 2), src.shape).geometry)
    assert len(files) == n and src.geometry.orientation == "RIA"


def test_refusals(mr, tmp_path):
    mask = Volume(_mr_mask(mr), mr.affine)
    labels = {"bright": 1, "box": 2}
    out = write_dicom_seg(mask, mr, labels, tmp_path / "seg.dcm")
    first = out.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        write_dicom_seg(mask, mr, labels, out)
    assert out.read_bytes() == first
    write_dicom_seg(mask, mr, {"bright": 1, "box": 2, "third": 3}, out, overwrite=True)
    assert [s.SegmentLabel for s in pydicom.dcmread(out).SegmentSequence][-1] == "third"

    before = sha256(MR_DICOM)
    with pytest.raises(OutputError, match="source image"):
        write_dicom_seg(mask, mr, labels, mr.meta["files"][3], overwrite=True)
    assert sha256(MR_DICOM) == before
    with pytest.raises(OutputError, match=r"value\(s\) \[2\]"):
        write_dicom_seg(mask, mr, {"bright": 1}, tmp_path / "x.dcm")
    shifted = np.array(mr.affine)
    shifted[0, 3] += 0.5
    with pytest.raises(GeometryError, match="not the source grid"):
        write_dicom_seg(Volume(mask.array, shifted), mr, labels, tmp_path / "y.dcm")

    nifti = read_volume(write_volume(Volume(mr.array, mr.affine), tmp_path / "mr.nii.gz"))
    with pytest.raises(InputError, match="DICOM SEG needs a DICOM source series; write NIfTI/NRRD instead"):
        write_dicom_seg(Volume(mask.array, nifti.affine), nifti, labels, tmp_path / "z.dcm")
    assert not (tmp_path / "x.dcm").exists() and not (tmp_path / "y.dcm").exists()
    assert not (tmp_path / "z.dcm").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mr.nii.gz", "seg.dcm"]   # no temporary left


def test_read_refuses_a_seg_of_another_series(mr, tmp_path):
    pixels = np.zeros((8, 8, 3), np.uint16)
    write_dicom_series(tmp_path / "other", pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        other = read_volume(tmp_path / "other")
        mask = np.zeros(other.shape, np.uint8)
        mask[2:4, 2:4, 1] = 1
        out = write_dicom_seg(Volume(mask, other.affine), other, {"a": 1}, tmp_path / "seg.dcm")
    with pytest.raises(InputError, match="not in the source series"):
        read_dicom_seg(out, mr)
