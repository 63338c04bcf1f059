"""`Volume`: voxels plus their grid in the world. Anything spatial crossing a module boundary
is a `Volume`, never a bare array (docs/concepts/design.md convention 1).

Conventions (array index order, RAS+ affine) are defined once in :mod:`medseg.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medseg.geometry import GRID_ATOL_MM, Geometry, as_affine


@dataclass(eq=False)
class Volume:
    """A 3D scan or mask.

    Attributes:
        array: (ni, nj, nk) voxel values indexed ``[i, j, k]`` as stored in the source file.
            dtype as stored after rescaling (e.g. int16 HU for CT, uint8 for masks, float32
            when a rescale slope is not integral).
        affine: (4, 4) float64 voxel-index -> RAS+ mm (nibabel's ``img.affine``). Spacing,
            origin, direction and orientation are derived from it via :attr:`geometry`.
        meta: free-form provenance carried from reader to writer: ``path`` (source file or
            folder), ``format`` ("nifti", "nrrd", "mha", "dicom", ...), and for DICOM
            ``series_uid``, ``study_uid``, ``modality``, ``sop_instance_uids`` and ``files``
            in slice order. Never used for geometry.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(
                f"a Volume holds a 3D array, got shape {self.array.shape}; "
                "split 4D images into 3D volumes first"
            )
        self.affine = as_affine(self.affine)

    @property
    def geometry(self) -> Geometry:
        """The grid (shape + affine) of this volume."""
        return Geometry(self.array.shape, self.affine)

    # Convenience pass-throughs -- all derived from the affine.
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing

    @property
    def origin(self) -> tuple[float, float, float]:
        return self.geometry.origin

    @property
    def orientation(self) -> str:
        return self.geometry.orientation

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def with_array(self, array: np.ndarray, **meta: Any) -> "Volume":
        """A new Volume on the same grid holding ``array`` (same shape required)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the grid {self.array.shape}")
        return Volume(array, self.affine.copy(), {**self.meta, **meta})

    def crop(self, start, stop) -> "Volume":
        """Sub-volume ``array[start[0]:stop[0], ...]`` with its affine updated (like nibabel's
        ``img.slicer``): voxel (0, 0, 0) of the crop sits where ``start`` sat. Bounds are clipped."""
        start = np.clip(np.asarray(start, int), 0, np.asarray(self.shape))
        stop = np.clip(np.asarray(stop, int), start + 1, np.asarray(self.shape))
        shift = np.eye(4)
        shift[:3, 3] = start
        arr = self.array[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
        return Volume(np.ascontiguousarray(arr), self.affine @ shift, {**self.meta, "crop_start": start.tolist()})

    def same_grid(self, other: "Volume | Geometry", atol_mm: float = GRID_ATOL_MM) -> bool:
        """True when ``other`` has this shape and its voxel centres agree within ``atol_mm``."""
        g = other.geometry if isinstance(other, Volume) else other
        return self.geometry.same_grid(g, atol_mm)

    def __repr__(self) -> str:
        src = self.meta.get("path")
        return f"Volume({self.geometry.describe()}, dtype={self.array.dtype}" + (
            f", path={src!r})" if src else ")"
        )
