"""Correction helpers: pure functions on label maps (no Qt, no napari).

Label maps are integer arrays indexed ``[i, j, k]`` (0 = background, one value per class);
``spacing`` is mm per array axis (``Volume.spacing``). Every function returns a new array
and leaves its input unchanged, so the widget can apply the difference with undo history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.errors import MedsegError
from medseg.metrics import label_components, voxel_ml

#: CT display windows: name -> (width, level) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft tissue": (400.0, 40.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "liver": (150.0, 30.0),
    "brain": (80.0, 40.0),
}


def window_limits(width: float, level: float) -> tuple[float, float]:
    """Contrast limits ``(level - width/2, level + width/2)`` of a window, in HU."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return (float(level) - float(width) / 2.0, float(level) + float(width) / 2.0)


def preset_limits(name: str) -> tuple[float, float]:
    """Contrast limits of a named preset (see :data:`WINDOW_PRESETS`)."""
    try:
        return window_limits(*WINDOW_PRESETS[name])
    except KeyError:
        raise MedsegError(f"unknown window preset {name!r}; choose one of {', '.join(WINDOW_PRESETS)}") from None


# ---- volumes --------------------------------------------------------------------------------
def class_volumes_ml(labels: np.ndarray, spacing: Sequence[float]) -> dict[int, float]:
    """``{value: ml}`` for every non-zero value present: voxel count x voxel volume."""
    a = np.asarray(labels)
    if a.size == 0:
        return {}
    flat = a.ravel()
    if flat.dtype.kind == "b":
        flat = flat.view(np.uint8)
    counts = np.bincount(flat.astype(np.int64, copy=False)) if flat.min() >= 0 else None
    if counts is None:
        values, n = np.unique(flat, return_counts=True)
        counts_d = dict(zip(values.tolist(), n.tolist()))
    else:
        counts_d = {v: int(c) for v, c in enumerate(counts) if c}
    unit = voxel_ml(spacing)
    return {int(v): c * unit for v, c in sorted(counts_d.items()) if v != 0}


# ---- connected components --------------------------------------------------------------------
def _classes(labels: np.ndarray, label: int | None) -> list[int]:
    if label is not None:
        return [int(label)]
    return [int(v) for v in np.unique(labels) if v != 0]


def remove_islands(labels: np.ndarray, spacing: Sequence[float], min_ml: float,
                   label: int | None = None, connectivity: int = 26) -> np.ndarray:
    """Set to 0 every connected component smaller than ``min_ml`` millilitres.

    Args:
        labels: (ni, nj, nk) integer label map.
        spacing: mm per axis; a component's volume is its voxel count x product(spacing) / 1000.
        min_ml: components strictly smaller than this are removed.
        label: only this class (default: every class, each on its own).
        connectivity: 6, 18 or 26 (3D neighbourhood).
    """
    out = np.array(labels, copy=True)
    unit = voxel_ml(spacing)
    for value in _classes(out, label):
        cc, n = label_components(out == value, connectivity)
        if n == 0:
            continue
        sizes = np.bincount(cc.ravel(), minlength=n + 1) * unit
        small = np.flatnonzero(sizes < min_ml)
        small = small[small != 0]
        if small.size:
            out[np.isin(cc, small)] = 0
    return out


def keep_largest_component(labels: np.ndarray, label: int | None = None, connectivity: int = 26) -> np.ndarray:
    """Keep only the largest connected component of each class (or of ``label``)."""
    out = np.array(labels, copy=True)
    for value in _classes(out, label):
        cc, n = label_components(out == value, connectivity)
        if n <= 1:
            continue
        sizes = np.bincount(cc.ravel(), minlength=n + 1)
        sizes[0] = 0
        out[(cc != 0) & (cc != int(np.argmax(sizes)))] = 0
    return out


