"""`medseg evaluate` / `medseg report` on DICOM SEG predictions (the `medseg predict --format
dicom-seg` layout ``OUT/<case>/seg.dcm`` + manifest.csv + labels.json + uncertainty maps) give
the same numbers as on a NIfTI folder of the same masks; a failing report leaves no folder."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest

from medseg.errors import MedsegWarning
from medseg.io import read_volume, write_dicom_seg, write_mask_like, write_volume
from medseg.io.labels import LabelTable, write_labels
from medseg.predict.manifest import Manifest
from medseg.volume import Volume
from tests.helpers import write_dicom_series

NAMES = {"background": 0, "liver": 1, "tumour": 2}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("segeval")
    rng = np.random.default_rng(4)
    for d in ("pred_seg", "pred_nii", "ref"):
        (root / d).mkdir()
    rows = []
    for n, case in enumerate(("c1", "c2")):
        pixels = rng.integers(0, 400, (16, 14, 8)).astype(np.uint16)
        write_dicom_series(root / "scans" / case, pixels, seed=n, series_uid=f"1.2.826.0.1.3680043.8.498.{n + 10}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MedsegWarning)
            src = read_volume(root / "scans" / case)
        ref = np.zeros(src.shape, np.uint8)
        ref[3:10, 2:9, 2:6] = 1
        ref[5:8, 4:7, 3:5] = 2
        pred = ref.copy()
        pred[3:10, 2:4, 2:6] = 0                    # lose part of the liver
        pred[11:13, 10:12, 5 + n:7] = 2             # a false tumour; slices with frames differ per case
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MedsegWarning)
            write_dicom_seg(Volume(pred, src.affine), src, NAMES, root / "pred_seg" / case / "seg.dcm")
        write_mask_like(pred, src, root / "pred_nii" / f"{case}.nii.gz")
        write_mask_like(ref, src, root / "ref" / f"{case}.nii.gz")
        write_volume(Volume(rng.random(src.shape, np.float32), src.affine), root / "pred_seg" / f"{case}_uncertainty.nii.gz")
        rows.append({"case": case, "input": f"{root / 'scans' / case}#1.2.826.0.1.3680043.8.498.{n + 10}",
                     "output": f"{case}/seg.dcm", "status": "done"})
    m = Manifest(root / "pred_seg" / "manifest.csv", ["liver", "tumour"])
    for r in rows:
        m.set(r)
    m.save()
    write_labels(root / "pred_seg", LabelTable(NAMES, {"liver": (10, 200, 30)}))
    return root


def _metrics(path):
    with open(path, newline="") as f:
        return {(r["case"], r["label"]): r for r in csv.DictReader(f)}


def test_evaluate_seg_folder_equals_nifti_folder(cli, folders):
    r_seg = cli("evaluate", "--pred", folders / "pred_seg", "--ref", folders / "ref", "--out", folders / "ev_seg")
    assert r_seg.returncode == 0, r_seg.stderr
    assert "no reference case" not in r_seg.stderr                # uncertainty maps are not predictions
    r_nii = cli("evaluate", "--pred", folders / "pred_nii", "--ref", folders / "ref", "--out", folders / "ev_nii")
    assert r_nii.returncode == 0, r_nii.stderr
    seg, nii = _metrics(folders / "ev_seg" / "metrics.csv"), _metrics(folders / "ev_nii" / "metrics.csv")
    assert set(seg) == set(nii) == {(c, v) for c in ("c1", "c2") for v in ("1", "2")}
    for key in nii:
        for col in ("dice", "hd95_mm", "pred_ml", "ref_ml", "status"):
            assert seg[key][col] == nii[key][col], (key, col)
    # hand-computed liver Dice of c1: ref 7*7*4 = 196 voxels, pred keeps 7*5*4 - 3*3*2 = 122 of them
    # (the tumour core is class 2 in both) -> ref liver 196-18 = 178, pred liver 140-18 = 122
    assert float(nii[("c1", "1")]["dice"]) == pytest.approx(2 * 122 / (178 + 122))
    # a single SEG file against a single reference file
    one = cli("evaluate", "--pred", folders / "pred_seg" / "c1" / "seg.dcm", "--ref", folders / "ref" / "c1.nii.gz")
    assert one.returncode == 0, one.stderr
    assert f"{2 * 122 / 300:.3f}" in one.stdout


def test_report_on_seg_folder_uses_names_and_equals_nifti(cli, folders):
    r = cli("report", folders / "pred_seg", "--ref", folders / "ref", "--out", folders / "rep")
    assert r.returncode == 0, r.stderr
    text = (folders / "rep" / "report.md").read_text()
    assert "| liver |" in text.replace("| 1 | liver |", "| liver |") and "tumour" in text
    assert (folders / "rep" / "overlays" / "c1.png").is_file() and (folders / "rep" / "overlays" / "c2.png").is_file()
    assert json.loads((folders / "rep" / "labels.json").read_text())["colors"]["liver"] == [10, 200, 30]
    ev = _metrics(folders / "rep" / "metrics" / "metrics.csv")
    if not (folders / "ev_nii").exists():
        cli("evaluate", "--pred", folders / "pred_nii", "--ref", folders / "ref", "--out", folders / "ev_nii")
    nii = _metrics(folders / "ev_nii" / "metrics.csv")
    assert {k: v["dice"] for k, v in ev.items()} == {k: v["dice"] for k, v in nii.items()}
    assert ev[("c1", "1")]["name"] == "liver"


def test_failed_report_leaves_no_folder(cli, folders, tmp_path):
    bad = tmp_path / "pred"
    bad.mkdir()
    (bad / "c1").mkdir()
    (bad / "c1" / "seg.dcm").write_bytes((folders / "pred_seg" / "c1" / "seg.dcm").read_bytes())
    with open(bad / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["case", "input", "output", "status"])
        w.writeheader()
        w.writerow({"case": "c1", "input": str(tmp_path / "gone"), "output": "c1/seg.dcm", "status": "done"})
    r = cli("report", bad, "--out", tmp_path / "out" / "rep")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "rep").exists()
    assert not [p for p in (tmp_path / "out").iterdir()]          # no temporary folder left either
