"""Reading and writing scans and masks. The public entry points are here:

* :func:`read_volume` -- NIfTI, NRRD/MHA/MHD, DICOM (file, series folder, folder tree).
* :func:`write_volume` -- NIfTI / NRRD / MHA / MHD by suffix, atomically.
* :func:`write_mask_like` -- a label map on the exact grid of a source volume.
* :func:`scan_dicom` -- list the DICOM series under a folder without reading pixels.
* :func:`write_dicom_seg` / :func:`read_dicom_seg` -- a mask of a DICOM series as DICOM SEG.
* :class:`LabelTable`, :func:`read_labels` / :func:`write_labels`, :func:`mask_label_table` --
  class names and colours (``labels.json``) next to masks; :func:`label_values` of a label map.
* :func:`atomic_path` -- a temporary path next to a file, renamed over it on success (umask modes).

Readers and writers are the only place where LPS (DICOM, ITK) meets medseg's RAS+
convention (see :mod:`medseg.geometry`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medseg.errors import GeometryError, InputError, OutputError
from medseg.geometry import Geometry
from medseg.io.arrays import label_dtype, storable
from medseg.io.atomic import atomic_dir_files, atomic_path
from medseg.io.dicom import DEFAULT_TOLERANCE, read_dicom
from medseg.io.dicom_scan import DicomScan, DicomSeries, scan_dicom
from medseg.io.dicom_seg import is_dicom_seg, read_dicom_seg, write_dicom_seg
from medseg.io.formats import input_format, is_dicom_file, output_format, split_suffix
from medseg.io.itk import read_itk, write_itk
from medseg.io.labels import LabelTable, label_values, mask_label_table, read_labels, write_labels
from medseg.io.nifti import read_nifti, write_nifti
from medseg.volume import Volume

__all__ = [
    "read_volume",
    "write_volume",
    "write_mask_like",
    "scan_dicom",
    "write_dicom_seg",
    "read_dicom_seg",
    "is_dicom_seg",
    "DicomScan",
    "DicomSeries",
    "input_format",
    "split_suffix",
    "atomic_path",
    "is_dicom_file",
    "LabelTable",
    "read_labels",
    "write_labels",
    "mask_label_table",
    "label_values",
]


def _check_input_path(path: Path) -> None:
    if not path.exists():
        hint = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise InputError(f"{path} does not exist{hint}; check the path")
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise InputError(f"{path} cannot be read (permission denied); check its permissions")
        if path.stat().st_size == 0:
            raise InputError(f"{path} is empty (0 bytes); the copy or export did not finish -- redo it")


def read_volume(
    path: str | Path,
    *,
    series_uid: str | None = None,
    allow_nonuniform: bool = False,
    dicom_tolerance: float = DEFAULT_TOLERANCE,
) -> Volume:
    """Read a scan or mask with its true geometry; voxel data are read now, not lazily.

    Args:
        path: ``.nii``/``.nii.gz``, ``.nrrd``/``.seg.nrrd``/``.nhdr``, ``.mha``/``.mhd``, a
            DICOM file, or a folder (searched recursively) with one or more DICOM series. A
            DICOM SEG file is read as a label map (see :func:`medseg.io.dicom_seg.read_dicom_seg`:
            value = the class value medseg recorded, else the segment number; the grid spans
            the slices holding frames; ``meta["segments"]`` = {value: segment label}).
        series_uid: for DICOM folders with several series, which one (default: most slices).
        allow_nonuniform: accept DICOM series whose slice steps deviate more than
            ``dicom_tolerance`` (relative) from the mean -- e.g. missing slices.

    Returns:
        `Volume`: array ``[i, j, k]`` as stored, RAS+ affine (see :mod:`medseg.geometry`).

    Raises:
        InputError / GeometryError: with a message saying what is wrong and what to do.
    """
    path = Path(path)
    _check_input_path(path)
    fmt = input_format(path)
    try:
        if fmt == "nifti":
            return read_nifti(path)
        if fmt in ("nrrd", "metaimage"):
            return read_itk(path, fmt)
        if path.is_file() and is_dicom_seg(path):
            return read_dicom_seg(path)[0]
        return read_dicom(path, series_uid, allow_nonuniform, dicom_tolerance)
    except PermissionError as e:
        raise InputError(f"{e.filename or path} cannot be read (permission denied)") from e
    except MemoryError as e:
        raise InputError(f"not enough memory to read {path}") from e


def _source_paths(volume: Volume) -> list[Path]:
    paths = [volume.meta.get("path")] + list(volume.meta.get("files") or [])
    return [Path(p) for p in paths if p]


def _refuse_overwriting_input(volume: Volume, out: Path, overwrite: bool) -> None:
    for src in _source_paths(volume):
        if src.exists() and out.exists() and os.path.samefile(src, out):
            raise OutputError(f"refusing to overwrite the input {src}; choose another output path")
        if src.resolve() == out.resolve():
            raise OutputError(f"refusing to overwrite the input {src}; choose another output path")
    if out.is_dir():
        raise OutputError(f"{out} is a folder; give a file name such as {out / 'image.nii.gz'}")
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists; choose another path or allow overwriting (--overwrite)")


def write_volume(volume: Volume, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``volume`` atomically; the format comes from the suffix.

    ``.nii.gz``/``.nii`` (NIfTI-1), ``.nrrd``/``.seg.nrrd`` (NRRD, gzip), ``.mha``/``.mhd``
    (MetaImage). Voxel values and the affine are preserved (dtype changes only where the
    format cannot hold it: bool -> uint8, float16 -> float32, int64 -> int32 when values fit).

    Raises:
        OutputError: unknown suffix, the path is one of the volume's inputs, or it exists
            and ``overwrite`` is False.
    """
    out = Path(path)
    fmt = output_format(out)
    _refuse_overwriting_input(volume, out, overwrite)
    vol = Volume(storable(volume.array), volume.affine, volume.meta)
    _, suffix = split_suffix(out)
    try:
        if fmt == "metaimage" and suffix == ".mhd":
            with atomic_dir_files(out) as tmp:
                write_itk(vol, tmp)
        else:
            with atomic_path(out, suffix) as tmp:
                (write_nifti if fmt == "nifti" else write_itk)(vol, tmp)
    except PermissionError as e:
        raise OutputError(f"cannot write {out} (permission denied); choose a writable folder") from e
    except OSError as e:
        raise OutputError(f"cannot write {out} ({e.strerror or e}); check the folder and free disk space") from e
    return out


