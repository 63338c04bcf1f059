"""The one spatial convention used everywhere inside medseg.

World space
    RAS+ millimetres, identical to nibabel / NIfTI (``img.affine``). The table below is the
    definition (RAS+ and LPS+ name the direction in which each world axis *increases*):

    ===========  ==============================  ==============================
    world axis   RAS+ (medseg, nibabel, NIfTI)   LPS+ (DICOM, ITK, NRRD "LPS")
    ===========  ==============================  ==============================
    x            increases towards Right (R)     increases towards Left (L)
    y            increases towards Anterior (A)  increases towards Posterior (P)
    z            increases towards Superior (S)  increases towards Superior (S)
    ===========  ==============================  ==============================

    So ``RAS = diag(-1, -1, 1) @ LPS``. Conversions between the two happen only in
    :mod:`medseg.io` (readers and writers); nothing else in medseg ever sees LPS.

Voxel index
    An array is indexed ``array[i, j, k]`` in the order of the file as stored:
    NIfTI's own order; for ITK formats (NRRD, MHA/MHD) the transpose of SimpleITK's
    ``GetArrayFromImage`` view (which is ``[k, j, i]``); for DICOM ``i`` = column,
    ``j`` = row, ``k`` = slice in the reader's slice order (sorted by position along the
    slice normal). Integer indices are voxel *centres*.

Affine
    A 4x4 float64 matrix mapping ``(i, j, k, 1)`` to ``(x, y, z, 1)`` in RAS+ mm, exactly
    nibabel's ``img.affine``. Spacing, origin, direction and the orientation code are
    *derived* from it, never stored separately. The 3x3 part may be oblique and, for
    gantry-tilted CT, sheared (the slice step is then not perpendicular to the slice plane).

Orientation code
    Three letters naming the anatomical direction each *increasing* array axis points
    towards, as :func:`nibabel.orientations.aff2axcodes` gives it: ``"RAS"`` means i runs
    towards Right, j towards Anterior, k towards Superior. (ITK/Slicer name the *origin*
    side instead; a DICOM axial scan read here is typically ``"LPS"``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import aff2axcodes

#: Flip between RAS+ and LPS+ world coordinates (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Default tolerance, in mm, when comparing grids (positions of voxel centres).
GRID_ATOL_MM = 1e-3


def as_affine(affine: np.ndarray | list) -> np.ndarray:
    """Validate and return ``affine`` as a 4x4 float64 array with bottom row (0, 0, 0, 1)."""
    a = np.array(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("affine contains NaN or infinite values")
    if not np.allclose(a[3], [0, 0, 0, 1]):
        raise ValueError(f"affine bottom row must be (0, 0, 0, 1), got {a[3].tolist()}")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError("affine is singular (a zero spacing or collinear axes)")
    a[3] = (0.0, 0.0, 0.0, 1.0)
    return a


def affine_from_lps(spacing, origin, direction) -> np.ndarray:
    """Build the RAS+ affine from ITK/DICOM-style LPS geometry.

    Args:
        spacing: (3,) mm per voxel along i, j, k.
        origin: (3,) LPS mm position of the centre of voxel (0, 0, 0).
        direction: (3, 3) LPS direction cosines, **columns** are the unit vectors of i, j, k
            (SimpleITK's ``GetDirection()`` reshaped row-major to 3x3).
    """
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, float).reshape(3, 3) * np.asarray(spacing, float)
    lps[:3, 3] = np.asarray(origin, float)
    return LPS_TO_RAS @ lps


@dataclass(frozen=True, eq=False)
class Geometry:
    """A voxel grid in the world: array shape plus the voxel->RAS+ mm affine.

    Attributes:
        shape: (ni, nj, nk) number of voxels along the array axes i, j, k.
        affine: (4, 4) float64, maps (i, j, k, 1) to RAS+ mm (see module docstring).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"Geometry shape must be 3 positive ints, got {self.shape}")
        object.__setattr__(self, "shape", shape)
        aff = as_affine(self.affine)
        aff.setflags(write=False)
        object.__setattr__(self, "affine", aff)

    # ---- derived quantities (never stored) ------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (lengths of the affine's columns)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS+ mm position of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def direction(self) -> np.ndarray:
        """(3, 3) RAS+ direction cosines; column c is the unit vector of array axis c."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` or ``"LPS"`` (nibabel's aff2axcodes)."""
        return "".join(aff2axcodes(self.affine))

    @property
    def affine_lps(self) -> np.ndarray:
        """The same mapping with LPS+ world coordinates (for ITK and DICOM writers)."""
        return LPS_TO_RAS @ self.affine

    @property
    def is_oblique(self) -> bool:
        """True when an axis is not aligned with a world axis (beyond 1e-4 in cosine)."""
        d = np.abs(self.direction)
        return bool(np.any((d > 1e-4) & (d < 1 - 1e-4)))

    @property
    def is_sheared(self) -> bool:
        """True when the axes are not mutually perpendicular (gantry-tilted CT)."""
        d = self.direction
        off = d.T @ d - np.eye(3)
        return bool(np.max(np.abs(off)) > 1e-4)

    # ---- coordinate mapping ------------------------------------------------------------
    def index_to_world(self, ijk) -> np.ndarray:
        """Map voxel indices ``(..., 3)`` (float allowed) to RAS+ mm ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz) -> np.ndarray:
        """Map RAS+ mm ``(..., 3)`` to continuous voxel indices ``(..., 3)``."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def corners(self) -> np.ndarray:
        """RAS+ mm positions of the 8 corner voxel centres, shape (8, 3)."""
        n = np.asarray(self.shape) - 1
        ijk = np.array([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])])
        return self.index_to_world(ijk)

    def same_grid(self, other: "Geometry", atol_mm: float = GRID_ATOL_MM) -> bool:
        """True when shapes are equal and every voxel centre lies within ``atol_mm``.

        Checking the 8 corners suffices because the mapping is affine.
        """
        if self.shape != other.shape:
            return False
        return bool(np.max(np.abs(self.corners() - other.corners())) <= atol_mm)

    def describe(self) -> str:
        """A one-line human summary, e.g. ``128x128x34 LPS 3.05x3.05x10 mm``."""
        sp = "x".join(f"{s:.4g}" for s in self.spacing)
        dims = "x".join(str(n) for n in self.shape)
        extra = " oblique" if self.is_oblique else ""
        extra += " sheared" if self.is_sheared else ""
        return f"{dims} {self.orientation} {sp} mm{extra}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Geometry):
            return NotImplemented
        return self.shape == other.shape and np.array_equal(self.affine, other.affine)

    def __repr__(self) -> str:
        return f"Geometry({self.describe()}, origin={tuple(round(v, 3) for v in self.origin)})"
