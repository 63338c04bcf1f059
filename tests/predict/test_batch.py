"""Batch behaviour of `medseg predict`: manifest, failure isolation, resume, naming, formats."""

import csv
import shutil

import nibabel as nib
import numpy as np
import pytest

from medseg.io import read_volume
from medseg.predict import Predictor, predict_folder
from medseg.predict.predictor import Predictor as PredictorClass
from tests.helpers import MR_DICOM, sha256


def _rows(out):
    with open(out / "manifest.csv", newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


@pytest.fixture
def study(tmp_path, phantom_images):
    """Two phantom scans (one in a sub-folder) and a corrupt one."""
    root = tmp_path / "study"
    (root / "sub").mkdir(parents=True)
    shutil.copy(phantom_images[0], root / "a.nii.gz")
    shutil.copy(phantom_images[1], root / "sub" / "b.nii.gz")
    data = phantom_images[2].read_bytes()
    (root / "c.nii.gz").write_bytes(data[: len(data) // 3])  # truncated: corrupt
    return root


def test_corrupt_case_is_recorded_and_the_batch_goes_on(study, tiny_run, tmp_path, cli):
    before = sha256(study)
    out = tmp_path / "out"
    r = cli("predict", study, "--model", tiny_run, "--out", out, "--device", "cpu")
    assert r.returncode == 1
    assert "1 case(s) failed" in r.stderr and "Traceback" not in r.stderr
    rows = _rows(out)
    assert set(rows) == {"a", "sub/b", "c"}
    assert rows["c"]["status"] == "failed" and "c.nii.gz" in rows["c"]["error"]
    for case, rel in (("a", "a.nii.gz"), ("sub/b", "sub/b.nii.gz")):
        row = rows[case]
        assert row["status"] == "done" and row["output"] == rel and row["error"] == ""
        assert row["model_id"].startswith(tiny_run.name + "-") and float(row["seconds"]) > 0
        mask = nib.load(out / rel)
        src = nib.load(study / rel)
        np.testing.assert_allclose(mask.affine, src.affine, atol=1e-5)
        # volumes in the manifest = voxel counts x voxel volume, computed independently
        data = np.asarray(mask.dataobj)
        vox_ml = abs(np.linalg.det(src.affine[:3, :3])) / 1000
        for name, value in (("liver", 1), ("kidney", 3)):
            assert float(row[f"volume_ml_{name}"]) == pytest.approx((data == value).sum() * vox_ml, abs=1e-3)
    assert sha256(study) == before, "inputs must never be modified"
    assert not (out / "c.nii.gz").exists()


def test_cli_and_python_api_give_identical_masks(study, tiny_run, tmp_path, cli):
    (study / "c.nii.gz").unlink()
    r = cli("predict", study / "a.nii.gz", "--model", tiny_run, "--out", tmp_path / "cli", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    api = Predictor.from_run(tiny_run, device="cpu")(read_volume(study / "a.nii.gz"))
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "cli" / "a.nii.gz").dataobj), api.array)
    summary = predict_folder(tiny_run, [study], tmp_path / "api", device="cpu", progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "api" / "a.nii.gz").dataobj), api.array)


