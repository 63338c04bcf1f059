"""DICOM SEG (Segmentation Storage) output and input for masks of DICOM source series (highdicom).

Axis mapping (the same as :mod:`medseg.io.dicom`, which defines it for the source):

* medseg's array is ``[i, j, k]`` with ``i`` = DICOM column, ``j`` = DICOM row and ``k`` = the
  source slice in the reader's order (ascending along ``row x column``); ``source.meta``
  lists ``files`` and ``sop_instance_uids`` in that same ``k`` order.
* So SEG frame ``k`` (Rows x Columns) is ``mask[:, :, k].T`` and references source instance
  ``sop_instance_uids[k]``; its ImagePositionPatient is copied from that source image by
  highdicom, so every frame lies exactly on its source slice (also for oblique, flipped or
  slightly uneven series).

Segments: one BINARY segment per foreground class in ``labels`` (value > 0), numbered 1..n in
ascending class value, labelled with the class name, AUTOMATIC, with the algorithm
identification (name, version, optional model id). **Empty classes are kept** as segments
(with no frames): the SEG then still says which classes were looked for, and reading it back
gives the same name -> value table. Empty frames are omitted (highdicom's default; an all-empty
mask keeps every frame), so a SEG read *without* its source covers only the slices from the
first to the last non-empty one; pass ``source`` to :func:`read_dicom_seg` to get the mask on
the full source grid. SpacingBetweenSlices is set to the true slice step (not copied: GE
stores the gap there), which is what lets a reader without the source place the frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.valuerep import format_number_as_ds

from medseg.errors import GeometryError, InputError, OutputError, short_reason, warn
from medseg.geometry import LPS_TO_RAS
from medseg.io.arrays import label_dtype
from medseg.io.atomic import atomic_path
from medseg.volume import Volume

__all__ = ["write_dicom_seg", "read_dicom_seg"]

NOT_DICOM = "DICOM SEG needs a DICOM source series; write NIfTI/NRRD instead"
#: Relative slice-step deviation accepted when a SEG is read without its source.
READ_RTOL = 0.1


# ---- writing ----------------------------------------------------------------------------------
def _source_files(source: Volume) -> list[Path]:
    meta = source.meta or {}
    if meta.get("format") != "dicom" or not meta.get("files") or not meta.get("sop_instance_uids"):
        raise InputError(NOT_DICOM)
    files = [Path(f) for f in meta["files"]]
    if len(files) != source.shape[2]:
        raise GeometryError(f"the source lists {len(files)} DICOM files for {source.shape[2]} slices; "
                            "read the source series again with medseg.io.read_volume")
    if meta.get("frames") is not None:
        raise InputError("DICOM SEG output for multi-frame (enhanced) source images is not supported yet; "
                         "write NIfTI/NRRD instead")
    return files


def _check_output(out: Path, files: list[Path], overwrite: bool) -> None:
    for f in files:
        if f.resolve() == out.resolve() or (out.exists() and f.exists() and os.path.samefile(f, out)):
            raise OutputError(f"refusing to overwrite the source image {f}; choose another output path")
    if out.is_dir():
        raise OutputError(f"{out} is a folder; give a file name such as {out / 'segmentation.dcm'}")
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists; choose another path or allow overwriting (--overwrite)")


def _class_ids(mask: np.ndarray) -> np.ndarray:
    """The mask as non-negative integer class ids (no copy for uint8/uint16 masks)."""
    dtype = label_dtype(mask)  # refuses fractional / NaN values
    if mask.size and int(mask.min()) < 0:
        raise OutputError("the mask holds negative values; DICOM SEG needs class ids >= 0")
    return mask if mask.dtype.kind in "u" else mask.astype(dtype if dtype.kind == "u" else np.int64)


def _segment_table(ids: np.ndarray, labels: dict[str, int]) -> list[tuple[str, int]]:
    """``[(name, class value)]`` of the foreground classes in ``labels``, ascending by value."""
    table = sorted(((str(n), int(v)) for n, v in labels.items() if int(v) > 0), key=lambda t: t[1])
    values = [v for _, v in table]
    if len(set(values)) != len(values):
        raise OutputError(f"two class names share one value in labels {labels}; give each class its own value")
    if not table:
        raise OutputError("labels names no foreground class (value > 0); nothing to write as DICOM SEG")
    if len(table) > 255:
        raise OutputError(f"labels names {len(table)} classes; medseg writes at most 255 segments")
    present = np.flatnonzero(np.bincount(ids.ravel())) if ids.size else np.array([], int)
    unnamed = sorted(set(present.tolist()) - set(values) - {0})
    if unnamed:
        raise OutputError(f"the mask holds class value(s) {unnamed} that labels does not name; "
                          "add them to labels (name -> value)")
    return table


#: Type 2 patient/study attributes highdicom copies from the source (empty when missing).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")


def _complete_sources(datasets: list) -> None:
    """Fill attributes some exports drop, in the in-memory copies only (never the files):
    empty Type 2 patient/study attributes, and a Frame of Reference UID derived from the
    series UID when the images have none (with a warning: viewers then cannot match it)."""
    from pydicom.uid import generate_uid

    for ds in datasets:
        for name in _TYPE2:
            if name not in ds:
                setattr(ds, name, "")
    if any("FrameOfReferenceUID" not in ds for ds in datasets):
        for_uid = generate_uid(entropy_srcs=[str(datasets[0].SeriesInstanceUID), "medseg-frame-of-reference"])
        warn(f"the source images have no FrameOfReferenceUID; the SEG uses {for_uid}, derived from the "
             "series UID (viewers match the SEG to its images by the referenced instances instead)")
        for ds in datasets:
            if "FrameOfReferenceUID" not in ds:
                ds.FrameOfReferenceUID = for_uid


def _set_slice_step(seg, source: Volume) -> None:
    """SpacingBetweenSlices = the source's slice step along the normal (mm), so a reader without
    the source places frames right. highdicom copies the source's value, which some scanners
    (GE) use for the *gap* between slices; one slice: its thickness (as medseg's reader)."""
    lps = source.geometry.affine_lps[:3, :3]
    normal = np.cross(lps[:, 0], lps[:, 1])
    normal /= np.linalg.norm(normal)
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    if source.shape[2] > 1:
        step = abs(float(np.dot(lps[:, 2], normal)))
    else:
        step = float(measures.get("SliceThickness") or 0) or float(np.linalg.norm(lps[:, 2]))
    measures.SpacingBetweenSlices = format_number_as_ds(step)


def _segment_descriptions(table, algorithm_name: str, algorithm_version: str, model_id: str | None):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, version=str(algorithm_version), family=codes.cid7162.ArtificialIntelligence,
        source="medseg", parameters={"model_id": model_id} if model_id else None,
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Organ,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
        )
        for n, (name, _) in enumerate(table, start=1)
    ]


