"""Evaluate an :class:`~medseg.data.phantoms.anatomy.Anatomy` at every voxel centre of a grid.

The world (RAS+ mm) position of voxel ``[i, j, k]`` is ``affine @ (i, j, k, 1)``, exactly as
everywhere in medseg (:mod:`medseg.geometry`); labels and HU are computed there. So the label
map agrees with the geometry by construction, whatever the storage orientation of the grid.

Work is done in slabs of whole k-slices (bounded memory), and each part is evaluated only on
the index box that can contain it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medseg.data.phantoms.anatomy import HOST_MARGIN, Anatomy, Part
from medseg.data.phantoms.shapes import Cylinder, field_value
from medseg.geometry import Geometry

#: Voxels per slab (bounds the temporary float32 arrays to a few tens of MB each).
SLAB_VOXELS = 4_000_000

Box = tuple[slice, slice, slice]


def index_box(geom: Geometry, lo: np.ndarray, hi: np.ndarray, k0: int, k1: int) -> Box | None:
    """Index slices (within k0:k1, relative to k0) covering the world AABB [lo, hi], or None."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ijk = geom.world_to_index(corners)
    a = np.floor(ijk.min(axis=0)).astype(int)
    b = np.ceil(ijk.max(axis=0)).astype(int) + 1
    a = np.maximum(a, [0, 0, k0])
    b = np.minimum(b, [geom.shape[0], geom.shape[1], k1])
    if np.any(b <= a):
        return None
    return slice(a[0], b[0]), slice(a[1], b[1]), slice(a[2] - k0, b[2] - k0)


def world_coords(affine: np.ndarray, shape: tuple[int, int, int], k0: int, k1: int) -> tuple[np.ndarray, ...]:
    """Float32 RAS+ mm coordinates (x, y, z), each shaped (ni, nj, k1 - k0), of voxels k0..k1-1."""
    i = np.arange(shape[0], dtype=np.float64)[:, None, None]
    j = np.arange(shape[1], dtype=np.float64)[None, :, None]
    k = np.arange(k0, k1, dtype=np.float64)[None, None, :]
    out = []
    for r in range(3):
        m = affine[r]
        # the large arrays are float32; the (tiny) per-axis terms are exact float64 first
        ij = (i * m[0]).astype(np.float32) + (j * m[1]).astype(np.float32)
        out.append(ij + (k * m[2] + m[3]).astype(np.float32))
    return tuple(out)


def _paint(part: Part, box: Box, xyz: tuple[np.ndarray, ...], regions: dict[str, np.ndarray],
           labels: np.ndarray, hu: np.ndarray) -> None:
    x, y, z = (c[box] for c in xyz)
    rho = part.shape.rho(x, y, z)
    mask = (rho < 1) & regions[part.within][box]
    if part.host is not None:
        mask &= part.host.rho(x, y, z) < HOST_MARGIN
    if not mask.any():
        return
    value = np.full(rho.shape, np.float32(part.hu), np.float32)
    if part.inner is not None:
        value[rho < part.inner[0]] = part.inner[1]
    if part.rim is not None:
        value[rho >= part.rim[0]] = part.rim[1]
    if part.disc is not None:
        period, frac, phase, disc_hu = part.disc
        value[np.mod(z - np.float32(phase), np.float32(period)) < np.float32(frac * period)] = disc_hu
    hu_box, lab_box = hu[box], labels[box]
    hu_box[mask] = value[mask]
    lab_box[mask] = 0 if part.label is None else part.label


def part_box(part: Part, geom: Geometry, anatomy: Anatomy, k0: int, k1: int) -> Box | None:
    """Index box of a part's world bounding box (cylinders limited to the scanned z range, padded)."""
    shape = part.shape
    if isinstance(shape, Cylinder):  # infinite along z
        pad = 0.5 * (anatomy.z_range[1] - anatomy.z_range[0])
        lo, hi = shape.bbox(z_span=(anatomy.z_range[0] - pad, anatomy.z_range[1] + pad))
    else:
        lo, hi = shape.bbox()
    return index_box(geom, lo, hi, k0, k1)


def render(anatomy: Anatomy, geom: Geometry,
           extra_hu: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and noise-free HU at every voxel centre of ``geom``.

    Args:
        extra_hu: optional smooth field (e.g. intensity bias) of world coordinates added to HU.

    Returns:
        labels: (ni, nj, nk) uint8 class ids (see ``LABELS``), indexed [i, j, k] like ``geom``.
        hu: (ni, nj, nk) float32 Hounsfield units.
    """
    ni, nj, nk = geom.shape
    labels = np.zeros(geom.shape, np.uint8)
    hu = np.empty(geom.shape, np.float32)
    step = max(1, SLAB_VOXELS // (ni * nj))
    h = anatomy.hu
    for k0 in range(0, nk, step):
        k1 = min(nk, k0 + step)
        xyz = world_coords(geom.affine, geom.shape, k0, k1)
        regions = anatomy.body.layers(*xyz)
        slab_hu = np.full(xyz[0].shape, np.float32(h["air"]), np.float32)
        slab_lab = labels[:, :, k0:k1]
        slab_hu[regions["body"]] = h["skin"]
        slab_hu[regions["under_skin"]] = h["fat"]
        slab_hu[regions["deep"]] = h["muscle"]
        cavity = regions["cavity"]
        bowel = _bowel(anatomy, xyz, cavity)
        slab_hu[cavity] = np.where(bowel, np.float32(h["bowel"]), np.float32(h["visceral_fat"]))
        for part in anatomy.parts:
            box = part_box(part, geom, anatomy, k0, k1)
            if box is not None:
                _paint(part, box, xyz, regions, slab_lab, slab_hu)
        if extra_hu is not None:
            slab_hu += extra_hu(*xyz)
        hu[:, :, k0:k1] = slab_hu
    return labels, hu


def _bowel(anatomy: Anatomy, xyz: tuple[np.ndarray, ...], cavity: np.ndarray) -> np.ndarray:
    """Boolean, for the cavity voxels only: bowel loop (True) or visceral fat (False)."""
    x, y, z = (c[cavity] for c in xyz)
    return field_value(anatomy.bowel, x, y, z) > np.float32(anatomy.bowel_threshold)


def count_part_voxels(part: Part, geom: Geometry, anatomy: Anatomy, labels: np.ndarray) -> int:
    """Voxels inside ``part``'s shape whose final label is the part's label."""
    box = part_box(part, geom, anatomy, 0, geom.shape[2])
    if box is None:
        return 0
    xyz = world_coords(geom.affine, geom.shape, box[2].start, box[2].stop)
    x, y, z = (c[box[0], box[1]] for c in xyz)
    inside = part.shape.rho(x, y, z) < 1
    return int(np.count_nonzero(inside & (labels[box] == (part.label or 0))))
