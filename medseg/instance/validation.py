"""Validation of the instance model: slice-level mask AP50 and 3D lesion F1.

* **Mask AP50** (per class, then the mean over classes that have reference instances): over
  all validation slices in model space, detections are sorted by score and greedily matched
  to unmatched reference instances of the same class and slice with mask IoU >= 0.5; AP is
  the area under the precision envelope sampled at 101 recall points (COCO's rule).
* **3D lesion F1**: each case's lesions (linked, on the source grid, score >=
  ``inference.score_threshold``) against the reference label's connected components (26-
  connected) with :func:`medseg.metrics.lesion_matching` (a lesion is found when half of it
  is covered); TP / FP / FN are pooled over cases, then precision, recall and F1 are computed.
"""

from __future__ import annotations

import numpy as np

from medseg.instance.config import InstanceConfig
from medseg.instance.extract import slice_instances
from medseg.instance.inference import assemble, detect
from medseg.instance.linking import SliceDetections
from medseg.instance.slices import image_to_model, labels_to_model, slice_record
from medseg.metrics import lesion_matching
from medseg.volume import Volume


def average_precision(scores: np.ndarray, is_tp: np.ndarray, n_ref: int) -> float:
    """COCO 101-point AP of detections (``scores``, TP flags) against ``n_ref`` references."""
    if n_ref == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    tp = np.asarray(is_tp, bool)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / n_ref
    precision = ctp / np.maximum(ctp + cfp, 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in idx]))


class MaskAP:
    """Accumulates slices, then :meth:`result` gives ``{class: AP50}`` and their mean."""

    def __init__(self, classes: list[int], iou: float = 0.5):
        self.iou = iou
        self.classes = classes
        self.scores = {c: [] for c in classes}
        self.tp = {c: [] for c in classes}
        self.n_ref = {c: 0 for c in classes}

    def add(self, pred: SliceDetections, ref: dict) -> None:
        """One slice: detections and the reference from :func:`medseg.instance.extract.slice_instances`."""
        for c in self.classes:
            refs = ref["masks"][ref["labels"] == c].astype(bool)
            self.n_ref[c] += len(refs)
            sel = np.flatnonzero(pred.labels == c)
            sel = sel[np.argsort(-pred.scores[sel], kind="stable")]
            used = np.zeros(len(refs), bool)
            for i in sel:
                m = pred.masks[i]
                hit = False
                if len(refs):
                    inter = (refs & m).sum(axis=(1, 2))
                    union = (refs | m).sum(axis=(1, 2))
                    iou = np.where(used, -1.0, inter / np.maximum(union, 1))
                    j = int(np.argmax(iou))
                    if iou[j] >= self.iou:
                        used[j], hit = True, True
                self.scores[c].append(float(pred.scores[i]))
                self.tp[c].append(hit)

    def result(self) -> tuple[float, dict[int, float]]:
        per = {c: average_precision(np.asarray(self.scores[c]), np.asarray(self.tp[c]), self.n_ref[c])
               for c in self.classes}
        valid = [v for v in per.values() if not np.isnan(v)]
        return (float(np.mean(valid)) if valid else float("nan")), per


def validate(model, cases: list[tuple[Volume, Volume]], cfg: InstanceConfig, class_values: dict[str, int],
             label_values: list[int], device, amp_dtype=None) -> dict:
    """Mask AP50 and pooled 3D lesion F1 over ``cases`` (image Volume, label Volume) pairs.

    Args:
        class_values: class name -> dataset label value, in model class order (model class i+1).

    Returns:
        ``{"ap50", "lesion_f1", "lesion_precision", "lesion_recall", "f1": {name: F1}}``.
    """
    names = list(class_values)
    class_map = {v: i + 1 for i, v in enumerate(class_values.values())}
    ap = MaskAP(list(range(1, len(names) + 1)))
    pooled = {n: [0, 0, 0, 0] for n in names}  # n_ref, tp, n_pred, true_pred
    thr = cfg.inference.score_threshold
    for image, label in cases:
        rec = slice_record(image, cfg.data.spacing_mm)
        vol = image_to_model(image, rec)
        lab = labels_to_model(label, rec, label_values)
        dets = detect(model, vol, cfg, device, 0.0, amp_dtype)
        for k, d in enumerate(dets):
            ap.add(d, slice_instances(lab[:, :, k], class_map, cfg.data.connectivity, cfg.data.min_instance_pixels))
        kept = [SliceDetections(d.masks[d.scores >= thr], d.labels[d.scores >= thr], d.scores[d.scores >= thr])
                for d in dets]
        res = assemble(kept, rec, cfg, {i + 1: n for i, n in enumerate(names)})
        for n, value in class_values.items():
            pred = np.isin(res.ids.array, [lid for lid, c in res.classes.items() if c == n])
            m = lesion_matching(pred, np.asarray(label.array) == value)
            p = pooled[n]
            p[0] += m.n_ref
            p[1] += m.tp
            p[2] += m.n_pred
            p[3] += m.n_pred - m.fp
    ap50, _ = ap.result()
    f1 = {}
    tot = np.zeros(4)
    for n, (n_ref, tp, n_pred, true_pred) in pooled.items():
        f1[n] = _f1(n_ref, tp, n_pred, true_pred)[2]
        tot += (n_ref, tp, n_pred, true_pred)
    precision, recall, f1_all = _f1(*tot)
    return {"ap50": ap50, "lesion_f1": f1_all, "lesion_precision": precision, "lesion_recall": recall, "f1": f1}


def _f1(n_ref, tp, n_pred, true_pred) -> tuple[float, float, float]:
    if n_ref == 0 and n_pred == 0:
        return 1.0, 1.0, 1.0
    precision = true_pred / n_pred if n_pred else 0.0
    recall = tp / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)
