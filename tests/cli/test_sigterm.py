"""SIGTERM (``kill PID``, ``timeout``, Slurm, a container stop) is handled like Ctrl-C:
`medseg train` saves a resumable ``last.pt`` and exits 143, and no child process (DataLoader
workers, the forkserver) outlives it; `--resume` continues the run.

References: the exit status the OS reports, ``torch.load`` of the checkpoint, and ``/proc``
for the process tree.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from medseg.data.phantoms import write_phantom_dataset
from medseg.plans import save_plan
from tests.cli.conftest import MEDSEG
from tests.train.conftest import tiny_plan

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_during_training_saves_last_pt_and_resume_continues(tmp_path):
    ds = tmp_path / "ds"
    write_phantom_dataset(ds, cases=3, seed=0, size="small")
    plan = tmp_path / "plan.yaml"
    save_plan(tiny_plan(), plan)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"epochs": 2, "iterations_per_epoch": 60, "val_every": 100, "num_workers": 1}))
    run = tmp_path / "run"
    env = dict(os.environ, MEDSEG_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    argv = [str(MEDSEG), "train", "--config", str(cfg), "--dataset", str(ds), "--out", str(run), "--plan", str(plan),
            "--device", "cpu"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen: set[int] = set()
    try:
        # the loop is running once the loader's worker exists (forkserver -> worker: 2 descendants)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= _descendants(proc.pid)
            if len(seen) >= 2 and (tmp_path / "run" / "run.json").exists():
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        time.sleep(2.0)  # a few iterations
        seen |= _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "SIGTERM" in errors[0], err
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["medseg_checkpoint"] == 1 and "model" in ckpt
    stopped_at = (int(ckpt["epoch"]), int(ckpt["iteration"]))
    assert stopped_at != (1, 0), "the run must have been stopped before its end"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in seen):
        time.sleep(0.2)
    assert not [p for p in seen if _alive(p)], "child processes outlived medseg"
    assert not [p.name for p in run.glob(".*tmp*")], "temporary files left behind"

    stale = run / ".last.pt.k3j2ab9x.tmp.pt"  # what a SIGKILL in the middle of a checkpoint write leaves
    stale.write_bytes(b"half a checkpoint")
    r = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert not stale.exists(), "the next run in the folder removes stale temporaries"
    done = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert (int(done["epoch"]), int(done["iteration"])) == (1, 0)
