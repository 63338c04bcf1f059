"""Training throughput: medseg's trainer vs a MONAI-tutorial-style loop, same data, same network.

    .venv/bin/python bench/train_throughput.py [--cases 8] [--iterations 40] [--size small|medium]

medseg:   ``medseg.train.trainer.train`` (preprocessed memory-mapped cache, PatchDataset,
          DataLoader workers, bf16 autocast + channels_last_3d on a GPU), one warm-up epoch,
          then the timed epoch's pure training seconds from metrics.csv.
baseline: the loop of MONAI's tutorials -- CacheDataset (LoadImaged ... Spacingd,
          ScaleIntensityRanged) + RandCropByPosNegLabeld + the same augmentations (see
          bench/loading.py) + DataLoader(2 workers), then ``for batch in loader: forward,
          DiceCELoss, backward, step`` with the same DynUNet, loss, optimiser, batch and patch
          size, and the same autocast on a GPU.
Prints patches per second and the ratio medseg / baseline (goal on a GPU: >= 2).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def baseline_rate(spec, plan, iterations: int, device: torch.device) -> float:
    from loading import monai_loader  # bench/loading.py: the MONAI pipeline

    from medseg.model.network import build_network
    from medseg.train.components import build_loss, build_optimizer
    from medseg.model.config import TrainConfig

    cfg = TrainConfig()
    n_out = max(plan.dataset.labels.values()) + 1
    net = build_network(cfg, plan, len(plan.dataset.channels), n_out).to(device)
    loss_fn = build_loss(cfg, plan).to(device)
    opt = build_optimizer(cfg, net.parameters())
    amp = device.type == "cuda"
    loader = monai_loader(spec, plan, (iterations + 5) * plan.training.batch_size)
    it = iter(loader)

    def step():
        b = next(it)
        x, y = b["image"].to(device), b["label"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iterations):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iterations * plan.training.batch_size / (time.perf_counter() - t)


def medseg_rate(root: Path, plan_path: Path, plan, iterations: int, work: Path, device: torch.device) -> float:
    from medseg.model.config import TrainConfig
    from medseg.train.trainer import train

    cfg = TrainConfig(epochs=2, iterations_per_epoch=iterations, val_every=1000, num_workers=2,
                      channels_last=device.type == "cuda")
    train(cfg, root, work / "run", plan=plan_path, fold="all", device=device.type, progress=False)
    rows = list(csv.DictReader(open(work / "run" / "metrics.csv")))
    return iterations * plan.training.batch_size / float(rows[-1]["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--size", default="small", choices=["small", "medium"])
    ap.add_argument("--spacing", type=float, nargs=3, help="plan target spacing (default: automatic)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from medseg.data.fingerprint import compute_fingerprint
    from medseg.data.layout import load_dataset
    from medseg.data.phantoms import write_phantom_dataset
    from medseg.data.plan import default_gpu_memory, make_plan, save_plan

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="medseg-bench-train-") as tmp:
        work = Path(tmp)
        os.environ["MEDSEG_CACHE"] = str(work / "cache")
        root = write_phantom_dataset(work / "ds", cases=args.cases, seed=0, size=args.size)
        spec = load_dataset(root)
        plan = make_plan(compute_fingerprint(spec), default_gpu_memory(), spacing=args.spacing)
        save_plan(plan, work / "plan.yaml")
        ours = medseg_rate(root, work / "plan.yaml", plan, args.iterations, work, device)
        base = baseline_rate(spec, plan, args.iterations, device)
    print(f"machine: {platform.node()} | {os.cpu_count()} CPUs | {torch.get_num_threads()} torch threads | device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "") + f" | torch {torch.__version__}")
    print(f"data: {args.cases} {args.size} phantoms; patch {list(plan.training.patch_size)}, batch {plan.training.batch_size}, "
          f"filters {plan.network.filters}, {args.iterations} timed iterations each")
    print(f"{'loop':44}{'patches/s':>10}")
    print(f"{'medseg trainer':44}{ours:>10.2f}")
    print(f"{'MONAI tutorial loop (CacheDataset+PosNeg)':44}{base:>10.2f}")
    print(f"ratio medseg / MONAI loop: {ours / base:.2f} (goal on a GPU: >= 2)")


if __name__ == "__main__":
    main()