def _frames(ids: np.ndarray, table: list[tuple[str, int]]) -> np.ndarray:
    """Segment numbers (1..n) as frames ``(k, rows, columns)``: frame ``k`` is ``mask[:, :, k].T``
    (array ``i`` = DICOM column, ``j`` = row; see :mod:`medseg.io.dicom`)."""
    lut = np.zeros(max(int(ids.max(initial=0)), table[-1][1]) + 1, dtype=np.uint8)
    for number, (_, value) in enumerate(table, start=1):
        lut[value] = number
    return np.ascontiguousarray(lut[ids].transpose(2, 1, 0))


def _source_datasets(files: list[Path], source: Volume) -> list:
    """The source headers (no pixels) in slice order, checked against ``source``."""
    import pydicom

    try:
        datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    except Exception as e:
        raise InputError(f"cannot read the source DICOM files again ({short_reason(e)}); "
                         "are they still where they were read from?") from e
    if [str(ds.SOPInstanceUID) for ds in datasets] != [str(u) for u in source.meta["sop_instance_uids"]]:
        raise InputError("the source DICOM files changed since the series was read (SOP instance UIDs differ); "
                         "read the source series again")
    _complete_sources(datasets)
    return datasets


def write_dicom_seg(
    mask: Volume,
    source: Volume,
    labels: dict[str, int],
    path: str | Path,
    overwrite: bool = False,
    *,
    series_description: str = "medseg segmentation",
    algorithm_name: str = "medseg",
    algorithm_version: str | None = None,
    model_id: str | None = None,
) -> Path:
    """Write ``mask`` as a DICOM SEG (BINARY) referencing the series ``source`` was read from.

    Args:
        mask: ``(ni, nj, nk)`` integer class labels on exactly ``source``'s grid (1e-3 mm).
        source: the DICOM series as read by :func:`medseg.io.read_volume` (its ``meta`` holds
            the files and SOP instance UIDs in slice order).
        labels: class name -> class value; one segment per value > 0 (empty ones included).
        path: output file (conventionally ``.dcm``), written atomically.
        algorithm_version: default ``medseg.__version__``.
        model_id: recorded as an algorithm parameter when given.

    Raises:
        InputError: ``source`` is not a DICOM series.
        GeometryError: the mask is not on the source grid.
        OutputError: ``path`` exists (and not ``overwrite``) or is a source file; labels do
            not name every class present in the mask.
    """
    import highdicom as hd

    files = _source_files(source)
    out = Path(path)
    if not isinstance(mask, Volume):
        raise GeometryError("the mask must be a Volume on the source grid (medseg.Volume(array, source.affine))")
    if not mask.same_grid(source.geometry):
        raise GeometryError(f"the mask grid ({mask.geometry.describe()}) is not the source grid "
                            f"({source.geometry.describe()}); resample the mask onto the source series first")
    _check_output(out, files, overwrite)
    ids = _class_ids(np.asarray(mask.array))
    table = _segment_table(ids, labels)
    if algorithm_version is None:
        from medseg import __version__ as algorithm_version

    frames = _frames(ids, table)
    datasets = _source_datasets(files, source)
    try:
        series_number = int(datasets[0].get("SeriesNumber") or 0) + 1000
    except (TypeError, ValueError):
        series_number = 1000
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_segment_descriptions(table, algorithm_name, algorithm_version, model_id),
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="medseg",
            manufacturer_model_name=algorithm_name[:64],
            software_versions=str(algorithm_version),
            device_serial_number="none",
            series_description=series_description[:64],
            content_label="MEDSEG",
            content_description=series_description[:64],
            omit_empty_frames=True,
        )
    except (ValueError, TypeError, AttributeError) as e:
        raise OutputError(f"highdicom cannot build a DICOM SEG on series {source.meta.get('series_uid')} "
                          f"({short_reason(e)})") from e
    _set_slice_step(seg, source)
    try:
        with atomic_path(out, ".dcm") as tmp:
            seg.save_as(tmp)
    except PermissionError as e:
        raise OutputError(f"cannot write {out} (permission denied); choose a writable folder") from e
    except OSError as e:
        raise OutputError(f"cannot write {out} ({e.strerror or e}); check the folder and free disk space") from e
    return out


