"""Empty-mask conventions (README: "Empty masks"), for the array functions and evaluate_case."""

import math

import numpy as np
import pytest

from medseg.metrics import (
    dice,
    evaluate_case,
    instance_matching,
    iou,
    lesion_matching,
    surface_distances,
)
from tests.metrics.reference import box, monai_scores

SP = (1.0, 1.5, 3.0)
EMPTY = np.zeros((12, 12, 12), bool)
FULL = box((12, 12, 12), (3, 3, 3), (8, 8, 8))


def test_both_empty_is_a_perfect_score():
    sd = surface_distances(EMPTY, EMPTY, SP)
    assert sd.empty == "both"
    assert dice(EMPTY, EMPTY) == iou(EMPTY, EMPTY) == 1.0
    assert sd.hausdorff() == sd.assd() == 0.0
    assert sd.surface_dice(1.0) == 1.0


@pytest.mark.parametrize("pred,ref,flag", [(EMPTY, FULL, "pred"), (FULL, EMPTY, "ref")])
def test_one_empty_gives_zero_overlap_and_nan_distances(pred, ref, flag):
    sd = surface_distances(pred, ref, SP)
    assert sd.empty == flag
    assert dice(pred, ref) == iou(pred, ref) == 0.0
    assert math.isnan(sd.hausdorff()) and math.isnan(sd.assd())
    assert sd.surface_dice(1.0) == 0.0
    # MONAI: ASSD inf and HD95 NaN here (medseg: NaN for both, plus the flag); NSD 0 agrees.
    m = monai_scores(pred[None], ref[None], SP)
    assert np.isinf(m["assd_mm"][0]) and m["nsd"][0] == 0.0


def test_evaluate_case_rows_carry_the_flag():
    ref = np.zeros((12, 12, 12), np.uint8)
    pred = np.zeros_like(ref)
    ref[FULL] = 1          # class 1: prediction empty
    pred[2:4, 2:4, 2:4] = 2  # class 2: reference empty
    rows = {r["label"]: r for r in evaluate_case(pred, ref, SP, labels={0: "bg", 1: "a", 2: "b", 3: "c"}).rows}
    assert sorted(rows) == [1, 2, 3]
    assert rows[1]["empty"] == "pred" and rows[1]["dice"] == 0 and math.isnan(rows[1]["hd95_mm"])
    assert rows[2]["empty"] == "ref" and rows[2]["nsd"] == 0 and math.isnan(rows[2]["assd_mm"])
    c = rows[3]  # declared, absent from both masks
    assert c["empty"] == "both" and c["dice"] == c["iou"] == c["nsd"] == 1.0
    assert c["hd95_mm"] == c["assd_mm"] == 0.0 and c["ref_ml"] == c["pred_ml"] == 0.0
    assert c["lesion_f1"] == 1.0 and rows[1]["lesion_f1"] == 0.0 and rows[2]["lesion_precision"] == 0.0
    assert rows[1]["empty"] != "none" and all(r["status"] == "ok" for r in rows.values())


def test_lesion_conventions():
    none = lesion_matching(EMPTY, EMPTY)
    assert (none.precision, none.recall, none.f1, none.tp, none.fp, none.fn) == (1, 1, 1, 0, 0, 0)
    missed = lesion_matching(EMPTY, FULL)
    assert (missed.precision, missed.recall, missed.f1, missed.fn) == (0, 0, 0, 1)
    spurious = lesion_matching(FULL, EMPTY)
    assert (spurious.precision, spurious.recall, spurious.f1, spurious.fp) == (0, 0, 0, 1)


def test_instance_conventions():
    none = instance_matching(EMPTY.astype(np.uint8), EMPTY.astype(np.uint8))
    assert none.pq == none.sq == none.rq == none.f1 == 1.0
    only_ref = instance_matching(EMPTY.astype(np.uint8), FULL.astype(np.uint8))
    assert only_ref.pq == only_ref.sq == only_ref.f1 == 0.0 and only_ref.fn == 1
