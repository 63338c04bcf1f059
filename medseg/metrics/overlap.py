"""Overlap metrics of two binary masks: Dice, IoU (Jaccard) and volumes in ml.

Inputs are boolean (or 0/non-0) arrays of equal shape indexed ``[i, j, k]``; numpy arrays
or torch tensors (see :func:`medseg.metrics.regions.as_mask`).

Empty-mask convention (the same everywhere in medseg): both masks empty gives Dice = IoU = 1
(a correct "nothing here"); exactly one empty gives 0. MONAI's ``DiceMetric`` returns NaN
for an empty reference instead (``ignore_empty=True``); every other case agrees with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.metrics.regions import as_mask


def overlap_counts(pred, ref) -> tuple[int, int, int]:
    """``(intersection, n_pred, n_ref)``: voxel counts of pred & ref, pred and ref."""
    p, r = as_mask(pred), as_mask(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref shapes differ: {p.shape} vs {r.shape}")
    return int(np.count_nonzero(p & r)), int(np.count_nonzero(p)), int(np.count_nonzero(r))


def dice_from_counts(inter: int, n_pred: int, n_ref: int) -> float:
    """``2 |P & R| / (|P| + |R|)``; 1.0 when both are empty."""
    total = n_pred + n_ref
    return 1.0 if total == 0 else 2.0 * inter / total


def iou_from_counts(inter: int, n_pred: int, n_ref: int) -> float:
    """``|P & R| / |P | R|``; 1.0 when both are empty."""
    union = n_pred + n_ref - inter
    return 1.0 if union == 0 else inter / union


def dice(pred, ref) -> float:
    """Dice similarity coefficient of two masks, in [0, 1] (1 when both are empty)."""
    return dice_from_counts(*overlap_counts(pred, ref))


def iou(pred, ref) -> float:
    """Intersection over union (Jaccard index) of two masks, in [0, 1] (1 when both are empty)."""
    return iou_from_counts(*overlap_counts(pred, ref))


def voxel_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in ml: product of the spacing (mm) / 1000."""
    return float(np.prod(np.asarray(spacing, dtype=np.float64))) / 1000.0


def volume_ml(mask, spacing: Sequence[float]) -> float:
    """Volume of a mask in millilitres: voxel count x product(spacing in mm) / 1000."""
    return int(np.count_nonzero(as_mask(mask))) * voxel_ml(spacing)