# ---- reading ----------------------------------------------------------------------------------
def _segments(seg) -> dict[str, int]:
    names: dict[str, int] = {}
    for number in seg.segment_numbers:
        label = str(seg.get_segment_description(number).segment_label)
        names[label if label not in names else f"{label}_{number}"] = int(number)
    return names


def _ras_from_hd_volume(vol) -> tuple[np.ndarray, np.ndarray]:
    """highdicom Volume (array ``[slice, row, column]``, LPS affine) -> medseg ``[i, j, k]`` + RAS affine,
    with ``k`` ascending along ``row x column`` as medseg's DICOM reader orders slices."""
    arr = np.asarray(vol.array).transpose(2, 1, 0)
    lps = np.asarray(vol.affine, float)[:, [2, 1, 0, 3]]
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    if np.dot(normal, lps[:3, 2]) < 0 and arr.shape[2] > 1:  # reverse k
        lps[:3, 3] = lps[:3, 3] + lps[:3, 2] * (arr.shape[2] - 1)
        lps[:3, 2] = -lps[:3, 2]
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr), LPS_TO_RAS @ lps


def read_dicom_seg(path: str | Path, source: Volume | None = None) -> tuple[Volume, dict[str, int]]:
    """Read a DICOM SEG into a label map.

    Args:
        path: the SEG file.
        source: the series it references (from :func:`medseg.io.read_volume`); when given the
            mask is returned on exactly the source grid (affine copied) after checking that
            every instance the SEG references is one of the source's slices.

    Returns:
        ``(Volume, {segment label: value})``: uint8 ``[i, j, k]`` (i = column, j = row, k = slice
        ascending along the slice normal), value = segment number 1..n, RAS+ affine; without
        ``source`` the grid comes from the SEG's plane positions and spans the slices that
        hold frames.

    Raises:
        InputError: not a readable SEG, overlapping segments, or references outside ``source``.
    """
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as e:
        raise InputError(f"{path} is not a readable DICOM SEG ({short_reason(e)})") from e
    names = _segments(seg)
    if len(names) > 255:
        raise InputError(f"{path} holds {len(names)} segments; medseg label maps hold at most 255")
    try:
        if source is not None:
            array, affine = _read_on_source(seg, source, path), source.affine.copy()
        else:
            vol = seg.get_volume(combine_segments=True, relabel=True, rtol=READ_RTOL, dtype=np.uint8)
            array, affine = _ras_from_hd_volume(vol)
    except (InputError, GeometryError):
        raise
    except Exception as e:
        text = short_reason(e)
        if "overlap" in text.lower():
            raise InputError(f"{path} has overlapping segments; medseg reads a SEG as one label map "
                             "(one class per voxel) -- split it with highdicom first") from e
        raise InputError(f"cannot build a volume from {path} ({text}); pass the source series "
                         "(read_dicom_seg(path, source=read_volume(series_folder)))") from e
    meta = {"path": str(path), "format": "dicom-seg", "segments": {v: n for n, v in names.items()},
            "series_uid": str(seg.SeriesInstanceUID), "study_uid": str(seg.StudyInstanceUID)}
    return Volume(array.astype(np.uint8, copy=False), affine, meta), names


def _read_on_source(seg, source: Volume, path: Path) -> np.ndarray:
    meta = source.meta or {}
    uids = [str(u) for u in meta.get("sop_instance_uids") or []]
    if meta.get("format") != "dicom" or len(uids) != source.shape[2]:
        raise InputError(f"the source given for {path} is not a DICOM series read by medseg")
    referenced = {str(item.ReferencedSOPInstanceUID)
                  for series in seg.get("ReferencedSeriesSequence", [])
                  for item in series.get("ReferencedInstanceSequence", [])}
    foreign = referenced - set(uids)
    if foreign:
        raise InputError(f"{path} references {len(foreign)} image(s) that are not in the source series "
                         f"{meta.get('series_uid')} (e.g. {sorted(foreign)[0]}); pass the series it was made on")
    frames = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=True,
                                               assert_missing_frames_are_empty=True, dtype=np.uint8)
    if frames.shape[1:] != (source.shape[1], source.shape[0]):
        raise GeometryError(f"{path} frames are {frames.shape[1]}x{frames.shape[2]} (rows x columns), "
                            f"the source slices {source.shape[1]}x{source.shape[0]}")
    return np.ascontiguousarray(frames.transpose(2, 1, 0))
