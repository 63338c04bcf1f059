"""evaluate_folders and the written outputs (CSV columns, summary statistics, markdown)."""

import csv
import json
import math

import numpy as np
import pytest

from medseg import Volume, write_volume
from medseg.errors import InputError
from medseg.metrics import METRIC_COLUMNS, evaluate_case, evaluate_folders, markdown_table, summarize, write_outputs

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])


def _case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = np.zeros((24, 24, 10), np.uint8)
    ref[4:14, 4:16, 2:7] = 1
    ref[16:22, 5:11, 3:8] = 2
    pred = np.roll(ref, int(rng.integers(-2, 3)), axis=0)
    return pred, ref


@pytest.fixture
def folders(tmp_path):
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    for i in range(3):
        pred, ref = _case(i)
        write_volume(Volume(ref, AFFINE), ref_dir / f"case_{i}.nii.gz")
        write_volume(Volume(pred, AFFINE), pred_dir / f"case_{i}.nrrd")   # suffix may differ
    write_volume(Volume(_case(5)[1], AFFINE), ref_dir / "case_missing.nii.gz")
    write_volume(Volume(_case(5)[1], AFFINE), pred_dir / "case_extra.nii.gz")
    (ref_dir / "case_bad.nii.gz").write_bytes(b"not a nifti at all" * 50)
    write_volume(Volume(_case(5)[0], AFFINE), pred_dir / "case_bad.nii.gz")
    (pred_dir / "dataset.json").write_text("{}")   # ignored: not an image
    return pred_dir, ref_dir


def test_folders_are_matched_by_case_id_and_failures_recorded(folders):
    pred_dir, ref_dir = folders
    seen = []
    ev = evaluate_folders(pred_dir, ref_dir, progress=seen.append, tolerance_mm=2.0)
    assert seen == ["case_0", "case_1", "case_2", "case_bad", "case_missing"]
    assert ev.extra_pred == ["case_extra"]
    assert set(ev.failed) == {"case_bad", "case_missing"}
    assert "NIfTI" in ev.failed["case_bad"] or "read" in ev.failed["case_bad"]
    status = {r["case"]: r["status"] for r in ev.rows}
    assert status == {"case_0": "ok", "case_1": "ok", "case_2": "ok", "case_bad": "failed",
                      "case_missing": "missing_pred"}
    # The same numbers as evaluate_case on the arrays.
    pred, ref = _case(1)
    direct = evaluate_case(pred, ref, spacing=(0.8, 0.8, 2.0), tolerance_mm=2.0).rows
    got = [r for r in ev.rows if r["case"] == "case_1"]
    for a, b in zip(got, direct):
        assert all(a[k] == pytest.approx(b[k], nan_ok=True) for k in METRIC_COLUMNS[1:])


def test_no_common_case_is_an_error(tmp_path):
    (tmp_path / "p").mkdir()
    write_volume(Volume(_case(0)[0], AFFINE), tmp_path / "p" / "a.nii.gz")
    write_volume(Volume(_case(0)[1], AFFINE), tmp_path / "r" / "b.nii.gz")
    with pytest.raises(InputError, match="no case id is common"):
        evaluate_folders(tmp_path / "p", tmp_path / "r")
    with pytest.raises(InputError, match="both be files or both be folders"):
        evaluate_folders(tmp_path / "p" / "a.nii.gz", tmp_path / "r")


def test_summary_statistics_and_outputs(folders, tmp_path):
    pred_dir, ref_dir = folders
    ev = evaluate_folders(pred_dir, ref_dir)
    summary = summarize(ev)
    dice1 = [r["dice"] for r in ev.rows if r["label"] == 1 and r["status"] == "ok"]
    s = summary["per_class"]["1"]["dice"]
    assert s["mean"] == pytest.approx(np.mean(dice1)) and s["median"] == pytest.approx(np.median(dice1))
    assert s["std"] == pytest.approx(np.std(dice1, ddof=1)) and s["n"] == 3
    all_dice = [r["dice"] for r in ev.rows if r["status"] == "ok"]
    assert summary["overall"]["dice"]["mean"] == pytest.approx(np.mean(all_dice))
    assert summary["cases"]["scored"] == 3 and set(summary["cases"]["failed"]) == {"case_bad", "case_missing"}

    out = tmp_path / "out"
    write_outputs(ev, out, summary)
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][: len(METRIC_COLUMNS)] == list(METRIC_COLUMNS)
    assert len(rows) == 1 + 3 * 2 + 2
    assert float(rows[1][2]) == pytest.approx(ev.rows[0]["dice"], abs=1e-7)
    lesions = list(csv.DictReader(open(out / "lesions.csv", newline="")))
    assert {r["side"] for r in lesions} == {"ref", "pred"}
    js = json.loads((out / "summary.json").read_text())
    assert js["per_class"]["2"]["dice"]["mean"] == pytest.approx(summary["per_class"]["2"]["dice"]["mean"])
    assert not list(out.glob(".*"))  # no temporary files left behind

    table = markdown_table(summary)
    assert table.splitlines()[0].startswith("| label | name | n | Dice |")
    assert "| all |" in table and f"{np.mean(dice1):.3f}" in table


def test_nan_distances_are_left_out_and_counted():
    ev_rows = [{"case": "a", "label": 1, "name": "", "status": "ok", "hd95_mm": v, **{k: 1.0 for k in (
        "dice", "iou", "assd_mm", "nsd", "ref_ml", "pred_ml", "lesion_precision", "lesion_recall", "lesion_f1",
        "lesion_dice")}} for v in (2.0, 4.0, float("nan"))]
    from medseg.metrics import Evaluation

    summary = summarize(Evaluation(rows=ev_rows))
    hd = summary["per_class"]["1"]["hd95_mm"]
    assert (hd["mean"], hd["n"], hd["n_nan"]) == (3.0, 2, 1)
    assert "(1 NaN)" in markdown_table(summary)
    assert not math.isnan(summary["overall"]["hd95_mm"]["mean"])
