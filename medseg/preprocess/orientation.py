"""Reorientation to the closest canonical axes (RAS), by axis permutation and flips only.

No interpolation: voxel values are moved, never resampled. An oblique residual rotation
stays in the affine (like nibabel's ``as_closest_canonical``).
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

RAS = axcodes2ornt("RAS")


def canonical_transform(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation transform (3, 2) taking the array's axes to RAS order/direction."""
    return ornt_transform(io_orientation(affine), RAS)


def reorient_array(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply ``transform`` to the first three axes of ``array`` (trailing axes kept)."""
    return np.ascontiguousarray(apply_orientation(array, transform))


def reoriented_affine(affine: np.ndarray, transform: np.ndarray, shape) -> np.ndarray:
    """Affine of the reoriented array (shape is the *input* array's 3D shape)."""
    return affine @ inv_ornt_aff(transform, shape)


def inverse_transform(transform: np.ndarray) -> np.ndarray:
    """The orientation transform that undoes ``transform``."""
    inv = np.zeros_like(transform)
    for src_axis, (dst_axis, flip) in enumerate(transform):
        inv[int(dst_axis)] = (src_axis, flip)
    return inv
