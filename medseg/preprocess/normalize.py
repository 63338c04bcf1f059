"""Intensity normalisation per channel, as the plan says (see medseg.plans.Normalization)."""

from __future__ import annotations

import numpy as np


def normalize(array: np.ndarray, scheme: str, clip=None, mean=None, std=None) -> np.ndarray:
    """Return float32: ``ct`` = clip then (x - mean) / std; ``zscore`` = per-image z-score."""
    x = np.asarray(array, np.float32)
    if scheme == "ct":
        x = np.clip(x, clip[0], clip[1])
        return (x - np.float32(mean)) / np.float32(std)
    if scheme == "zscore":
        m, s = float(x.mean()), float(x.std())
        return (x - np.float32(m)) / np.float32(max(s, 1e-8))
    if scheme == "none":
        return x
    raise ValueError(f"unknown normalisation scheme {scheme!r}")
