"""World-space shape primitives for the phantoms: smooth warps, (super)ellipsoids, cylinders.

Every shape is an implicit function of RAS+ world coordinates in mm (see
:mod:`medseg.geometry`): ``rho(x, y, z)`` is a normalised radius, below 1 inside the shape and
1 on its surface. Coordinates are float32 arrays of any (equal) shape; results have the same
shape. Shapes also give a world-space bounding box so that callers evaluate them only on the
voxels that can be inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]


def _dot(v, x: np.ndarray, y: np.ndarray, z: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """``v . (x, y, z) + offset`` elementwise, in float32."""
    out = x * np.float32(v[0]) + y * np.float32(v[1]) + z * np.float32(v[2])
    if offset:
        out += np.float32(offset)
    return out


def rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """3x3 rotation of ``angle_rad`` about the unit vector ``axis`` (Rodrigues)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * k @ k


def rot_z(angle_rad: float) -> np.ndarray:
    """3x3 rotation about the world z (superior) axis."""
    return rotation(np.array([0.0, 0.0, 1.0]), angle_rad)


@dataclass(frozen=True)
class Warp:
    """A smooth displacement field ``d(p) = sum_m amp_m * dir_m * sin(k_m . p + phase_m)``.

    Attributes:
        k: (M, 3) wave vectors in rad/mm; dirs: (M, 3) unit displacement directions;
        amp: (M,) amplitudes in mm; phase: (M,) radians.
    """

    k: np.ndarray
    dirs: np.ndarray
    amp: np.ndarray
    phase: np.ndarray

    @staticmethod
    def random(rng: np.random.Generator, wavelength_mm: tuple[float, float], amp_mm: float,
               n: int = 3, z_scale: float = 1.0) -> "Warp":
        """``n`` random sinusoids with wavelengths in ``wavelength_mm`` and total amplitude
        at most ``amp_mm``; ``z_scale`` stretches the wavelengths along z."""
        dirs_k = rng.normal(size=(n, 3))
        dirs_k /= np.linalg.norm(dirs_k, axis=1, keepdims=True)
        lam = rng.uniform(*wavelength_mm, size=n)
        k = dirs_k * (2 * np.pi / lam)[:, None]
        k[:, 2] /= z_scale
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        w = rng.uniform(0.5, 1.0, size=n)
        amp = amp_mm * w / w.sum()
        return Warp(k, dirs, amp, rng.uniform(0, 2 * np.pi, size=n))

    @property
    def max_disp(self) -> float:
        """Upper bound of the displacement length (mm)."""
        return float(np.sum(np.abs(self.amp)))

    def apply(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Coords:
        """Displaced coordinates ``p + d(p)`` (float32)."""
        xo, yo, zo = x.copy(), y.copy(), z.copy()
        for k, d, a, ph in zip(self.k, self.dirs, self.amp, self.phase):
            s = np.sin(_dot(k, x, y, z, ph))
            s *= np.float32(a)
            xo += s * np.float32(d[0])
            yo += s * np.float32(d[1])
            zo += s * np.float32(d[2])
        return xo, yo, zo


def smooth_field(rng: np.random.Generator, wavelength_mm: tuple[float, float], n: int = 4) -> Warp:
    """A random smooth scalar field in [-1, 1] (a Warp whose first component is used)."""
    w = Warp.random(rng, wavelength_mm, 1.0, n)
    return Warp(w.k, np.tile([1.0, 0.0, 0.0], (n, 1)), w.amp, w.phase)


def field_value(f: Warp, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Evaluate a scalar :func:`smooth_field` (float32, in [-1, 1])."""
    out = np.zeros_like(x)
    for k, a, ph in zip(f.k, f.amp, f.phase):
        out += np.float32(a) * np.sin(_dot(k, x, y, z, ph))
    return out


@dataclass(frozen=True)
class Ellipsoid:
    """A (super)ellipsoid: ``rho = (sum_i |l_i / semi_i| ** p) ** (1/p)`` with ``l = R^T (p' - c)``.

    Attributes:
        centre: (3,) RAS+ mm; semi: (3,) semi-axes in mm along the local axes;
        rot: (3, 3) columns are the local axes in world (RAS+) coordinates;
        power: 2 for an ellipsoid, larger for boxier shapes;
        warp: optional smooth deformation applied to the world point first.
    """

    centre: np.ndarray
    semi: np.ndarray
    rot: np.ndarray
    power: float = 2.0
    warp: Warp | None = None

    def rho(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        if self.warp is not None:
            x, y, z = self.warp.apply(x, y, z)
        c, r, s = self.centre, self.rot, self.semi
        dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
        acc = None
        for i in range(3):
            li = _dot(r[:, i], dx, dy, dz) * np.float32(1 / s[i])
            li = li * li if self.power == 2 else np.abs(li) ** np.float32(self.power)
            acc = li if acc is None else acc + li
        return np.sqrt(acc) if self.power == 2 else acc ** np.float32(1 / self.power)

    def bbox(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """World AABB (lo, hi) of the shape grown by ``scale`` (rho < scale), warp included."""
        if self.power == 2:  # exact half-extents of a rotated ellipsoid
            half = np.sqrt(((self.rot * (self.semi * scale)) ** 2).sum(axis=1))
        else:  # safe for any power >= 1
            half = np.abs(self.rot) @ (self.semi * scale)
        half = half + (self.warp.max_disp if self.warp is not None else 0.0) + 0.5
        return self.centre - half, self.centre + half


@dataclass(frozen=True)
class Cylinder:
    """An elliptic cylinder along world z: ``rho = |(x, y) - c| / semi`` (infinite in z),
    optionally limited to ``z_lo <= z <= z_hi``.

    Attributes:
        centre: (2,) RAS+ x, y in mm; semi: (2,) mm; angle: in-plane rotation (rad).
    """

    centre: np.ndarray
    semi: np.ndarray
    angle: float = 0.0
    z_lo: float = -np.inf
    z_hi: float = np.inf

    def rho(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        ca, sa = np.float32(np.cos(self.angle)), np.float32(np.sin(self.angle))
        dx, dy = x - np.float32(self.centre[0]), y - np.float32(self.centre[1])
        u = (dx * ca + dy * sa) * np.float32(1 / self.semi[0])
        v = (-dx * sa + dy * ca) * np.float32(1 / self.semi[1])
        r = np.sqrt(u * u + v * v)
        if np.isfinite(self.z_lo) or np.isfinite(self.z_hi):
            r[(z < self.z_lo) | (z > self.z_hi)] = np.inf
        return r

    def bbox(self, scale: float = 1.0, z_span: tuple[float, float] = (-1e4, 1e4)) -> tuple[np.ndarray, np.ndarray]:
        m = float(np.max(self.semi)) * scale + 0.5
        lo = np.array([self.centre[0] - m, self.centre[1] - m, max(z_span[0], self.z_lo)])
        hi = np.array([self.centre[0] + m, self.centre[1] + m, min(z_span[1], self.z_hi)])
        return lo, hi
