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

**Detection AP** (:func:`average_precision`, :class:`MaskAP`; the instance model's AP50):
detections (masks with a score) of one image are sorted by score and each is greedily matched
to the unmatched reference mask of the same class with the largest IoU, a true positive when
that IoU is >= ``iou`` (0.5 for AP50). Over all images pooled, AP is COCO's: the precision
envelope (max precision at any higher recall) sampled at the 101 recall points 0, 0.01, ..., 1
(0 beyond the largest recall reached) and averaged. AP of a class without reference objects is
NaN; the mean is over classes that have some.
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


def average_precision(scores, is_tp, n_ref: int) -> float:
    """COCO 101-point average precision.

    Args:
        scores: ``(N,)`` detection scores (any order; sorted here, ties keep their order).
        is_tp: ``(N,)`` bool, True where the detection matched a reference object.
        n_ref: number of reference objects.

    Returns:
        AP in [0, 1]; NaN when ``n_ref`` is 0.
    """
    if n_ref == 0:
        return float("nan")
    scores = np.asarray(scores, float).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    tp = np.asarray(is_tp, bool).reshape(-1)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / n_ref
    precision = ctp / np.maximum(ctp + cfp, 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in idx]))


def match_masks(masks, scores, refs, iou: float = 0.5) -> np.ndarray:
    """Greedy score-ordered matching of predicted masks to reference masks of one image and class.

    Args:
        masks: ``(N, ...)`` bool predicted masks; scores: ``(N,)``.
        refs: ``(M, ...)`` bool reference masks (same spatial shape).
        iou: a pair matches when its IoU is >= this.

    Returns:
        ``(N,)`` bool: True for detections matched to a reference (each reference used once,
        by the highest-scoring detection that reaches ``iou`` with it among those left).
    """
    masks = np.asarray(masks, bool)
    refs = np.asarray(refs, bool)
    hit = np.zeros(len(masks), bool)
    if not len(masks) or not len(refs):
        return hit
    flat_p = masks.reshape(len(masks), -1)
    flat_r = refs.reshape(len(refs), -1)
    used = np.zeros(len(refs), bool)
    r_size = flat_r.sum(1)
    for i in np.argsort(-np.asarray(scores, float), kind="stable"):
        inter = (flat_r & flat_p[i]).sum(1)
        union = r_size + flat_p[i].sum() - inter
        ious = np.where(used, -1.0, inter / np.maximum(union, 1))
        j = int(np.argmax(ious))
        if ious[j] >= iou:
            used[j], hit[i] = True, True
    return hit


class MaskAP:
    """Mask AP over many images, per class: :meth:`add` each image, then :meth:`result`.

    Args:
        classes: class ids to score (e.g. model classes 1..K).
        iou: IoU for a true positive (0.5: AP50).
    """

    def __init__(self, classes, iou: float = 0.5):
        self.iou = iou
        self.classes = list(classes)
        self.scores = {c: [] for c in self.classes}
        self.tp = {c: [] for c in self.classes}
        self.n_ref = {c: 0 for c in self.classes}

    def add(self, masks, labels, scores, ref_masks, ref_labels) -> None:
        """One image: predicted ``masks (N, H, W)`` bool with ``labels (N,)`` and ``scores (N,)``;
        reference ``ref_masks (M, H, W)`` with ``ref_labels (M,)``."""
        labels, scores, ref_labels = np.asarray(labels), np.asarray(scores, float), np.asarray(ref_labels)
        for c in self.classes:
            sel = labels == c
            refs = np.asarray(ref_masks)[ref_labels == c]
            self.n_ref[c] += len(refs)
            self.scores[c] += scores[sel].tolist()
            self.tp[c] += match_masks(np.asarray(masks)[sel], scores[sel], refs, self.iou).tolist()

    def result(self) -> tuple[float, dict]:
        """``(mean AP over classes with reference objects (NaN if none), {class: AP})``."""
        per = {c: average_precision(self.scores[c], self.tp[c], self.n_ref[c]) for c in self.classes}
        valid = [v for v in per.values() if not np.isnan(v)]
        return (float(np.mean(valid)) if valid else float("nan")), per
