"""Postprocessing of a label map on the source grid, per class (from the run's config):
keep only the largest connected component, drop components under N ml. Also class volumes.

Connectivity is 26 (faces, edges and corners), as in :mod:`medseg.metrics.lesions`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.volume import Volume

_FULL = np.ones((3, 3, 3), bool)


def voxel_ml(volume: Volume) -> float:
    """Volume of one voxel in ml (|det| of the affine's 3x3 part, mm^3, / 1000)."""
    return float(abs(np.linalg.det(volume.affine[:3, :3]))) / 1000.0


def clean_labels(mask: Volume, keep_largest: list[int], min_component_ml: dict[int, float]) -> Volume:
    """Per class value: keep the largest component (``keep_largest``) and/or drop components
    smaller than ``min_component_ml[value]`` ml. Removed voxels become background (0)."""
    arr = mask.array.copy()
    vml = voxel_ml(mask)
    for value in sorted(set(keep_largest) | set(min_component_ml)):
        binary = arr == value
        if not binary.any():
            continue
        cc, n = ndimage.label(binary, structure=_FULL)
        if n <= 1 and value not in min_component_ml:
            continue
        sizes = np.bincount(cc.ravel(), minlength=n + 1)
        sizes[0] = 0
        keep = sizes > 0
        if value in keep_largest:
            keep = np.zeros_like(keep)
            keep[int(sizes.argmax())] = True
        if value in min_component_ml:
            keep &= sizes * vml >= float(min_component_ml[value])
        keep[0] = False
        arr[binary & ~keep[cc]] = 0
    return mask.with_array(arr)


def class_volumes(mask: Volume, labels: dict[str, int]) -> dict[str, float]:
    """``{name: ml}`` for every foreground class of ``labels`` (0.0 when absent)."""
    counts = np.bincount(mask.array.ravel(), minlength=max(labels.values()) + 1)
    vml = voxel_ml(mask)
    return {n: round(float(counts[v]) * vml, 3) for n, v in labels.items() if v != 0}