def test_resume_after_a_simulated_crash(study, tiny_run, tmp_path, monkeypatch, cli):
    """A Ctrl-C during case 2 leaves case 1 done, nothing half-written; --resume finishes."""
    (study / "c.nii.gz").unlink()
    out = tmp_path / "out"
    calls = {"n": 0}
    real = PredictorClass.predict

    def crash_on_second(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(PredictorClass, "predict", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        predict_folder(tiny_run, [study], out, device="cpu", progress=False)
    rows = _rows(out)
    assert [r["status"] for r in rows.values()] == ["done"]
    done_case = next(iter(rows))
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(["manifest.csv", "labels.json", rows[done_case]["output"].split("/")[-1]])
    (out / ".b.nii.gz.k3j2_a9b.tmp.nii.gz").write_bytes(b"half")  # what a kill -9 during a write leaves (mkstemp name)
    monkeypatch.setattr(PredictorClass, "predict", real)

    r = cli("predict", study, "--model", tiny_run, "--out", out, "--device", "cpu")
    assert r.returncode == 2 and "--resume" in r.stderr  # an existing batch is never silently redone
    mtime = (out / rows[done_case]["output"]).stat().st_mtime_ns
    r = cli("predict", study, "--model", tiny_run, "--out", out, "--device", "cpu", "--resume")
    assert r.returncode == 0, r.stderr
    rows = _rows(out)
    assert {c: r["status"] for c, r in rows.items()} == {done_case: "skipped", **{c: "done" for c in rows if c != done_case}}
    assert len(rows) == 2
    assert (out / rows[done_case]["output"]).stat().st_mtime_ns == mtime  # not recomputed
    assert not list(out.rglob(".*tmp*"))
    # a different model (other weights) is not "done": the case is predicted again
    other = tmp_path / "other_run"
    shutil.copytree(tiny_run, other)
    r = cli("predict", study, "--model", other, "--out", out, "--device", "cpu", "--resume")
    assert r.returncode == 0, r.stderr
    assert {r["status"] for r in _rows(out).values()} == {"done"}
    assert {r["model_id"] for r in _rows(out).values()} == {_rows(out)[done_case]["model_id"]}


def test_uncertainty_map_and_score(study, tiny_run, tmp_path):
    (study / "c.nii.gz").unlink()
    s = predict_folder(tiny_run, [study / "a.nii.gz"], tmp_path / "out", device="cpu", uncertainty=True, progress=False)
    assert s.done == 1
    row = _rows(tmp_path / "out")["a"]
    score = float(row["uncertainty"])
    assert 0 < score <= 1
    unc = nib.load(tmp_path / "out" / "a_uncertainty.nii.gz")
    src = nib.load(study / "a.nii.gz")
    assert unc.shape == src.shape
    np.testing.assert_allclose(unc.affine, src.affine, atol=1e-5)
    ent = np.asarray(unc.dataobj)
    assert ent.min() >= 0 and ent.max() <= np.log(5) + 1e-4  # entropy of 5 classes, nats


def test_dicom_series_output_names_and_dicom_seg(tmp_path, tiny_run, phantom_images, cli):
    """A DICOM series at INPUT/a/b/ -> OUT/a/b.nii.gz, or OUT/a/b/seg.dcm with --format dicom-seg;
    a NIfTI case cannot become DICOM SEG and fails alone."""
    import highdicom as hd

    study = tmp_path / "study"
    shutil.copytree(MR_DICOM, study / "pat1" / "mr")
    shutil.copy(phantom_images[0], study / "x.nii.gz")
    r = cli("predict", study, "--model", tiny_run, "--out", tmp_path / "nii", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "nii" / "pat1" / "mr.nii.gz").is_file() and (tmp_path / "nii" / "x.nii.gz").is_file()
    r = cli("predict", study, "--model", tiny_run, "--out", tmp_path / "seg", "--device", "cpu", "--format", "dicom-seg")
    assert r.returncode == 1
    rows = _rows(tmp_path / "seg")
    assert rows["x"]["status"] == "failed" and "dicom-seg" in rows["x"]["error"]
    assert rows["pat1/mr"]["status"] == "done" and rows["pat1/mr"]["output"] == "pat1/mr/seg.dcm"
    seg = hd.seg.segread(tmp_path / "seg" / "pat1" / "mr" / "seg.dcm")
    names = [seg.get_segment_description(i).segment_label for i in seg.segment_numbers]
    assert names == ["liver", "spleen", "kidney", "tumour"]
    src = read_volume(MR_DICOM)
    assert {str(u) for u in src.meta["sop_instance_uids"]} >= {
        r[-1] for r in seg.get_source_image_uids()} - {""}


def test_bad_model_folder_and_options_are_one_line_errors(tmp_path, phantom_images, cli):
    r = cli("predict", phantom_images[0], "--model", tmp_path, "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "run directory" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("predict", tmp_path / "missing.nii.gz", "--model", tmp_path, "--out", tmp_path / "o")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = cli("predict", phantom_images[0], "--model", tmp_path, "--out", tmp_path / "o", "--overlap", "1.5")
    assert r.returncode == 2 and "overlap" in r.stderr
