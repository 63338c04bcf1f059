"""Shared test inputs and the independent reference: MONAI 1.6's metric classes."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage


def blob(shape, seed: int, threshold: float = 0.03, sigma: float = 2.5) -> np.ndarray:
    """A random smooth bool mask (several irregular blobs) of ``shape``."""
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma) > threshold


def box(shape, lo, hi) -> np.ndarray:
    """A bool mask with True in the box ``[lo, hi)`` (per-axis index bounds)."""
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def monai_scores(pred: np.ndarray, ref: np.ndarray, spacing, tolerance_mm: float = 1.0) -> dict[str, np.ndarray]:
    """MONAI's Dice, HD95, symmetric ASSD and NSD per channel.

    Args:
        pred, ref: ``(C, i, j, k)`` bool one-hot masks (every channel is scored).
    Returns:
        ``{"dice", "hd95_mm", "assd_mm", "nsd"}`` -> float64 ``(C,)``.
    """
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric, SurfaceDistanceMetric

    p = torch.from_numpy(np.ascontiguousarray(pred))[None].float()
    r = torch.from_numpy(np.ascontiguousarray(ref))[None].float()
    sp = [float(s) for s in spacing]
    n = pred.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "dice": DiceMetric(include_background=True, reduction="none")(p, r),
            "hd95_mm": HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
                p, r, spacing=sp),
            "assd_mm": SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none")(
                p, r, spacing=sp),
            "nsd": SurfaceDiceMetric([tolerance_mm] * n, include_background=True, reduction="none")(p, r, spacing=sp),
        }
    return {k: v[0].double().numpy() for k, v in out.items()}


def onehot(label_map: np.ndarray, labels) -> np.ndarray:
    """``(len(labels), i, j, k)`` bool one-hot of the given label values."""
    return np.stack([label_map == v for v in labels])
