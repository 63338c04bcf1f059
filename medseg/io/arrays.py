"""Array shape and dtype rules shared by the readers and writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import GeometryError, OutputError


def to_3d(data: np.ndarray, path: Path | str) -> np.ndarray:
    """Return ``data`` as a 3D ``[i, j, k]`` array.

    Trailing singleton axes are dropped (``(x, y, z, 1)`` is 3D); a 2D image gets ``k`` of
    length 1. Anything with more than one volume is refused with advice.

    Raises:
        GeometryError: 4D (or higher) data with more than one volume/channel.
    """
    shape = data.shape
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 3:
        raise GeometryError(
            f"{path} is {len(shape)}D with shape {shape}; medseg needs one 3D volume per file -- "
            "split it into 3D files (for example one file per channel or time point, as nnU-Net "
            "expects: CASE_0000.nii.gz, CASE_0001.nii.gz)"
        )
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.ndim != 3:
        raise GeometryError(f"{path} has {data.ndim} dimensions (shape {shape}); expected a 3D image")
    return data


def label_dtype(array: np.ndarray) -> np.dtype:
    """Smallest integer dtype holding a label map's values (uint8, uint16, int16, int32).

    Raises:
        OutputError: non-integral or out-of-range values (a label map holds class ids).
    """
    if array.dtype == bool:
        return np.dtype(np.uint8)
    if array.size == 0:
        return np.dtype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise OutputError(
                "a mask must hold integer class ids, but this array has fractional or NaN values; "
                "take the argmax or threshold the probabilities first"
            )
    lo, hi = int(array.min()), int(array.max())
    for dt in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise OutputError(f"mask values {lo}..{hi} do not fit in int32; a label map holds class ids")


def storable(array: np.ndarray) -> np.ndarray:
    """Cast dtypes that NIfTI/NRRD/MHA writers handle badly to safe equivalents.

    bool -> uint8, float16 -> float32, int64/uint64 -> int32 when the values fit (many tools
    cannot open 64-bit integer images). Values are never changed.
    """
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype in (np.int64, np.uint64) and array.size:
        lo, hi = int(array.min()), int(array.max())
        if np.iinfo(np.int32).min <= lo and hi <= np.iinfo(np.int32).max:
            return array.astype(np.int32)
    return array
