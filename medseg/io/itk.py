"""NRRD (``.nrrd``, ``.seg.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) through SimpleITK.

SimpleITK works in LPS+ with ``GetArrayFromImage`` indexed ``[k, j, i]``; this module is one
of the two places (with :mod:`medseg.io.dicom`) that converts to medseg's RAS+ ``[i, j, k]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import GeometryError, InputError
from medseg.geometry import affine_from_lps
from medseg.io.arrays import to_3d
from medseg.volume import Volume

_SEGMENT_KEY = re.compile(r"^Segment(\d+)_(Name|LabelValue|Layer)$")


def _short(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # ITK messages end with the useful sentence; keep the last informative line.
    msg = next((ln for ln in reversed(lines) if not ln.startswith(("itk::", "In "))), lines[-1] if lines else "")
    return msg[:200] or type(e).__name__


def slicer_segments(reader_or_image) -> dict[int, str]:
    """Label value -> segment name from 3D Slicer ``.seg.nrrd`` metadata ({} if absent)."""
    seg: dict[str, dict[str, str]] = {}
    for key in reader_or_image.GetMetaDataKeys():
        m = _SEGMENT_KEY.match(key)
        if m:
            seg.setdefault(m.group(1), {})[m.group(2)] = reader_or_image.GetMetaData(key)
    out: dict[int, str] = {}
    for fields in seg.values():
        try:
            out[int(fields.get("LabelValue", ""))] = fields.get("Name", "")
        except ValueError:
            continue
    return dict(sorted(out.items()))


def read_itk(path: Path, fmt: str) -> Volume:
    """Read an NRRD or MetaImage file; voxel data are loaded immediately.

    Returns:
        Volume whose array is the ``[i, j, k]`` view of the file's voxels and whose affine is
        the file's LPS geometry converted to RAS+.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(
            f"{path} could not be read as {fmt.upper()} ({_short(e)}); the file is damaged or "
            "is not an image -- re-export or copy it again"
        ) from e
    ncomp = reader.GetNumberOfComponents()
    size = reader.GetSize()
    if ncomp > 1 or reader.GetDimension() > 3:
        what = "layers (overlapping segments)" if str(path).lower().endswith(".seg.nrrd") else "components"
        shape = tuple(size) + ((ncomp,) if ncomp > 1 else ())
        raise GeometryError(
            f"{path} is 4D with shape {shape} ({ncomp if ncomp > 1 else size[-1]} {what}); "
            "medseg needs one 3D volume per file -- split it, or export a single label map "
            "(in 3D Slicer: Export to label map)"
        )
    try:
        img = reader.Execute()
    except RuntimeError as e:
        raise InputError(
            f"the voxel data of {path} could not be read ({_short(e)}); the file is truncated or "
            "corrupt -- re-export or copy it again"
        ) from e
    dim = img.GetDimension()
    spacing = list(img.GetSpacing()) + [1.0] * (3 - dim)
    origin = list(img.GetOrigin()) + [0.0] * (3 - dim)
    direction = np.eye(3)
    direction[:dim, :dim] = np.asarray(img.GetDirection(), float).reshape(dim, dim)
    # [k, j, i] -> [i, j, k]: a view, no copy.
    array = to_3d(sitk.GetArrayFromImage(img).T, path)
    meta: dict = {"path": str(path), "format": fmt}
    segments = slicer_segments(reader)
    if segments:
        meta["segments"] = segments
    if array.shape != tuple(size) + (1,) * (3 - dim):
        raise GeometryError(f"{path}: unexpected voxel layout {array.shape} for size {tuple(size)}")
    return Volume(array, affine_from_lps(spacing, origin, direction), meta)


def write_itk(volume: Volume, path: Path) -> None:
    """Write ``volume`` with SimpleITK (format from the suffix, compressed when it can be).

    The RAS+ affine becomes LPS spacing / origin / direction. A sheared affine (gantry tilt)
    is written with non-orthogonal direction columns, which NRRD and MetaImage can hold.
    """
    g = volume.geometry
    lps = g.affine_lps
    spacing = np.asarray(g.spacing)
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.T))
    img.SetSpacing(spacing.tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    img.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    sitk.WriteImage(img, str(path), useCompression=True)
