"""The research loop on a dataset that is not the phantoms' (other label names, other numbers),
with the shipped CPU preset unedited and no plan flags, through the `medseg` command:

train (tiny) -> predict -> review (every case accepted, one edit paints a new label value) ->
export -> check-dataset -> fine-tune with --init -> predict again; class names asserted at
every step.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.cli.main import main as medseg_main
from medseg.data.phantoms import write_phantom_dataset

#: phantom value -> (new name, new value): another anatomy's names, renumbered
RENAME = {1: ("lung", 2), 2: ("heart", 3), 3: ("rib", 1), 4: ("nodule", 4)}
LABELS = {"background": 0, "rib": 1, "lung": 2, "heart": 3, "nodule": 4}
PRESET = Path(__file__).resolve().parents[1] / "configs" / "unet_tumor_cpu.yaml"


def renamed_phantoms(root: Path, cases: int, seed: int) -> Path:
    """A phantom set whose classes are renamed and re-numbered (nibabel writes the labels)."""
    src = root.parent / f"{root.name}_src"
    write_phantom_dataset(src, cases=cases, seed=seed, size="small")
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for img in sorted((src / "imagesTr").glob("*.nii.gz")):
        shutil.copy(img, root / "imagesTr" / img.name)
    lut = np.zeros(256, np.uint8)
    for old, (_, new) in RENAME.items():
        lut[old] = new
    for lab in sorted((src / "labelsTr").glob("*.nii.gz")):
        nii = nib.load(lab)
        out = nib.Nifti1Image(lut[np.asarray(nii.dataobj)], nii.affine, nii.header)
        nib.save(out, root / "labelsTr" / lab.name)
    ds = {"name": "ThoraxLike", "channel_names": {"0": "CT"}, "labels": LABELS,
          "numTraining": cases, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(ds))
    return root


def run(*args: str) -> int:
    return medseg_main([str(a) for a in args])


def labels_of(folder: Path) -> dict[str, int]:
    return json.loads((folder / "labels.json").read_text())["labels"]


@pytest.mark.slow
def test_the_loop_runs_on_another_dataset_with_the_shipped_preset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDSEG_CACHE", str(tmp_path / "cache"))
    ds = renamed_phantoms(tmp_path / "thorax", cases=5, seed=3)
    test = renamed_phantoms(tmp_path / "thorax_test", cases=3, seed=9)

    # plan: automatic CPU plan, class roles from the labels (no names in the preset)
    assert run("plan", ds, "--device", "cpu", "--out", tmp_path / "plan.yaml") == 0
    text = (tmp_path / "plan.yaml").read_text()
    assert "small_structures: [nodule]" in text
    assert "keep_largest: [lung, heart]" in text

    # train (tiny: one epoch of the preset), no plan flags
    run_dir = tmp_path / "run"
    assert run("train", "--config", PRESET, "--dataset", ds, "--out", run_dir, "--epochs", "1", "--device", "cpu") == 0
    assert labels_of(run_dir) == LABELS
    assert "nodule" in (run_dir / "plan.yaml").read_text()

    # predict: the names travel with the output folder
    pred = tmp_path / "pred"
    assert run("predict", test / "imagesTr", "--model", run_dir, "--out", pred, "--device", "cpu") == 0
    assert labels_of(pred) == LABELS
    assert "volume_ml_nodule" in (pred / "manifest.csv").read_text().splitlines()[0]

    # review: every case accepted; one correction adds a missed nodule (4) and paints a value
    # the run does not know (5)
    from medseg.review import ReviewSession

    session = ReviewSession(pred, reviewer="dr_a")
    assert session.classes(session.cases[0].case) == {v: n for n, v in LABELS.items()}
    names = {str(v): n for n, v in LABELS.items()}
    for i, c in enumerate(session.cases):
        if i == 0:
            corr = session.load(c.case).labels
            corr[10:14, 10:14, 5:8] = 5
            corr[20:23, 20:23, 5:7] = 4
            session.save_correction(c.case, corr)
        record = session.accept(c.case)
        if i == 0:  # the audit log names the run's classes (the values in the prediction or correction)
            assert record["classes"]["4"] == "nodule" and record["classes"]["5"] == "class_5"
        assert {k: v for k, v in record["classes"].items() if k in names} == \
            {k: names[k] for k in record["classes"] if k in names}
    assert record["status"] == "approved" and session.state(session.cases[0].case).status == "corrected"

    # export without a GUI -> a dataset that checks out and names every value
    export = tmp_path / "Dataset902_Reviewed"
    assert run("review", pred, "--export", export) == 0
    assert "5 = class_5" in capsys.readouterr().out
    exported = json.loads((export / "dataset.json").read_text())["labels"]
    assert exported == {**LABELS, "class_5": 5}
    assert run("check-dataset", export) == 0

    # fine-tune from the first run: its plan and weights, a fresh head for the new class count
    run2 = tmp_path / "run2"
    assert run("train", "--config", PRESET, "--dataset", export, "--out", run2, "--epochs", "1", "--fold", "all",
               "--device", "cpu", "--init", run_dir) == 0
    info = json.loads((run2 / "run.json").read_text())["init"]
    assert info["run"] == str(run_dir.resolve()) and info["head_reset"]
    assert labels_of(run2) == {**LABELS, "class_5": 5}
    first_plan, second_plan = (run_dir / "plan.yaml").read_text(), (run2 / "plan.yaml").read_text()
    assert first_plan.split("network:")[1].split("training:")[0] == second_plan.split("network:")[1].split("training:")[0]

    # predict again with the fine-tuned run: the new names travel too
    pred2 = tmp_path / "pred2"
    assert run("predict", test / "imagesTr", "--model", run2, "--out", pred2, "--device", "cpu") == 0
    assert labels_of(pred2) == {**LABELS, "class_5": 5}
