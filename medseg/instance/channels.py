"""Three input channels per axial slice, as torchvision's ResNet expects.

``windows``: the slice through three CT windows. ``neighbours`` (2.5D): slices k - d, k, k + d
(clamped at the ends) through one window, or through the volume's 0.5-99.5 percentiles for MR.
Every channel is float32 in [0, 1]; the model then applies its ImageNet mean/std.

``windows: auto`` derives the windows from the training data (:func:`lesion_windows`), so that
nothing about the anatomy (abdominal soft tissue, lung, bone) is built into a preset.
"""

from __future__ import annotations

import numpy as np

from medseg.errors import InputError
from medseg.instance.config import InstanceDataConfig


def window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU -> [0, 1]: ``clip((v - (level - width / 2)) / width, 0, 1)``, float32."""
    lo = level - width / 2.0
    return np.clip((np.asarray(values, np.float32) - np.float32(lo)) / np.float32(width), 0, 1)


#: Percentiles of the lesion voxels, and of their surroundings (the host tissue is the bulk of
#: the ring; its tails are fat, air or bone at the host's border), that bound the auto window.
AUTO_LESION_PERCENTILES = (2.0, 98.0)
AUTO_RING_PERCENTILES = (10.0, 90.0)
#: Width multiples of the three auto windows (tight: lesion vs host; then wider context).
AUTO_WIDTHS = (1.0, 2.0, 4.0)
#: The surroundings of a lesion: pixels within this distance (mm, in-plane) outside it.
AUTO_RING_MM = 4.0


def lesion_windows(images: list[np.ndarray], labels: list[np.ndarray], class_values: list[int],
                   spacing_mm: tuple[float, float], min_width: float = 50.0) -> list[tuple[float, float]]:
    """Three CT windows ``(level, width)`` in HU for the lesion classes of a dataset.

    The range ``[lo, hi]`` spans the 2nd-98th percentiles of the lesion voxels and the
    10th-90th of the tissue within ``AUTO_RING_MM`` around them (the host organ, lung, bone...),
    so lesion and host both sit inside the first window whatever the anatomy; the second and
    third windows have the same level and 2x / 4x the width (context: organ borders, fat, air).

    Args:
        images: float HU volumes ``(X, Y, K)`` in model space (canonical, in-plane resampled).
        labels: the matching uint8 label volumes ``(X, Y, K)`` (dataset values).
        class_values: the lesion classes' label values.
        spacing_mm: in-plane mm per pixel (for the ring).
        min_width: the narrowest first window (HU), for lesions of nearly uniform intensity.

    Returns:
        ``[(level, width)] * 3`` floats, rounded to 1 HU; a soft-tissue default
        ``(40, 400)``-based set when no lesion voxel exists.
    """
    from scipy import ndimage

    lesion, ring = [], []
    r = max(1, int(round(AUTO_RING_MM / float(min(spacing_mm)))))
    disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
    for img, lab in zip(images, labels):
        fg = np.isin(lab, class_values)
        ks = np.flatnonzero(fg.any(axis=(0, 1)))
        for k in ks:
            m = fg[:, :, k]
            around = ndimage.binary_dilation(m, disk) & ~m
            lesion.append(img[:, :, k][m])
            ring.append(img[:, :, k][around])
    if not lesion:
        return [(40.0, 400.0), (40.0, 800.0), (40.0, 1600.0)]
    lv, rv = np.concatenate(lesion).astype(np.float64), np.concatenate(ring).astype(np.float64)
    pl = np.percentile(lv, AUTO_LESION_PERCENTILES)
    pr = np.percentile(rv, AUTO_RING_PERCENTILES) if rv.size else pl
    lo, hi = float(min(pl[0], pr[0])), float(max(pl[1], pr[1]))
    width = max(hi - lo, min_width)
    level = round((lo + hi) / 2.0)
    return [(float(level), float(round(width * f))) for f in AUTO_WIDTHS]


def intensity_range(volume: np.ndarray, cfg: InstanceDataConfig) -> tuple[float, float] | None:
    """Per-volume scaling for ``intensity: percentile`` (0.5 and 99.5 percentiles), else None."""
    if cfg.intensity != "percentile":
        return None
    lo, hi = np.percentile(volume[:: max(1, volume.shape[0] // 128), :: max(1, volume.shape[1] // 128)], [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def slice_channels(volume: np.ndarray, k: int, cfg: InstanceDataConfig, scale: tuple[float, float] | None) -> np.ndarray:
    """Channels of slice ``k`` of a model-space volume ``(X, Y, K)``: float32 ``(3, X, Y)``."""
    n = volume.shape[2]
    if cfg.windows == "auto" and cfg.intensity == "ct":
        raise InputError("data.windows: auto is resolved from the training data when a run starts; this "
                         "config has no windows -- use the run's config.yaml, or give the windows in HU")
    if cfg.channels == "windows":
        s = volume[:, :, k]
        return np.stack([window(s, lv, w) for lv, w in cfg.windows])
    d = cfg.neighbour_offset
    planes = [volume[:, :, min(max(k + o, 0), n - 1)] for o in (-d, 0, d)]
    if scale is not None:
        lo, hi = scale
        return np.stack([np.clip((np.asarray(p, np.float32) - lo) / (hi - lo), 0, 1) for p in planes]).astype(np.float32)
    lv, w = cfg.windows[0]
    return np.stack([window(p, lv, w) for p in planes])
