"""The random voxel grid of a phantom case: spacing, storage orientation, small obliquity.

A grid is a :class:`~medseg.geometry.Geometry` (shape + voxel -> RAS+ mm affine). Its
3x3 part is ``R @ diag(flips * spacing)``:

* spacing: in-plane (i, j) 0.6 to 1.0 mm -- square pixels in 60% of cases, otherwise i and j
  differ -- and slices (k) 1.5 to 5 mm;
* flips: each axis independently reversed, so storage orientations vary across cases
  (``RAS``, ``LPS``, ``LAS``, ``RPI``, ... as :func:`nibabel.orientations.aff2axcodes` names
  them); i stays the left-right axis, j antero-posterior, k craniocaudal (axial slices);
* R: identity in half of the cases, else an oblique rotation of 3 to 10 degrees about a
  random axis.

The field of view is centred on the body and covers it (plus an air margin) over the whole
scanned z range, also when the slices are tilted. The affine is rounded to float32 values so
that a NIfTI file (which stores the sform as float32) holds it exactly.
"""

from __future__ import annotations

import math

import numpy as np

from medseg.data.phantoms.anatomy import Anatomy
from medseg.data.phantoms.shapes import rotation
from medseg.geometry import Geometry

#: Spacing ranges in mm: in-plane (i, j) and between slices (k).
INPLANE_MM = (0.6, 1.0)
SLICE_MM = (1.5, 5.0)
#: Probability of an oblique grid and its angle range in degrees.
P_OBLIQUE = 0.5
OBLIQUE_DEG = (3.0, 10.0)


def random_grid(rng: np.random.Generator, anatomy: Anatomy) -> tuple[Geometry, dict]:
    """Draw a grid for ``anatomy``.

    Returns:
        (geometry, info) with info keys ``flips`` (3 signs) and ``oblique_deg`` (rotation
        angle, 0 for axis-aligned grids).
    """
    s_i = rng.uniform(*INPLANE_MM)
    s_j = s_i if rng.random() < 0.6 else rng.uniform(*INPLANE_MM)
    spacing = np.array([s_i, s_j, rng.uniform(*SLICE_MM)])
    flips = rng.choice([-1.0, 1.0], size=3)
    angle = 0.0
    rot = np.eye(3)
    if rng.random() < P_OBLIQUE:
        axis = rng.normal(size=3)
        angle = float(rng.uniform(*OBLIQUE_DEG))
        rot = rotation(axis, math.radians(angle))
    margin = rng.uniform(*anatomy.size.margin)
    body = anatomy.body
    centre = np.array([
        body.centre[0] + rng.uniform(-0.3, 0.3) * margin,
        body.centre[1] + 0.5 * (body.b_ant - body.b_post) + rng.uniform(-0.3, 0.3) * margin,
        0.5 * (anatomy.z_range[0] + anatomy.z_range[1]),
    ])
    half_k = 0.5 * (anatomy.z_range[1] - anatomy.z_range[0])
    u_k = rot[:, 2]
    reach_z = (half_k + body.support(u_k[0], u_k[1])) / abs(u_k[2])  # |z - centre z| within the slab
    half = []
    for a in range(2):
        u = rot[:, a]
        half.append(body.support(u[0], u[1]) + abs(u[2]) * reach_z + margin)
    half.append(half_k)
    shape = tuple(int(math.ceil(2 * h / s)) + 1 for h, s in zip(half, spacing))
    m = rot @ np.diag(flips * spacing)
    affine = np.eye(4)
    affine[:3, :3] = m
    affine[:3, 3] = centre - m @ ((np.asarray(shape) - 1) / 2.0)
    affine = affine.astype(np.float32).astype(np.float64)
    return Geometry(shape, affine), {"flips": [int(f) for f in flips], "oblique_deg": round(angle, 3)}

