"""Dataset folders: both layouts, and every validation failure on constructed broken datasets."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from medseg import InputError
from medseg.data.layout import load_dataset
from medseg.data.validate import check_dataset
from tests.dataset_factory import write_dataset
from tests.helpers import sha256


def test_both_layouts_load_the_same_cases(tmp_path):
    nn = load_dataset(write_dataset(tmp_path / "nn", layout="nnunet"))
    msd = load_dataset(write_dataset(tmp_path / "msd", layout="msd"))
    assert nn.layout == "nnunet" and msd.layout == "msd"
    assert nn.labels == msd.labels == {"background": 0, "organ": 1, "lesion": 2}
    assert nn.channels == msd.channels == {0: "CT"}
    # MSD case ids come from the image file name; compare the files
    assert [[p.name for p in c.images] for c in nn.cases] == [[p.name for p in c.images] for c in msd.cases]
    assert [c.label.name for c in nn.cases] == [c.label.name for c in msd.cases]
    for a, b in zip(nn.cases, msd.cases):
        assert sha256(a.images[0]) == sha256(b.images[0].resolve())
    assert check_dataset(nn).ok and check_dataset(msd).ok


def _broken(tmp_path):
    root = write_dataset(tmp_path / "ds", n=6)
    # case_000: label missing
    (root / "labelsTr" / "case_000.nii.gz").unlink()
    # case_001: image missing
    (root / "imagesTr" / "case_001_0000.nii.gz").unlink()
    # case_002: label on a different shape
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), str(root / "labelsTr" / "case_002.nii.gz"))
    # case_003: label shifted by 0.5 mm (same shape)
    lab = nib.load(str(root / "labelsTr" / "case_003.nii.gz"))
    aff = lab.affine.copy()
    aff[0, 3] += 0.5
    nib.save(nib.Nifti1Image(np.asanyarray(lab.dataobj), aff), str(root / "labelsTr" / "case_003.nii.gz"))
    # case_004: undeclared label value 7
    lab = nib.load(str(root / "labelsTr" / "case_004.nii.gz"))
    data = np.asanyarray(lab.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, lab.affine), str(root / "labelsTr" / "case_004.nii.gz"))
    # case_005: truncated (unreadable) image
    p = root / "imagesTr" / "case_005_0000.nii.gz"
    p.write_bytes(p.read_bytes()[:200])
    return root


def test_every_problem_is_reported_with_its_case(tmp_path):
    report = check_dataset(load_dataset(_broken(tmp_path)))
    by_case = {(p.case, p.kind) for p in report.problems}
    assert ("case_000", "missing") in by_case
    assert ("case_001", "missing") in by_case
    assert ("case_002", "grid") in by_case
    assert ("case_003", "grid") in by_case
    assert ("case_004", "labels") in by_case
    assert ("case_005", "unreadable") in by_case
    msg = {p.case: p.message for p in report.problems}
    assert "[7]" in msg["case_004"] and "0.5" in msg["case_003"]
    assert not report.ok


def test_paths_leaving_the_dataset_are_refused(tmp_path):
    root = write_dataset(tmp_path / "msd", layout="msd", n=2)
    outside = tmp_path / "secret.nii.gz"
    shutil.copy(root / "imagesTr" / "case_000_0000.nii.gz", outside)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][0]["image"] = "../secret.nii.gz"
    meta["training"][1]["label"] = str(outside)  # absolute, outside
    (root / "dataset.json").write_text(json.dumps(meta))
    spec = load_dataset(root)
    report = check_dataset(spec)
    leaving = [p for p in report.problems if "leaves the dataset folder" in p.message]
    assert len(leaving) == 2
    assert all(outside != c.images[0].resolve() for c in spec.cases)


def test_num_training_and_undeclared_channel(tmp_path):
    root = write_dataset(tmp_path / "nn", n=2)
    shutil.copy(root / "imagesTr" / "case_000_0000.nii.gz", root / "imagesTr" / "case_000_0001.nii.gz")
    meta = json.loads((root / "dataset.json").read_text())
    meta["numTraining"] = 5
    (root / "dataset.json").write_text(json.dumps(meta))
    msgs = " | ".join(p.message for p in check_dataset(load_dataset(root)).problems)
    assert "numTraining is 5 but 2" in msgs and "channels [1] are not declared" in msgs


@pytest.mark.parametrize(
    "content, match",
    [("{not json", "not valid JSON"), ('{"labels": {"background": 0}}', "neither"),
     ('{"labels": {"a": [1, 2]}, "file_ending": ".nii.gz"}', "region"),
     ('{"labels": {"organ": 1}, "file_ending": ".nii.gz"}', "background as 0")],
)
def test_bad_dataset_json(tmp_path, content, match):
    (tmp_path / "dataset.json").write_text(content)
    with pytest.raises(InputError, match=match):
        load_dataset(tmp_path)


def test_cli_check_dataset(cli, tmp_path):
    ok = write_dataset(tmp_path / "ok", n=2)
    r = cli("check-dataset", ok)
    assert r.returncode == 0 and "OK: no problems" in r.stdout
    bad = _broken(tmp_path)
    before = sha256(bad)
    r = cli("check-dataset", bad, "--json")
    assert r.returncode == 2
    rep = json.loads(r.stdout)
    assert not rep["ok"] and len(rep["problems"]) >= 6
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr
    assert sha256(bad) == before
    r = cli("check-dataset", tmp_path / "nothing")
    assert r.returncode == 2 and "error:" in r.stderr
