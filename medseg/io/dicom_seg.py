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
identification (name, version, optional model id, and the class's label value as the algorithm
parameter ``label_value``) and the class colour (RecommendedDisplayCIELabValue, from a
:class:`~medseg.io.labels.LabelTable` or the default palette). **Empty classes are kept** as segments
(with no frames): the SEG then still says which classes were looked for, and reading it back
gives the same name -> value table. Empty frames are omitted (highdicom's default; an all-empty
mask keeps every frame), so a SEG read *without* its source covers only the slices from the
first to the last non-empty one; pass ``source`` to :func:`read_dicom_seg` to get the mask on
the full source grid (or :func:`place_on_grid` to put it on a reference mask's grid).
SpacingBetweenSlices is set to the true slice step (not copied: GE
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

__all__ = ["write_dicom_seg", "read_dicom_seg", "is_dicom_seg", "seg_label_table", "place_on_grid"]

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


def _segment_descriptions(table, colors: dict, algorithm_name: str, algorithm_version: str, model_id: str | None):
    """One SegmentDescription per ``(name, value)``: label = name, colour = ``colors[name]``
    (RGB 0-255), algorithm parameters ``label_value=<value>`` (+ ``model_id``)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    out = []
    for n, (name, value) in enumerate(table, start=1):
        params = {"label_value": str(value), **({"model_id": str(model_id)} if model_id else {})}
        algo = hd.AlgorithmIdentificationSequence(
            name=algorithm_name, version=str(algorithm_version), family=codes.cid7162.ArtificialIntelligence,
            source="medseg", parameters=params,
        )
        rgb = colors.get(name)
        out.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Organ,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
            display_color=hd.color.CIELabColor.from_rgb(*[int(c) for c in rgb[:3]]) if rgb else None,
        ))
    return out


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
    labels: "dict[str, int] | LabelTable",
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
        labels: class name -> class value, or a :class:`~medseg.io.labels.LabelTable` (its colours
            are written too); one segment per value > 0 (empty ones included).
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

    from medseg.io.labels import LabelTable

    table_in = labels if isinstance(labels, LabelTable) else LabelTable(dict(labels))
    labels = table_in.labels
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
        from medseg._version import __version__ as algorithm_version

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
            segment_descriptions=_segment_descriptions(table, table_in.colors, algorithm_name, algorithm_version, model_id),
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
def is_dicom_seg(path: str | Path) -> bool:
    """True when ``path`` is a DICOM file whose Modality is SEG (or whose SOP class is
    Segmentation Storage); reads only the first header elements."""
    import pydicom

    from medseg.io.formats import is_dicom_file

    path = Path(path)
    if not path.is_file() or not (is_dicom_file(path) or path.suffix.lower() == ".dcm"):
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "SOPClassUID"])
    except Exception:  # noqa: BLE001 -- not readable as DICOM: not a SEG
        return False
    return str(ds.get("Modality", "")).upper() == "SEG" or str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS


#: Segmentation Storage SOP Class UID.
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _recorded_value(desc) -> int | None:
    """The ``label_value`` medseg records as an algorithm parameter of a segment (None if absent)."""
    for algo in desc.get("SegmentationAlgorithmIdentificationSequence", []) or []:
        for part in str(algo.get("AlgorithmParameters", "") or "").split(","):
            key, _, val = part.partition("=")
            if key.strip() == "label_value":
                try:
                    return int(val.strip())
                except ValueError:
                    return None
    return None


def _segment_info(seg) -> list[tuple[int, str, int | None, tuple[int, int, int] | None]]:
    """``[(segment number, label, recorded label value or None, RGB 0-255 or None)]``."""
    import highdicom as hd

    out = []
    for desc in seg.get("SegmentSequence", []):
        number = int(desc.SegmentNumber)
        rgb = None
        lab = desc.get("RecommendedDisplayCIELabValue")
        if lab is not None:
            try:
                rgb = tuple(int(c) for c in hd.color.CIELabColor.from_dicom_value(list(lab)).to_rgb())
            except Exception:  # noqa: BLE001 -- a damaged colour only costs the colour
                rgb = None
        out.append((number, str(desc.get("SegmentLabel", "") or f"segment_{number}"), _recorded_value(desc), rgb))
    return sorted(out)


def _value_map(info, labels) -> dict[int, int]:
    """Segment number -> label value: the values medseg recorded in the SEG; else, when every
    segment label is a class of ``labels`` (name -> value, distinct, > 0), those; else the
    segment numbers."""
    numbers = [n for n, _, _, _ in info]
    recorded = [v for _, _, v, _ in info]
    if info and all(v is not None and 0 < v <= 65535 for v in recorded) and len(set(recorded)) == len(recorded):
        return dict(zip(numbers, recorded))
    if labels is not None:
        table = dict(getattr(labels, "labels", labels))
        values = [table.get(name) for _, name, _, _ in info]
        if info and all(v is not None and 0 < int(v) <= 65535 for v in values) and len(set(values)) == len(values):
            return {n: int(v) for n, v in zip(numbers, values)}
    return {n: n for n in numbers}


def _names(info, values: dict[int, int]) -> dict[str, int]:
    names: dict[str, int] = {}
    for number, label, _, _ in info:
        names[label if label not in names else f"{label}_{number}"] = values[number]
    return names


def seg_label_table(path: str | Path, labels=None):
    """The :class:`~medseg.io.labels.LabelTable` of a SEG file: segment labels -> label values
    (as :func:`read_dicom_seg` assigns them), colours from RecommendedDisplayCIELabValue,
    background 0 included. Reads the header only."""
    import pydicom

    from medseg.io.labels import LabelTable

    path = Path(path)
    try:
        info = _segment_info(pydicom.dcmread(path, stop_before_pixels=True))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path} is not a readable DICOM SEG ({short_reason(e)})") from e
    values = _value_map(info, labels)
    names = _names(info, values)
    colors = {name: rgb for (number, _, _, rgb), name in zip(info, names) if rgb is not None}
    return LabelTable({"background": 0, **names}, colors, str(path))


def _ras_from_hd_volume(vol) -> tuple[np.ndarray, np.ndarray]:
    """highdicom Volume (array ``[slice, row, column]``, LPS affine) -> medseg ``[i, j, k]`` + RAS affine,
    with ``k`` ascending along ``row x column`` as medseg's DICOM reader orders slices (one
    slice: the k column is the slice normal times the slice step, as medseg's DICOM reader)."""
    arr = np.asarray(vol.array).transpose(2, 1, 0)
    lps = np.asarray(vol.affine, float)[:, [2, 1, 0, 3]]
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    normal /= np.linalg.norm(normal)
    if arr.shape[2] == 1:
        lps[:3, 2] = normal * np.linalg.norm(lps[:3, 2])
    elif np.dot(normal, lps[:3, 2]) < 0:  # reverse k
        lps[:3, 3] = lps[:3, 3] + lps[:3, 2] * (arr.shape[2] - 1)
        lps[:3, 2] = -lps[:3, 2]
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr), LPS_TO_RAS @ lps


def read_dicom_seg(path: str | Path, source: Volume | None = None, labels=None) -> tuple[Volume, dict[str, int]]:
    """Read a DICOM SEG (BINARY or FRACTIONAL, non-overlapping segments) into one label map.

    Args:
        path: the SEG file.
        source: the series it references (from :func:`medseg.io.read_volume`); when given the
            mask is returned on exactly the source grid (affine copied) after checking that
            every instance the SEG references is one of the source's slices.
        labels: optional class name -> value table (dict or :class:`~medseg.io.labels.LabelTable`,
            e.g. the prediction folder's ``labels.json``) used to give segments their class
            values by name when the SEG does not record them.

    Returns:
        ``(Volume, {segment label: value})``: ``[i, j, k]`` (i = column, j = row, k = slice
        ascending along the slice normal), RAS+ affine, uint8 (uint16 when a value exceeds
        255). A segment's value is the ``label_value`` medseg records in the SEG, else its
        class value in ``labels`` (when every segment label is found there), else its segment
        number. Without ``source`` the grid comes from the SEG's plane positions and spans
        the slices that hold frames (see :func:`place_on_grid`). ``meta``: ``format``
        "dicom-seg", ``segments`` {value: label}, ``colors`` {value: RGB 0-255},
        ``series_uid``, ``study_uid``, ``referenced_series_uid``.

    Raises:
        InputError: not a readable SEG, overlapping segments, or references outside ``source``.
    """
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as e:
        raise InputError(f"{path} is not a readable DICOM SEG ({short_reason(e)})") from e
    info = _segment_info(seg)
    if not info:
        raise InputError(f"{path} holds no segment; nothing to read")
    values = _value_map(info, labels)
    names = _names(info, values)
    number_dtype = np.uint8 if max(values) <= 255 else np.uint16
    try:
        if source is not None:
            array, affine = _read_on_source(seg, source, path, number_dtype), source.affine.copy()
        else:
            vol = seg.get_volume(combine_segments=True, relabel=False, rtol=READ_RTOL, dtype=number_dtype)
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
    out_dtype = np.uint8 if max(values.values()) <= 255 else np.uint16
    lut = np.zeros(max(values) + 1, out_dtype)
    for number, value in values.items():
        lut[number] = value
    array = lut[array]
    refs = [str(s.SeriesInstanceUID) for s in seg.get("ReferencedSeriesSequence", []) if "SeriesInstanceUID" in s]
    meta = {"path": str(path), "format": "dicom-seg", "segments": {v: n for n, v in names.items()},
            "colors": {values[number]: rgb for number, _, _, rgb in info if rgb is not None},
            "series_uid": str(seg.SeriesInstanceUID), "study_uid": str(seg.StudyInstanceUID),
            "modality": "SEG", "referenced_series_uid": refs[0] if refs else None}
    return Volume(np.ascontiguousarray(array), affine, meta), names


def _read_on_source(seg, source: Volume, path: Path, dtype) -> np.ndarray:
    """Segment numbers on the source grid ``[i, j, k]`` (frames looked up by source instance)."""
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
    frames = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False,
                                               assert_missing_frames_are_empty=True, dtype=dtype)
    if frames.shape[1:] != (source.shape[1], source.shape[0]):
        raise GeometryError(f"{path} frames are {frames.shape[1]}x{frames.shape[2]} (rows x columns), "
                            f"the source slices {source.shape[1]}x{source.shape[0]}")
    return np.ascontiguousarray(frames.transpose(2, 1, 0))


