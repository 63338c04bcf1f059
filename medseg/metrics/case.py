"""Evaluate one case: every metric for every class of a predicted vs a reference label map.

This is the one place that turns two label maps into ``metrics.csv`` / ``lesions.csv`` rows;
the CLI, :func:`medseg.metrics.evaluate_folders` and the napari widget all call it, and it
calls the array functions of :mod:`~medseg.metrics.overlap`, :mod:`~medseg.metrics.surface`,
:mod:`~medseg.metrics.lesions` and :mod:`~medseg.metrics.instances`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.errors import GeometryError, warn
from medseg.metrics.instances import instance_matching
from medseg.metrics.labels import as_label_map, classes_to_score, label_boxes, load_labels, normalize_labels
from medseg.metrics.lesions import lesion_columns, lesion_matching, lesion_rows
from medseg.metrics.overlap import dice_from_counts, iou_from_counts, voxel_ml
from medseg.metrics.regions import Box, as_spacing, bounding_box, union_box
from medseg.metrics.resample import resample_nearest
from medseg.metrics.surface import surface_distances
from medseg.volume import Volume

#: The first columns of metrics.csv, in this order (a documented contract).
METRIC_COLUMNS = ("case", "label", "dice", "iou", "hd95_mm", "assd_mm", "nsd", "ref_ml", "pred_ml")
#: The columns that follow them.
EXTRA_COLUMNS = (
    "name", "empty", "ref_voxels", "pred_voxels", "ref_lesions", "pred_lesions", "lesion_tp", "lesion_fp",
    "lesion_fn", "lesion_precision", "lesion_recall", "lesion_f1", "lesion_dice", "status", "error",
)
ROW_COLUMNS = METRIC_COLUMNS + EXTRA_COLUMNS
_ONE_VOXEL: Box = (slice(0, 1),) * 8  # the box scored for a class absent from both masks
LESION_COLUMNS = ("case", "label", "side", "lesion", "voxels", "volume_ml", "overlap", "detected", "dice",
                  "centroid_i", "centroid_j", "centroid_k")
INSTANCE_COLUMNS = ("case", "n_ref", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "sq", "rq", "pq")


@dataclass
class CaseResult:
    """Everything measured on one case.

    Attributes:
        case: the case id.
        rows: one dict per class with the keys :data:`ROW_COLUMNS` (a ``metrics.csv`` row).
        lesions: one dict per lesion with the keys :data:`LESION_COLUMNS` (``lesions.csv``).
        instances: instance matching (keys :data:`INSTANCE_COLUMNS`) when ``instances=True``.
    """

    case: str
    rows: list[dict] = field(default_factory=list)
    lesions: list[dict] = field(default_factory=list)
    instances: dict | None = None


def _grids(pred, ref, spacing, resample_pred: bool) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Bring both label maps onto one grid; return ``(pred, ref, spacing)``."""
    if isinstance(pred, Volume) or isinstance(ref, Volume):
        if spacing is not None:
            raise ValueError("spacing is taken from the Volume's affine; pass arrays to give spacing yourself")
        geo = ref.geometry if isinstance(ref, Volume) else pred.geometry
        if isinstance(pred, Volume) and isinstance(ref, Volume) and not pred.same_grid(ref):
            if not resample_pred:
                raise GeometryError(
                    f"the prediction grid ({pred.geometry.describe()}) differs from the reference grid "
                    f"({geo.describe()}); pass --resample-pred (resample_pred=True in Python) to resample "
                    "the prediction onto the reference grid (nearest neighbour)"
                )
            pred = resample_nearest(pred.with_array(as_label_map(pred.array, "prediction")), geo)
        if geo.is_sheared:
            warn("the reference grid is sheared (gantry tilt); distances treat its axes as perpendicular")
        spacing = geo.spacing
    p = pred.array if isinstance(pred, Volume) else pred
    r = ref.array if isinstance(ref, Volume) else ref
    p, r = as_label_map(p, "prediction"), as_label_map(r, "reference")
    if p.shape != r.shape:
        raise GeometryError(f"prediction shape {p.shape} differs from reference shape {r.shape}; "
                            "they must be on the same grid")
    return p, r, as_spacing(spacing, r.ndim)


def _class_names(labels: dict[int, str] | None, pred, ref) -> dict[int, str]:
    if labels is not None:
        return dict(labels)
    for vol in (ref, pred):  # e.g. 3D Slicer .seg.nrrd segment names
        segs = vol.meta.get("segments") if isinstance(vol, Volume) else None
        if segs:
            return {int(k): str(v) for k, v in segs.items()}
    return {}


