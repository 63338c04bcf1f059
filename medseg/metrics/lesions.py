"""Lesion-wise detection metrics of one class: connected components, TP / FP / FN.

Definitions (what :func:`lesion_matching` computes):

* **Lesions** are the connected components of each mask, with ``connectivity`` 6 (faces),
  18 (faces + edges) or 26 (faces + edges + corners, the default) in 3D.
* A **reference lesion is detected** (a true positive, TP) when at least ``threshold`` of its
  voxels (default 0.5, i.e. half) are covered by the predicted mask, and at least one is.
  Otherwise it is a false negative (FN).
* A **predicted lesion is true** when at least ``threshold`` of its voxels lie inside the
  reference mask (and at least one does); otherwise it is a false positive (FP).
* **Precision** = true predicted lesions / predicted lesions; **recall** = TP / reference
  lesions; **F1** = 2 P R / (P + R). So a lesion split into two predicted pieces that each
  lie inside it is one TP and no FP, and two lesions merged into one prediction are two TPs;
  the per-lesion Dice (below) shows the damage. One-to-one matching, which counts splits and
  merges as errors, is :func:`medseg.metrics.instances.instance_matching`.
* **Per-lesion Dice** of a lesion L: Dice between L and the union of the components on the
  other side that overlap it (0 when none does).

Empty conventions: no lesions on either side gives precision = recall = F1 = 1; lesions on
only one side give 0 for all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medseg.metrics.regions import as_mask

_RANK = {6: 1, 18: 2, 26: 3}


@dataclass
class LesionResult:
    """Lesion-wise result of one class.

    Attributes:
        n_ref, n_pred: number of reference / predicted lesions.
        tp: detected reference lesions; fn = n_ref - tp; fp: predicted lesions that are not true.
        precision, recall, f1: in [0, 1] (conventions in the module docstring).
        ref, pred: per-lesion records (dicts with ``lesion`` (component id, 1-based),
            ``voxels``, ``overlap`` (fraction covered by the other side), ``detected`` (bool:
            TP for reference lesions, true for predicted ones), ``dice``,
            ``centroid_ijk`` (voxel indices, float)).
    """

    n_ref: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ref: list[dict] = field(default_factory=list)
    pred: list[dict] = field(default_factory=list)

    @property
    def mean_dice(self) -> float:
        """Mean per-lesion Dice over the detected reference lesions (NaN when none)."""
        d = [r["dice"] for r in self.ref if r["detected"]]
        return float(np.mean(d)) if d else float("nan")


def label_components(mask: np.ndarray, connectivity: int = 26) -> tuple[np.ndarray, int]:
    """Connected components: ``(labels int32 array, count)``; 0 is background.

    ``connectivity`` is 6, 18 or 26 for 3D (4 or 8 also accepted for 2D).
    """
    if mask.ndim == 2 and connectivity in (4, 8):
        rank = 1 if connectivity == 4 else 2
    elif mask.ndim == 3 and connectivity in _RANK:
        rank = _RANK[connectivity]
    else:
        raise ValueError(f"connectivity must be 6, 18 or 26 (3D) or 4, 8 (2D), got {connectivity}")
    structure = ndimage.generate_binary_structure(mask.ndim, rank)
    labels, n = ndimage.label(mask, structure=structure)
    return labels.astype(np.int32, copy=False), int(n)


def _pair_counts(a: np.ndarray, b: np.ndarray, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping component pairs: ``(ids_a, ids_b, voxels in common)``, each ``(n_pairs,)``."""
    both = (a > 0) & (b > 0)
    key = a[both].astype(np.int64) * (nb + 1) + b[both]
    if int(a.max(initial=0) + 1) * (nb + 1) <= max(4 * key.size, 1 << 16):
        counts = np.bincount(key)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(key, return_counts=True)
    return keys // (nb + 1), keys % (nb + 1), counts


def _centroids(cc: np.ndarray, n: int, size: np.ndarray) -> np.ndarray:
    """``(n + 1, ndim)`` mean voxel index of each component (row 0 unused)."""
    idx = np.nonzero(cc)
    ids = cc[idx]
    out = np.zeros((n + 1, cc.ndim))
    for axis, coords in enumerate(idx):
        out[:, axis] = np.bincount(ids, weights=coords, minlength=n + 1) / np.maximum(size, 1)
    return out


def _side(cc: np.ndarray, n: int, size, ids_self, ids_other, common, other_size, threshold: float) -> list[dict]:
    """Per-lesion records of one side; ``size`` indexed by component id, ``ids_*``/``common``
    the overlapping pairs."""
    inter = np.bincount(ids_self, weights=common, minlength=n + 1)
    # For the per-lesion Dice: total size of the other side's components touching each lesion.
    other_union = np.bincount(ids_self, weights=other_size[ids_other], minlength=n + 1)
    centroids = _centroids(cc, n, size)
    out = []
    for i in range(1, n + 1):
        overlap = inter[i] / size[i]
        out.append({
            "lesion": i,
            "voxels": int(size[i]),
            "overlap": float(overlap),
            "detected": bool(inter[i] > 0 and overlap >= threshold),
            "dice": float(2 * inter[i] / (size[i] + other_union[i])),
            "centroid_ijk": tuple(float(c) for c in centroids[i]),
        })
    return out


