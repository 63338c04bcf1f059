"""``medseg evaluate`` end to end: folders and files, outputs, errors and exit codes."""

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from medseg import Volume, read_volume, write_volume
from medseg.metrics import METRIC_COLUMNS, evaluate_case
from tests.helpers import CT_SEG, sha256

HEADER = "case,label,dice,iou,hd95_mm,assd_mm,nsd,ref_ml,pred_ml"


def _perturb(labels: np.ndarray, seed: int) -> np.ndarray:
    out = np.roll(labels, seed % 2 + 1, axis=seed % 2)
    out[ndimage.binary_dilation(labels == 5) & (out == 0)] = 5
    return out


@pytest.fixture
def ct_folders(tmp_path):
    """REF: the chest CT segmentation twice (NRRD); PRED: perturbed copies (NIfTI)."""
    seg = read_volume(CT_SEG)
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    for i in range(2):
        (ref_dir / f"chest_{i}.seg.nrrd").write_bytes(CT_SEG.read_bytes())
        write_volume(Volume(_perturb(seg.array, i), seg.affine), pred_dir / f"chest_{i}.nii.gz")
    labels = tmp_path / "dataset.json"
    names = ["background", "ribs", "cervical", "thoracic", "lumbar", "right lung", "left lung", "tissue", "heart"]
    labels.write_text(json.dumps({"labels": {n: v for v, n in enumerate(names)}}))
    return pred_dir, ref_dir, labels, seg


def test_folders_with_labels(cli, ct_folders, tmp_path):
    pred_dir, ref_dir, labels, seg = ct_folders
    before = sha256(pred_dir), sha256(ref_dir)
    out = tmp_path / "results"
    r = cli("evaluate", "--pred", pred_dir, "--ref", ref_dir, "--labels", labels, "--out", out, "--tolerance-mm", 3)
    assert r.returncode == 0, r.stderr
    assert (sha256(pred_dir), sha256(ref_dir)) == before  # inputs untouched
    table = r.stdout.splitlines()
    assert table[0].startswith("| label | name | n | Dice |") and "NSD@3mm" in table[0]
    assert any(line.startswith("| 8 | heart | 2 | 1.000") for line in table)  # declared, absent: both empty
    assert table[-1].startswith("| all |")
    text = (out / "metrics.csv").read_text()
    assert text.splitlines()[0].startswith(HEADER + ",")
    rows = list(csv.DictReader(text.splitlines()))
    assert [(r["case"], r["label"]) for r in rows] == [(f"chest_{i}", str(v)) for i in range(2) for v in range(1, 9)]
    # The CLI writes what the Python API computes.
    direct = evaluate_case(read_volume(pred_dir / "chest_1.nii.gz"), seg, labels=labels, tolerance_mm=3).rows
    for got, want in zip(rows[8:], direct):
        for k in METRIC_COLUMNS[2:]:
            assert float(got[k]) == pytest.approx(want[k], rel=1e-6)
    assert rows[0]["name"] == "ribs" and rows[7]["empty"] == "both"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"]["scored"] == 2 and summary["per_class"]["5"]["name"] == "right lung"
    assert (out / "lesions.csv").read_text().startswith("case,label,side,lesion,")


def test_a_predict_folders_labels_json_names_and_declares_the_classes(cli, ct_folders, tmp_path):
    """Without --labels, a prediction folder's labels.json (written by `medseg predict`) is used,
    so `medseg evaluate` names classes and scores declared-but-absent ones as `medseg report` does."""
    pred_dir, ref_dir, labels, _ = ct_folders
    plain = cli("evaluate", "--pred", pred_dir, "--ref", ref_dir, "--tolerance-mm", 3)
    assert plain.returncode == 0, plain.stderr
    assert not any(line.startswith("| 8 |") for line in plain.stdout.splitlines())  # heart: in neither
    table = json.loads(labels.read_text())["labels"]
    (pred_dir / "labels.json").write_text(json.dumps({"labels": table}))
    r = cli("evaluate", "--pred", pred_dir, "--ref", ref_dir, "--tolerance-mm", 3)
    assert r.returncode == 0, r.stderr
    assert "classes from" in r.stderr and "labels.json" in r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("| 5 | right lung | 2 |") for line in lines)
    assert any(line.startswith("| 8 | heart | 2 | 1.000") for line in lines)
    # the same table as with the dataset.json given explicitly
    explicit = cli("evaluate", "--pred", pred_dir, "--ref", ref_dir, "--labels", labels, "--tolerance-mm", 3)
    assert explicit.stdout == r.stdout


