"""``medseg train``: train a 3D U-Net on a dataset folder (same command under torchrun)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _fold(text: str):
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0-4 or 'all', got {text!r}") from None


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "train",
        parents=parents,
        help="train a 3D U-Net (organs, organ + tumour) on an nnU-Net / Decathlon dataset",
        description="Train a MONAI DynUNet/UNet with Dice + cross-entropy. The config (configs/*.yaml) sets "
        "the recipe; the dataset plan (computed when --plan is not given) fills patch size, batch size, "
        "spacing and network shape. Writes RUN_DIR/{config.yaml,plan.yaml,labels.json,last.pt,best.pt,"
        "metrics.csv,curve.png,tensorboard/}. Ctrl-C saves last.pt; --resume continues exactly. Under "
        "`torchrun --nproc_per_node N` the same command trains with DDP.",
    )
    p.add_argument("--config", type=Path, help="training config YAML (e.g. configs/unet_organs.yaml); default: built-in defaults")
    p.add_argument("--dataset", type=Path, required=True, help="dataset folder (nnU-Net v2 or Decathlon layout)")
    p.add_argument("--out", type=Path, required=True, help="run directory to create (or to resume)")
    p.add_argument("--epochs", type=int, help="total epochs (default: the config's); with --resume a larger value extends a run")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train (default auto)")
    p.add_argument("--fold", type=_fold, default=0, help="cross-validation fold 0-4 from DATASET/splits.json, or 'all' (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--seed", type=int, default=0, help="random seed (patches, augmentation, initial weights)")
    p.add_argument("--plan", type=Path, help="plan YAML from `medseg plan` (default: computed from the dataset for "
                   "the training device: a CPU plan without a GPU)")
    p.add_argument("--init", type=Path, metavar="RUN_DIR",
                   help="fine-tune: start from an earlier run's weights and plan (best.pt, else last.pt); a changed "
                        "number of classes re-initialises only the output head")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one config value without editing the file (repeatable): a dotted key and a "
                        "YAML value, e.g. --set epochs=20 --set inference.tta=none --set optimizer.lr=1e-3")
    p.add_argument("--gpu-memory", type=float, default=None, metavar="GB", help="memory budget when computing the plan")


def run(args: argparse.Namespace) -> int:
    from medseg.data.plan import default_gpu_memory
    from medseg.train import config_task, train  # one dispatch on `task` for the CLI and medseg.train()

    if args.epochs is not None and args.epochs < 1:
        from medseg.errors import InputError

        raise InputError(f"--epochs {args.epochs}: must be at least 1")
    config = args.config
    if args.overrides:  # --set KEY=VALUE: the YAML's contents with the overrides, read by the task's config class
        from medseg.config import apply_overrides, load_yaml

        config = apply_overrides(load_yaml(args.config) if args.config else None, args.overrides)
    if config_task(config) == "instance":  # `task: instance`: the slice-wise Mask R-CNN (medseg.instance)
        result = train(config, args.dataset, args.out, epochs=args.epochs, device=args.device,
                       fold=args.fold, resume=args.resume, seed=args.seed, init=args.init)
        best, final = result["best_f1"], result.get("final_validation")
        print(f"run {result['run_dir']}: best validation 3D lesion F1 "
              + (f"{best:.4f} at epoch {result['best_epoch'] + 1}" if best >= 0 else "n/a (no validation)")
              + (f"; with tta {final['tta']} {final['val_lesion_f1']:.4f} (its thresholds are stored)" if final else ""))
        return 0
    result = train(config, args.dataset, args.out, epochs=args.epochs, device=args.device, fold=args.fold,
                   resume=args.resume, seed=args.seed, plan=args.plan,
                   gpu_memory_gb=args.gpu_memory or default_gpu_memory(), init=args.init)
    best = result["best_dice"]
    print(f"run {result['run_dir']}: best mean foreground Dice "
          + (f"{best:.4f} at epoch {result['best_epoch'] + 1}" if best >= 0 else "n/a (no validation)"))
    return 0
