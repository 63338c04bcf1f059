"""On-the-fly augmentation, deterministic for a seed (TorchIO's idea: random draws only pick
parameters, then a deterministic transform applies them).

Defaults follow nnU-Net: rotation (p 0.2, +-15 deg per axis; in-plane only when the patch is
anisotropic), scaling (p 0.2, 0.85-1.25), mirroring (p 0.5 per axis), brightness (p 0.15,
x0.75-1.25), contrast (p 0.15, 0.75-1.25), gamma (p 0.3, 0.7-1.5), Gaussian noise (p 0.1,
sigma 0-0.1 of a normalised image). Spatial transforms resample a larger source box taken
from the (memory-mapped) volume, so rotated patches have real content at their corners.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    p_rotate: float = 0.2
    max_rotation_deg: float = 15.0
    in_plane_only: bool = False
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.85, 1.25)
    p_flip: float = 0.5
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.1
    max_noise_sigma: float = 0.1


#: The probabilities each switchable group of transforms uses (the training config's
#: ``augmentation: {mirror, spatial, intensity}`` sets a group's to 0).
GROUPS = {
    "mirror": ("p_flip",),
    "spatial": ("p_rotate", "p_scale"),
    "intensity": ("p_brightness", "p_contrast", "p_gamma", "p_noise"),
}


@dataclass
class AugmentParams:
    """Drawn parameters. ``matrix`` maps output patch offsets (voxels, from the centre) to
    source offsets; identity when no rotation/scale was drawn."""

    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))
    flips: tuple[bool, bool, bool] = (False, False, False)
    brightness: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0
    noise_sigma: float = 0.0
    noise_seed: int = 0

    @property
    def spatial(self) -> bool:
        return not np.allclose(self.matrix, np.eye(3))


def _rotation(angles) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def draw_params(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentParams:
    """Draw one set of parameters (the only random step)."""
    m = np.eye(3)
    if rng.random() < cfg.p_rotate:
        lim = np.radians(cfg.max_rotation_deg)
        ang = rng.uniform(-lim, lim, size=3)
        if cfg.in_plane_only:
            ang[:2] = 0.0  # rotate about the k axis only
        m = _rotation(ang) @ m
    if rng.random() < cfg.p_scale:
        m = m / rng.uniform(*cfg.scale_range)  # zoom in by s = sample a smaller source region
    flips = tuple(bool(rng.random() < cfg.p_flip) for _ in range(3))
    b = rng.uniform(*cfg.brightness_range) if rng.random() < cfg.p_brightness else 1.0
    c = rng.uniform(*cfg.contrast_range) if rng.random() < cfg.p_contrast else 1.0
    g = rng.uniform(*cfg.gamma_range) if rng.random() < cfg.p_gamma else 1.0
    n = rng.uniform(0, cfg.max_noise_sigma) if rng.random() < cfg.p_noise else 0.0
    return AugmentParams(m, flips, float(b), float(c), float(g), float(n), int(rng.integers(2**31)))


def source_extent(params: AugmentParams, patch_size) -> np.ndarray:
    """Size (voxels) of the source box needed to fill a patch under ``params.matrix``."""
    half = (np.asarray(patch_size) - 1) / 2
    need = np.abs(params.matrix) @ half
    return (2 * np.ceil(need) + 3).astype(int)


def warp(image: np.ndarray, label: np.ndarray, params: AugmentParams, patch_size) -> tuple[np.ndarray, np.ndarray]:
    """Resample a source box (image (C, A, B, D) float32, label (A, B, D)) centred on the
    patch centre into the patch grid: trilinear for the image, nearest for the label."""
    src = np.asarray(image.shape[-3:], float)
    out = np.asarray(patch_size)
    # output voxel offsets from the centre -> source voxel coords -> normalised [-1, 1]
    grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in out], indexing="ij")
    offs = np.stack(grids, -1) @ params.matrix.T
    coords = offs + (src - 1) / 2
    norm = 2 * coords / (src - 1).clip(min=1) - 1
    grid = torch.as_tensor(norm[..., ::-1].copy(), dtype=torch.float32)[None]  # grid_sample wants (x=D, y=B, z=A)
    img = F.grid_sample(torch.as_tensor(image)[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    lab = F.grid_sample(torch.as_tensor(label, dtype=torch.float32)[None, None], grid, mode="nearest",
                        padding_mode="zeros", align_corners=True)[0, 0]
    return img.numpy(), lab.numpy().astype(label.dtype)


def intensity(image: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Brightness, contrast, gamma and noise on a normalised float32 image (C, ...)."""
    x = image
    if params.brightness != 1.0:
        x = x * np.float32(params.brightness)
    if params.contrast != 1.0:
        mean = x.mean(axis=tuple(range(1, x.ndim)), keepdims=True)
        x = (x - mean) * np.float32(params.contrast) + mean
    if params.gamma != 1.0:
        lo = x.min(axis=tuple(range(1, x.ndim)), keepdims=True)
        rng_ = x.max(axis=tuple(range(1, x.ndim)), keepdims=True) - lo + 1e-7
        x = np.power((x - lo) / rng_, np.float32(params.gamma)) * rng_ + lo
    if params.noise_sigma > 0:
        noise = np.random.default_rng(params.noise_seed).normal(0, params.noise_sigma, size=x.shape)
        x = x + noise.astype(np.float32)
    return x.astype(np.float32, copy=False)


def flip(image: np.ndarray, label: np.ndarray, flips) -> tuple[np.ndarray, np.ndarray]:
    axes = [a for a, f in enumerate(flips) if f]
    if not axes:
        return image, label
    return (np.flip(image, axis=[a + 1 for a in axes]).copy(), np.flip(label, axis=axes).copy())