def place_on_grid(mask: Volume, grid, atol_mm: float | None = None) -> Volume | None:
    """Put a label map whose grid is a block of ``grid`` onto ``grid`` (zeros elsewhere).

    A SEG read without its source covers only the slices from the first to the last one
    holding frames, on positions rounded as the SEG stores them; this places it on the full
    grid of its reference or image (a medseg :class:`~medseg.geometry.Geometry` or Volume).

    Args:
        mask: ``(ni, nj, nk)`` label map with its RAS+ affine.
        grid: the target grid (shape + affine).
        atol_mm: how far (mm) any voxel centre of ``mask`` may lie from the target voxel it
            is put on; default a fifth of the smallest target spacing.

    Returns:
        The label map on ``grid`` (affine copied from it, dtype and meta kept), or None when
        ``mask`` is not a block of ``grid`` within ``atol_mm``.
    """
    grid = grid.geometry if isinstance(grid, Volume) else grid
    tol = 0.2 * min(grid.spacing) if atol_mm is None else float(atol_mm)
    start = np.linalg.inv(grid.affine) @ mask.affine[:, 3]
    offset = np.round(start[:3]).astype(int)
    shape = np.asarray(mask.shape)
    if np.any(offset < 0) or np.any(offset + shape > np.asarray(grid.shape)):
        return None
    for corner in np.array(np.meshgrid(*[(0, n - 1) for n in shape], indexing="ij")).reshape(3, -1).T:
        here = mask.affine @ np.append(corner, 1.0)
        there = grid.affine @ np.append(corner + offset, 1.0)
        if np.linalg.norm(here[:3] - there[:3]) > tol:
            return None
    out = np.zeros(grid.shape, mask.array.dtype)
    out[tuple(slice(o, o + n) for o, n in zip(offset, shape))] = mask.array
    return Volume(out, np.array(grid.affine), dict(mask.meta))
