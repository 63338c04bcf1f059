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


# --- detection AP (the instance model's AP50), hand-computed -----------------------------------

from medseg.metrics import MaskAP, average_precision, match_masks  # noqa: E402


def test_average_precision_by_hand():
    """Scores 0.9 (TP), 0.8 (FP), 0.7 (TP) against 3 references: precision 1, 1/2, 2/3 at recall
    1/3, 1/3, 2/3; envelope 1 up to recall 1/3 (points 0.00-0.33: 34), 2/3 up to 2/3 (0.34-0.66:
    33), 0 beyond (34 points). AP = (34 x 1 + 33 x 2/3) / 101 = 56 / 101."""
    assert average_precision([0.7, 0.9, 0.8], [True, True, False], 3) == pytest.approx(56 / 101)
    assert average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)      # all found, no FP
    assert average_precision([0.9], [False], 2) == 0.0
    assert average_precision([], [], 1) == 0.0
    assert np.isnan(average_precision([0.5], [False], 0))                             # no references: NaN
    # a false positive ranked first: precision 1/2 at recall 1 -> AP 0.5
    assert average_precision([0.9, 0.1], [False, True], 1) == pytest.approx(0.5)


def _box_mask(r0, r1, c0, c1, shape=(20, 20)):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_match_masks_is_greedy_by_score_and_one_to_one():
    ref = np.stack([_box_mask(0, 10, 0, 10), _box_mask(12, 16, 12, 16)])
    a = _box_mask(0, 10, 0, 8)        # IoU 80/100 with ref 0
    b = _box_mask(0, 10, 0, 10)       # IoU 1 with ref 0, but lower score: ref 0 is taken
    c = _box_mask(12, 16, 12, 14)     # IoU 8/16 = 0.5 with ref 1: >= 0.5 matches
    d = _box_mask(12, 16, 12, 13)     # IoU 4/16 with ref 1: no
    hit = match_masks(np.stack([a, b, c, d]), [0.9, 0.6, 0.8, 0.95], ref, iou=0.5)
    assert hit.tolist() == [True, False, True, False]
    assert match_masks(np.zeros((0, 20, 20), bool), [], ref).tolist() == []


def test_mask_ap_pools_images_and_averages_classes():
    """Image 1: class 1 found (0.9), a class-1 FP (0.3); image 2: class 1 missed, class 2 found
    (0.6). Class 1: TP 0.9, FP 0.3, 2 refs -> precision 1 up to recall 1/2 -> AP 51/101; class 2:
    AP 1; a class without references (3) is left out of the mean."""
    ap = MaskAP([1, 2, 3])
    r1 = _box_mask(0, 5, 0, 5)
    ap.add(np.stack([r1, _box_mask(10, 15, 10, 15)]), [1, 1], [0.9, 0.3], r1[None], [1])
    r2a, r2b = _box_mask(0, 5, 0, 5), _box_mask(8, 12, 8, 12)
    ap.add(r2b[None], [2], [0.6], np.stack([r2a, r2b]), [1, 2])
    mean, per = ap.result()
    assert per[1] == pytest.approx(51 / 101) and per[2] == pytest.approx(1.0) and np.isnan(per[3])
    assert mean == pytest.approx((51 / 101 + 1) / 2)
