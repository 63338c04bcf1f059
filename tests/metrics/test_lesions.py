"""Lesion-wise detection on constructed cases: split, merge, missed and spurious lesions."""

import numpy as np
import pytest

from medseg.metrics import evaluate_case, lesion_matching
from tests.metrics.reference import box

SHAPE = (40, 40, 20)


def _mask(*boxes) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    for lo, hi in boxes:
        m |= box(SHAPE, lo, hi)
    return m


def test_perfect_detection():
    ref = _mask(((2, 2, 2), (8, 8, 6)), ((20, 20, 5), (26, 30, 10)))
    res = lesion_matching(ref, ref)
    assert (res.n_ref, res.n_pred, res.tp, res.fp, res.fn) == (2, 2, 2, 0, 0)
    assert res.f1 == 1.0 and res.mean_dice == 1.0


def test_missed_and_spurious():
    ref = _mask(((2, 2, 2), (8, 8, 6)), ((20, 20, 5), (26, 30, 10)))         # A, B
    pred = _mask(((2, 2, 2), (8, 8, 6)), ((30, 2, 2), (34, 6, 6)))           # A, C (spurious)
    res = lesion_matching(pred, ref)
    assert (res.tp, res.fp, res.fn) == (1, 1, 1)
    assert res.precision == 0.5 and res.recall == 0.5 and res.f1 == 0.5
    assert [r["detected"] for r in res.ref] == [True, False]
    assert [r["detected"] for r in res.pred] == [True, False]
    assert res.ref[1]["dice"] == 0.0 and res.ref[1]["overlap"] == 0.0


def test_split_lesion_is_one_detection_and_no_false_positive():
    ref = _mask(((4, 4, 4), (14, 10, 8)))                                    # 10 x 6 x 4 = 240
    pred = _mask(((4, 4, 4), (8, 10, 8)), ((10, 4, 4), (14, 10, 8)))         # two pieces, 96 each
    res = lesion_matching(pred, ref)
    assert (res.n_ref, res.n_pred, res.tp, res.fp, res.fn) == (1, 2, 1, 0, 0)
    assert res.ref[0]["overlap"] == pytest.approx(192 / 240)
    assert res.ref[0]["dice"] == pytest.approx(2 * 192 / (240 + 192))        # against both pieces


def test_merged_lesions_are_two_detections():
    ref = _mask(((4, 4, 4), (8, 10, 8)), ((10, 4, 4), (14, 10, 8)))          # two lesions, 96 each
    pred = _mask(((4, 4, 4), (14, 10, 8)))                                   # one blob over both, 240
    res = lesion_matching(pred, ref)
    assert (res.n_ref, res.n_pred, res.tp, res.fp, res.fn) == (2, 1, 2, 0, 0)
    assert res.pred[0]["overlap"] == pytest.approx(192 / 240)
    assert [r["dice"] for r in res.ref] == pytest.approx([2 * 96 / (96 + 240)] * 2)


def test_overlap_threshold():
    ref = _mask(((4, 4, 4), (14, 10, 8)))                                    # 240 voxels
    pred = _mask(((4, 4, 4), (7, 10, 8)))                                    # covers 72 = 30 %
    assert lesion_matching(pred, ref, threshold=0.5).tp == 0
    assert lesion_matching(pred, ref, threshold=0.3).tp == 1
    assert lesion_matching(pred, ref, threshold=0.0).tp == 1
    assert lesion_matching(np.zeros(SHAPE, bool), ref, threshold=0.0).tp == 0  # no overlap is never a hit


@pytest.mark.parametrize("connectivity,n", [(6, 3), (18, 2), (26, 1)])
def test_connectivity(connectivity, n):
    m = np.zeros((6, 6, 6), bool)
    m[1, 1, 1] = m[2, 2, 1] = m[3, 3, 2] = True   # edge neighbours, then a corner neighbour
    assert lesion_matching(m, m, connectivity=connectivity).n_ref == n


def test_lesion_rows_are_in_full_array_coordinates():
    ref = np.zeros(SHAPE, np.uint8)
    ref[20:24, 30:34, 10:12] = 3
    rows = evaluate_case(ref, ref, spacing=(1, 1, 2)).lesions
    assert len(rows) == 2 and {r["side"] for r in rows} == {"ref", "pred"}
    r = rows[0]
    assert (r["label"], r["voxels"], r["volume_ml"]) == (3, 32, pytest.approx(0.064))
    assert (r["centroid_i"], r["centroid_j"], r["centroid_k"]) == (21.5, 31.5, 10.5)


# --- precision / recall / F1 from counts: the one implementation (also the instance model's) ---

def test_detection_rates_and_pooling_by_hand():
    from medseg.metrics import detection_rates, lesion_matching, pooled_rates

    # 4 reference lesions, 3 found; 5 predicted, 3 true: P 3/5, R 3/4, F1 = 2 PR / (P + R) = 2/3
    p, r, f1 = detection_rates(n_ref=4, n_pred=5, tp=3, true_pred=3)
    assert (p, r) == (0.6, 0.75) and f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert detection_rates(0, 0, 0, 0) == (1.0, 1.0, 1.0)
    assert detection_rates(2, 0, 0, 0) == (0.0, 0.0, 0.0) and detection_rates(0, 3, 0, 0) == (0.0, 0.0, 0.0)
    # pooling sums counts over cases: case A 1 of 1 found, no FP; case B 0 of 2 found, 1 FP
    a_ref = np.zeros((10, 10, 3), bool)
    a_ref[1:4, 1:4, 1] = True
    b_ref = np.zeros((10, 10, 3), bool)
    b_ref[1:3, 1:3, 0] = True
    b_ref[6:9, 6:9, 2] = True
    b_pred = np.zeros((10, 10, 3), bool)
    b_pred[5, 0, 1] = True
    res = [lesion_matching(a_ref, a_ref), lesion_matching(b_pred, b_ref)]
    # pooled: 3 references, 1 found; 2 predicted, 1 true -> P 1/2, R 1/3, F1 0.4
    assert pooled_rates(res) == pytest.approx((0.5, 1 / 3, 0.4))