# ---- shape-based interpolation ---------------------------------------------------------------
def signed_distance(mask2d: np.ndarray, sampling: Sequence[float] | None = None) -> np.ndarray:
    """Signed distance (mm with ``sampling``) of a 2D mask: negative inside, positive outside."""
    m = np.asarray(mask2d, bool)
    if not m.any():
        raise MedsegError("an empty slice has no shape to interpolate; annotate both slices first")
    if m.all():
        return -np.full(m.shape, np.inf)
    return ndimage.distance_transform_edt(~m, sampling=sampling) - ndimage.distance_transform_edt(m, sampling=sampling)


def _take(a: np.ndarray, axis: int, k: int) -> np.ndarray:
    return np.take(a, k, axis=axis)


def interpolate_slices(labels: np.ndarray, label: int, axis: int, start: int, stop: int,
                       spacing: Sequence[float] | None = None, overwrite_other: bool = False) -> np.ndarray:
    """Fill the slices strictly between ``start`` and ``stop`` along ``axis`` with the shape
    interpolated from the ``label`` masks on those two slices.

    Shape-based interpolation (Raya & Udupa 1990): each end slice's mask becomes a signed
    distance map (in-plane, in mm when ``spacing`` is given); slice ``k`` gets the
    linear blend ``(1 - t) d_start + t d_stop`` with ``t = (k - start) / (stop - start)``,
    and the label where the blend is negative. Two concentric discs of radius r0 and r1
    thus give discs of radius ``(1 - t) r0 + t r1`` in between.

    Voxels of ``label`` outside the interpolated shape on the in-between slices are cleared;
    voxels of other classes are kept unless ``overwrite_other``.
    """
    a = np.asarray(labels)
    axis = int(axis) % a.ndim
    lo, hi = sorted((int(start), int(stop)))
    if lo < 0 or hi >= a.shape[axis]:
        raise MedsegError(f"slices {lo} and {hi} are outside axis {axis} (0..{a.shape[axis] - 1})")
    out = np.array(a, copy=True)
    if hi - lo < 2:
        return out
    sampling = None if spacing is None else [s for i, s in enumerate(spacing) if i != axis]
    d_lo = signed_distance(_take(a, axis, lo) == label, sampling)
    d_hi = signed_distance(_take(a, axis, hi) == label, sampling)
    for k in range(lo + 1, hi):
        t = (k - lo) / (hi - lo)
        with np.errstate(invalid="ignore"):
            inside = ((1.0 - t) * d_lo + t * d_hi) < 0
        plane = _take(out, axis, k).copy()
        plane[plane == label] = 0
        writable = inside if overwrite_other else inside & (plane == 0)
        plane[writable] = label
        index = [slice(None)] * a.ndim
        index[axis] = k
        out[tuple(index)] = plane
    return out


def annotated_slices(labels: np.ndarray, label: int, axis: int) -> list[int]:
    """Indices along ``axis`` of the slices that contain ``label``."""
    a = np.asarray(labels) == label
    other = tuple(i for i in range(a.ndim) if i != axis)
    return [int(k) for k in np.flatnonzero(a.any(axis=other))]


def fill_between_slices(labels: np.ndarray, label: int, axis: int,
                        spacing: Sequence[float] | None = None, overwrite_other: bool = False) -> np.ndarray:
    """Interpolate ``label`` across every gap between annotated slices along ``axis``
    (annotate every few slices, then fill the rest)."""
    ks = annotated_slices(labels, label, axis)
    if len(ks) < 2:
        raise MedsegError(f"label {label} is on {len(ks)} slice(s) along this axis; annotate at least two slices")
    out = np.asarray(labels)
    for a, b in zip(ks, ks[1:]):
        if b - a > 1:
            out = interpolate_slices(out, label, axis, a, b, spacing, overwrite_other)
    return np.array(out, copy=True) if out is labels else out


def data_axis_for_world_axis(affine: np.ndarray, world_axis: int) -> int:
    """The array axis whose direction is closest to world axis ``world_axis`` (0 x, 1 y, 2 z):
    the axis napari steps through when that world axis is the slider. ``affine`` is the 4x4
    voxel -> RAS+ mm affine (or its 3x3 part)."""
    a = np.asarray(affine, float)[:3, :3]
    cosines = np.abs(a[world_axis]) / np.linalg.norm(a, axis=0)
    return int(np.argmax(cosines))
