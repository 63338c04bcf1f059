"""Segmentation metrics: one implementation for ``medseg evaluate``, training validation and
the napari review widget.

Array functions (numpy bool/int arrays or torch tensors indexed ``[i, j, k]``, spacing in mm
per array axis)::

    from medseg.metrics import dice, iou, hausdorff95, assd, surface_dice, surface_distances
    dice(pred == 1, ref == 1)                                   # float in [0, 1]
    hausdorff95(pred == 1, ref == 1, spacing=vol.spacing)       # mm
    sd = surface_distances(pred == 1, ref == 1, vol.spacing)    # compute once, read several:
    sd.hausdorff(95), sd.assd(), sd.surface_dice(tolerance_mm=1.0)

    lesion_matching(pred == 2, ref == 2, threshold=0.5)         # lesion-wise TP / FP / FN
    instance_matching(pred_ids, ref_ids, iou_threshold=0.5)     # instance maps: PQ, SQ, RQ
    average_precision(scores, is_tp, n_ref)                     # COCO 101-point AP (MaskAP: AP50)
    detection_rates(n_ref, n_pred, tp, true_pred)               # (precision, recall, F1) of counts

Whole cases and folders::

    evaluate_case(pred_volume, ref_volume, labels="dataset.json").rows   # metrics.csv rows
    evaluate_folders("predictions/", "labelsTr/", labels="dataset.json", tolerance_mm=2.0)

Definitions and the empty-mask conventions are in the docstrings of
:mod:`~medseg.metrics.overlap`, :mod:`~medseg.metrics.surface`,
:mod:`~medseg.metrics.lesions` and :mod:`~medseg.metrics.instances`.
"""

from medseg.metrics.case import (
    EXTRA_COLUMNS,
    INSTANCE_COLUMNS,
    LESION_COLUMNS,
    METRIC_COLUMNS,
    CaseResult,
    evaluate_case,
)
from medseg.metrics.folders import Evaluation, evaluate_folders, match_cases
from medseg.metrics.instances import InstanceResult, MaskAP, average_precision, instance_matching, match_masks
from medseg.metrics.labels import load_labels
from medseg.metrics.lesions import LesionResult, detection_rates, label_components, lesion_matching, pooled_rates
from medseg.metrics.overlap import dice, iou, volume_ml, voxel_ml
from medseg.metrics.report import markdown_table, summarize, write_outputs
from medseg.metrics.resample import resample_nearest
from medseg.metrics.surface import SurfaceDistances, assd, hausdorff95, mask_edges, surface_dice, surface_distances

__all__ = [
    "dice",
    "iou",
    "volume_ml",
    "voxel_ml",
    "surface_distances",
    "SurfaceDistances",
    "hausdorff95",
    "assd",
    "surface_dice",
    "mask_edges",
    "lesion_matching",
    "LesionResult",
    "label_components",
    "instance_matching",
    "InstanceResult",
    "average_precision",
    "match_masks",
    "MaskAP",
    "detection_rates",
    "pooled_rates",
    "evaluate_case",
    "CaseResult",
    "evaluate_folders",
    "Evaluation",
    "match_cases",
    "load_labels",
    "resample_nearest",
    "summarize",
    "markdown_table",
    "write_outputs",
    "METRIC_COLUMNS",
    "EXTRA_COLUMNS",
    "LESION_COLUMNS",
    "INSTANCE_COLUMNS",
]
