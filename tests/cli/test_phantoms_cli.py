"""`medseg phantoms`: the dataset it writes, resuming, and the one-line error contract."""

import json
import re

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import sha256


def test_writes_an_nnunet_dataset(cli, tmp_path):
    out = tmp_path / "Dataset001_Phantoms"
    res = cli("phantoms", out, "--cases", 3, "--seed", 1)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == str(out)
    assert "wrote 3 small phantom cases (seed 1)" in res.stderr and "error" not in res.stderr
    meta = json.loads((out / "dataset.json").read_text())
    assert meta == {
        "name": meta["name"],
        "description": meta["description"],
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "tumour": 4},
        "numTraining": 3,
        "file_ending": ".nii.gz",
        "licence": "CC0 (synthetic)",
        "medseg_phantoms": {"seed": 1, "size": "small", "version": meta["medseg_phantoms"]["version"]},
    }
    images = sorted(p.name for p in (out / "imagesTr").iterdir())
    labels = sorted(p.name for p in (out / "labelsTr").iterdir())
    assert images == [f"phantom_00{i}_0000.nii.gz" for i in range(3)]
    assert labels == [f"phantom_00{i}.nii.gz" for i in range(3)]
    for i in range(3):
        img = nib.load(str(out / "imagesTr" / images[i]))
        lab = nib.load(str(out / "labelsTr" / labels[i]))
        assert img.shape == lab.shape and np.array_equal(img.affine, lab.affine)
        assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
    assert not (out / "dicom_study").exists()

    # same options again: nothing is rewritten (resume), same output
    before = sha256(out / "imagesTr") + sha256(out / "labelsTr")
    again = cli("phantoms", out, "--cases", 3, "--seed", 1)
    assert again.returncode == 0, again.stderr
    assert sha256(out / "imagesTr") + sha256(out / "labelsTr") == before

    # another seed into this dataset: refused, nothing changed
    other = cli("phantoms", out, "--cases", 3, "--seed", 5)
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        f"error: {out} holds phantoms made with --seed 1 --size small (generator version 1); "
        "rerun with those options to resume, or choose an empty folder"
    ]
    assert sha256(out / "imagesTr") + sha256(out / "labelsTr") == before


def test_dicom_study_option(cli, tmp_path):
    out = tmp_path / "ds"
    res = cli("phantoms", out, "--cases", 2, "--seed", 2, "--dicom-study")
    assert res.returncode == 0, res.stderr
    assert (out / "dicom_study" / "PATIENT_phantom_000" / "STUDY_1" / "SERIES_1" / "IM_0000.dcm").is_file()
    assert (out / "dicom_study_labels" / "phantom_000.nii.gz").is_file()
    assert not (out / "dicom_study" / "PATIENT_phantom_001").exists()
    assert "1 case(s) also as DICOM" in res.stderr


def _unrelated(tmp_path):
    p = tmp_path / "mine"
    p.mkdir()
    (p / "notes.txt").write_text("my notes")
    return p


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cases", "0"], r"--cases: must be at least 1"),
        ("unrelated", r"is not empty and is not a phantom dataset"),
        ("a file", r"is a file"),
    ],
)
def test_user_errors_give_one_error_line(cli, tmp_path, args, message):
    if args == "unrelated":
        target = _unrelated(tmp_path)
        argv, before = [target], sha256(target)
    elif args == "a file":
        target = tmp_path / "file.txt"
        target.write_text("x")
        argv, before = [target], sha256(target)
    else:
        target, before = tmp_path / "out", None
        argv = [target, *args]
    res = cli("phantoms", *argv)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in res.stderr
    if before is not None:
        assert sha256(target) == before
    else:
        assert not target.exists()



@pytest.mark.parametrize(
    "args, message",
    [
        (["--cases", "three"], r"--cases: expected a whole number"),
        (["--seed", "-4"], r"--seed: must be 0 or more"),
        (["--size", "huge"], r"--size: invalid choice"),
    ],
)
def test_bad_options_are_usage_errors(capsys, tmp_path, args, message):
    from medseg.cli.main import main  # in-process: parsing fails before any global setup

    assert main(["phantoms", str(tmp_path / "out"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0]), lines
    assert not (tmp_path / "out").exists()
