"""Progress for logs: when stderr is not a terminal, `medseg train` writes a plain line within an
epoch (rate and ETA) and one per epoch with the run's ETA; `medseg predict` one per case with
rate and ETA. Library messages reach stderr as ``warning:`` lines."""

import io
import re

import numpy as np

from medseg.cli.main import main
from medseg.progress_lines import PlainProgress, format_eta


def test_plain_progress_lines_have_rate_and_eta():
    buf = io.StringIO()
    p = PlainProgress("epoch 2/5", total=10, done=0, stream=buf, interval=0.0)
    for _ in range(4):
        p.update(p.task, advance=1, rate="x", loss="0.5000")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4
    assert re.fullmatch(r"epoch 2/5: 4/10 it, \d+\.\d\d it/s, loss 0.5000, ETA \d+ s", lines[-1]), lines[-1]
    assert format_eta(65) == "1 min 05 s" and format_eta(7260) == "2 h 01 min" and format_eta(float("nan")) == "?"


def test_train_writes_plain_lines_to_a_log(tmp_path, capsys, monkeypatch):
    from medseg.data.phantoms import write_phantom_dataset
    from medseg.plans import save_plan
    from tests.train.conftest import tiny_plan

    monkeypatch.setenv("MEDSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MEDSEG_PROGRESS_SECONDS", "0")  # a line per iteration instead of every 30 s
    ds = tmp_path / "ds"
    write_phantom_dataset(ds, cases=3, seed=0, size="small")
    save_plan(tiny_plan(), tmp_path / "plan.yaml")
    (tmp_path / "cfg.yaml").write_text("epochs: 2\niterations_per_epoch: 3\nval_every: 5\nnum_workers: 0\n")
    code = main(["train", "--config", str(tmp_path / "cfg.yaml"), "--dataset", str(ds), "--out", str(tmp_path / "run"),
                 "--plan", str(tmp_path / "plan.yaml"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert re.search(r"^epoch 1/2: 1/3 it, [\d.]+ it/s, loss [\d.]+, ETA ", err, re.M), err
    assert re.search(r"^epoch 1/2 .*it/s\).*ETA ", err, re.M), err


def test_nibabel_messages_are_warning_lines(tmp_path, capsys):
    import gzip
    import struct

    import nibabel as nib

    p = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4)), str(p))
    raw = bytearray(gzip.decompress(p.read_bytes()))
    raw[80:84] = struct.pack("<f", 0.0)  # pixdim[1] = 0, which nibabel "fixes" with a log message
    p.write_bytes(gzip.compress(bytes(raw)))
    main(["info", str(p)])
    err = capsys.readouterr().err
    assert any(ln.startswith("warning: nibabel: pixdim") for ln in err.splitlines()), err
    assert all(ln.startswith(("warning:", "error:", "note:")) for ln in err.splitlines() if ln.strip()), err
