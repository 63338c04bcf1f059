"""Training and inference speed on a shared CPU: idle vs one (or two) busy neighbours.

    .venv/bin/python bench/shared_cpu.py [--seconds 20] [--neighbours 0 1] [--settings auto t1 t2 t2-active]

A "busy neighbour" is ``python3 -c "while True: pass"`` -- another user's CPU-bound job. For each
thread setting the script runs, in a fresh process (OpenMP reads its environment at start):

* train: DynUNet (16..128 filters, 4 stages) on random (2, 1, 48, 48, 32) patches, forward +
  Dice-CE-like loss + backward + SGD step; iterations per second after a warm-up;
* predict: :func:`medseg.model.sliding.sliding_window_labels` on a (1, 96, 96, 64) volume
  with 48 x 48 x 32 windows, overlap 0.5; volumes per second.

It prints it/s idle, with neighbours, and the ratio idle / busy (goal on 2 cores: <= 2.5 with
one neighbour, a fair share), plus the 1-minute load average before each measurement -- on a
machine other people use, "idle" is only as idle as they let it be.

Settings (what ``medseg`` does at start is :func:`medseg.threads.configure_threads`):
    auto       medseg's automatic choice (MEDSEG_THREADS unset)
    t1         MEDSEG_THREADS=1
    t2         MEDSEG_THREADS=2 (passive OpenMP waiting, as medseg sets it)
    t2-active  2 threads with OpenMP's default spin-waiting (OMP_WAIT_POLICY unset): torch's default
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SETTINGS = {
    "auto": {},
    "t1": {"MEDSEG_THREADS": "1"},
    "t2": {"MEDSEG_THREADS": "2"},
    "t2-active": {"MEDSEG_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
}


def _worker(task: str, seconds: float) -> dict:
    from medseg.threads import configure_threads

    chosen = configure_threads()
    import torch

    from medseg.data.plan import DatasetInfo, Network, Normalization, Plan, Preprocessing, Training
    from medseg.model.network import build_network
    from medseg.model.config import TrainConfig

    plan = Plan(medseg_plan=1, dataset=DatasetInfo("bench", {"background": 0, "a": 1, "b": 2}, {0: "CT"}),
                preprocessing=Preprocessing((1.0, 1.0, 1.0), [Normalization(0, "ct", (-200.0, 300.0), 50.0, 100.0)]),
                network=Network("DynUNet", [(3, 3, 3)] * 4, [(1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)],
                                [16, 32, 64, 128]),
                training=Training((48, 48, 32), 2, 0.5), gpu_memory_gb=8.0, estimated_memory_gb=1.0)
    torch.manual_seed(0)
    net = build_network(TrainConfig(), plan, 1, 3)
    if task == "train":
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(2, 1, 48, 48, 32)
        y = torch.randint(0, 3, (2, 48, 48, 32))

        def step():
            out = net(x)
            loss = torch.nn.functional.cross_entropy(out, y) + (1 - out.softmax(1).mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        import numpy as np

        from medseg.model.sliding import sliding_window_labels

        net.eval()
        vol = np.random.default_rng(0).normal(size=(1, 96, 96, 64)).astype(np.float32)

        def step():
            with torch.no_grad():
                sliding_window_labels(net, vol, (48, 48, 32), 3, overlap=0.5)
    for _ in range(2):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return {"rate": n / (time.perf_counter() - t0), "threads": torch.get_num_threads(), "chosen": chosen}


def _measure(task: str, setting: str, seconds: float, neighbours: int) -> dict:
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(neighbours)]
    try:
        time.sleep(1.0 if busy else 0.0)
        load = os.getloadavg()[0]
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                                 "OMP_WAIT_POLICY", "MEDSEG_THREADS")}
        env.update(SETTINGS[setting])
        r = subprocess.run([sys.executable, __file__, "--worker", task, "--seconds", str(seconds)], env=env,
                           capture_output=True, text=True, cwd=REPO, timeout=seconds * 4 + 120)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out["load"] = load
        return out
    finally:
        for p in busy:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time per point (default 20)")
    ap.add_argument("--neighbours", type=int, nargs="+", default=[0, 1], help="busy neighbours to try (default 0 1)")
    ap.add_argument("--settings", nargs="+", default=["auto", "t1", "t2-active"], choices=list(SETTINGS))
    ap.add_argument("--tasks", nargs="+", default=["train", "predict"], choices=["train", "predict"])
    ap.add_argument("--worker", choices=["train", "predict"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.seconds)))
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    unit = {"train": "it/s", "predict": "volumes/s"}
    for task in args.tasks:
        for setting in args.settings:
            res = {n: _measure(task, setting, args.seconds, n) for n in args.neighbours}
            idle = res[args.neighbours[0]]
            parts = [f"{n} busy: {r['rate']:.3f} {unit[task]} (load {r['load']:.2f})" for n, r in res.items()]
            ratios = [f"x{idle['rate'] / r['rate']:.2f} slower with {n}" for n, r in res.items()
                      if n != args.neighbours[0] and r["rate"] > 0]
            print(f"{task:8s} {setting:10s} threads={idle['threads']} ({idle['chosen']}): " + "; ".join(parts)
                  + ("  -> " + ", ".join(ratios) if ratios else ""), flush=True)


if __name__ == "__main__":
    main()
