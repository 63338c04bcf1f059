"""Write a `Volume` as a single-frame DICOM image series (one file per k slice).

Geometry (the inverse of :mod:`medseg.io.dicom`, converted from RAS+ to DICOM's LPS+ here):

* slice ``k`` is ``array[:, :, k]``; its pixel data (Rows x Columns) is ``array[:, :, k].T``,
  so DICOM columns run along the array's ``i`` axis and rows along ``j``;
* ImagePositionPatient = LPS mm of voxel (0, 0, k);
* ImageOrientationPatient = LPS unit vector of ``i`` (along a row), then of ``j`` (down a column);
* PixelSpacing = [spacing_j, spacing_i] (DICOM order: between rows, between columns);
* SliceThickness = spacing_k.

A reader that sorts slices along the normal ``row x column`` (medseg, ITK, every viewer)
gets back exactly this grid when the affine is right-handed in LPS (``det > 0``, e.g. ``LPS``,
``RAS``, ``LAI``); for a left-handed one (e.g. ``LAS``, ``RPS``) it returns the same voxel
centres with the k axis reversed. Sheared affines (gantry tilt) are refused.

Values are rounded to integers and stored as uint16 with RescaleSlope 1: for CT,
``stored = HU + 1024`` (RescaleIntercept -1024, HU clipped to >= -1024); for other modalities
the intercept is the volume's minimum (or 0 when that is positive). Files are written into a
temporary folder which is renamed to ``folder`` at the end, so an interrupted write never
leaves a partial series under the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from medseg.errors import GeometryError, OutputError
from medseg.io.atomic import fix_modes
from medseg.geometry import LPS_TO_RAS
from medseg.volume import Volume

_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}
_UINT16_MAX = 65535


def _ds(values) -> list[str]:
    """DICOM decimal strings (at most 16 characters each)."""
    return [format_number_as_ds(float(v)) for v in values]


def _stored(volume: Volume, modality: str) -> tuple[np.ndarray, int]:
    """(uint16 stored values [i, j, k], rescale intercept)."""
    arr = np.asarray(volume.array)
    if not np.all(np.isfinite(arr)):
        raise OutputError("the volume holds NaN or infinite values; DICOM pixel data must be finite numbers")
    values = np.rint(arr).astype(np.int64) if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.int64)
    if modality == "CT":
        intercept = -1024
        values = np.maximum(values, intercept)
    else:
        intercept = min(0, int(values.min()))
    values = values - intercept
    if values.max(initial=0) > _UINT16_MAX:
        raise OutputError(
            f"values up to {int(values.max()) + intercept} do not fit in 16-bit DICOM pixel data "
            f"with intercept {intercept}; rescale the volume first"
        )
    return values.astype(np.uint16), intercept


def _common(volume: Volume, *, patient_id: str, patient_name: str, study_uid: str, series_uid: str,
            series_number: int, description: str, modality: str, frame_uid: str, intercept: int) -> Dataset:
    """Attributes shared by all slices of the series."""
    sp = volume.spacing
    lps = LPS_TO_RAS @ volume.affine
    row_dir = lps[:3, 0] / sp[0]
    col_dir = lps[:3, 1] / sp[1]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = _SOP_CLASS[modality]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "medseg"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "synthetic"
    ds.SeriesDescription = description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = int(series_number)
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = _ds(np.concatenate([row_dir, col_dir]))
    ds.PixelSpacing = _ds([sp[1], sp[0]])
    ds.SliceThickness = format_number_as_ds(float(sp[2]))
    ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[0])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept = str(intercept)
    ds.RescaleSlope = "1"
    if modality == "CT":
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
    return ds


def write_dicom_series(
    volume: Volume,
    folder: str | Path,
    *,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    series_number: int,
    description: str,
    modality: str = "CT",
    patient_name: str | None = None,
    frame_of_reference_uid: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``volume`` as a DICOM series ``folder/IM_0000.dcm`` ... (one file per k slice).

    Args:
        volume: the scan; array [i, j, k], RAS+ affine (not sheared). CT values in HU.
        folder: the series folder to create (its parent is created when missing).
        patient_id, study_uid, series_uid, series_number, description: DICOM identifiers.
        modality: ``"CT"`` (CT Image Storage) or ``"MR"`` (MR Image Storage).
        patient_name: default ``patient_id``.
        frame_of_reference_uid: default derived from ``study_uid`` (all series of a study
            then share one frame of reference).
        overwrite: replace an existing ``folder``.

    Returns:
        The files written, in k order. SOPInstanceUIDs are derived from ``series_uid`` and k,
        so writing the same series twice gives identical files.

    Raises:
        GeometryError: sheared affine. OutputError: unsupported modality, values that do not
        fit 16 bits, ``folder`` exists (without ``overwrite``) or cannot be written.
    """
    folder = Path(folder)
    if modality not in _SOP_CLASS:
        raise OutputError(f"modality {modality!r} is not supported by the DICOM writer; use one of "
                          f"{', '.join(sorted(_SOP_CLASS))}")
    if volume.geometry.is_sheared:
        raise GeometryError(
            "the volume's affine is sheared (gantry tilt); a DICOM image series cannot hold it as "
            "a regular slice stack -- resample the volume onto an unsheared grid first"
        )
    if folder.exists() and not (overwrite and folder.is_dir()):
        raise OutputError(f"{folder} already exists; choose another folder or allow overwriting")
    stored, intercept = _stored(volume, modality)
    frame_uid = frame_of_reference_uid or generate_uid(entropy_srcs=["frame-of-reference", study_uid])
    common = _common(volume, patient_id=patient_id, patient_name=patient_name or patient_id, study_uid=study_uid,
                     series_uid=series_uid, series_number=series_number, description=description,
                     modality=modality, frame_uid=frame_uid, intercept=intercept)
    lps = LPS_TO_RAS @ volume.affine
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as e:
        raise OutputError(f"cannot create {folder} ({e.strerror or e}); choose a writable folder") from e
    try:
        names = []
        for k in range(volume.shape[2]):
            name = f"IM_{k:04d}.dcm"
            _slice_dataset(common, stored[:, :, k], lps, k).save_as(tmp / name, enforce_file_format=True)
            names.append(name)
        fix_modes(tmp)  # mkdtemp makes it 0700: give the series folder the umask's mode
        _replace_dir(tmp, folder)
    except OSError as e:
        raise OutputError(f"cannot write {folder} ({e.strerror or e}); check the folder and free disk space") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [folder / n for n in names]


def _slice_dataset(common: Dataset, plane_ij: np.ndarray, lps: np.ndarray, k: int) -> Dataset:
    ds = Dataset()
    ds.update(common)
    sop_uid = generate_uid(entropy_srcs=["sop", common.SeriesInstanceUID, str(k)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = common.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = k + 1
    position = lps[:3, 2] * k + lps[:3, 3]
    ds.ImagePositionPatient = _ds(position)
    iop = [float(v) for v in common.ImageOrientationPatient]
    normal = np.cross(iop[:3], iop[3:])
    ds.SliceLocation = format_number_as_ds(float(np.dot(normal, position)))
    ds.PixelData = np.ascontiguousarray(plane_ij.T).astype("<u2").tobytes()
    return ds


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first, then removed."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
