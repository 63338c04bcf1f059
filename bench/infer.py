"""Inference benchmark: medseg's streaming sliding window vs ``monai.inferers.sliding_window_inference``
on the same network and input, then one large scan end to end (stage times and peak RAM).

    .venv/bin/python bench/infer.py [--run RUN_DIR] [--shape 512 512 600] [--model-shape 160 160 96]

Part 1 (same process, same network, same model-space input): voxels per second of
  * MONAI default: ``sliding_window_inference(x, patch, sw_batch, net)`` (overlap 0.25,
    constant blending) + argmax -- the named baseline;
  * MONAI matched: overlap 0.5, Gaussian blending (medseg's defaults) + argmax;
  * medseg at overlap 0.5 (default) and 0.25, Gaussian, streaming argmax;
with the ratios, the voxel agreement with MONAI matched, and -- when ``--run`` is a trained
phantom run -- held-out Dice of each method (equal-Dice check).
Part 2 (a subprocess, like a user): ``medseg predict`` on a synthetic CT of ``--shape``
voxels (int16, 0.8 x 0.8 x 1.0 mm) with the run's classes: read / preprocess / network /
postprocess / write seconds from the manifest, their shares, and peak host RAM (ru_maxrss).
Without ``--run`` a throwaway run (a few iterations on phantoms, 1.6 x 1.6 x 2.4 mm plan) is
trained first; its weights are meaningless but its shapes are realistic for a CPU plan.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _throwaway_run(work: Path) -> Path:
    from medseg.data.fingerprint import compute_fingerprint
    from medseg.data.layout import load_dataset
    from medseg.data.phantoms import write_phantom_dataset
    from medseg.data.plan import make_plan, save_plan
    from medseg.model.config import TrainConfig
    from medseg.train.trainer import train

    ds = write_phantom_dataset(work / "ds", cases=3, seed=0, size="small")
    plan = make_plan(compute_fingerprint(load_dataset(ds)), 2.0, spacing=(1.6, 1.6, 2.4))
    save_plan(plan, work / "plan.yaml")
    os.environ["MEDSEG_CACHE"] = str(work / "cache")
    train(TrainConfig(epochs=1, iterations_per_epoch=4, val_every=1000, num_workers=0), ds, work / "run",
          plan=work / "plan.yaml", fold="all", progress=False)
    return work / "run"


def _time(fn, repeat: int = 1):
    fn()  # warm-up
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def compare_windows(predictor, shape, device) -> dict:
    from monai.inferers import sliding_window_inference

    from medseg.model.sliding import sliding_window_labels

    net, patch = predictor.model, tuple(predictor.plan.training.patch_size)
    n_cls = max(predictor.labels.values()) + 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn((predictor.n_channels, *shape), generator=g).numpy()  # (C, X, Y, Z)
    nvox = float(np.prod(shape))
    sw = predictor.batch_size
    xt = torch.from_numpy(x)[None].to(device)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    @torch.no_grad()
    def monai(overlap, mode):
        with torch.autocast(**amp):
            return sliding_window_inference(xt, patch, sw, net, overlap=overlap, mode=mode).argmax(1)[0].cpu().numpy()

    def ours(overlap):
        return sliding_window_labels(net, x, patch, n_cls, overlap=overlap, batch_size=sw, device=device,
                                     autocast_dtype=torch.bfloat16 if device.type == "cuda" else None).labels

    res = {}
    res["monai_default"], _ = _time(lambda: monai(0.25, "constant"))
    res["monai_matched"], ref = _time(lambda: monai(0.5, "gaussian"))
    res["medseg_0.5"], mine = _time(lambda: ours(0.5))
    res["medseg_0.25"], _ = _time(lambda: ours(0.25))
    print(f"\n## sliding window: model-space input {list(shape)} ({nvox / 1e6:.2f} Mvoxels), patch {list(patch)}, "
          f"sw batch {sw}, {n_cls} classes, device {device}")
    print(f"{'method':<32}{'seconds':>9}{'Mvoxel/s':>10}{'vs MONAI default':>18}")
    for k, name in [("monai_default", "MONAI default (0.25, constant)"), ("monai_matched", "MONAI matched (0.5, gaussian)"),
                    ("medseg_0.5", "medseg (0.5, gaussian)"), ("medseg_0.25", "medseg (0.25, gaussian)")]:
        print(f"{name:<32}{res[k]:>9.2f}{nvox / res[k] / 1e6:>10.2f}{res['monai_default'] / res[k]:>17.2f}x")
    print(f"medseg vs MONAI matched (same overlap and blending): {res['monai_matched'] / res['medseg_0.5']:.2f}x; "
          f"voxel agreement {float((ref == mine).mean()):.5f}")
    print(f"accumulator memory: MONAI holds {n_cls} x {nvox / 1e6:.1f} M float32 = {n_cls * nvox * 4 / 2**30:.2f} GiB of "
          f"logits (+ weights); medseg {n_cls} x {shape[0]}x{shape[1]}x{patch[2]} = "
          f"{n_cls * shape[0] * shape[1] * patch[2] * 4 / 2**30:.3f} GiB")
    return res


def dice_check(predictor, test_dir: Path, device) -> None:
    """Held-out Dice with medseg's predictor and with MONAI's inferer on the same network."""
    from monai.inferers import sliding_window_inference

    from medseg.data.layout import load_dataset
    from medseg.io import read_volume
    from medseg.metrics import dice

    spec = load_dataset(test_dir)
    scores = {"medseg (0.5, gaussian)": [], "MONAI default (0.25, constant)": []}
    for c in spec.cases:
        vol, ref = read_volume(c.images[0]), read_volume(c.label).array
        mine = predictor(vol).array
        img, rec = predictor.pre.image([vol])
        with torch.no_grad():
            lg = sliding_window_inference(torch.from_numpy(img)[None].to(device), tuple(predictor.plan.training.patch_size),
                                          predictor.batch_size, predictor.model)
        theirs = predictor.pre.invert_labels(lg.argmax(1)[0].to(torch.uint8).cpu().numpy(), rec).array
        for k, m in (("medseg (0.5, gaussian)", mine), ("MONAI default (0.25, constant)", theirs)):
            fg = [v for n, v in predictor.labels.items() if v and n != "tumour" and (ref == v).any()]
            scores[k].append(np.mean([dice(m == v, ref == v) for v in fg]))
    for k, v in scores.items():
        print(f"held-out mean organ Dice, {k}: {np.mean(v):.4f} ({len(v)} cases)")


def synthetic_ct(path: Path, shape) -> None:
    """int16 CT-like volume: air, an elliptic body of soft tissue with a brighter 'organ'."""
    import nibabel as nib

    x, y = np.ogrid[: shape[0], : shape[1]]
    body = ((x - shape[0] / 2) / (shape[0] * 0.42)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.35)) ** 2 < 1
    organ = ((x - shape[0] * 0.4) / (shape[0] * 0.15)) ** 2 + ((y - shape[1] * 0.45) / (shape[1] * 0.12)) ** 2 < 1
    plane = np.where(body, 40, -1000).astype(np.int16)
    plane[organ] = 90
    arr = np.repeat(plane[:, :, None], shape[2], axis=2)
    arr += np.random.default_rng(0).integers(-20, 20, size=arr.shape[:2], dtype=np.int16)[:, :, None]
    aff = np.diag([-0.8, -0.8, 1.0, 1.0])
    nib.save(nib.Nifti1Image(arr, aff), path)


def end_to_end(run: Path, shape, work: Path, overlap: float, device: str) -> None:
    big = work / "big_ct.nii"
    t = time.perf_counter()
    synthetic_ct(big, shape)
    print(f"\n## end to end: `medseg predict` on a synthetic {list(shape)} int16 CT ({np.prod(shape) / 1e6:.0f} Mvoxels, "
          f"{big.stat().st_size / 2**20:.0f} MiB .nii; made in {time.perf_counter() - t:.0f} s), overlap {overlap}, device {device}")
    medseg = Path(sys.executable).parent / "medseg"
    t = time.perf_counter()
    r = subprocess.run([str(medseg), "predict", str(big), "--model", str(run), "--out", str(work / "out"), "--quiet",
                        "--overlap", str(overlap), "--device", device, "--overwrite"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit("medseg predict failed")
    row = next(csv.DictReader(open(work / "out" / "manifest.csv")))
    stages = {k: float(row[f"{k}_s"] or 0) for k in ("read", "preprocess", "network", "postprocess", "write")}
    total = sum(stages.values())
    print(f"{'stage':<14}{'seconds':>9}{'share':>8}")
    for k, v in stages.items():
        print(f"{k:<14}{v:>9.1f}{100 * v / total:>7.1f}%")
    print(f"{'total':<14}{total:>9.1f}   (process wall time {wall:.1f} s incl. start-up)")
    print(f"non-network share {100 * (total - stages['network']) / total:.1f}% (target < 25%); "
          f"peak host RAM {peak_gib:.2f} GiB (target <= 6 GB); full-resolution float32 probabilities of "
          f"{max(1, len([c for c in row if c.startswith('volume_ml_')]) + 1)} classes would be "
          f"{np.prod(shape) * (len([c for c in row if c.startswith('volume_ml_')]) + 1) * 4 / 2**30:.2f} GiB alone")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a trained run (default: a throwaway run is trained)")
    ap.add_argument("--test", type=Path, help="held-out dataset for the equal-Dice check (needs --run)")
    ap.add_argument("--model-shape", type=int, nargs=3, default=[160, 160, 96], help="model-space input of part 1")
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 600], help="scan of part 2 (voxels)")
    ap.add_argument("--overlap", type=float, default=0.25, help="overlap for part 2")
    ap.add_argument("--skip-e2e", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from medseg.predict import Predictor

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"machine: {platform.node()} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
          f"{torch.get_num_threads()} torch threads | device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "") + f" | torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="medseg-bench-infer-") as tmp:
        work = Path(tmp)
        run = args.run or _throwaway_run(work)
        predictor = Predictor.from_run(run, device=device.type)
        compare_windows(predictor, tuple(args.model_shape), device)
        if args.run and args.test:
            dice_check(predictor, args.test, device)
        if not args.skip_e2e:
            end_to_end(run, tuple(args.shape), work, args.overlap, device.type)


if __name__ == "__main__":
    main()