def _instance_row(p: np.ndarray, r: np.ndarray, iou_threshold: float) -> dict:
    """Instance matching of two instance maps, inside the box of both foregrounds."""
    box = union_box(bounding_box(p > 0), bounding_box(r > 0)) or _ONE_VOXEL[: r.ndim]
    return instance_matching(p[box], r[box], iou_threshold).row()


def _score_class(p: np.ndarray, r: np.ndarray, spacing, tolerance_mm: float, lesions: bool,
                 lesion_threshold: float, connectivity: int):
    """Metrics of one class on (a crop of) the masks: ``(row fields, LesionResult | None)``."""
    inter, n_p, n_r = int(np.count_nonzero(p & r)), int(np.count_nonzero(p)), int(np.count_nonzero(r))
    sd = surface_distances(p, r, spacing)
    ml = voxel_ml(spacing)
    les = lesion_matching(p, r, lesion_threshold, connectivity) if lesions else None
    row = {
        "dice": dice_from_counts(inter, n_p, n_r), "iou": iou_from_counts(inter, n_p, n_r),
        "hd95_mm": sd.hausdorff(95.0), "assd_mm": sd.assd(), "nsd": sd.surface_dice(tolerance_mm),
        "ref_ml": n_r * ml, "pred_ml": n_p * ml, "empty": sd.empty, "ref_voxels": n_r, "pred_voxels": n_p,
        **lesion_columns(les), "status": "ok", "error": "",
    }
    return row, les


def evaluate_case(
    pred: Volume | np.ndarray,
    ref: Volume | np.ndarray,
    spacing: Sequence[float] | None = None,
    labels: dict[int, str] | str | Path | None = None,
    tolerance_mm: float = 1.0,
    *,
    case: str = "",
    resample_pred: bool = False,
    lesions: bool = True,
    lesion_threshold: float = 0.5,
    connectivity: int = 26,
    instances: bool = False,
    iou_threshold: float = 0.5,
) -> CaseResult:
    """Score a predicted label map against a reference, per class.

    Args:
        pred, ref: label maps indexed ``[i, j, k]`` (0 = background): two Volumes (grids must
            agree within 1e-3 mm unless ``resample_pred``), or integer arrays of equal shape
            with ``spacing``.
        spacing: mm per voxel along i, j, k; only with arrays (Volumes carry their own).
        labels: ``{value: name}`` (or nnU-Net's ``{name: value}``) or a dataset.json path. Then every declared class gets a row
            and an undeclared value in either mask raises InputError. Without it, the classes
            are the non-zero values found in either mask.
        tolerance_mm: NSD tolerance in mm.
        case: the case id written in every row.
        resample_pred: resample ``pred`` onto ``ref``'s grid (nearest neighbour) when they differ.
        lesions, lesion_threshold, connectivity: lesion-wise detection per class (see
            :mod:`medseg.metrics.lesions`).
        instances: the maps are instance maps (one id per object): score the foreground as
            label 1 and add instance matching / panoptic quality at ``iou_threshold``.

    Returns:
        :class:`CaseResult` (``rows`` for metrics.csv, ``lesions``, ``instances``).

    Raises:
        GeometryError: grids differ and ``resample_pred`` is False.
        InputError: non-integer or negative labels, or a label not declared in ``labels``.
    """
    labels_path = labels if isinstance(labels, (str, Path)) else None
    declared = load_labels(labels) if labels_path else None if labels is None else normalize_labels(labels)
    names = _class_names(declared, pred, ref)
    p, r, spacing = _grids(pred, ref, spacing, resample_pred)
    result = CaseResult(case)
    if instances:
        if declared is not None:
            warn("labels are ignored for instance label maps; the foreground is scored as label 1")
        result.instances = {"case": case, **_instance_row(p, r, iou_threshold)}
        p, r, lesions = (p > 0).view(np.uint8), (r > 0).view(np.uint8), False
        declared = names = {0: "background", 1: "foreground"}
    pboxes, rboxes = label_boxes(p), label_boxes(r)
    classes = classes_to_score(set(pboxes), set(rboxes), declared, labels_path)
    ml = voxel_ml(spacing)
    for c in classes:
        box = union_box(pboxes.get(c), rboxes.get(c)) or _ONE_VOXEL[: r.ndim]  # absent in both
        row, les = _score_class(p[box] == c, r[box] == c, spacing, tolerance_mm, lesions,
                                lesion_threshold, connectivity)
        result.rows.append({"case": case, "label": int(c), **row, "name": names.get(c, "")})
        if les is not None:
            result.lesions += lesion_rows(les, case, int(c), [s.start for s in box], ml)
    result.rows = [{k: row[k] for k in ROW_COLUMNS} for row in result.rows]
    return result
