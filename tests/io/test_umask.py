"""Atomic writes end with the mode a plain ``open(..., "w")`` gives: ``0o666 & ~umask`` for files,
``0o777 & ~umask`` for folders (tempfile's 0600/0700 must not leak into outputs); stale
temporaries of killed writes are recognised and removed, and nothing else is.

Reference: the mode of a file created here with ``open`` under the same umask.
"""

import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.io import write_volume
from medseg.io.atomic import clean_stale_temps, current_umask, write_csv_atomic, write_text_atomic
from medseg.io.dicom_write import write_dicom_series
from medseg.model.checkpoint import save_checkpoint
from medseg.volume import Volume


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_current_umask_is_read_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_every_writer_gives_the_umask_mode(tmp_path, umask):
    ref = tmp_path / "ref.txt"
    with open(ref, "w") as f:  # the independent reference
        f.write("x")
    ref_dir = tmp_path / "refdir"
    ref_dir.mkdir()
    want, want_dir = _mode(ref), _mode(ref_dir)
    assert want == 0o666 & ~umask

    vol = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([1.0, 2.0, 3.0, 1.0]), {})
    outs = [write_volume(vol, tmp_path / "m.nii.gz"), write_volume(vol, tmp_path / "m.nrrd"),
            write_volume(vol, tmp_path / "m.mha"), write_volume(vol, tmp_path / "m.mhd")]
    outs += [p for p in tmp_path.glob("m.*raw")]  # the .mhd's data file
    assert any(p.suffix in (".raw", ".zraw") for p in outs)
    outs.append(write_text_atomic(tmp_path / "report.md", "# r\n"))
    outs.append(write_csv_atomic(tmp_path / "rows.csv", [{"a": 1}], ["a"]))
    save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.zeros(2)}})
    outs.append(tmp_path / "last.pt")
    files = write_dicom_series(Volume(vol.array.astype(np.uint16), vol.affine, {}), tmp_path / "series",
                               patient_id="P", study_uid="1.2.3", series_uid="1.2.3.4", series_number=1,
                               description="umask")
    for p in outs + list(files):
        assert _mode(Path(p)) == want, (p, oct(_mode(Path(p))))
    assert _mode(tmp_path / "series") == want_dir
    assert not [p.name for p in tmp_path.rglob(".*")], "no temporary left behind"


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    keep = [tmp_path / ".bashrc", tmp_path / ".tmpfile", tmp_path / "x.nii.gz", tmp_path / ".hidden.nii.gz"]
    for p in keep:
        p.write_text("keep")
    fd, stale_file = tempfile.mkstemp(prefix=".last.pt.", suffix=".tmp.pt", dir=tmp_path)
    os.close(fd)
    stale_dir = Path(tempfile.mkdtemp(prefix=".b.mhd.", suffix=".tmpdir", dir=tmp_path))
    (stale_dir / "b.zraw").write_bytes(b"x")
    fd, other = tempfile.mkstemp(prefix=".y.nii.gz.", suffix=".tmp.nii.gz", dir=tmp_path)
    os.close(fd)
    removed = clean_stale_temps(tmp_path, final="last.pt")
    assert removed == [Path(stale_file)] and Path(other).exists()
    removed = clean_stale_temps(tmp_path)
    assert set(removed) == {stale_dir, Path(other)}
    assert all(p.exists() for p in keep)
