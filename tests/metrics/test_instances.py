"""Instance matching (IoU > 0.5) and panoptic quality on constructed instance maps."""

import numpy as np
import pytest

from medseg.metrics import evaluate_case, instance_matching

SHAPE = (30, 30, 10)


def _ids(*objects) -> np.ndarray:
    """Instance map: ``(id, lo, hi)`` boxes painted in order."""
    a = np.zeros(SHAPE, np.int32)
    for i, lo, hi in objects:
        a[tuple(slice(x, y) for x, y in zip(lo, hi))] = i
    return a


def test_perfect_match_with_different_ids():
    ref = _ids((1, (0, 0, 0), (5, 5, 5)), (2, (10, 10, 0), (15, 15, 5)))
    pred = np.where(ref == 1, 70, np.where(ref == 2, 9, 0))
    res = instance_matching(pred, ref)
    assert (res.tp, res.fp, res.fn, res.pq, res.sq, res.rq) == (2, 0, 0, 1.0, 1.0, 1.0)
    assert sorted(res.matches) == [(1, 70, 1.0), (2, 9, 1.0)]


def test_panoptic_quality_by_hand():
    """Ref A (100 voxels) vs pred A' shifted by 2 of 10 -> IoU 80/120; ref B missed; pred C spurious.
    TP 1, FP 1, FN 1: SQ = 2/3, RQ = 1 / (1 + 0.5 + 0.5) = 0.5, PQ = 1/3."""
    ref = _ids((1, (0, 0, 0), (10, 10, 1)), (2, (20, 20, 0), (25, 25, 1)))
    pred = _ids((5, (2, 0, 0), (12, 10, 1)), (6, (0, 20, 5), (4, 24, 6)))
    res = instance_matching(pred, ref)
    assert (res.tp, res.fp, res.fn) == (1, 1, 1)
    assert res.sq == pytest.approx(80 / 120) and res.rq == pytest.approx(0.5) and res.pq == pytest.approx(1 / 3)
    assert res.precision == 0.5 and res.recall == 0.5


def test_split_object_matches_nothing_at_iou_half():
    ref = _ids((1, (0, 0, 0), (10, 10, 1)))
    pred = _ids((1, (0, 0, 0), (5, 10, 1)), (2, (5, 0, 0), (10, 10, 1)))   # IoU 0.5 each: not > 0.5
    res = instance_matching(pred, ref)
    assert (res.tp, res.fp, res.fn, res.pq) == (0, 2, 1, 0.0)


def test_low_threshold_matches_one_to_one():
    """Below 0.5 several pairs qualify; the assignment keeps one-to-one pairs of highest IoU."""
    ref = _ids((1, (0, 0, 0), (10, 10, 1)))
    pred = _ids((1, (0, 0, 0), (4, 10, 1)), (2, (4, 0, 0), (10, 10, 1)))   # IoU 0.4 and 0.6
    res = instance_matching(pred, ref, iou_threshold=0.3)
    assert res.matches == [(1, 2, pytest.approx(0.6))] and (res.tp, res.fp, res.fn) == (1, 1, 0)
    ref2 = _ids((1, (0, 0, 0), (10, 10, 1)), (2, (10, 0, 0), (20, 10, 1)))
    pred2 = _ids((7, (4, 0, 0), (14, 10, 1)))                             # IoU 0.6/1.4 with each
    res2 = instance_matching(pred2, ref2, iou_threshold=0.3)
    assert res2.tp == 1 and res2.fn == 1


def test_huge_ids_are_handled():
    ref = _ids((1, (0, 0, 0), (5, 5, 5))).astype(np.int64) * 3_000_000_000
    res = instance_matching(ref, ref)
    assert res.tp == 1 and res.matches[0][0] == 3_000_000_000


def test_evaluate_case_instances_mode():
    ref = _ids((1, (0, 0, 0), (10, 10, 1)), (2, (20, 20, 0), (25, 25, 1)))
    pred = _ids((5, (2, 0, 0), (12, 10, 1)), (6, (0, 20, 5), (4, 24, 6)))
    res = evaluate_case(pred, ref, spacing=(1, 1, 1), instances=True, case="x")
    assert [r["label"] for r in res.rows] == [1] and res.rows[0]["name"] == "foreground"
    fg_p, fg_r = pred > 0, ref > 0
    assert res.rows[0]["dice"] == pytest.approx(2 * (fg_p & fg_r).sum() / (fg_p.sum() + fg_r.sum()))
    assert res.instances["case"] == "x" and res.instances["pq"] == pytest.approx(1 / 3)
    assert res.lesions == []
