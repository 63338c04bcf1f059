"""Assemble one DICOM image series into a `Volume` (pydicom; SimpleITK/GDCM as fallback decoder).

Rules (each one is a classic source of silently wrong masks):

* Slices are ordered by their position projected on the slice normal
  (row cosine x column cosine), never by file name or InstanceNumber.
* Array index: ``i`` = column, ``j`` = row, ``k`` = slice in that order.
* The affine's k column is the mean step between consecutive slice positions, so oblique
  scans and gantry-tilted CT (slice step not perpendicular to the slices) keep their true
  geometry. Converted from DICOM's LPS+ to RAS+ here.
* Rescale slope/intercept is applied per slice (CT in HU). The result stays integer
  (int16 when it fits) when every slope and intercept is integral, else float32.
* Slice spacing is checked: deviations above ``WARN_REL`` of the mean step give a warning
  with the measured steps; above ``tolerance`` (missing slices) a `GeometryError`, unless
  ``allow_nonuniform`` (the affine then uses the mean step and the warning says so).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from medseg.errors import GeometryError, InputError, short_reason, warn
from medseg.geometry import LPS_TO_RAS
from medseg.io.dicom_scan import DicomScan, DicomSeries, SliceHeader, scan_dicom
from medseg.volume import Volume

log = logging.getLogger("medseg")

#: Relative deviation of a slice step from the mean step above which a warning is given.
WARN_REL = 1e-3
#: Default relative deviation above which the series is refused (missing slices).
DEFAULT_TOLERANCE = 0.1
#: Sideways drift (mm) of a whole slice stack below which it is rounding, not gantry tilt.
TILT_SNAP_MM = 0.15


def select_series(scan: DicomScan, series_uid: str | None) -> DicomSeries:
    """Pick the requested series, or the one with most slices (and say which).

    Raises:
        InputError: ``series_uid`` is not in the scan; the message lists the ones that are.
    """
    if series_uid:
        for s in scan.series:
            if s.uid == series_uid:
                return s
        listing = "; ".join(f"{s.uid} ({s.modality}, {s.n_slices} slices)" for s in scan.series[:10])
        raise InputError(f"series {series_uid} is not in {scan.root}; it holds: {listing}")
    chosen = scan.series[0]
    if len(scan.series) > 1:
        log.info(
            "%s holds %d series; using %s (%s%s, %d slices, the most slices). "
            "Pick another with --series UID (list them with: medseg info %s)",
            scan.root, len(scan.series), chosen.uid, chosen.modality or "?",
            f" '{chosen.description}'" if chosen.description else "", chosen.n_slices, scan.root,
        )
    return chosen


def _check_consistent(series: DicomSeries) -> None:
    first = series.slices[0]
    for s in series.slices[1:]:
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise GeometryError(
                f"series {series.uid} mixes image sizes ({first.rows}x{first.columns} and "
                f"{s.rows}x{s.columns}, e.g. {s.path.name}); it is not one volume -- "
                "separate the images (a localizer stored in the series?) or read another series with --series UID"
            )
        if np.max(np.abs(s.orientation - first.orientation)) > 1e-4:
            raise GeometryError(
                f"series {series.uid} mixes slice orientations ({s.path.name} differs from "
                f"{first.path.name}); it is not one volume -- separate the stacks, or read another series "
                "with --series UID"
            )
        if np.max(np.abs(np.subtract(s.pixel_spacing, first.pixel_spacing))) > 1e-4:
            raise GeometryError(
                f"series {series.uid} mixes pixel spacings ({first.pixel_spacing} and "
                f"{s.pixel_spacing}); it is not one volume"
            )


def sort_slices(series: DicomSeries) -> tuple[list[SliceHeader], np.ndarray]:
    """Slices in ascending position along the normal, and that position (mm) for each."""
    ori = series.slices[0].orientation
    normal = np.cross(ori[:3], ori[3:])
    proj = np.array([float(np.dot(normal, s.position)) for s in series.slices])
    order = np.argsort(proj, kind="stable")
    return [series.slices[i] for i in order], proj[order]


def _check_spacing(series: DicomSeries, proj: np.ndarray, tolerance: float, allow_nonuniform: bool) -> None:
    steps = np.diff(proj)
    if np.any(steps < 1e-3):
        dup = int(np.sum(steps < 1e-3))
        raise GeometryError(
            f"series {series.uid} has {dup} slice(s) at the same position as another "
            "(several echoes, phases or time points in one series?); medseg reads one 3D volume -- "
            "split the series by echo/phase first"
        )
    mean = (proj[-1] - proj[0]) / (len(proj) - 1)
    rel = np.abs(steps - mean) / mean
    worst = float(rel.max())
    if worst <= WARN_REL:
        return
    shown = ", ".join(f"{s:.4g}" for s in steps[:12]) + (", ..." if len(steps) > 12 else "")
    detail = (
        f"series {series.uid}: slice spacing is not uniform: steps {shown} mm "
        f"(mean {mean:.4g} mm, min {steps.min():.4g}, max {steps.max():.4g}, "
        f"largest deviation {100 * worst:.2g}%)"
    )
    if worst > tolerance and not allow_nonuniform:
        missing = int(np.sum((np.round(steps / np.median(steps)) - 1).clip(0)))
        hint = f"about {missing} slice(s) look missing; " if missing else ""
        raise GeometryError(
            f"{detail}; {hint}refusing to build a volume with wrong slice positions -- "
            "find the missing files, or pass --allow-nonuniform to use the mean spacing anyway"
        )
    if worst > tolerance:
        warn(f"{detail}; --allow-nonuniform: using the mean step, positions are approximate")
    else:
        warn(f"{detail}; using the mean step (within tolerance {100 * tolerance:.3g}%)")


def slice_affine(slices: list[SliceHeader]) -> np.ndarray:
    """RAS+ affine of sorted slices: i = column, j = row, k = slice (see module docstring).

    The k column is the mean step between slice positions. When the stack drifts sideways
    (perpendicular to the slice normal) by at most ``TILT_SNAP_MM`` over its whole length
    -- rounding of ImagePositionPatient, not a tilt -- the step is taken along the normal, as
    ITK and dcm2niix do. A larger drift is a real gantry tilt: the affine keeps it (sheared)
    and a warning gives the angle.
    """
    first, last = slices[0], slices[-1]
    row_cos = first.orientation[:3] / np.linalg.norm(first.orientation[:3])
    col_cos = first.orientation[3:] / np.linalg.norm(first.orientation[3:])
    normal = np.cross(row_cos, col_cos)
    row_spacing, col_spacing = first.pixel_spacing  # DICOM PixelSpacing = (between rows, between columns)
    if len(slices) > 1:
        span = last.position - first.position
        along = float(np.dot(span, normal))
        drift = float(np.linalg.norm(span - along * normal))
        if drift <= TILT_SNAP_MM:
            k_step = normal * along / (len(slices) - 1)
        else:
            k_step = span / (len(slices) - 1)
            angle = float(np.degrees(np.arctan2(drift, abs(along))))
            warn(
                f"slices are tilted by {angle:.2f} degrees from the slice normal (gantry tilt); "
                "the affine keeps the true slice positions (it is sheared). Tools that ignore tilt "
                "(e.g. ITK's series reader) place the slices differently."
            )
    else:
        k_step = normal * (first.thickness or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing  # i: along a row, one column to the next
    lps[:3, 1] = col_cos * row_spacing  # j: down a column, one row to the next
    lps[:3, 2] = k_step
    lps[:3, 3] = first.position
    return LPS_TO_RAS @ lps


def _truncated(path: Path) -> InputError:
    return InputError(
        f"the pixel data of {path} could not be read (the file ends early); the file is "
        "truncated or corrupt -- copy or export the series again"
    )


def _read_pixels(sl: SliceHeader, cache: dict) -> tuple[np.ndarray, bool]:
    """Stored pixel values of one slice as (rows, cols), and whether rescale is already applied."""
    key = sl.path
    if key not in cache:
        cache.clear()  # keep at most one (multi-frame) file in memory
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(sl.path)
            if any("End of file" in str(w.message) for w in caught):
                raise _truncated(sl.path)
            if "PixelData" not in ds:
                raise InputError(f"{sl.path} has no pixel data; remove it from the series folder")
            if int(ds.get("SamplesPerPixel", 1)) != 1:
                raise InputError(f"{sl.path} is a colour image; medseg reads greyscale CT/MR/PET series")
            cache[key] = (ds.pixel_array, False)
        except InputError:
            raise
        except Exception as e:  # no decoder for the transfer syntax, or truncated data
            cache[key] = (_read_with_sitk(sl.path, e), True)
    arr, rescaled = cache[key]
    if sl.frame is not None:
        return (arr[sl.frame] if arr.ndim == 3 else arr), rescaled
    return arr, rescaled


def _read_with_sitk(path: Path, first_error: Exception) -> np.ndarray:
    """Decode with GDCM (handles JPEG/JPEG2000 without extra Python packages).

    GDCM applies the rescale slope/intercept itself."""
    try:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except RuntimeError as e:
        msg = short_reason(first_error, 160)
        raise InputError(
            f"the pixel data of {path} could not be read ({msg}); the file is truncated, "
            "corrupt or uses an unsupported compression -- copy or export the series again"
        ) from e
    return arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr


def _check_header_numbers(slices: list[SliceHeader]) -> None:
    """Refuse headers no valid volume can come from: PixelSpacing not finite and > 0 (mm),
    NaN/inf positions or orientation, a degenerate orientation, NaN/inf rescale values."""
    first = slices[0]
    sp = np.asarray(first.pixel_spacing, float)
    if sp.shape != (2,) or not (np.all(np.isfinite(sp)) and np.all(sp > 0)):
        raise GeometryError(f"{first.path}: PixelSpacing {sp.tolist()} mm is not valid (must be two finite "
                            "values > 0); the series cannot be placed in space -- fix or re-export it")
    ori = np.asarray(first.orientation, float)
    if not np.all(np.isfinite(ori)) or np.linalg.norm(np.cross(ori[:3], ori[3:])) < 1e-3:
        raise GeometryError(f"{first.path}: ImageOrientationPatient {ori.tolist()} is not a valid orientation; "
                            "fix or re-export the series")
    for sl in slices:
        if not np.all(np.isfinite(np.asarray(sl.position, float))):
            raise GeometryError(f"{sl.path}: ImagePositionPatient holds NaN or infinite values; fix or re-export "
                                "the series")
        if not (np.isfinite(float(sl.slope)) and np.isfinite(float(sl.intercept))):
            raise InputError(f"{sl.path}: RescaleSlope/RescaleIntercept {sl.slope}/{sl.intercept} are not finite "
                             "numbers; fix or re-export the series")


def _voxels(slices: list[SliceHeader]) -> np.ndarray:
    """Stack slices into ``[i=column, j=row, k=slice]`` with rescale applied.

    Raises:
        InputError: a RescaleSlope/Intercept so large that the voxel values overflow float32.
    """
    integral = all(float(s.slope).is_integer() and float(s.intercept).is_integer()
                   and abs(float(s.slope)) <= 2**16 and abs(float(s.intercept)) <= 2**30 for s in slices)
    cache: dict = {}
    planes = []
    for s in slices:
        px, rescaled = _read_pixels(s, cache)
        if px.shape != (s.rows, s.columns):
            raise InputError(f"{s.path}: pixel data shape {px.shape} does not match Rows x Columns")
        if rescaled or (s.slope == 1.0 and s.intercept == 0.0):
            planes.append(px)
        elif integral:
            planes.append(px.astype(np.int32) * int(s.slope) + int(s.intercept))
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                plane = px.astype(np.float64) * float(s.slope) + float(s.intercept)
            if not np.all(np.abs(plane) <= np.finfo(np.float32).max):
                raise InputError(f"{s.path}: RescaleSlope {s.slope} / RescaleIntercept {s.intercept} make the voxel "
                                 "values overflow (beyond 3.4e38); the header is damaged -- fix or re-export the series")
            planes.append(plane.astype(np.float32))
    vol = np.stack(planes, axis=-1)  # (rows, cols, k)
    vol = np.ascontiguousarray(vol.transpose(1, 0, 2))  # (cols, rows, k) = [i, j, k]
    if np.issubdtype(vol.dtype, np.integer) and vol.dtype.itemsize > 2:
        lo, hi = int(vol.min()), int(vol.max())
        if -32768 <= lo and hi <= 32767:
            vol = vol.astype(np.int16)
    elif np.issubdtype(vol.dtype, np.floating):
        vol = vol.astype(np.float32)
    return vol


def read_dicom(
    path: Path,
    series_uid: str | None = None,
    allow_nonuniform: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    scan: DicomScan | None = None,
) -> Volume:
    """Read a DICOM file, a series folder, or pick one series from a folder tree.

    Args:
        path: a DICOM file or a folder searched recursively.
        series_uid: SeriesInstanceUID to read; default the series with most slices.
        allow_nonuniform: accept slice steps deviating more than ``tolerance`` (relative).
        scan: a previous :func:`scan_dicom` of ``path`` (saves re-reading the headers).

    Returns:
        Volume with ``meta`` holding series_uid, study_uid, modality, n_series, the files
        and SOP instance UIDs in slice order, and any skipped files.
    """
    scan = scan or scan_dicom(path)
    if scan.skipped:
        log.info("%s", scan.skipped_summary())
    series = select_series(scan, series_uid)
    _check_consistent(series)
    slices, proj = sort_slices(series)
    _check_header_numbers(slices)
    if len(slices) > 1:
        _check_spacing(series, proj, tolerance, allow_nonuniform)
    array = _voxels(slices)
    meta = {
        "path": str(path),
        "format": "dicom",
        "series_uid": series.uid,
        "study_uid": series.study_uid,
        "modality": series.modality,
        "description": series.description,
        "n_series": len(scan.series),
        "series": [s.summary() for s in scan.series],
        "files": [str(s.path) for s in slices],
        "frames": [s.frame for s in slices] if any(s.frame is not None for s in slices) else None,
        "sop_instance_uids": [s.sop_instance_uid for s in slices],
        "skipped": [[str(p), r] for p, r in scan.skipped],
    }
    return Volume(array, slice_affine(slices), meta)
