"""DDP: `medseg train` under torchrun with 2 CPU processes (gloo) keeps identical weights."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from medseg.model.checkpoint import load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_keep_identical_weights(phantoms, tmp_path):
    ds, plan = phantoms
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDSEG_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(worker), str(ds), str(plan), str(tmp_path / "run"), str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "ranks diverged"
    # rank 0 wrote the checkpoint, and it holds those same weights
    ck = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(torch.equal(ck[k], w0[k]) for k in w0)
    # and training moved the weights away from the seeded initial network (DDP really stepped)
    from medseg.model.network import build_network
    from tests.train.conftest import tiny_config, tiny_plan

    torch.manual_seed(0)
    init = build_network(tiny_config(), tiny_plan(), 1, 5).state_dict()
    assert any(not torch.equal(init[k], w0[k]) for k in w0 if w0[k].dtype.is_floating_point)
