"""Instance matching and panoptic quality for instance label maps.

An instance label map holds 0 for background and a distinct positive id per object (as the
Mask R-CNN predictor writes them); ids need not be consecutive and carry no class.

Definitions (Kirillov et al., "Panoptic Segmentation", CVPR 2019):

* A reference object r and a predicted object p **match** when IoU(r, p) > ``iou_threshold``
  (default 0.5). Above 0.5 a match is necessarily unique; for lower thresholds the pairs are
  chosen one-to-one to maximise the total IoU (Hungarian assignment).
* TP = matched pairs, FP = unmatched predictions, FN = unmatched reference objects;
  precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN).
* **SQ** (segmentation quality) = mean IoU of the matched pairs; **RQ** (recognition quality)
  = F1; **PQ** = SQ x RQ = sum of matched IoU / (TP + FP/2 + FN/2).

Empty conventions: no objects on either side gives every score 1; objects on one side only
give 0 (SQ is 0 when nothing matches).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class InstanceResult:
    """Result of :func:`instance_matching`.

    Attributes:
        n_ref, n_pred, tp, fp, fn: object counts.
        precision, recall, f1, sq, rq, pq: scores in [0, 1].
        matches: ``(ref_id, pred_id, iou)`` for every matched pair, ids as in the label maps.
    """

    n_ref: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    sq: float
    rq: float
    pq: float
    matches: list[tuple[int, int, float]] = field(default_factory=list)

    def row(self) -> dict:
        """The scalar fields as a flat dict (one ``instances.csv`` row without the case)."""
        return {k: getattr(self, k) for k in
                ("n_ref", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "sq", "rq", "pq")}


def _as_ids(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind == "f":
        if not np.all(a == np.round(a)):
            raise ValueError("an instance label map must hold integer ids")
        a = a.astype(np.int64)
    if a.dtype.kind not in "iub" or (a.size and a.min() < 0):
        raise ValueError("an instance label map must hold non-negative integer ids (0 = background)")
    return a.astype(np.int64) if a.dtype == bool or a.dtype.itemsize == 8 else a


def _compact(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, dense)``: ids renumbered 0..n-1 (0 stays 0) when they are too large to count."""
    if ids.size == 0 or int(ids.max()) < 2**24:
        return np.arange(int(ids.max()) + 1 if ids.size else 1), ids
    values, dense = np.unique(ids, return_inverse=True)
    if values[0] != 0:  # keep 0 as background
        values, dense = np.concatenate([[0], values]), dense + 1
    return values, dense.reshape(ids.shape)


def _iou_pairs(pred: np.ndarray, ref: np.ndarray):
    """Object sizes (indexed by dense id) and the IoU of every overlapping (ref, pred) pair."""
    ref_values, r = _compact(ref)
    pred_values, p = _compact(pred)
    ref_size = np.bincount(r.ravel(), minlength=ref_values.size)
    pred_size = np.bincount(p.ravel(), minlength=pred_values.size)
    both = (r > 0) & (p > 0)
    key = r[both].astype(np.int64) * pred_values.size + p[both]
    keys, inter = np.unique(key, return_counts=True)
    ri, pi = keys // pred_values.size, keys % pred_values.size
    iou = inter / (ref_size[ri] + pred_size[pi] - inter)
    return (ref_values, ref_size), (pred_values, pred_size), ri, pi, iou


def _select(ri: np.ndarray, pi: np.ndarray, iou: np.ndarray, threshold: float):
    keep = iou > threshold
    ri, pi, iou = ri[keep], pi[keep], iou[keep]
    if threshold >= 0.5 or iou.size == 0:
        return ri, pi, iou  # IoU > 0.5 pairs are unique by construction
    from scipy.optimize import linear_sum_assignment  # only needed below 0.5; slow to import

    rows, r_idx = np.unique(ri, return_inverse=True)
    cols, c_idx = np.unique(pi, return_inverse=True)
    m = np.zeros((rows.size, cols.size))
    m[r_idx, c_idx] = iou
    a, b = linear_sum_assignment(m, maximize=True)
    ok = m[a, b] > threshold
    return rows[a[ok]], cols[b[ok]], m[a[ok], b[ok]]


def instance_matching(pred, ref, iou_threshold: float = 0.5) -> InstanceResult:
    """Match objects of two instance label maps and compute panoptic quality.

    Args:
        pred, ref: integer arrays of equal shape, 0 background, one id per object
            (numpy or torch; any number of dimensions).
        iou_threshold: pairs match when their IoU is strictly above this (default 0.5).

    Returns:
        :class:`InstanceResult` (definitions in the module docstring).
    """
    if not 0 <= iou_threshold < 1:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    p, r = _as_ids(pred), _as_ids(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref shapes differ: {p.shape} vs {r.shape}")
    (ref_ids, ref_size), (pred_ids, pred_size), ri, pi, iou = _iou_pairs(p, r)
    ri, pi, iou = _select(ri, pi, iou, iou_threshold)
    n_ref, n_pred = int(np.count_nonzero(ref_size[1:])), int(np.count_nonzero(pred_size[1:]))
    tp = int(iou.size)
    fp, fn = n_pred - tp, n_ref - tp
    if n_ref == 0 and n_pred == 0:
        scores = (1.0,) * 5
    else:
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_ref if n_ref else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn)
        sq = float(iou.mean()) if tp else 0.0
        scores = (precision, recall, f1, sq, f1)
    pq = scores[3] * scores[4]
    matches = [(int(ref_ids[a]), int(pred_ids[b]), float(v)) for a, b, v in zip(ri, pi, iou)]
    return InstanceResult(n_ref, n_pred, tp, fp, fn, *scores, pq, matches)
