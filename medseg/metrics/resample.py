"""Nearest-neighbour resampling of a label map onto another grid, through world coordinates."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.geometry import Geometry
from medseg.volume import Volume


def resample_nearest(moving: Volume, target: Geometry) -> Volume:
    """Resample ``moving`` (a label map) onto the grid ``target`` with nearest-neighbour
    interpolation, so label values are kept exactly.

    Each target voxel centre is mapped to RAS+ mm (``target.affine``) and back into
    ``moving``'s voxel indices (``inv(moving.affine)``); the value of the nearest voxel there
    is taken. Target voxels whose centre lies outside every voxel of ``moving`` (more than
    half a voxel beyond its outer centres) get 0 (background).

    Returns:
        A Volume with ``target``'s shape and affine, ``moving``'s dtype and meta.
    """
    index_map = np.linalg.inv(moving.affine) @ target.affine  # target (i,j,k,1) -> moving (i,j,k,1)
    out = ndimage.affine_transform(
        moving.array,
        index_map[:3, :3],
        offset=index_map[:3, 3],
        output_shape=target.shape,
        order=0,
        mode="grid-constant",  # a voxel covers +-0.5 around its centre: edges stay inside
        cval=0,
    )
    return Volume(out, target.affine.copy(), dict(moving.meta, resampled_to=target.describe()))
