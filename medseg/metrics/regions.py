"""Small helpers shared by the metric modules: mask coercion, bounding boxes, crops.

All arrays here are indexed ``[i, j, k]`` like :class:`medseg.volume.Volume` arrays (any
number of dimensions works: 2D slices from the napari widget, 3D volumes, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[slice, ...]


def as_mask(x) -> np.ndarray:
    """A boolean numpy array from a numpy array, a bool/int mask or a torch tensor (any device).

    Non-zero means foreground. Torch tensors are detached and copied to the CPU, so training
    code can pass its batch slices directly.
    """
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    return a if a.dtype == bool else a != 0


def as_spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    """Validate ``spacing`` (mm per voxel along each array axis) for an ``ndim``-D array.

    A single number means isotropic voxels. ``None`` is refused: every distance medseg
    reports is in mm, so the caller must say what a voxel measures.
    """
    if spacing is None:
        raise ValueError("spacing is required (mm per voxel along each array axis, e.g. volume.spacing)")
    sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.shape != (ndim,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be {ndim} positive finite numbers (mm), got {spacing!r}")
    return tuple(float(s) for s in sp)


def bounding_box(mask: np.ndarray) -> Box | None:
    """The tightest box (tuple of slices) holding every True voxel; None when empty."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def union_box(a: Box | None, b: Box | None) -> Box | None:
    """The smallest box holding both boxes (either may be None, meaning empty)."""
    if a is None or b is None:
        return a if b is None else b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def box_volume(box: Box | None) -> int:
    """Number of voxels in a box (0 for None)."""
    return 0 if box is None else int(np.prod([s.stop - s.start for s in box]))
