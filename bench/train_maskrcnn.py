"""Instance-model benchmark: train the slice-wise Mask R-CNN on phantoms within a time budget,
then measure 3D lesion detection F1 on held-out phantoms (another seed) on their own grids.

Also compares training and inference speed (slices/s) with the plain torchvision loop (the
library's defaults: ``maskrcnn_resnet50_fpn``, 800-px resize, default anchors and sampling)
on the same slices, and prints the ratio. Run:

    .venv/bin/python bench/train_maskrcnn.py [--minutes 20] [--train-cases 16] [--test-cases 8]

Target (issue 7): F1 >= 0.8 after at most 20 minutes of CPU training. The number of epochs is
chosen from the first epoch's time (training + validation), and the run is extended with
``resume`` to fill the budget.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _evaluate(run_dir: Path, test_ds: Path) -> dict:
    """Pooled lesion detection (medseg.metrics.lesion_matching, half-covered rule) over held-out cases."""
    from medseg.data.layout import load_dataset
    from medseg.instance.predictor import InstancePredictor
    from medseg.io import read_volume
    from medseg.metrics import lesion_matching

    pred = InstancePredictor.from_run(run_dir, device="auto")
    n_ref = tp = n_pred = true_pred = slices = 0
    t0 = time.perf_counter()
    for case in load_dataset(test_ds).cases:
        image, label = read_volume(case.images[0]), read_volume(case.label)
        res = pred.predict([image])
        m = lesion_matching(res.mask.array > 0, label.array == 4)
        n_ref, tp, n_pred, true_pred = n_ref + m.n_ref, tp + m.tp, n_pred + m.n_pred, true_pred + m.n_pred - m.fp
        slices += image.shape[2]
    secs = time.perf_counter() - t0
    p = true_pred / n_pred if n_pred else 0.0
    r = tp / n_ref if n_ref else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "n_ref": n_ref, "n_pred": n_pred, "seconds": secs, "slices": slices}


def _speed(cfg, train_ds: Path, device, steps: int) -> dict:
    """Slices/s of training steps and inference: medseg's model vs torchvision's defaults, same slices."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from medseg.data.layout import load_dataset
    from medseg.instance.dataset import epoch_order, load_case, make_batch
    from medseg.instance.model import build_model

    spec = load_dataset(train_ds)
    cases = [load_case(c, cfg.data, [4], sorted(spec.labels.values())) for c in spec.cases[:4]]
    order = epoch_order(cases, cfg.data.empty_slice_rate, 0, 0, steps * cfg.batch_size)
    batches = [make_batch(cases, order[i * cfg.batch_size:(i + 1) * cfg.batch_size], cfg.data, {4: 1}, 0, 0, 0)
               for i in range(steps)]
    out = {}
    for name, model in (("medseg", build_model(cfg.model, 2)),
                        ("torchvision", maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2))):
        model.to(device).train()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.002, momentum=0.9, weight_decay=5e-4)
        times = []
        for images, targets in batches:
            images = [x.to(device) for x in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            t0 = time.perf_counter()
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        model.eval()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for images, _ in batches:
                model([x.to(device) for x in images])
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_inf = time.perf_counter() - t0
        warm = times[1:] or times
        out[name] = {"train": cfg.batch_size * len(warm) / sum(warm), "infer": cfg.batch_size * steps / t_inf}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (training + validation)")
    ap.add_argument("--train-cases", type=int, default=16)
    ap.add_argument("--test-cases", type=int, default=8)
    ap.add_argument("--speed-steps", type=int, default=4, help="batches for the speed comparison")
    ap.add_argument("--keep", type=Path, help="keep the data and run folders here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from medseg.data.phantoms import write_phantom_dataset
    from medseg.instance.config import load_instance_config
    from medseg.instance.trainer import train_instance

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tmp = Path(tempfile.mkdtemp(prefix="medseg-bench-maskrcnn-"))
    work = args.keep or tmp
    try:
        train_ds = write_phantom_dataset(work / "train", cases=args.train_cases, seed=0, size="small")
        test_ds = write_phantom_dataset(work / "test", cases=args.test_cases, seed=1, size="small")
        cfg = load_instance_config(ROOT / "configs" / "maskrcnn_lesions.yaml")
        budget = args.minutes * 60
        t0 = time.perf_counter()
        train_instance(cfg, train_ds, work / "run", epochs=1, device=str(device.type), progress=False)
        t_epoch = time.perf_counter() - t0
        epochs = max(1, int(budget / t_epoch))
        _log(f"first epoch {t_epoch:.0f} s -> {epochs} epochs in {args.minutes:g} min")
        if epochs > 1:
            train_instance(cfg, train_ds, work / "run", epochs=epochs, resume=True, device=str(device.type), progress=False)
        t_train = time.perf_counter() - t0
        _log(f"trained {epochs} epochs in {t_train / 60:.1f} min")
        ev = _evaluate(work / "run", test_ds)
        _log(f"held-out: {ev}")
        speed = _speed(cfg, train_ds, device, args.speed_steps)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    import os

    print(f"machine: {platform.node()} | {platform.machine()} | {os.cpu_count()} CPUs | {torch.get_num_threads()} torch "
          f"threads | device {device} | torch {torch.__version__}")
    print(f"data: {args.train_cases} training phantoms (seed 0, fold 0: 4/5 train, 1/5 validation), "
          f"{args.test_cases} held-out (seed 1), small; configs/maskrcnn_lesions.yaml")
    print(f"training: {epochs} epochs x {cfg.iterations_per_epoch} it x {cfg.batch_size} slices in {t_train / 60:.1f} min "
          f"(with validation each epoch)")
    print(f"held-out lesion detection: F1 {ev['f1']:.3f} (target >= 0.80), precision {ev['precision']:.3f}, "
          f"recall {ev['recall']:.3f} ({ev['n_ref']} reference, {ev['n_pred']} predicted lesions); "
          f"prediction {ev['slices'] / ev['seconds']:.1f} slices/s incl. linking and tables")
    m, tv = speed["medseg"], speed["torchvision"]
    print(f"speed, same slices: training {m['train']:.2f} vs torchvision defaults {tv['train']:.2f} slices/s "
          f"(ratio {m['train'] / tv['train']:.2f}); inference {m['infer']:.2f} vs {tv['infer']:.2f} slices/s "
          f"(ratio {m['infer'] / tv['infer']:.2f})")


if __name__ == "__main__":
    main()
