"""Correction helpers: pure functions on label maps (no Qt, no napari).

Label maps are integer arrays indexed ``[i, j, k]`` (0 = background, one value per class);
``spacing`` is mm per array axis (``Volume.spacing``). Every function returns a new array
and leaves its input unchanged, so the widget can apply the difference with undo history.

Editing rules (:class:`EditRules`, 3D Slicer's masking): an editable area (everywhere, inside
one class, outside all classes), overwrite other classes on/off, and an intensity range;
:func:`constrain_edit` undoes what they forbid in any edit (a brush stroke, a fill, a
fill-between-slices). Classes by name: :func:`add_class` gives a named class the next free value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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
                        spacing: Sequence[float] | None = None, overwrite_other: bool = False,
                        rules: EditRules | None = None, image: np.ndarray | None = None) -> np.ndarray:
    """Interpolate ``label`` across every gap between annotated slices along ``axis``
    (annotate every few slices, then fill the rest).

    The fill obeys the editing rules (:func:`constrain_edit`): by default those of
    ``EditRules(overwrite=overwrite_other)`` (other classes kept unless ``overwrite_other``);
    with ``rules`` its editable area, overwrite setting and intensity range (``image``: the
    scan on the labels' grid, needed for an intensity range). So a tumour drawn on two slices
    inside the liver fills between them inside the liver with ``EditRules("inside", liver)``.
    """
    ks = annotated_slices(labels, label, axis)
    if len(ks) < 2:
        raise MedsegError(f"label {label} is on {len(ks)} slice(s) along this axis; annotate at least two slices")
    rules = EditRules(overwrite=overwrite_other) if rules is None else rules
    a = np.asarray(labels)
    out = a
    for lo, hi in zip(ks, ks[1:]):
        if hi - lo > 1:
            out = interpolate_slices(out, label, axis, lo, hi, spacing, overwrite_other=True)
    return constrain_edit(a, out, label, rules, image)


def data_axis_for_world_axis(affine: np.ndarray, world_axis: int) -> int:
    """The array axis whose direction is closest to world axis ``world_axis`` (0 x, 1 y, 2 z):
    the axis napari steps through when that world axis is the slider. ``affine`` is the 4x4
    voxel -> RAS+ mm affine (or its 3x3 part)."""
    a = np.asarray(affine, float)[:3, :3]
    cosines = np.abs(a[world_axis]) / np.linalg.norm(a, axis=0)
    return int(np.argmax(cosines))


# ---- editing rules ---------------------------------------------------------------------------
#: Editable areas (3D Slicer's "Editable area"): every voxel; only the voxels of one class
#: (``EditRules.area_label``); only background voxels (outside all classes).
AREAS = ("everywhere", "inside", "outside")


@dataclass(frozen=True)
class EditRules:
    """What an edit of a label map may change (3D Slicer's masking settings).

    * ``area``: ``"everywhere"``; ``"inside"``: only voxels that were of class ``area_label``;
      ``"outside"``: only voxels that were background (outside all classes).
    * ``overwrite``: may an edit change voxels of *other* classes? Off: it changes only
      background, voxels of the class being edited, and (with ``area="inside"``) voxels of the
      area's class -- so a tumour can be painted inside the liver without touching the kidney.
    * ``intensity``: ``(min, max)`` of the scan (HU for CT), inclusive: only voxels whose
      intensity is in range change (e.g. a window's limits, :func:`window_limits`). None: no limit.

    The defaults change nothing (napari's own painting: overwrite everything, everywhere).
    """

    area: str = "everywhere"
    area_label: int | None = None
    overwrite: bool = True
    intensity: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.area not in AREAS:
            raise MedsegError(f"unknown editable area {self.area!r}; choose one of {', '.join(AREAS)}")
        if self.area == "inside" and (self.area_label is None or int(self.area_label) <= 0):
            raise MedsegError("the editable area 'inside' needs a class (a label value > 0)")
        if self.intensity is not None:
            lo, hi = (float(v) for v in self.intensity)
            if not lo <= hi:
                raise MedsegError(f"the intensity range {lo:g} to {hi:g} is empty; give min <= max")
            object.__setattr__(self, "intensity", (lo, hi))

    @property
    def free(self) -> bool:
        """True when the rules forbid nothing (every edit stands as made)."""
        return self.area == "everywhere" and self.overwrite and self.intensity is None

    def describe(self, names: Mapping[int, str] | None = None) -> str:
        """One line, e.g. ``inside liver, other classes kept, intensity -45 to 105``."""
        names = names or {}
        if self.area == "inside":
            v = int(self.area_label)
            area = f"inside {names.get(v, f'class_{v}')}"
        else:
            area = {"everywhere": "everywhere", "outside": "outside all classes"}[self.area]
        parts = [area, "other classes overwritten" if self.overwrite else "other classes kept"]
        if self.intensity is not None:
            parts.append(f"intensity {self.intensity[0]:g} to {self.intensity[1]:g}")
        return ", ".join(parts)


def editable_mask(before: np.ndarray, label: int, rules: EditRules, image: np.ndarray | None = None) -> np.ndarray:
    """The voxels an edit of class ``label`` may change under ``rules`` (bool, shape of ``before``).

    Args:
        before: the label map before the edit.
        label: the class being edited (the painted class; when erasing, the class erased).
        rules: see :class:`EditRules`.
        image: the scan on the same grid (needed when ``rules.intensity`` is set).
    """
    b = np.asarray(before)
    ok = np.ones(b.shape, bool)
    if rules.area == "inside":
        ok &= b == int(rules.area_label)
    elif rules.area == "outside":
        ok &= b == 0
    if not rules.overwrite:
        allowed = [0, int(label)] + ([int(rules.area_label)] if rules.area == "inside" else [])
        ok &= np.isin(b, allowed)
    if rules.intensity is not None:
        if image is None:
            raise MedsegError("an intensity range needs the image: choose the scan the labels belong to")
        img = np.asarray(image)
        if img.shape != b.shape:
            raise MedsegError(f"the image has shape {img.shape} but the labels {b.shape}; the intensity "
                              "range needs the scan on the labels' grid")
        lo, hi = rules.intensity
        with np.errstate(invalid="ignore"):
            ok &= (img >= lo) & (img <= hi)
    return ok


def constrain_edit(before: np.ndarray, after: np.ndarray, label: int, rules: EditRules,
                   image: np.ndarray | None = None) -> np.ndarray:
    """``after`` with every change the rules forbid undone (those voxels keep their ``before``
    value); a new array, inputs unchanged. See :func:`editable_mask`."""
    b = np.asarray(before)
    a = np.asarray(after)
    if a.shape != b.shape:
        raise MedsegError(f"an edit cannot change the shape of the labels ({b.shape} -> {a.shape})")
    if rules.free:
        return np.array(a, copy=True)
    changed = a != b
    forbidden = changed & ~editable_mask(b, label, rules, image)
    out = np.array(a, copy=True)
    out[forbidden] = b[forbidden]
    return out


# ---- classes by name ------------------------------------------------------------------------
def next_label_value(values: Iterable[int]) -> int:
    """The value a new class gets: one above the highest value in use (1 for none)."""
    used = [int(v) for v in values]
    return max([0, *used]) + 1


def add_class(classes: Mapping[int, str], name: str, values_in_use: Iterable[int] = ()) -> tuple[int, dict[int, str]]:
    """Add a class called ``name`` to ``classes`` ({value: name}); returns ``(value, new table)``.

    A name already in the table keeps its value (nothing is added). Otherwise the class gets
    :func:`next_label_value` of the table's values and ``values_in_use`` (values painted in the
    labels, or named elsewhere, e.g. in a review folder), so it never takes a value that is
    already on screen. ``classes`` is not changed.
    """
    name = " ".join(str(name).split())
    if not name:
        raise MedsegError("give the new class a name")
    if name.lower() == "background":
        raise MedsegError("'background' is value 0; choose another name")
    table = {int(v): str(n) for v, n in classes.items()}
    for v, n in table.items():
        if n == name:
            if v == 0:
                raise MedsegError(f"{name!r} is the background; choose another name")
            return v, table
    value = next_label_value([*table, *values_in_use])
    if value > 65535:
        raise MedsegError("no label value left for a new class (65535 is the highest)")
    table[value] = name
    return value, dict(sorted(table.items()))
