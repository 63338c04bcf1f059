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
    best = torch.full(tuple(new_shape), -1.0)
    out = torch.zeros(tuple(new_shape), dtype=torch.uint8 if small else torch.int64)
    src = torch.as_tensor(np.ascontiguousarray(labels))
    for v in values.tolist():
        onehot = (src == v).to(torch.float32)[None, None]
        w = F.interpolate(onehot, size=tuple(new_shape), mode="trilinear", align_corners=False)[0, 0]
        out[w > best] = int(v)
        torch.maximum(best, w, out=best)  # in place: peak memory ~ 2 float32 + 1 label map of new_shape
        del w
    return out.numpy().astype(labels.dtype, copy=False)
