"""Resampling between a grid and a grid of another spacing over the same field of view.

Convention (identical to ``torch.nn.functional.interpolate(..., align_corners=False)`` and
nnU-Net): a grid of n voxels resampled to m keeps the outer edges of the field of view; new
voxel c sits at old continuous index ``(c + 0.5) * n / m - 0.5``. The new spacing is
``old_spacing * n / m`` (close to, not exactly, the target spacing).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resampled_shape(shape, spacing, target_spacing) -> tuple[int, int, int]:
    """``round(shape * spacing / target)`` per axis, at least 1."""
    out = np.round(np.asarray(shape, float) * np.asarray(spacing, float) / np.asarray(target_spacing, float))
    return tuple(int(max(1, v)) for v in out)


def resampled_affine(affine: np.ndarray, shape, new_shape) -> np.ndarray:
    """Affine of the resampled grid (see module docstring for the voxel mapping)."""
    scale = np.asarray(shape, float) / np.asarray(new_shape, float)
    m = np.eye(4)
    m[:3, :3] = np.diag(scale)
    m[:3, 3] = 0.5 * scale - 0.5
    return affine @ m


def resample_image(array: np.ndarray, new_shape) -> np.ndarray:
    """Trilinear resampling of a 3D image (float32) or (C, X, Y, Z) stack to ``new_shape``."""
    if tuple(array.shape[-3:]) == tuple(new_shape):
        return np.asarray(array, np.float32)
    t = torch.as_tensor(np.asarray(array, np.float32))
    batched = t.reshape(1, -1, *t.shape[-3:])
    out = F.interpolate(batched, size=tuple(new_shape), mode="trilinear", align_corners=False)
    return out.reshape(*array.shape[:-3], *new_shape).numpy()


def resample_labels(labels: np.ndarray, new_shape, values=None) -> np.ndarray:
    """Label map resampling by per-class linear interpolation + argmax (smoother than nearest
    neighbour, as nnU-Net does), one class at a time to bound memory. Output dtype = input."""
    if tuple(labels.shape) == tuple(new_shape):
        return labels.copy()
    values = np.unique(labels) if values is None else np.asarray(values)
    small = labels.dtype.itemsize == 1 and labels.dtype.kind == "u"
    src = torch.as_tensor(np.ascontiguousarray(labels))
    channels = ((int(v), (src == v).to(torch.float32)) for v in values.tolist())
    out = _resampled_argmax(channels, new_shape, torch.uint8 if small else torch.int64)
    return out.numpy().astype(labels.dtype, copy=False)


def resample_scores_argmax(scores: np.ndarray, new_shape) -> np.ndarray:
    """Argmax over classes of per-class scores (C, X, Y, Z) resampled trilinearly to ``new_shape``
    (nnU-Net's way back to the source grid: interpolate probabilities, then take the argmax, so
    boundaries fall between model voxels instead of on them). One class at a time: peak memory
    ~ 2 float32 maps of ``new_shape`` + the input. Ties go to the lower class. Output uint8
    class indices (C <= 256)."""
    if scores.shape[0] > 256:
        raise ValueError(f"{scores.shape[0]} classes do not fit uint8 labels")
    channels = ((c, torch.as_tensor(np.asarray(scores[c], np.float32))) for c in range(scores.shape[0]))
    return _resampled_argmax(channels, new_shape, torch.uint8).numpy()


def _resampled_argmax(channels, new_shape, dtype) -> torch.Tensor:
    """Running argmax over ``(value, float32 map)`` pairs, each map resampled (trilinear,
    align_corners=False) to ``new_shape`` (unchanged where it already has that shape)."""
    new_shape = tuple(int(v) for v in new_shape)
    best = torch.full(new_shape, -1.0)
    out = torch.zeros(new_shape, dtype=dtype)
    for v, m in channels:
        w = m if tuple(m.shape) == new_shape else F.interpolate(m[None, None], size=new_shape, mode="trilinear",
                                                                  align_corners=False)[0, 0]
        out[w > best] = int(v)
        torch.maximum(best, w, out=best)  # in place: peak memory ~ 2 float32 + 1 label map of new_shape
        del w
    return out
