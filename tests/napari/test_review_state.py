"""Review state without Qt: worklist discovery, status transitions, audit log, crash recovery,
nnU-Net export. References: nibabel reads of the files, hand-computed Dice and volumes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import datetime

import nibabel as nib
import numpy as np
import pytest

from medseg.data.layout import load_dataset
from medseg.data.validate import check_dataset
from medseg.errors import InputError, MedsegError, OutputError
from napari_medseg.review import ReviewSession, discover
from tests.helpers import sha256
from tests.napari.factory import review_folder


def _nib(path):
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def _audit(session):
    return [json.loads(line) for line in session.audit_path.read_text().splitlines()]


@pytest.mark.parametrize("layout", ["images/masks", "manifest", "nnunet"])
def test_discover_layouts(tmp_path, layout):
    root = review_folder(tmp_path / "review_me", layout, n=3, uncertainty=[0.2, 0.9, 0.5])
    wl = discover(root)
    assert [c.case for c in wl.cases] == ["case_000", "case_001", "case_002"]
    for c in wl.cases:
        assert c.mask.is_file() and c.image.is_file()
        assert c.image.name.startswith(c.case)
    assert wl.labels == {0: "background", 1: "organ", 2: "lesion"}
    if layout == "manifest":
        assert [c.uncertainty for c in wl.cases] == [0.2, 0.9, 0.5]
        assert wl.cases[0].model_id == "unet-test"
        assert any("failed" in msg and "unreadable" in msg for _c, msg in wl.problems)
    else:
        assert all(c.uncertainty is None for c in wl.cases)


def test_discover_reports_unmatched_and_refuses_other_folders(tmp_path):
    root = review_folder(tmp_path / "r", "images/masks", n=2)
    (root / "masks" / "case_001.nii.gz").rename(root / "masks" / "other.nii.gz")
    wl = discover(root)
    assert [c.case for c in wl.cases] == ["case_000"]
    assert {c for c, _m in wl.problems} == {"case_001", "other"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="manifest.csv"):
        discover(tmp_path / "empty")


def test_status_transitions(tmp_path):
    s = ReviewSession(review_folder(tmp_path / "r", n=2), reviewer="dr_a")
    assert [r["status"] for r in s.rows()] == ["not started", "not started"]
    s.open("case_000")
    assert s.state("case_000").status == "in progress"
    assert s.accept("case_000")["status"] == "approved"          # no edit: approved
    labels = s.load("case_000").labels
    labels[labels == 2] = 0
    s.save_correction("case_000", labels)                       # editing a finished case reopens it
    assert s.state("case_000").status == "in progress"
    with pytest.raises(MedsegError, match="differs from the prediction"):
        s.set_status("case_000", "approved")
    assert s.accept("case_000")["status"] == "corrected"        # edited: corrected
    assert s.flag("case_000", note="lesion unclear")["status"] == "flagged"
    assert s.state("case_000").note == "lesion unclear"
    assert s.reopen("case_000")["status"] == "in progress"
    assert s.set_status("case_000", "in progress") is None      # no change, no audit line
    with pytest.raises(MedsegError, match="not started"):
        s.set_status("case_000", "not started")
    with pytest.raises(MedsegError, match="unknown status"):
        s.set_status("case_000", "done")
    with pytest.raises(MedsegError, match="equals the prediction"):
        s.set_status("case_001", "corrected")
    s.reviewer = ""
    with pytest.raises(MedsegError, match="reviewer"):
        s.flag("case_001")
    statuses = [r["status"] for r in _audit(s)]
    assert statuses == ["in progress", "approved", "in progress", "corrected", "flagged", "in progress"]


def test_audit_line_contents(tmp_path):
    root = review_folder(tmp_path / "r", n=1)
    pred, aff = _nib(root / "masks" / "case_000.nii.gz")
    voxel_ml = float(np.prod(np.linalg.norm(aff[:3, :3], axis=0))) / 1000.0
    s = ReviewSession(root, reviewer="dr_b")
    corr = pred.copy()
    corr[corr == 2] = 0                         # delete the lesion
    organ = np.argwhere(pred == 0)[:50]
    corr[tuple(organ.T)] = 1                    # add 50 organ voxels
    s.save_correction("case_000", corr)
    s.add_time("case_000", 42.0)
    rec = s.accept("case_000")
    line = _audit(s)[-1]
    assert line == json.loads(json.dumps(rec))
    n_lesion = int((pred == 2).sum())
    assert line["case"] == "case_000" and line["reviewer"] == "dr_b" and line["status"] == "corrected"
    assert line["previous"] == "in progress" and line["seconds"] == 42.0
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert line["voxels_changed"] == n_lesion + 50
    fg_p, fg_c = pred > 0, corr > 0
    assert line["dice"] == pytest.approx(2 * (fg_p & fg_c).sum() / (fg_p.sum() + fg_c.sum()), abs=1e-6)
    assert line["dice_per_class"]["2"] == 0.0
    organ_p, organ_c = pred == 1, corr == 1
    assert line["dice_per_class"]["1"] == pytest.approx(2 * (organ_p & organ_c).sum() / (organ_p.sum() + organ_c.sum()), abs=1e-6)
    assert line["volume_change_ml"]["1"] == pytest.approx(50 * voxel_ml, abs=1e-3)
    assert line["volume_change_ml"]["2"] == pytest.approx(-n_lesion * voxel_ml, abs=1e-3)
    assert line["classes"] == {"1": "organ", "2": "lesion"}
    assert line["correction"] == "review/corrected/case_000.nii.gz"


def test_corrections_on_prediction_grid_and_inputs_untouched(tmp_path):
    root = review_folder(tmp_path / "r", n=2)
    before = sha256(root / "masks"), sha256(root / "images")
    s = ReviewSession(root, reviewer="dr_c")
    pred, aff = _nib(root / "masks" / "case_001.nii.gz")
    corr = pred.copy()
    corr[:3] = 1
    path = s.save_correction("case_001", corr)
    assert path == root / "review" / "corrected" / "case_001.nii.gz"
    data, aff_c = _nib(path)
    np.testing.assert_array_equal(data, corr)
    np.testing.assert_array_equal(aff_c, aff)
    assert (sha256(root / "masks"), sha256(root / "images")) == before
    assert not list((root / "review").rglob("*.tmp*"))   # atomic writes leave no temporary files


def test_crash_and_reopen_restores_statuses_and_corrections(tmp_path):
    root = review_folder(tmp_path / "r", n=3)
    s = ReviewSession(root, reviewer="dr_d")
    c0 = s.load("case_000").labels
    c0[c0 == 1] = 2
    s.save_correction("case_000", c0)
    s.accept("case_000")
    s.flag("case_001", note="artefact")
    c2 = s.load("case_002").labels
    c2[:, :, :2] = 0
    s.save_correction("case_002", c2)           # then the program "crashes": nothing else is called
    del s

    s2 = ReviewSession(root, reviewer="dr_d")
    assert [r["status"] for r in s2.rows()] == ["corrected", "flagged", "in progress"]
    loaded = s2.load("case_002")
    assert loaded.restored
    np.testing.assert_array_equal(loaded.labels, c2)
    np.testing.assert_array_equal(s2.load("case_000").labels, c0)
    assert not s2.load("case_001").restored

    # state.json lost or damaged: statuses come back from the audit log
    s2.state_path.write_text("{not json")
    s3 = ReviewSession(root)
    assert [r["status"] for r in s3.rows()] == ["corrected", "flagged", "in progress"]
    assert list((root / "review").glob("state.json.damaged-*"))

    # a correction written just before a crash, with no status change recorded
    root2 = review_folder(tmp_path / "r2", n=1)
    pred, aff = _nib(root2 / "masks" / "case_000.nii.gz")
    from tests.napari.factory import save_nifti

    save_nifti(root2 / "review" / "corrected" / "case_000.nii.gz", (pred > 0).astype(np.uint8), aff)
    s4 = ReviewSession(root2)
    assert s4.state("case_000").status == "in progress"
    assert s4.load("case_000").restored


def test_export_nnunet_dataset(tmp_path):
    root = review_folder(tmp_path / "r", "manifest", n=3, uncertainty=[0.1, 0.2, 0.3])
    s = ReviewSession(root, reviewer="dr_e")
    corr = s.load("case_000").labels
    corr[corr == 2] = 1
    s.save_correction("case_000", corr)
    s.accept("case_000")            # corrected
    s.accept("case_001")            # approved
    s.flag("case_002")              # not exported
    out = tmp_path / "Dataset901_Reviewed"
    result = s.export_nnunet(out)
    assert result.cases == ["case_000", "case_001"] and not result.skipped
    spec = load_dataset(out)
    report = check_dataset(spec)
    assert report.ok, report.lines()
    assert [c.case_id for c in spec.cases] == ["case_000", "case_001"]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "organ": 1, "lesion": 2}
    assert meta["channel_names"] == {"0": "CT"} and meta["numTraining"] == 2
    lab0, aff0 = _nib(out / "labelsTr" / "case_000.nii.gz")
    np.testing.assert_array_equal(lab0, corr)
    img0, aff_img = _nib(out / "imagesTr" / "case_000_0000.nii.gz")
    src, aff_src = _nib(tmp_path / "r_scans" / "case_000.nii.gz")
    np.testing.assert_array_equal(img0, src)
    np.testing.assert_allclose(aff_img, aff_src, atol=1e-5)
    np.testing.assert_array_equal(aff0, aff_img)
    lab1, _ = _nib(out / "labelsTr" / "case_001.nii.gz")
    np.testing.assert_array_equal(lab1, _nib(root / "case_001.nii.gz")[0])
    with pytest.raises(OutputError, match="not empty"):
        s.export_nnunet(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary folder left


def test_export_needs_accepted_cases(tmp_path):
    s = ReviewSession(review_folder(tmp_path / "r", n=1), reviewer="x")
    with pytest.raises(MedsegError, match="review some cases"):
        s.export_nnunet(tmp_path / "out")


def test_state_modules_do_not_import_qt_or_napari():
    code = ("import sys, napari_medseg.review.state, napari_medseg.review.export, napari_medseg.review.cases, "
            "napari_medseg.correction, napari_medseg.layers, napari_medseg.view, napari_medseg.segment\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'vispy')]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_flag_note_survives_edits_and_the_audit_log_keeps_the_history(tmp_path):
    root = review_folder(tmp_path / "r", n=1)
    s = ReviewSession(root, reviewer="dr_n")
    s.open("case_000")
    s.flag("case_000", note="lesion margin unclear")
    labels = s.load("case_000").labels
    labels[labels == 2] = 1
    s.save_correction("case_000", labels)                       # the program reopens it: "edited"
    assert s.state("case_000").status == "in progress"
    assert s.state("case_000").note == "lesion margin unclear"
    s.accept("case_000")                                         # no note given: the note stays
    assert s.state("case_000").note == "lesion margin unclear"
    lines = _audit(s)
    assert [(r["event"], r["previous"], r["status"]) for r in lines] == [
        ("opened", "not started", "in progress"), ("reviewer", "in progress", "flagged"),
        ("edited", "flagged", "in progress"), ("reviewer", "in progress", "corrected")]
    assert [r["note"] for r in lines] == ["", "lesion margin unclear", "lesion margin unclear", "lesion margin unclear"]

    s.state_path.unlink()                                        # rebuilt from the audit log: the same note
    assert ReviewSession(root).state("case_000").note == "lesion margin unclear"
    s.reopen("case_000", note="")                                # a reviewer may clear it
    assert s.state("case_000").note == "" and _audit(s)[-1]["note"] == ""


def test_audit_lines_written_before_events_existed_keep_the_reviewers_note(tmp_path):
    root = review_folder(tmp_path / "r", n=1)
    (root / "review").mkdir()
    old = [{"case": "case_000", "reviewer": "a", "time": "t1", "status": "in progress", "note": "opened"},
           {"case": "case_000", "reviewer": "a", "time": "t2", "status": "flagged", "note": "motion"},
           {"case": "case_000", "reviewer": "a", "time": "t3", "status": "in progress", "note": "edited"}]
    (root / "review" / "audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    state = ReviewSession(root).state("case_000")
    assert (state.status, state.note) == ("in progress", "motion")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_review_outputs_honour_the_umask(tmp_path, umask):
    """A second reviewer account in the group can read the corrections, state and audit log:
    the modes a plain open()/mkdir() gives under the same umask (0644/0755 with umask 022)."""
    old = os.umask(umask)
    try:
        ref_file = tmp_path / "reference.txt"
        with open(ref_file, "w") as f:
            f.write("x")
        ref_dir = tmp_path / "reference_dir"
        ref_dir.mkdir()
        root = review_folder(tmp_path / "r", n=1)
        s = ReviewSession(root, reviewer="dr_m")
        labels = s.load("case_000").labels
        labels[0, 0, 0] = 2
        s.save_correction("case_000", labels)
        s.add_time("case_000", 5.0)
        s.flag("case_000", note="check")
    finally:
        os.umask(old)
    want_file, want_dir = stat.S_IMODE(ref_file.stat().st_mode), stat.S_IMODE(ref_dir.stat().st_mode)
    assert want_file == (0o644 if umask == 0o022 else 0o640)
    review = root / "review"
    for path in (review / "state.json", review / "audit.jsonl", review / "corrected" / "case_000.nii.gz"):
        assert stat.S_IMODE(path.stat().st_mode) == want_file, path
    for path in (review, review / "corrected"):
        assert stat.S_IMODE(path.stat().st_mode) == want_dir, path


def test_a_class_added_by_name_is_named_after_reopening(tmp_path):
    """A class the reviewer added by name (recorded in review/labels.json by the correction
    widget) keeps its name when the session is reopened: worklist, audit log and layer."""
    root = review_folder(tmp_path / "r", n=1)
    s = ReviewSession(root, reviewer="dr_c")
    pred, _ = _nib(root / "masks" / "case_000.nii.gz")
    new = int(pred.max()) + 1
    corr = pred.copy()
    corr[:2] = new
    s.save_correction("case_000", corr)
    assert s.classes("case_000")[new] == f"class_{new}"          # unnamed: the generic name
    (root / "review" / "labels.json").write_text(json.dumps({"labels": {"cyst": new}, "colors": {"cyst": [1, 2, 3]}}))
    again = ReviewSession(root, reviewer="dr_c")
    assert again.classes("case_000")[new] == "cyst"
    assert again.label_table("case_000").colors["cyst"] == (1, 2, 3)
    # a name that clashes with the run's classes does not replace them
    first = min(v for v in s.classes("case_000") if v)
    (root / "review" / "labels.json").write_text(json.dumps({"labels": {"other": first}}))
    assert ReviewSession(root, reviewer="dr_c").classes("case_000")[first] == s.classes("case_000")[first]