def test_missing_prediction_is_reported_and_exits_2(cli, ct_folders, tmp_path):
    pred_dir, ref_dir, _, _ = ct_folders
    (ref_dir / "chest_2.seg.nrrd").write_bytes(CT_SEG.read_bytes())
    out = tmp_path / "out"
    r = cli("evaluate", "--pred", pred_dir, "--ref", ref_dir, "--out", out)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "chest_2: no prediction" in errors[0] and "Traceback" not in r.stderr
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["status"] for r in rows if r["case"] == "chest_2"] == ["missing_pred"]
    assert sum(r["status"] == "ok" for r in rows) == 14  # the other cases were still scored


def test_grid_mismatch_needs_resample_pred(cli, tmp_path):
    ref = np.zeros((20, 20, 8), np.uint8)
    ref[4:14, 4:12, 2:6] = 1
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    write_volume(Volume(ref, affine), tmp_path / "ref.nii.gz")
    coarse = ref[::2, ::2, :]  # the same mask on a grid of 1.6 mm in-plane
    aff2 = affine.copy()
    aff2[:2, :2] *= 2
    aff2[:2, 3] = 0.4
    write_volume(Volume(coarse, aff2), tmp_path / "pred.nii.gz")
    r = cli("evaluate", "--pred", tmp_path / "pred.nii.gz", "--ref", tmp_path / "ref.nii.gz", cwd=tmp_path)
    assert r.returncode == 2 and "--resample-pred" in r.stderr and "Traceback" not in r.stderr
    r = cli("evaluate", "--pred", tmp_path / "pred.nii.gz", "--ref", tmp_path / "ref.nii.gz", "--resample-pred",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| 1 |  | 1 | 1.000 |" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.nii.gz", "ref.nii.gz"]  # no --out: nothing written


def test_undeclared_label_and_existing_results(cli, ct_folders, tmp_path):
    pred_dir, ref_dir, _, _ = ct_folders
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"labels": {"0": "background", "1": "ribs"}}))  # Decathlon style
    r = cli("evaluate", "--pred", pred_dir, "--ref", ref_dir, "--labels", small)
    assert r.returncode == 2 and "not declared" in r.stderr
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.csv").write_text("mine\n")
    r = cli("evaluate", "--pred", pred_dir, "--ref", ref_dir, "--out", out)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert (out / "metrics.csv").read_text() == "mine\n"


def test_instance_maps(cli, tmp_path):
    ref = np.zeros((30, 30, 6), np.uint16)
    ref[2:10, 2:10, 1:4] = 1
    ref[15:25, 15:25, 1:4] = 2
    pred = np.zeros_like(ref)
    pred[2:10, 3:10, 1:4] = 7
    write_volume(Volume(ref, np.eye(4)), tmp_path / "r" / "c.nii.gz")
    write_volume(Volume(pred, np.eye(4)), tmp_path / "p" / "c.nii.gz")
    r = cli("evaluate", "--pred", tmp_path / "p", "--ref", tmp_path / "r", "--instances", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    row = next(csv.DictReader((tmp_path / "o" / "instances.csv").open()))
    assert (row["tp"], row["fp"], row["fn"]) == ("1", "0", "1")
    assert float(row["pq"]) == pytest.approx((56 / 64) / 1.5)  # IoU 7/8 over TP + FN/2
    assert "instances: PQ" in r.stdout
