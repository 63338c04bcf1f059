"""Find DICOM image series in a file or folder (headers only, no pixel data).

A folder is searched recursively. Files that are not DICOM, or DICOM objects without an
image (reports, SEG, RTSTRUCT, presentation states, DICOMDIR), are collected in
``DicomScan.skipped`` with the reason, so callers can report them instead of crashing.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from medseg.errors import InputError
from medseg.io.formats import is_dicom_file

#: Modalities that are DICOM objects but not image series medseg should read as a scan.
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "SR", "PR", "KO", "REG", "DOC"}


@dataclass
class SliceHeader:
    """One 2D image (a file, or one frame of a multi-frame file) and its geometry (LPS mm).

    Attributes:
        path: the file.
        frame: frame index in a multi-frame file, or None for a single-frame file.
        position: (3,) LPS mm of the centre of the first transmitted pixel (ImagePositionPatient).
        orientation: (6,) row then column direction cosines, LPS (ImageOrientationPatient).
        pixel_spacing: (row spacing, column spacing) mm (PixelSpacing order).
        rows, columns: image size.
        slope, intercept: modality rescale (1, 0 when absent).
    """

    path: Path
    frame: int | None
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    slope: float = 1.0
    intercept: float = 0.0
    instance_number: int | None = None
    sop_instance_uid: str = ""
    thickness: float | None = None


@dataclass
class DicomSeries:
    """The image slices sharing one SeriesInstanceUID (unsorted, as found)."""

    uid: str
    slices: list[SliceHeader] = field(default_factory=list)
    modality: str = ""
    description: str = ""
    study_uid: str = ""
    patient_id: str = ""
    series_number: int | None = None
    folder: Path | None = None
    folders: list[Path] = field(default_factory=list)  # every folder holding slices of the series

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def duplicate_sops(self) -> int:
        """How many slices repeat an earlier SOPInstanceUID (a copy of the series, or of some files)."""
        uids = [s.sop_instance_uid for s in self.slices if s.sop_instance_uid]
        return len(uids) - len(set(uids))

    def summary(self) -> dict:
        """JSON-friendly description used by ``medseg info`` and error messages."""
        return {
            "series_uid": self.uid,
            "modality": self.modality,
            "description": self.description,
            "series_number": self.series_number,
            "n_slices": self.n_slices,
            "folder": str(self.folder) if self.folder else None,
        }


@dataclass
class DicomScan:
    """Result of scanning a path: image series found and files skipped with reasons."""

    root: Path
    series: list[DicomSeries]
    skipped: list[tuple[Path, str]]
    n_files: int

    def skipped_summary(self, limit: int = 3) -> str:
        """e.g. ``"4 files skipped: 3 not DICOM (notes.txt, ...), 1 no pixel data (DICOMDIR)"``."""
        if not self.skipped:
            return ""
        by_reason: dict[str, list[str]] = {}
        for p, reason in self.skipped:
            by_reason.setdefault(reason, []).append(p.name)
        parts = [
            f"{len(names)} {reason} ({', '.join(names[:limit])}{', ...' if len(names) > limit else ''})"
            for reason, names in by_reason.items()
        ]
        return f"{len(self.skipped)} file(s) skipped: " + "; ".join(parts)


def _float(ds, name: str, default: float) -> float:
    v = ds.get(name, None)
    try:
        return float(v) if v not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _floats(v, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray([float(x) for x in v], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) else None


def _frame_headers(ds, path: Path) -> list[SliceHeader]:
    """Slice headers of an enhanced multi-frame image (per-frame functional groups)."""
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != nframes:
        raise ValueError("multi-frame image without per-frame positions")

    def group(fg, seq: str):
        for src in (fg, shared):
            if src is not None and seq in src and len(src[seq].value):
                return src[seq].value[0]
        return None

    out = []
    for f, fg in enumerate(per_frame):
        pos = group(fg, "PlanePositionSequence")
        ori = group(fg, "PlaneOrientationSequence")
        meas = group(fg, "PixelMeasuresSequence")
        if pos is None or ori is None or meas is None:
            raise ValueError("frame without plane position/orientation/pixel spacing")
        rescale = group(fg, "PixelValueTransformationSequence")
        out.append(
            SliceHeader(
                path=path,
                frame=f,
                position=_floats(pos.ImagePositionPatient, 3),
                orientation=_floats(ori.ImageOrientationPatient, 6),
                pixel_spacing=tuple(float(x) for x in meas.PixelSpacing),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                slope=_float(rescale, "RescaleSlope", 1.0) if rescale else 1.0,
                intercept=_float(rescale, "RescaleIntercept", 0.0) if rescale else 0.0,
                thickness=_float(meas, "SliceThickness", 0.0) or None,
                sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
            )
        )
    return out


def _headers(ds, path: Path) -> list[SliceHeader]:
    """Slice headers of one image file. Raises ValueError with a reason when unusable."""
    if "Rows" not in ds or "Columns" not in ds:
        raise ValueError("no pixel data")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return _frame_headers(ds, path)
    pos = _floats(ds.get("ImagePositionPatient", None), 3)
    ori = _floats(ds.get("ImageOrientationPatient", None), 6)
    if pos is None or ori is None:
        raise ValueError("no image position/orientation (not a cross-sectional image)")
    spacing = ds.get("PixelSpacing", None) or ds.get("ImagerPixelSpacing", None)
    sp = _floats(spacing, 2) if spacing is not None else None
    if sp is None:
        raise ValueError("no pixel spacing")
    inst = ds.get("InstanceNumber", None)
    return [
        SliceHeader(
            path=path,
            frame=None,
            position=pos,
            orientation=ori,
            pixel_spacing=(float(sp[0]), float(sp[1])),
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            slope=_float(ds, "RescaleSlope", 1.0),
            intercept=_float(ds, "RescaleIntercept", 0.0),
            instance_number=int(inst) if inst not in (None, "") else None,
            sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
            thickness=_float(ds, "SliceThickness", 0.0) or None,
        )
    ]


def _candidate_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


def _read_header(path: Path):
    """pydicom dataset without pixel data, or None when the file is not DICOM."""
    force = not is_dicom_file(path)
    if force and path.suffix.lower() not in ("", ".dcm", ".ima", ".dicom"):
        return None  # a non-DICOM extension and no preamble: do not guess
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=force)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if force and "SOPClassUID" not in ds and "Rows" not in ds:
        return None  # forced parse of random bytes produced nothing DICOM-like
    return ds


def scan_dicom(root: Path) -> DicomScan:
    """Group the DICOM images under ``root`` (a file or a folder) by SeriesInstanceUID.

    Raises:
        InputError: empty folder, no DICOM file at all, or DICOM files but no image series.
    """
    files = _candidate_files(root)
    if root.is_dir() and not files:
        raise InputError(f"{root} is an empty folder; point medseg at an image file or a DICOM folder")
    by_uid: dict[str, DicomSeries] = {}
    skipped: list[tuple[Path, str]] = []
    for path in files:
        ds = _read_header(path)
        if ds is None:
            skipped.append((path, "not DICOM"))
            continue
        modality = str(ds.get("Modality", "") or "")
        if modality in NON_IMAGE_MODALITIES or "DirectoryRecordSequence" in ds:
            skipped.append((path, f"not an image ({modality or 'DICOMDIR'})"))
            continue
        try:
            headers = _headers(ds, path)
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            skipped.append((path, str(e) if isinstance(e, ValueError) else "unreadable header"))
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or f"no-series-uid:{path.parent}")
        s = by_uid.get(uid)
        if s is None:
            num = ds.get("SeriesNumber", None)
            s = by_uid[uid] = DicomSeries(
                uid=uid,
                modality=modality,
                description=str(ds.get("SeriesDescription", "") or ""),
                study_uid=str(ds.get("StudyInstanceUID", "") or ""),
                patient_id=str(ds.get("PatientID", "") or ""),
                series_number=int(num) if num not in (None, "") else None,
                folder=path.parent,
            )
        s.slices.extend(headers)
        if path.parent not in s.folders:
            s.folders.append(path.parent)
    scan = DicomScan(root=root, series=list(by_uid.values()), skipped=skipped, n_files=len(files))
    if not scan.series:
        if all(reason == "not DICOM" for _, reason in skipped):
            what = "is not a DICOM file" if root.is_file() else f"holds no DICOM files ({len(files)} files looked at)"
            raise InputError(
                f"{root} {what}; medseg reads .nii/.nii.gz, .nrrd, .mha/.mhd and DICOM series"
            )
        reasons = Counter(reason for _, reason in skipped)
        raise InputError(
            f"{root} holds DICOM files but no readable image series "
            f"({', '.join(f'{n} {r}' for r, n in reasons.items())}); point medseg at the image series"
        )
    # Most slices first; ties broken by series number then UID, so the choice is stable.
    scan.series.sort(key=lambda s: (-s.n_slices, s.series_number or 0, s.uid))
    return scan
