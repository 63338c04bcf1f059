"""Review export that always trains: a correction painting a label value the run did not know is
declared (``class_<v>``) and reported; dataset.json carries the run's class names; the export
passes ``check_dataset``; ``medseg review DIR --export OUT`` runs without napari or Qt. No GUI."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np

from medseg.data.layout import load_dataset
from medseg.data.validate import check_dataset
from medseg.io.labels import LabelTable, write_labels
from medseg.review import ReviewSession
from tests.napari.factory import review_folder

RUN_NAMES = {"background": 0, "liver": 1, "tumour": 2}
NO_GUI = ("bad = [m for m in sys.modules if m.split('.')[0] in "
          "('napari', 'napari_medseg', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'vispy')]\nassert not bad, bad\n")


def test_export_declares_a_painted_value_and_uses_the_run_names(tmp_path):
    root = review_folder(tmp_path / "r", "manifest", n=2, dataset_json=False)
    write_labels(root, LabelTable(RUN_NAMES, {"tumour": (255, 255, 0)}, source="runs/demo"))  # as `medseg predict` does
    s = ReviewSession(root, reviewer="dr_a")
    assert s.classes("case_000") == {0: "background", 1: "liver", 2: "tumour"}
    corr = s.load("case_000").labels
    corr[2:5, 2:5, 2:4] = 7                                    # a class the run does not know
    s.save_correction("case_000", corr)
    record = s.accept("case_000")
    assert record["status"] == "corrected" and record["classes"]["7"] == "class_7"
    assert record["classes"]["1"] == "liver"                    # the audit log names the run's classes
    s.accept("case_001")

    out = tmp_path / "Dataset902_Reviewed"
    code = ("import sys\nfrom medseg.cli.main import main\n"
            f"rc = main(['review', {str(root)!r}, '--export', {str(out)!r}])\n" + NO_GUI + "sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "7 = class_7" in r.stdout and "exported 2 case(s)" in r.stdout

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1, "tumour": 2, "class_7": 7}
    assert meta["medseg_added_classes"] == {"7": "class_7"} and meta["medseg_labels_source"] == "runs/demo"
    assert json.loads((out / "labels.json").read_text())["colors"]["tumour"] == [255, 255, 0]
    report = check_dataset(load_dataset(out))
    assert report.ok, report.lines()
    np.testing.assert_array_equal(np.asarray(nib.load(str(out / "labelsTr" / "case_000.nii.gz")).dataobj), corr)
    # the review folder was only read
    assert sorted(p.name for p in (root / "review").iterdir()) == ["audit.jsonl", "corrected", "state.json"]


def test_export_cli_errors_are_one_line(tmp_path, cli):
    root = review_folder(tmp_path / "r", "images/masks", n=1)
    r = cli("review", root, "--export", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "review some cases" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
