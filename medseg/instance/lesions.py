"""The lesion table: one row per object of an instance map on the source grid.

Columns (what ``OUT_DIR/<case>_lesions.csv`` holds):

* ``id``: the object's value in the instance map (1..N); ``class``: its class name;
  ``score``: the model's confidence (the score of its best slice detection, 0-1).
* ``voxels``, ``volume_ml``: voxel count and voxels x voxel volume (|det| of the affine) / 1000.
* ``first_slice``, ``last_slice``: lowest and highest index, 0-based, along the *stored*
  array's axial axis (the source axis closest to superior-inferior; for DICOM, medseg's slice
  order along the slice normal). So a viewer showing the file as stored shows the lesion there.
* ``longest_axial_diameter_mm``: the largest distance between two points of the lesion in one
  axial slice, measured between the outer corners of its pixels (a lesion of a x b pixels of
  spacing (s, t) measures sqrt((a s)^2 + (b t)^2)), over all its slices, using the affine (so
  oblique and anisotropic grids measure true mm).
* ``axial_diameter_slice``: the slice index where that diameter lies.
* ``centroid_r_mm``, ``centroid_a_mm``, ``centroid_s_mm``: mean RAS+ position of its voxel centres.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from medseg.preprocess.orientation import canonical_transform
from medseg.volume import Volume

COLUMNS = ["id", "class", "score", "voxels", "volume_ml", "first_slice", "last_slice", "longest_axial_diameter_mm",
           "axial_diameter_slice", "centroid_r_mm", "centroid_a_mm", "centroid_s_mm"]
_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])


def axial_axis(affine: np.ndarray) -> int:
    """The array axis that is closest to the superior-inferior world axis."""
    tr = canonical_transform(affine)
    return int(np.flatnonzero(tr[:, 0] == 2)[0])


def max_diameter_2d(pixels: np.ndarray, metric_columns: np.ndarray) -> float:
    """Largest distance (mm) between outer pixel corners of one slice's pixels.

    Args:
        pixels: ``(n, 2)`` in-plane voxel indices (a, b).
        metric_columns: ``(3, 2)`` world vectors (mm) of one step along a and along b.
    """
    pts = np.unique((pixels[:, None, :] + _CORNERS[None]).reshape(-1, 2), axis=0)
    try:
        hull = pts[ConvexHull(pts).vertices]
    except Exception:  # scipy QhullError (collinear points cannot happen with corners, but be safe)
        hull = pts
    world = hull @ metric_columns.T  # (h, 3)
    d = np.linalg.norm(world[:, None, :] - world[None, :, :], axis=-1)
    return float(d.max())


def lesion_rows(ids: Volume, classes: dict[int, str], scores: dict[int, float] | None = None) -> list[dict]:
    """Rows (dicts with :data:`COLUMNS`) of every object of ``ids``, by id.

    Args:
        ids: instance map (0 background, 1..N objects) on the source grid.
        classes: object id -> class name; scores: object id -> score (missing: NaN).
    """
    arr = np.asarray(ids.array)
    aff = ids.affine
    ax = axial_axis(aff)
    inplane = [a for a in range(3) if a != ax]
    metric = aff[:3, inplane]
    voxel_ml = abs(float(np.linalg.det(aff[:3, :3]))) / 1000.0
    rows = []
    boxes = ndimage.find_objects(arr if arr.dtype.kind in 'iu' else arr.astype(np.int64))
    for obj, box in enumerate(boxes, start=1):
        if box is None:
            continue
        idx = np.argwhere(arr[box] == obj) + np.array([s.start for s in box])
        centroid = aff[:3, :3] @ idx.mean(0) + aff[:3, 3]
        best, best_k = 0.0, int(idx[0, ax])
        for k in np.unique(idx[:, ax]):
            d = max_diameter_2d(idx[idx[:, ax] == k][:, inplane].astype(float), metric)
            if d > best:
                best, best_k = d, int(k)
        rows.append({
            "id": obj, "class": classes.get(obj, ""),
            "score": round(float((scores or {}).get(obj, float("nan"))), 4),
            "voxels": int(len(idx)), "volume_ml": round(len(idx) * voxel_ml, 4),
            "first_slice": int(idx[:, ax].min()), "last_slice": int(idx[:, ax].max()),
            "longest_axial_diameter_mm": round(best, 2), "axial_diameter_slice": best_k,
            "centroid_r_mm": round(float(centroid[0]), 2), "centroid_a_mm": round(float(centroid[1]), 2),
            "centroid_s_mm": round(float(centroid[2]), 2),
        })
    return rows
