"""Which cases `medseg predict` finds under its INPUTs, and the output name of each."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.predict.inputs import find_cases
from tests.helpers import MR_DICOM, write_dicom_series


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_files_folders_and_dicom_series_get_mirrored_keys(tmp_path):
    root = tmp_path / "study"
    _touch(root / "X.nii.gz")
    _touch(root / "deep" / "Y.nrrd")
    _touch(root / "deep" / "Z.mha")
    _touch(root / "deep" / "Y_seg.seg.nrrd")  # a Slicer segmentation: not an input
    _touch(root / ".hidden.nii.gz")
    _touch(root / "notes.txt")
    shutil.copytree(MR_DICOM, root / "a" / "b")
    single = _touch(tmp_path / "elsewhere" / "W.nii")
    cases = {c.key: c for c in find_cases([root, single])}
    assert set(cases) == {"X", "deep/Y", "deep/Z", "a/b", "W"}
    assert cases["a/b"].is_dicom and cases["a/b"].sources == [root / "a" / "b"]
    assert cases["deep/Y"].output(Path("/o"), "nifti") == Path("/o/deep/Y.nii.gz")
    assert cases["deep/Y"].output(Path("/o"), "nrrd") == Path("/o/deep/Y.nrrd")
    assert cases["a/b"].output(Path("/o"), "dicom-seg") == Path("/o/a/b/seg.dcm")
    # the series folder itself as INPUT: named after the folder
    (only,) = find_cases([root / "a" / "b"])
    assert only.key == "b" and only.is_dicom


def test_two_series_in_one_folder_and_the_output_folder_is_skipped(tmp_path):
    root = tmp_path / "study"
    px = np.zeros((8, 8, 3), np.uint16)
    write_dicom_series(root / "s", px, description="one")
    for p in write_dicom_series(tmp_path / "t", px, description="two", origin=(0.0, 0.0, 0.0), seed=1):
        shutil.move(p, root / "s" / f"two_{p.name}")  # both series in one folder
    _touch(root / "out" / "old.nii.gz")
    cases = find_cases([root], out_dir=root / "out")
    assert sorted(c.key for c in cases)[0].startswith("s_s")
    assert len({c.series_uid for c in cases}) == 2 and len(cases) == 2


def test_nnunet_channel_files_are_grouped(tmp_path):
    for name in ("case1_0000.nii.gz", "case1_0001.nii.gz", "case2_0000.nii.gz", "case2_0001.nii.gz"):
        _touch(tmp_path / "imagesTs" / name)
    cases = {c.key: c for c in find_cases([tmp_path / "imagesTs"], n_channels=2)}
    assert set(cases) == {"case1", "case2"}
    assert [p.name for p in cases["case1"].sources] == ["case1_0000.nii.gz", "case1_0001.nii.gz"]
    # one channel: case_0000 -> case (nnU-Net naming), but scan_2019 keeps its name
    _touch(tmp_path / "one" / "p_0000.nii.gz")
    _touch(tmp_path / "one" / "scan_2019.nii.gz")
    assert sorted(c.key for c in find_cases([tmp_path / "one"])) == ["p", "scan_2019"]
    # a missing channel is a note that fails that case only
    _touch(tmp_path / "two" / "q_0000.nii.gz")
    (q,) = find_cases([tmp_path / "two"], n_channels=2)
    assert q.notes and "_0001" in q.notes[0]


def test_collisions_and_empty_inputs_are_clear_errors(tmp_path):
    _touch(tmp_path / "a" / "X.nii.gz")
    _touch(tmp_path / "b" / "X.nrrd")
    with pytest.raises(InputError, match="same output 'X'"):
        find_cases([tmp_path / "a" / "X.nii.gz", tmp_path / "b" / "X.nrrd"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no scans found"):
        find_cases([tmp_path / "empty"])
    with pytest.raises(InputError, match="does not exist"):
        find_cases([tmp_path / "nope"])
