"""Three input channels per axial slice, as torchvision's ResNet expects.

``windows``: the slice through three CT windows. ``neighbours`` (2.5D): slices k - d, k, k + d
(clamped at the ends) through one window, or through the volume's 0.5-99.5 percentiles for MR.
Every channel is float32 in [0, 1]; the model then applies its ImageNet mean/std.
"""

from __future__ import annotations

import numpy as np

from medseg.instance.config import InstanceDataConfig


def window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU -> [0, 1]: ``clip((v - (level - width / 2)) / width, 0, 1)``, float32."""
    lo = level - width / 2.0
    return np.clip((np.asarray(values, np.float32) - np.float32(lo)) / np.float32(width), 0, 1)


def intensity_range(volume: np.ndarray, cfg: InstanceDataConfig) -> tuple[float, float] | None:
    """Per-volume scaling for ``intensity: percentile`` (0.5 and 99.5 percentiles), else None."""
    if cfg.intensity != "percentile":
        return None
    lo, hi = np.percentile(volume[:: max(1, volume.shape[0] // 128), :: max(1, volume.shape[1] // 128)], [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def slice_channels(volume: np.ndarray, k: int, cfg: InstanceDataConfig, scale: tuple[float, float] | None) -> np.ndarray:
    """Channels of slice ``k`` of a model-space volume ``(X, Y, K)``: float32 ``(3, X, Y)``."""
    n = volume.shape[2]
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