def detection_rates(n_ref: int, n_pred: int, tp: int, true_pred: int) -> tuple[float, float, float]:
    """``(precision, recall, F1)`` from lesion counts (the one implementation medseg uses).

    Args:
        n_ref: reference lesions; n_pred: predicted lesions; tp: detected reference lesions;
        true_pred: predicted lesions that are true (``n_pred - fp``). Counts may be pooled
        over cases (sum them first) or over classes.

    precision = true_pred / n_pred, recall = tp / n_ref, F1 = 2 P R / (P + R); no lesions on
    either side gives (1, 1, 1), lesions on one side only give 0 for the empty side's rate.
    """
    if n_ref == 0 and n_pred == 0:
        return 1.0, 1.0, 1.0
    precision = true_pred / n_pred if n_pred else 0.0
    recall = tp / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


_rates = detection_rates


def pooled_rates(results) -> tuple[float, float, float]:
    """``(precision, recall, F1)`` of several :class:`LesionResult` s pooled: their TP, FP and
    lesion counts are summed first (so every lesion weighs the same, whatever its case)."""
    n_ref = sum(r.n_ref for r in results)
    n_pred = sum(r.n_pred for r in results)
    tp = sum(r.tp for r in results)
    true_pred = sum(r.n_pred - r.fp for r in results)
    return detection_rates(n_ref, n_pred, tp, true_pred)


def lesion_matching(pred, ref, threshold: float = 0.5, connectivity: int = 26) -> LesionResult:
    """Lesion-wise detection of one class (definitions in the module docstring).

    Args:
        pred, ref: binary masks of one class, equal shape, indexed ``[i, j, k]`` (numpy or torch).
        threshold: fraction in [0, 1] of a lesion's voxels that must be covered by the other mask.
        connectivity: 6, 18 or 26 (3D); 4 or 8 (2D).

    Returns:
        :class:`LesionResult` with counts, rates and per-lesion records.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    p, r = as_mask(pred), as_mask(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref shapes differ: {p.shape} vs {r.shape}")
    rcc, nr = label_components(r, connectivity)
    pcc, np_ = label_components(p, connectivity)
    ri, pi, common = _pair_counts(rcc, pcc, np_)
    rsize = np.bincount(rcc.ravel(), minlength=nr + 1)
    psize = np.bincount(pcc.ravel(), minlength=np_ + 1)
    ref_rec = _side(rcc, nr, rsize, ri, pi, common, psize, threshold)
    pred_rec = _side(pcc, np_, psize, pi, ri, common, rsize, threshold)
    tp = sum(x["detected"] for x in ref_rec)
    true_pred = sum(x["detected"] for x in pred_rec)
    precision, recall, f1 = _rates(nr, np_, tp, true_pred)
    return LesionResult(nr, np_, tp, np_ - true_pred, nr - tp, precision, recall, f1, ref_rec, pred_rec)


def lesion_columns(res: LesionResult | None) -> dict:
    """The lesion columns of a ``metrics.csv`` row (NaN when lesions were not computed)."""
    if res is None:
        nan = float("nan")
        return dict(ref_lesions=nan, pred_lesions=nan, lesion_tp=nan, lesion_fp=nan, lesion_fn=nan,
                    lesion_precision=nan, lesion_recall=nan, lesion_f1=nan, lesion_dice=nan)
    return dict(ref_lesions=res.n_ref, pred_lesions=res.n_pred, lesion_tp=res.tp, lesion_fp=res.fp,
                lesion_fn=res.fn, lesion_precision=res.precision, lesion_recall=res.recall,
                lesion_f1=res.f1, lesion_dice=res.mean_dice)


def lesion_rows(res: LesionResult, case: str, label: int, offset: Sequence[int], voxel_ml: float) -> list[dict]:
    """Rows of ``lesions.csv`` for one case and class; ``offset`` shifts crop indices back."""
    rows = []
    for side, recs in (("ref", res.ref), ("pred", res.pred)):
        for rec in recs:
            c = [round(v + o, 2) for v, o in zip(rec["centroid_ijk"], offset)]
            rows.append({
                "case": case, "label": label, "side": side, "lesion": rec["lesion"],
                "voxels": rec["voxels"], "volume_ml": rec["voxels"] * voxel_ml,
                "overlap": rec["overlap"], "detected": rec["detected"], "dice": rec["dice"],
                "centroid_i": c[0], "centroid_j": c[1], "centroid_k": c[2] if len(c) > 2 else float("nan"),
            })
    return rows