def write_mask_like(
    mask: np.ndarray | Volume,
    source: Volume | Geometry,
    path: str | Path,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a label map on exactly the grid of ``source``: same shape, identical affine,
    smallest integer dtype that holds the labels.

    Args:
        mask: ``(ni, nj, nk)`` integer (or bool, or integral float) class ids, indexed like
            ``source``; or a Volume on the same grid (within 1e-3 mm).
        source: the scan the mask belongs to (its affine is copied bit for bit).

    Raises:
        GeometryError: shape or grid differs from the source.
        OutputError: non-integer labels, or as :func:`write_volume`.
    """
    grid = source.geometry if isinstance(source, Volume) else source
    if isinstance(mask, Volume):
        if not mask.same_grid(grid):
            raise GeometryError(
                f"the mask grid ({mask.geometry.describe()}) is not the source grid "
                f"({grid.describe()}); resample the mask onto the source first"
            )
        mask = mask.array
    mask = np.asarray(mask)
    if mask.shape != grid.shape:
        raise GeometryError(f"mask shape {mask.shape} differs from the source shape {grid.shape}")
    out_vol = Volume(mask.astype(label_dtype(mask), copy=False), grid.affine.copy(), {})
    if isinstance(source, Volume):
        out_vol.meta = {"path": source.meta.get("path"), "files": source.meta.get("files")}
    assert out_vol.geometry == grid, "mask grid must equal the source grid exactly"
    written = write_volume(out_vol, path, overwrite=overwrite)
    return written
