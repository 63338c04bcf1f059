"""Test helpers: synthetic DICOM series, random oblique affines, reference world positions.

References used by the tests are independent of medseg's code paths: nibabel's affine,
SimpleITK's ``TransformIndexToPhysicalPoint`` (LPS, converted here with a plain sign flip),
and the DICOM headers themselves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data_samples"
CT_NRRD = SAMPLES / "ct_chest" / "CTChest4.nrrd"
CT_SEG = SAMPLES / "ct_chest" / "Segmentation.seg.nrrd"
MR_DICOM = SAMPLES / "mr_brain_dicom"
CT_JPEG = SAMPLES / "dicom_misc" / "ct_jpeg_lossless.dcm"
ALL_SAMPLES = [CT_NRRD, CT_SEG, MR_DICOM, CT_JPEG]


def rotation(rng: np.random.Generator, max_deg: float = 30.0) -> np.ndarray:
    """A random 3x3 rotation of up to ``max_deg`` degrees about a random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = np.radians(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k


def random_affine(rng: np.random.Generator, flips=None, spacing=None, max_deg: float = 30.0) -> np.ndarray:
    """A 4x4 RAS affine: random rotation x axis flips x anisotropic spacing + offset."""
    flips = np.asarray(flips if flips is not None else rng.choice([-1, 1], size=3), float)
    spacing = np.asarray(spacing if spacing is not None else rng.uniform(0.5, 5.0, size=3), float)
    aff = np.eye(4)
    aff[:3, :3] = rotation(rng, max_deg) @ np.diag(flips * spacing)
    aff[:3, 3] = rng.uniform(-150, 150, size=3)
    return aff


def grid_points(shape, n_random: int = 40, seed: int = 0) -> np.ndarray:
    """Integer voxel indices: the 8 corners plus random interior points, shape (N, 3)."""
    rng = np.random.default_rng(seed)
    n = np.asarray(shape) - 1
    corners = np.array([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])])
    rand = np.stack([rng.integers(0, s, size=n_random) for s in shape], axis=1)
    return np.concatenate([corners, rand])


def sitk_world_ras(img: sitk.Image, ijk: np.ndarray) -> np.ndarray:
    """World RAS mm of voxel indices according to SimpleITK (LPS -> RAS by flipping x, y)."""
    pts = np.array([img.TransformContinuousIndexToPhysicalPoint([float(v) for v in p]) for p in ijk])
    return pts * np.array([-1.0, -1.0, 1.0])


def sitk_array_ijk(img: sitk.Image) -> np.ndarray:
    """SimpleITK voxels indexed [i, j, k] (its numpy view is [k, j, i])."""
    return sitk.GetArrayFromImage(img).T


def sha256(path: Path) -> str:
    """Hash of a file, or of every file under a folder (to prove inputs are unchanged)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def write_dicom_series(
    folder: Path,
    pixels: np.ndarray,
    *,
    spacing=(0.7, 0.8),
    orientation=(1, 0, 0, 0, 1, 0),
    origin=(-100.0, -120.0, 50.0),
    step=None,
    slice_gap: float = 2.5,
    positions=None,
    slope: float = 1.0,
    intercept: float = -1024.0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    modality: str = "CT",
    shuffle_names: bool = True,
    seed: int = 0,
    description: str = "synthetic",
) -> list[Path]:
    """Write ``pixels`` (stored values, shape (rows, cols, n_slices), uint16/int16) as a
    single-frame DICOM series, one file per slice, in LPS as DICOM requires.

    Slice k is at ``origin + k * step`` (``step`` defaults to the normal times
    ``slice_gap``) unless ``positions`` (n, 3) are given. File names and InstanceNumbers are
    shuffled so that only the positions tell the order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ori = np.asarray(orientation, float)
    normal = np.cross(ori[:3], ori[3:])
    n = pixels.shape[2]
    if positions is None:
        step = normal * slice_gap if step is None else np.asarray(step, float)
        positions = np.asarray(origin, float) + np.arange(n)[:, None] * step
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    names = rng.permutation(n) if shuffle_names else np.arange(n)
    inst = rng.permutation(n) + 1 if shuffle_names else np.arange(n) + 1
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.Modality = modality
        ds.SeriesDescription = description
        ds.PatientID = "SYNTH"
        ds.SeriesNumber = 1
        ds.InstanceNumber = int(inst[k])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in ori]
        ds.PixelSpacing = [f"{spacing[0]}", f"{spacing[1]}"]
        ds.SliceThickness = f"{slice_gap}"
        ds.Rows, ds.Columns = pixels.shape[0], pixels.shape[1]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        signed = np.issubdtype(pixels.dtype, np.signedinteger)
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = f"{slope}"
        ds.RescaleIntercept = f"{intercept}"
        plane = np.ascontiguousarray(pixels[:, :, k].astype(np.int16 if signed else np.uint16))
        ds.PixelData = plane.tobytes()
        path = folder / f"img_{int(names[k]):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def read_series_sitk(folder: Path) -> sitk.Image:
    """SimpleITK/GDCM reading of the only series in ``folder`` (reference reader)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def dicom_position_ras(path: Path) -> np.ndarray:
    """ImagePositionPatient of a file, converted to RAS (header is the reference)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return np.array([float(v) for v in ds.ImagePositionPatient]) * np.array([-1.0, -1.0, 1.0])


def write_enhanced_multiframe(path: Path, pixels: np.ndarray, positions: np.ndarray, *,
                              orientation=(1, 0, 0, 0, 1, 0), spacing=(0.7, 0.8),
                              slope: float = 1.0, intercept: float = -1024.0) -> Path:
    """Write an Enhanced CT multi-frame file: frame f has stored values ``pixels[:, :, f]``
    (rows, cols) at LPS ``positions[f]``; geometry in the functional group sequences."""
    from pydicom.sequence import Sequence

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.NumberOfFrames = pixels.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0

    def item(**kw):
        d = Dataset()
        for k, v in kw.items():
            setattr(d, k, v)
        return d

    shared = item(
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[f"{v:.8f}" for v in orientation])]),
        PixelMeasuresSequence=Sequence([item(PixelSpacing=[f"{spacing[0]}", f"{spacing[1]}"], SliceThickness="2.5")]),
        PixelValueTransformationSequence=Sequence([item(RescaleSlope=f"{slope}", RescaleIntercept=f"{intercept}", RescaleType="HU")]),
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        [item(PlanePositionSequence=Sequence([item(ImagePositionPatient=[f"{v:.6f}" for v in p])])) for p in positions]
    )
    ds.PixelData = np.ascontiguousarray(pixels.transpose(2, 0, 1).astype(np.uint16)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
