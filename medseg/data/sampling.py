"""Patch sampling with foreground oversampling (so rare classes such as tumours are seen).

With probability ``foreground_fraction`` a patch is *forced*: a foreground class present in
the case is drawn (uniformly, or by ``class_weights``), then one of its stored voxel
locations, and the patch is centred there (plus a small random offset that keeps the voxel
inside the patch). Otherwise the centre is uniform over the volume. Patches that reach
outside the volume are padded (image with its minimum, label with 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SamplingConfig:
    """patch_size in voxels (model space); class_weights: class value -> relative weight
    when choosing which foreground class to force (missing classes weigh 1)."""

    patch_size: tuple[int, int, int]
    foreground_fraction: float = 0.33
    class_weights: dict[int, float] = field(default_factory=dict)


@dataclass
class PatchChoice:
    centre: np.ndarray  # (3,) voxel index in model space
    forced_class: int | None


def choose_patch(shape, locations: dict[int, np.ndarray], cfg: SamplingConfig, rng: np.random.Generator) -> PatchChoice:
    """Pick a patch centre for a volume of ``shape`` with foreground ``locations``."""
    shape = np.asarray(shape)
    half = np.asarray(cfg.patch_size) // 2
    present = [c for c, loc in sorted(locations.items()) if len(loc)]
    if present and rng.random() < cfg.foreground_fraction:
        w = np.array([cfg.class_weights.get(c, 1.0) for c in present], float)
        cls = int(rng.choice(present, p=w / w.sum()))
        loc = locations[cls][rng.integers(len(locations[cls]))]
        jitter = rng.integers(-(half // 2), half // 2 + 1)  # the voxel stays well inside the patch
        return PatchChoice(np.asarray(loc) + jitter, cls)
    return PatchChoice(np.array([rng.integers(0, s) for s in shape]), None)


def box(centre, size) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and stop (exclusive) voxel indices of a box of ``size`` at ``centre``."""
    size = np.asarray(size)
    start = np.asarray(centre) - size // 2
    return start, start + size


def crop(array: np.ndarray, start, stop, pad_value) -> np.ndarray:
    """``array[..., start:stop]`` over the last three axes, padded where the box leaves it."""
    shape = np.asarray(array.shape[-3:])
    lo = np.maximum(start, 0)
    hi = np.minimum(stop, shape)
    out = np.full((*array.shape[:-3], *(np.asarray(stop) - np.asarray(start))), pad_value, dtype=array.dtype)
    if np.all(hi > lo):
        src = tuple(slice(a, b) for a, b in zip(lo, hi))
        dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
        out[(..., *dst)] = array[(..., *src)]
    return out
