"""Learning-quality benchmark: train the organ + tumour U-Net on phantoms within a time budget,
then evaluate on held-out phantoms (another seed) on their original grids.

Also an overfit sanity check on the real chest CT sample (train and test on the same scan,
report the lungs' Dice). Run: ``.venv/bin/python bench/train_phantoms.py [--minutes 15]``.

Targets from the training issue (CPU, 2 cores, 15 minutes): mean organ Dice >= 0.90 and
tumour Dice >= 0.60. The number of epochs is chosen from a measured iteration speed so that
training (with validation) fits the budget; preprocessing and evaluation are timed apart.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _evaluate(run_dir, cases, device, first: int | None = None) -> dict:
    """Held-out Dice per class with medseg's own Predictor (best.pt, or last.pt without validation):
    for each class the mean over the cases whose reference has it. With ``first``, the scores of
    the first ``first`` cases alone are returned too, under ``"first"``."""
    from medseg.io import read_volume
    from medseg.metrics import dice
    from medseg.predict import Predictor

    predictor = Predictor.from_run(run_dir, device=device.type)
    labels = {n: v for n, v in predictor.labels.items() if v}
    scores = {n: [] for n in labels}
    early = None
    for i, (img_path, lab_path) in enumerate(cases):
        if i == first:
            early = {n: float(np.mean(s)) if s else float("nan") for n, s in scores.items()}
        pred = predictor(read_volume(img_path))
        ref = read_volume(lab_path)
        for n, v in labels.items():
            if (ref.array == v).any():  # tumour Dice only where the case has tumours
                scores[n].append(float(dice(pred.array == v, ref.array == v)))
    out = {n: float(np.mean(s)) if s else float("nan") for n, s in scores.items()}
    out.update({f"n_{n}": len(s) for n, s in scores.items()})
    if first is not None:
        out["first"] = early or {n: v for n, v in out.items() if not n.startswith("n_")}
    return out


def _log(msg: str) -> None:
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class _SkipLung(Exception):
    """--lung-epochs 0: no chest-CT overfit check."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget")
    ap.add_argument("--train-cases", type=int, default=256,
                    help="training phantoms (more cases, more variety: 256 beat 128 and 40 at equal iterations)")
    ap.add_argument("--test-cases", type=int, default=32,
                    help="held-out phantoms (32: about 23 have tumours, so the tumour Dice is not a 4-case mean)")
    ap.add_argument("--spacing", type=float, nargs=3, default=None,
                    help="plan target spacing (mm); default: the automatic plan for this device (a CPU plan without a GPU)")
    ap.add_argument("--base-filters", type=int, default=None, help="plan network width (first stage; default: the plan's)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="train this many iterations instead of filling --minutes (a loaded machine then changes the "
                         "time, not what is learnt)")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "unet_tumor_cpu.yaml")
    ap.add_argument("--lung-epochs", type=int, default=25, help="epochs (x 20 it) of the chest-CT overfit check")
    ap.add_argument("--keep", type=Path, help="keep the run folders here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from medseg.data.fingerprint import compute_fingerprint
    from medseg.data.layout import load_dataset
    from medseg.data.phantoms import write_phantom_dataset
    from medseg.data.plan import make_plan, save_plan
    from medseg.model.config import load_config
    from medseg.train.trainer import train

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tmp = Path(tempfile.mkdtemp(prefix="medseg-bench-"))
    work = args.keep or tmp
    try:
        t0 = time.perf_counter()
        train_ds = write_phantom_dataset(work / "train", cases=args.train_cases, seed=0, size="small")
        test_ds = write_phantom_dataset(work / "test", cases=args.test_cases, seed=1, size="small")
        spec = load_dataset(train_ds)
        fp = compute_fingerprint(spec)
        plan = make_plan(fp, gpu_memory_gb=8, spacing=args.spacing, base_filters=args.base_filters,
                         device="gpu" if device.type == "cuda" else "cpu")
        save_plan(plan, work / "plan.yaml")
        t_data = time.perf_counter() - t0
        _log(f"data + plan {t_data:.0f} s; spacing {plan.preprocessing.target_spacing}, patch {plan.training.patch_size}")
        cfg = load_config(args.config)
        cfg.iterations_per_epoch, cfg.num_workers, cfg.val_every = 50, 2, 1000
        # measure the speed: two short epochs (the first also fills the preprocessing cache and
        # starts the loader workers); the second epoch's time is the steady speed
        t1 = time.perf_counter()
        cfg.epochs, cfg.iterations_per_epoch = 2, 25
        train(cfg, train_ds, work / "probe", plan=work / "plan.yaml", fold="all", progress=False)
        cfg.iterations_per_epoch = 50
        t_probe = time.perf_counter() - t1
        import csv

        probe_secs = float(list(csv.DictReader(open(work / "probe" / "metrics.csv")))[-1]["seconds"])
        it_s = 25 / max(probe_secs, 1e-3)  # steady training speed (cache warm, no validation)
        _log(f"probe: {it_s:.2f} it/s (probe took {t_probe:.0f} s in all)")
        # the budget covers training and the one final validation (~3% here)
        epochs = max(1, int(args.minutes * 60 * it_s * 0.97 / cfg.iterations_per_epoch))
        if args.iterations:
            epochs = max(1, round(args.iterations / cfg.iterations_per_epoch))
        cfg.epochs = epochs
        t2 = time.perf_counter()
        train(cfg, train_ds, work / "run", plan=work / "plan.yaml", fold="all", progress=False)
        t_train = time.perf_counter() - t2
        _log(f"trained {epochs} epochs in {t_train / 60:.1f} min")
        test_cases = [(c.images[0], c.label) for c in load_dataset(test_ds).cases]
        t3 = time.perf_counter()
        scores = _evaluate(work / "run", test_cases, device, first=8)
        t_eval = time.perf_counter() - t3
        _log(f"held-out evaluation {t_eval:.0f} s: {scores}")

        if args.lung_epochs <= 0:
            raise _SkipLung
        # overfit sanity check on the real chest CT (lungs)
        lung = work / "chest"
        (lung / "imagesTr").mkdir(parents=True, exist_ok=True)
        (lung / "labelsTr").mkdir(parents=True, exist_ok=True)
        from medseg.io import read_volume, write_volume

        write_volume(read_volume(ROOT / "data_samples/ct_chest/CTChest4.nrrd"), lung / "imagesTr/chest_0000.nii.gz", overwrite=True)
        write_volume(read_volume(ROOT / "data_samples/ct_chest/Segmentation.seg.nrrd"), lung / "labelsTr/chest.nii.gz", overwrite=True)
        names = ["background", "ribs", "cervical", "thoracic", "lumbar", "right_lung", "left_lung", "tissue"]
        (lung / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {n: i for i, n in enumerate(names)},
                                                       "numTraining": 1, "file_ending": ".nii.gz"}))
        lspec = load_dataset(lung)
        # a coarse, narrow plan (3 mm, 16 filters, a small patch) so a CPU can overfit in minutes
        lplan = make_plan(compute_fingerprint(lspec), gpu_memory_gb=1.5, spacing=(3.0, 3.0, 3.0), base_filters=16)
        save_plan(lplan, work / "lung_plan.yaml")
        lcfg = load_config(ROOT / "configs" / "unet_organs.yaml")
        lcfg.iterations_per_epoch, lcfg.num_workers, lcfg.val_every = 20, 1, 1000
        lcfg.optimizer.name, lcfg.optimizer.lr, lcfg.schedule.name = "adamw", 3e-3, "cosine"
        lcfg.augmentation.enabled = False
        lcfg.epochs = args.lung_epochs
        t4 = time.perf_counter()
        train(lcfg, lung, work / "lung_run", plan=work / "lung_plan.yaml", fold="all", progress=False)
        t_lung = time.perf_counter() - t4
        ls = _evaluate(work / "lung_run", [(lspec.cases[0].images[0], lspec.cases[0].label)], device)
    except _SkipLung:
        ls = None
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    organs = [scores[n] for n in ("liver", "spleen", "kidney")]
    names = [n for n in scores if n not in ("first",) and not n.startswith("n_")]
    batch = cfg.batch_size or plan.training.batch_size  # the config may override the plan
    import os

    print(f"machine: {platform.node()} | {platform.machine()} | {torch.get_num_threads()} torch threads | device {device} | "
          f"torch {torch.__version__} | load average at the end {os.getloadavg()[0]:.2f}")
    print(f"data: {args.train_cases} training phantoms (seed 0), {args.test_cases} held-out (seed 1), small; "
          f"{'automatic ' + plan.device.upper() if args.spacing is None else 'hand-set'} plan: target spacing "
          f"{list(plan.preprocessing.target_spacing)} mm, patch {list(plan.training.patch_size)}, batch {batch}, "
          f"filters {plan.network.filters}")
    print(f"phantoms + plan {t_data:.0f} s; speed probe {t_probe:.0f} s ({it_s:.2f} it/s); training {epochs} epochs x "
          f"{cfg.iterations_per_epoch} it = {t_train / 60:.1f} min ({epochs * cfg.iterations_per_epoch / t_train:.2f} it/s, "
          f"{epochs * cfg.iterations_per_epoch * batch / t_train:.2f} patches/s); evaluation {t_eval:.0f} s")
    print("held-out Dice: " + ", ".join(f"{n} {scores[n]:.3f} ({scores['n_' + n]} cases)" for n in names))
    print(f"mean organ Dice {np.mean(organs):.3f} (target >= 0.90), tumour Dice {scores['tumour']:.3f} (target >= 0.60)")
    f8 = scores["first"]
    print(f"first 8 held-out cases alone (the earlier benchmark's test set): mean organ "
          f"{np.mean([f8[n] for n in ('liver', 'spleen', 'kidney')]):.3f}, tumour {f8['tumour']:.3f}")
    if ls is None:
        return
    print(f"chest CT overfit ({lcfg.epochs * 20} it, {t_lung / 60:.1f} min; spacing {list(lplan.preprocessing.target_spacing)} mm, "
          f"patch {list(lplan.training.patch_size)}): right lung {ls['right_lung']:.3f}, left lung {ls['left_lung']:.3f}")


if __name__ == "__main__":
    main()
