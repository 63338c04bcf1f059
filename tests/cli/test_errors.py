"""Every user-caused error: one `error:` line, exit code 2, no traceback, inputs unchanged."""

import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import CT_NRRD, MR_DICOM, sha256, write_dicom_series


def _nifti(path, data):
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _case(tmp_path, name):
    """Build the bad input for case ``name``; return (argv, expected message regex, input path)."""
    if name == "missing path":
        return ["info", tmp_path / "nope.nii.gz"], "does not exist", None
    if name == "empty file":
        p = tmp_path / "empty.nii.gz"
        p.write_bytes(b"")
        return ["info", p], r"is empty \(0 bytes\)", p
    if name == "truncated nifti":
        full = _nifti(tmp_path / "full.nii.gz", np.random.default_rng(0).normal(size=(30, 30, 30)).astype(np.float32))
        p = tmp_path / "trunc.nii.gz"
        p.write_bytes(full.read_bytes()[:3000])
        return ["info", p], "truncated or corrupt|damaged", p
    if name == "truncated nrrd":
        p = tmp_path / "trunc.nrrd"
        p.write_bytes(CT_NRRD.read_bytes()[:200000])
        return ["convert", p, tmp_path / "o.nii.gz"], "truncated or corrupt", p
    if name == "unreadable (garbage) file":
        p = tmp_path / "garbage.nii.gz"
        p.write_bytes(os.urandom(4096))
        return ["info", p], "could not be read as NIfTI", p
    if name == "not an image":
        p = tmp_path / "notes.txt"
        p.write_text("patient list\n")
        return ["info", p], "not a supported image", p
    if name == "empty folder":
        p = tmp_path / "emptydir"
        p.mkdir()
        return ["info", p], "empty folder", p
    if name == "folder without DICOM":
        p = tmp_path / "docs"
        p.mkdir()
        (p / "readme.md").write_text("x")
        (p / "scan.dcm").write_bytes(b"not really dicom" * 20)
        return ["info", p], "holds no DICOM files", p
    if name == "series with missing slices":
        p = tmp_path / "series"
        paths = write_dicom_series(p, np.ones((4, 4, 8), np.uint16))
        paths[3].unlink()
        return ["convert", p, tmp_path / "s.nii.gz"], "look missing.*--allow-nonuniform", p
    if name == "output equal to input":
        p = _nifti(tmp_path / "same.nii.gz", np.zeros((3, 3, 3), np.uint8))
        return ["convert", p, p], "refusing to overwrite", p
    if name == "4D image":
        p = _nifti(tmp_path / "four.nii.gz", np.zeros((3, 3, 3, 2), np.uint8))
        return ["convert", p, tmp_path / "f.nrrd"], r"4D with shape \(3, 3, 3, 2\)", p
    if name == "unknown output suffix":
        return ["convert", CT_NRRD, tmp_path / "x.png"], "unknown output suffix", CT_NRRD
    if name == "output exists":
        out = tmp_path / "exists.nii.gz"
        out.write_bytes(b"keep me")
        return ["convert", CT_NRRD, out], "already exists.*--overwrite", out
    if name == "unknown series":
        return ["info", MR_DICOM, "--series", "1.2.3"], r"series 1\.2\.3 is not in", MR_DICOM
    if name == "bad option":
        return ["info", CT_NRRD, "--frobnicate"], "unrecognized arguments", CT_NRRD
    raise AssertionError(name)


CASES = [
    "missing path", "empty file", "truncated nifti", "truncated nrrd", "unreadable (garbage) file",
    "not an image", "empty folder", "folder without DICOM", "series with missing slices",
    "output equal to input", "4D image", "unknown output suffix", "output exists", "unknown series",
    "bad option",
]


@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_clear_line(cli, tmp_path, name):
    argv, pattern, inp = _case(tmp_path, name)
    before = sha256(inp) if inp is not None else None
    r = cli(*argv)
    assert r.returncode == 2, (r.returncode, r.stderr)
    error_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1, r.stderr
    import re

    assert re.search(pattern, error_lines[0]), error_lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    if inp is not None:
        assert sha256(inp) == before, "the input must not be modified"
    leftovers = [p.name for p in tmp_path.rglob("*.tmp*")]
    assert not leftovers


def test_debug_shows_the_traceback(cli, tmp_path):
    r = cli("--debug", "info", tmp_path / "nope.nii")
    assert r.returncode == 2 and "Traceback" in r.stderr and "error:" in r.stderr
    r = cli("info", tmp_path / "nope.nii", "--debug")  # also accepted after the command
    assert "Traceback" in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_permission_denied(cli, tmp_path):
    p = tmp_path / "secret.nrrd"
    shutil.copy(CT_NRRD, p)
    p.chmod(0)
    r = cli("info", p)
    assert r.returncode == 2 and "permission denied" in r.stderr
