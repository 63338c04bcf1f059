"""`medseg predict` writes only what it owns, one bad case never stops the batch, resume does
not trust paths that leave OUT_DIR, and outputs honour the umask.

References: file hashes taken before the run (unchanged inputs / foreign files), ``os.stat``
mode bits compared with ``0o666 & ~umask`` computed here, and the manifest read with ``csv``.
"""

import csv
import os
import shutil
import stat

import pytest

from medseg.cli.main import main
from tests.helpers import sha256


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def _rows(out):
    with open(out / "manifest.csv", newline="") as f:
        return {r["case"]: r for r in csv.DictReader(f)}


@pytest.fixture
def study(tmp_path, phantom_images):
    root = tmp_path / "study"
    (root / "sub").mkdir(parents=True)
    shutil.copy(phantom_images[0], root / "a.nii.gz")
    shutil.copy(phantom_images[1], root / "sub" / "b.nii.gz")
    return root


@pytest.mark.parametrize("where", ["equal", "inside"])
def test_out_in_an_input_folder_is_refused(study, tiny_run, capsys, where):
    before = sha256(study)
    out = study if where == "equal" else study / "sub" / "masks"
    code, err = _run(capsys, "predict", study, "--model", tiny_run, "--out", out, "--device", "cpu", "--quiet")
    assert code == 2 and len(_errors(err)) == 1 and "inside the input folder" in _errors(err)[0], err
    assert sha256(study) == before and not (study / "manifest.csv").exists()


