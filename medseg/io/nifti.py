"""NIfTI-1 / NIfTI-2 (``.nii``, ``.nii.gz``) through nibabel.

The affine is nibabel's ``img.affine`` (sform when its code is set, else qform, else a
pixdim-only fallback) -- already RAS+, so no conversion happens here.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.errors import GeometryError, InputError, short_reason as _short, warn
from medseg.geometry import Geometry
from medseg.io.arrays import to_3d
from medseg.volume import Volume

_XFORM_NAMES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "talairach", 4: "mni", 5: "template"}


def _describe(aff: np.ndarray) -> str:
    return "[" + "; ".join(" ".join(f"{v:.4g}" for v in row) for row in aff[:3]) + "]"


def _check_xforms(img: nib.Nifti1Image, path: Path) -> None:
    """Warn when sform and qform disagree (sform wins, as in nibabel) or neither is set."""
    hdr = img.header
    sform, scode = hdr.get_sform(coded=True)
    qform, qcode = hdr.get_qform(coded=True)
    shape = img.shape[:3] + (1,) * max(0, 3 - len(img.shape))
    if scode and qcode:
        gs, gq = Geometry(shape, sform), Geometry(shape, qform)
        if not gs.same_grid(gq):
            dev = float(np.max(np.abs(gs.corners() - gq.corners())))
            warn(
                f"{path.name}: sform ({_XFORM_NAMES.get(int(scode), scode)}) {_describe(sform)} and "
                f"qform ({_XFORM_NAMES.get(int(qcode), qcode)}) {_describe(qform)} disagree "
                f"by up to {dev:.3g} mm; using the sform (nibabel's rule). "
                "Check which one your other tools use."
            )
    elif not scode and not qcode:
        warn(
            f"{path.name}: neither sform nor qform is set; using voxel sizes only, with no "
            "position or orientation (nibabel's fallback). World positions are not reliable."
        )


def _check_voxel_type(img: nib.Nifti1Image, path: Path) -> None:
    """Refuse colour (RGB/RGBA) and complex voxels: medseg needs one scalar per voxel."""
    dt = img.header.get_data_dtype()
    if dt.fields is not None or dt.kind == "c":
        what = "colour (RGB/RGBA)" if dt.fields is not None else "complex-valued"
        raise InputError(f"{path} holds {what} voxels ({dt}); medseg needs a greyscale scan or a label map with one "
                         "value per voxel -- convert it to a single channel first")


def _check_pixdim(img: nib.Nifti1Image, path: Path) -> None:
    """Refuse a zero, negative-zero or NaN/inf voxel size (pixdim[1..3]) where the affine depends
    on it (no sform). nibabel silently replaces a zero by 1 mm -- a wrong size, never an error.

    The header is read again unchecked: nibabel's loader has already 'fixed' the zeros."""
    hdr = img.header
    try:
        from nibabel.openers import ImageOpener

        with ImageOpener(str(path)) as f:
            raw = type(hdr).from_fileobj(f, check=False)
    except Exception:  # noqa: BLE001 -- the loaded header is the next best thing
        raw = hdr
    ndim = max(1, min(3, int(raw["dim"][0])))
    pix = np.asarray(raw["pixdim"][1:1 + ndim], float)
    bad = [f"pixdim[{i + 1}] = {v}" for i, v in enumerate(pix) if not np.isfinite(v) or v == 0]
    if bad and not int(raw["sform_code"]):
        raise GeometryError(f"{path}: the voxel size is invalid ({', '.join(bad)}) and no sform gives it; medseg "
                            "does not guess 1 mm -- fix the header (e.g. nibabel: img.header.set_zooms(...)) or "
                            "re-export the scan")
    if bad:
        warn(f"{path.name}: {', '.join(bad)} in the header; using the sform's voxel size")


def _check_affine(img: nib.Nifti1Image, path: Path) -> None:
    """Refuse an affine with NaN/inf entries or a zero-volume (singular) 3x3 part."""
    aff = np.asarray(img.affine, float)
    scode = int(img.header["sform_code"])
    src = "sform" if scode else ("qform" if int(img.header["qform_code"]) else "pixdim")
    if not np.all(np.isfinite(aff)):
        raise GeometryError(f"{path}: the {src} holds NaN or infinite values ({_describe(aff)}); the scan has no "
                            "valid position in space -- fix the header or re-export the scan")
    det = abs(float(np.linalg.det(aff[:3, :3])))
    if not det > 1e-12:
        raise GeometryError(f"{path}: the {src} is singular ({_describe(aff)}: a zero voxel size or two axes along "
                            "the same direction); fix the header or re-export the scan")


def read_nifti(path: Path) -> Volume:
    """Read a NIfTI-1/2 file; voxel data are loaded immediately (corruption is found now).

    Returns:
        Volume with the array as stored (scaled by scl_slope/scl_inter when those are set,
        which makes it float) and nibabel's RAS+ affine.
    """
    try:
        img = nib.load(str(path), mmap=False)
    except Exception as e:  # nibabel raises ImageFileError, EOFError, ValueError, zlib errors
        raise InputError(
            f"{path} could not be read as NIfTI ({_short(e)}); the file is damaged or is not "
            "NIfTI -- re-export or copy it again"
        ) from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path} is a {type(img).__name__}, not NIfTI; rename it or convert it")
    _check_voxel_type(img, path)
    _check_pixdim(img, path)
    _check_xforms(img, path)
    _check_affine(img, path)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as e:
        raise InputError(
            f"the voxel data of {path} could not be read ({_short(e)}); the file is truncated or "
            "corrupt -- re-export or copy it again"
        ) from e
    array = to_3d(data, path)
    meta = {
        "path": str(path),
        "format": "nifti",
        "nifti_version": 2 if isinstance(img, nib.Nifti2Image) else 1,
    }
    return Volume(array, img.affine, meta)


def write_nifti(volume: Volume, path: Path) -> None:
    """Write ``volume`` to ``path`` (NIfTI-1; ``.nii.gz`` compressed).

    sform = the exact affine (code 1, scanner); qform = the same when it can represent it
    (no shear), else code 0 so no reader picks a distorted qform.
    """
    img = nib.Nifti1Image(volume.array, volume.affine)
    img.set_sform(volume.affine, code=1)
    if volume.geometry.is_sheared:
        img.set_qform(None, code=0)
    else:
        img.set_qform(volume.affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    nib.save(img, str(path))
