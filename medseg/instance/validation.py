"""Validation of the instance model: slice-level mask AP50, and 3D lesion F1 over score thresholds.

* **Mask AP50** (:class:`medseg.metrics.MaskAP`): detections scoring at least
  ``inference.val_score_threshold`` (low: 0.05) on every validation slice in model space,
  against that slice's reference instances (:func:`medseg.instance.extract.slice_instances`),
  IoU >= 0.5, COCO 101-point AP per class, then the mean over classes with references.
* **3D lesion F1 over thresholds**: for each lesion score threshold t in
  ``inference.val_thresholds`` the detections are linked into 3D lesions and those whose best
  detection scores >= t are kept (:func:`medseg.instance.linking.link_lesions` with the
  config's ``link_score_threshold``, the rules prediction uses), then matched per class to
  the reference label's 26-connected components with :func:`medseg.metrics.lesion_matching` (a lesion is found when half of it is
  covered); counts are pooled over cases and classes (:func:`medseg.metrics.detection_rates`).
  This is done in model space (the reference label resampled in-plane like the image), which
  avoids resampling every candidate lesion to the source grid for every threshold (an untrained
  model proposes thousands); the held-out benchmark scores on the source grid.
* The **chosen threshold** is the one of largest pooled F1 (:func:`best_threshold`); the run
  stores it and ``medseg predict`` uses it unless the config sets ``inference.score_threshold``.
* With ``inference.mask_threshold: auto`` the F1 sweep runs for each of
  ``inference.val_mask_thresholds`` too (the network runs once: :func:`detect` returns graded
  masks), and the chosen pair is the one of largest F1 (ties: the mask threshold nearest 0.5,
  then :func:`best_threshold`); the run stores the mask threshold beside the score threshold.
  AP50 is computed at the mask threshold nearest 0.5.
"""

from __future__ import annotations

import numpy as np

from medseg.instance.config import InstanceConfig
from medseg.instance.extract import slice_instances
from medseg.instance.inference import at_mask_level, detect
from medseg.instance.linking import link_lesions
from medseg.instance.slices import image_to_model, labels_to_model, slice_record
from medseg.metrics import MaskAP, detection_rates, lesion_matching
from medseg.volume import Volume


def best_threshold(f1_by_threshold: dict[float, float]) -> float:
    """The threshold of largest F1; among equal F1 (within 1e-9) the median one of the tied
    thresholds (the lower middle one for an even count), which is the least sensitive choice."""
    best = max(f1_by_threshold.values())
    tied = sorted(t for t, f in f1_by_threshold.items() if f >= best - 1e-9)
    return float(tied[(len(tied) - 1) // 2])


def validate(model, cases: list[tuple[Volume, Volume]], cfg: InstanceConfig, class_values: dict[str, int],
             label_values: list[int], device, amp_dtype=None) -> dict:
    """Mask AP50 and pooled 3D lesion F1 over ``cases`` (image Volume, label Volume) pairs.

    Args:
        class_values: class name -> dataset label value, in model class order (model class i+1).

    Returns:
        ``{"ap50", "score_threshold", "mask_threshold", "lesion_f1", "lesion_precision",
        "lesion_recall", "f1": {name: F1}, "f1_by_threshold": {t: F1}, "f1_by_mask_threshold":
        {m: F1}, "n_ref"}``: F1, precision, recall and the per-class F1 at the chosen
        thresholds; ``f1_by_threshold`` at the chosen mask threshold; ``f1_by_mask_threshold``
        the best F1 of each mask threshold.
    """
    names = list(class_values)
    class_map = {v: i + 1 for i, v in enumerate(class_values.values())}
    inf = cfg.inference
    ap = MaskAP(list(range(1, len(names) + 1)))
    thresholds = sorted(set(float(t) for t in inf.val_thresholds))
    masks = sorted(set(float(m) for m in inf.val_mask_thresholds)) if inf.mask_threshold == "auto" \
        else [float(inf.mask_threshold)]
    ap_level = min(range(len(masks)), key=lambda j: (abs(masks[j] - 0.5), masks[j]))
    # (mask threshold, score threshold) -> class -> (n_ref, n_pred, tp, true_pred)
    counts = {(m, t): {n: np.zeros(4, np.int64) for n in names} for m in masks for t in thresholds}
    for image, label in cases:
        rec = slice_record(image, cfg.data.spacing_mm)
        vol = image_to_model(image, rec)
        lab = labels_to_model(label, rec, label_values)
        floor = min(inf.val_score_threshold, min(thresholds))
        if inf.link_score_threshold is not None:
            floor = min(floor, inf.link_score_threshold)
        graded = detect(model, vol, cfg, device, floor, amp_dtype, mask_levels=masks)
        refs = [lab == value for value in class_values.values()]
        for j, m in enumerate(masks):
            dets = at_mask_level(graded, j)
            if j == ap_level:
                for k, d in enumerate(dets):
                    ref = slice_instances(lab[:, :, k], class_map, cfg.data.connectivity, cfg.data.min_instance_pixels)
                    keep = d.scores >= inf.val_score_threshold
                    ap.add(d.masks[keep], d.labels[keep], d.scores[keep], ref["masks"].astype(bool), ref["labels"])
            for t in thresholds:
                ids, lesions = link_lesions(dets, t, inf.link_score_threshold, inf.link_overlap, inf.max_gap)
                lesion_class = np.zeros(len(lesions) + 1, np.int64)
                for lid, les in lesions.items():
                    lesion_class[lid] = les.label
                pred_class = lesion_class[ids]
                for i, n in enumerate(names, start=1):
                    r = lesion_matching(pred_class == i, refs[i - 1])
                    counts[m, t][n] += (r.n_ref, r.n_pred, r.tp, r.n_pred - r.fp)
    ap50, _ = ap.result()
    f1 = {key: detection_rates(*_as_args(sum(c.values())))[2] for key, c in counts.items()}
    f1_by_mask = {m: max(f1[m, t] for t in thresholds) for m in masks}
    top = max(f1_by_mask.values())
    m_best = min((m for m in masks if f1_by_mask[m] >= top - 1e-9), key=lambda m: (abs(m - 0.5), m))
    f1_by_t = {t: f1[m_best, t] for t in thresholds}
    t_best = best_threshold(f1_by_t)
    chosen = counts[m_best, t_best]
    precision, recall, f1_best = detection_rates(*_as_args(sum(chosen.values())))
    per_class = {n: detection_rates(*_as_args(c))[2] for n, c in chosen.items()}
    return {"ap50": ap50, "score_threshold": t_best, "mask_threshold": m_best, "lesion_f1": f1_best,
            "lesion_precision": precision, "lesion_recall": recall, "f1": per_class, "f1_by_threshold": f1_by_t,
            "f1_by_mask_threshold": f1_by_mask, "n_ref": int(sum(chosen.values())[0])}


def _as_args(c) -> tuple[int, int, int, int]:
    """(n_ref, n_pred, tp, true_pred) -> the argument order of :func:`detection_rates`."""
    n_ref, n_pred, tp, true_pred = (int(v) for v in c)
    return n_ref, n_pred, tp, true_pred