def test_foreign_files_are_not_replaced_without_overwrite(study, tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    mine = out / "sub" / "b.nii.gz"  # the user's own file, where a mask would go
    mine.write_bytes(b"the user's file")
    code, err = _run(capsys, "predict", study, "--model", tiny_run, "--out", out, "--device", "cpu", "--quiet")
    assert code == 2 and len(_errors(err)) == 1 and "were not written by a medseg batch" in _errors(err)[0], err
    assert mine.read_bytes() == b"the user's file"
    assert sorted(p.name for p in out.rglob("*")) == ["b.nii.gz", "sub"], "nothing may be written after a refusal"
    code, err = _run(capsys, "predict", study, "--model", tiny_run, "--out", out, "--device", "cpu", "--quiet",
                     "--overwrite")
    assert code == 0, err
    assert mine.read_bytes() != b"the user's file" and _rows(out)["sub/b"]["status"] == "done"


def test_an_output_over_an_input_is_refused_even_with_overwrite(tmp_path, phantom_images, tiny_run, capsys):
    # OUT is the parent of the input file's folder: the mask of case "scans/x" would be OUT/scans/x.nii.gz,
    # which is the input itself when given as a study folder of OUT
    out = tmp_path / "out"
    scans = out / "scans"
    scans.mkdir(parents=True)
    shutil.copy(phantom_images[0], scans / "x.nii.gz")
    before = sha256(scans)
    code, err = _run(capsys, "predict", scans / "x.nii.gz", "--model", tiny_run, "--out", scans, "--device", "cpu",
                     "--quiet", "--overwrite")
    assert code == 2 and len(_errors(err)) == 1, err
    assert sha256(scans) == before


def test_resume_does_not_trust_a_row_that_leaves_out_dir(study, tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run(capsys, "predict", study / "a.nii.gz", "--model", tiny_run, "--out", out, "--device", "cpu",
                     "--quiet")
    assert code == 0, err
    victim = tmp_path / "victim.nii.gz"
    shutil.copy(out / "a.nii.gz", victim)
    rows = _rows(out)
    text = (out / "manifest.csv").read_text().replace(f",{rows['a']['output']},", ",../victim.nii.gz,")
    (out / "manifest.csv").write_text(text)
    (out / "a.nii.gz").unlink()
    before = sha256(victim)
    code, err = _run(capsys, "predict", study / "a.nii.gz", "--model", tiny_run, "--out", out, "--device", "cpu",
                     "--quiet", "--resume")
    assert code == 0, err
    row = _rows(out)["a"]
    assert row["status"] == "done" and row["output"] == "a.nii.gz", "the case must be redone, not skipped"
    assert (out / "a.nii.gz").is_file() and sha256(victim) == before


def test_a_symlink_loop_is_a_failed_row_not_an_abort(study, tiny_run, tmp_path, capsys):
    os.symlink("loop.nii.gz", study / "loop.nii.gz")  # points at itself
    os.symlink("sub", study / "sub" / "again")  # a folder loop (not followed)
    out = tmp_path / "out"
    code, err = _run(capsys, "predict", study, "--model", tiny_run, "--out", out, "--device", "cpu", "--quiet")
    assert code == 1, err  # some case failed; the batch ran to its end
    rows = _rows(out)
    assert rows["a"]["status"] == "done" and rows["sub/b"]["status"] == "done"
    assert rows["loop"]["status"] == "failed" and rows["loop"]["error"]
    assert "internal error" not in err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_honour_the_umask(study, tiny_run, tmp_path, capsys, umask, mode):
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        code, err = _run(capsys, "predict", study, "--model", tiny_run, "--out", out, "--device", "cpu", "--quiet",
                         "--uncertainty")
    finally:
        os.umask(old)
    assert code == 0, err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"a.nii.gz", "b.nii.gz", "a_uncertainty.nii.gz", "manifest.csv"} <= {p.name for p in files}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == mode, (p, oct(p.stat().st_mode))
    assert stat.S_IMODE((out / "sub").stat().st_mode) == 0o777 & ~umask


def test_a_scan_with_nan_voxels_is_a_failed_row_not_an_empty_mask(study, tiny_run, tmp_path, capsys):
    import nibabel as nib
    import numpy as np

    src = nib.load(str(study / "a.nii.gz"))
    data = np.asarray(src.dataobj).astype(np.float32)
    data[1, 2, 3] = np.nan
    data[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(data, src.affine), str(study / "nan.nii.gz"))
    out = tmp_path / "out"
    code, err = _run(capsys, "predict", study, "--model", tiny_run, "--out", out, "--device", "cpu", "--quiet")
    assert code == 1, err
    rows = _rows(out)
    assert rows["nan"]["status"] == "failed" and "2 NaN or infinite voxel" in rows["nan"]["error"]
    assert not (out / "nan.nii.gz").exists()
    assert rows["a"]["status"] == "done"


def test_a_checkpoint_with_non_finite_weights_is_refused(tiny_run, study, tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            ckpt = torch.load(run / name, map_location="cpu", weights_only=True)
            key = next(k for k, t in ckpt["model"].items() if t.is_floating_point())
            ckpt["model"][key].view(-1)[0] = float("nan")
            torch.save(ckpt, run / name)
    code, err = _run(capsys, "predict", study / "a.nii.gz", "--model", run, "--out", tmp_path / "out", "--device",
                     "cpu", "--quiet")
    assert code == 2 and len(_errors(err)) == 1 and "NaN or infinite weights" in _errors(err)[0], err


def test_a_missing_organ_model_is_one_clear_error(tiny_run, study, tmp_path, capsys):
    code, err = _run(capsys, "predict", study / "a.nii.gz", "--model", tiny_run, "--out", tmp_path / "out",
                     "--device", "cpu", "--quiet", "--organ-model", tmp_path / "NOT_A_RUN")
    assert code == 2 and len(_errors(err)) == 1 and "internal error" not in err, err


def test_two_copies_of_one_dicom_series_get_a_row_that_says_so(tmp_path):
    import numpy as np

    from medseg.predict.case import read_case
    from medseg.predict.inputs import find_cases
    from tests.helpers import write_dicom_series

    study = tmp_path / "study"
    write_dicom_series(study / "a", np.ones((4, 4, 5), np.uint16))
    shutil.copytree(study / "a", study / "copy_of_a")
    write_dicom_series(study / "split" / "1", np.ones((4, 4, 6), np.uint16), series_uid="1.2.3.99", seed=3)
    for p in sorted((study / "split" / "1").iterdir())[:3]:  # one series spread over two folders
        (study / "split" / "2").mkdir(exist_ok=True)
        shutil.move(p, study / "split" / "2" / p.name)
    cases = {c.series_uid: c for c in find_cases([study])}
    assert len(cases) == 2
    dup = next(c for uid, c in cases.items() if uid != "1.2.3.99")
    with pytest.raises(Exception, match="stored more than once .*5 repeated images"):
        read_case(dup)
    (vol,) = read_case(cases["1.2.3.99"])  # the split series is read whole
    assert vol.shape == (4, 4, 6)


def test_predict_writes_a_plain_line_per_case_with_rate_and_eta(study, tiny_run, tmp_path, capsys):
    import re

    code, err = _run(capsys, "predict", study, "--model", tiny_run, "--out", tmp_path / "out", "--device", "cpu")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert len(lines) == 2, err
    assert re.fullmatch(r"\[1/2\] a: done \([\d.]+ s\); [\d.]+ cases/min, ETA .+", lines[0]), lines[0]
    assert lines[1].startswith("[2/2] sub/b: done") and lines[1].endswith("ETA 0 s"), lines[1]
