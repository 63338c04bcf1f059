"""Training the instance model: ``train_instance(config, dataset, out)`` -- what ``medseg train``
runs for a config with ``task: instance``.

The run directory, checkpoints, resume, progress and Ctrl-C behave as the U-Net trainer's
(:mod:`medseg.train.trainer`): ``config.yaml``, ``labels.json``, ``run.json`` (with
``"task": "instance"``), ``last.pt`` / ``best.pt`` (best 3D lesion F1, then AP50),
``metrics.csv``, ``curve.png``, ``tensorboard/``. The slice order and flips are functions of
(seed, epoch, position) and the learning rate of (epoch, iteration), so ``--resume`` after
Ctrl-C continues with the very batches the run would have seen. One process (no DDP).

Recipe: AdamW (or SGD with momentum), a short linear warm-up, then cosine / constant / step per
epoch; gradient-norm clipping; AMP (bf16, or fp16 with a grad scaler) on a GPU. Training uses
fixed-size crops (:mod:`medseg.instance.dataset`), prediction whole slices at the same scale.

Each validation sweeps the score threshold (:mod:`medseg.instance.validation`); the threshold
of the best epoch's F1 is stored in ``best.pt`` (``"score_threshold"``) and
``RUN/threshold.json``, where :class:`~medseg.instance.predictor.InstancePredictor` finds it.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import torch

from medseg._version import __version__
from medseg.config import ConfigError
from medseg.data.layout import load_dataset
from medseg.errors import InputError, OutputError
from medseg.instance.config import InstanceConfig, config_dict, load_instance_config
from medseg.instance.dataset import epoch_order, load_case, make_batch
from medseg.instance.model import build_model
from medseg.instance.report import metric_columns, metric_row, plot_curve
from medseg.instance.validation import validate
from medseg.io import read_volume
from medseg.model import checkpoint as ck
from medseg.model.device import autocast_dtype, resolve_device
from medseg.train.distributed import Dist
from medseg.train.rundir import read_metrics, write_json, write_metrics, write_yaml
from medseg.train.setup import check_or_raise
from medseg.train.splits import fold_cases, load_or_create_splits
from medseg.train.trainer import EpochReporter


def learning_rate(cfg: InstanceConfig, epoch: int, iteration: int, epochs: int,
                  anchor: tuple[int, float] | None = None) -> float:
    """The rate at (epoch, iteration): warm-up factor over the global iteration x the schedule.

    ``anchor = (a, f)``: the run was extended (``--resume --epochs N`` with a new N) at epoch
    ``a``, where the schedule's factor was ``f``; from ``a`` on a cosine schedule decays from
    ``f`` to ``min_lr_factor`` at ``epochs``, so the rate never jumps back up (as the U-Net's
    :func:`medseg.train.components.lr_factor`)."""
    s = cfg.schedule
    step = epoch * cfg.iterations_per_epoch + iteration
    warm = 1.0
    if step < s.warmup_iterations:
        a = step / max(s.warmup_iterations, 1)
        warm = s.warmup_factor * (1 - a) + a
    return cfg.optimizer.lr * warm * _schedule_factor(cfg, epoch, epochs, anchor)


def _schedule_factor(cfg: InstanceConfig, epoch: int, epochs: int, anchor) -> float:
    """The schedule's multiplier for ``epoch`` (0-based) of ``epochs``, without the warm-up."""
    s = cfg.schedule
    if s.name == "cosine":
        lo, hi, e0, n = s.min_lr_factor, 1.0, 0, epochs
        if anchor is not None and epoch >= anchor[0]:
            e0, hi, n = int(anchor[0]), float(anchor[1]), epochs - int(anchor[0])
        return lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi * (epoch - e0) / max(n, 1)))
    if s.name == "step":
        return s.gamma ** sum(epoch >= m for m in s.milestones)
    return 1.0


def extension_anchor(cfg: InstanceConfig, start_epoch: int, old_total: int, new_total: int,
                     old_anchor) -> tuple[int, float] | None:
    """The anchor of a run resumed with ``new_total`` epochs that was planned for ``old_total``:
    unchanged when the totals agree (exact resume), else the last epoch's schedule factor
    continues from ``start_epoch`` (see :func:`learning_rate`)."""
    if new_total == old_total:
        return tuple(old_anchor) if old_anchor else None
    last = min(start_epoch, old_total - 1)
    return (start_epoch, _schedule_factor(cfg, last, old_total, tuple(old_anchor) if old_anchor else None))


def train_step(model, images: list, targets: list[dict], opt, scaler, params: list, grad_clip: float,
               amp_dtype=None) -> float:
    """One optimiser step on a batch (model in training mode); returns the summed Mask R-CNN loss
    before the step. A non-finite loss skips the update."""
    dev_type = images[0].device.type
    with torch.autocast(dev_type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = sum(model(images, targets).values())
    if not torch.isfinite(loss):
        return float(loss.detach())
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(opt)
    scaler.update()
    return float(loss.detach())


def resolve_classes(cfg: InstanceConfig, labels: dict[str, int], spec=None) -> dict[str, int]:
    """``data.classes`` -> {name: dataset value}, in model class order (model class i+1).

    ``auto``: the dataset's lesion-like classes, ``ClassRoles.small_structures`` of
    :func:`medseg.data.classes.dataset_class_roles` (from the training labels of ``spec``), in
    label-value order. A named class the dataset lacks is a `ConfigError`.
    """
    if cfg.data.classes == "auto":
        if spec is None:
            raise ConfigError("data.classes: auto needs the dataset to derive its lesion-like classes")
        from medseg.data.classes import dataset_class_roles

        small = set(dataset_class_roles(spec).small_structures)
        names = [n for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v and n in small]
        if not names:
            raise ConfigError("data.classes: auto found no lesion-like class in this dataset's labels (none is "
                              "often absent, varies in number or is small); name the classes, e.g. "
                              f"data.classes: [{next((n for n, v in labels.items() if v), 'lesion')}]")
        return {n: labels[n] for n in names}
    out = {}
    for name in cfg.data.classes:
        if name not in labels or labels[name] == 0:
            allowed = ", ".join(n for n, v in labels.items() if v)
            raise ConfigError(f"data.classes: {name!r} is not a foreground label of this dataset; use one of {allowed}")
        out[name] = labels[name]
    return out


def train_instance(config: str | Path | InstanceConfig | None, dataset: str | Path, out: str | Path, *,
                   epochs: int | None = None, device: str = "auto", fold: int | str = 0, resume: bool = False,
                   seed: int = 0, progress: bool = True, init: str | Path | None = None, **ignored) -> dict:
    """Train the slice-wise Mask R-CNN; returns ``{"epoch", "best_f1", "best_epoch", "metrics",
    "score_threshold", "run_dir", "model", "task"}`` (``model``: the trained torch module, final
    weights, on its device; ``score_threshold``: the one stored for prediction).

    Args:
        config: a YAML with ``task: instance`` (``configs/maskrcnn_lesions_cpu.yaml``), its
            dict, an `InstanceConfig`, or None (defaults).
        dataset: nnU-Net v2 or Decathlon dataset folder.
        out: run directory (created; must not hold a run unless ``resume``).
        epochs: total epochs (default: the config's; with ``resume``, larger extends a run).
        fold: 0-4 from ``DATASET/splits.json``, or ``"all"``.
        init: an earlier instance run to fine-tune from (its weights; see :mod:`medseg.train.init`).
            Not with ``resume``.
        ignored: U-Net-only options (``plan``, ``gpu_memory_gb``) are accepted and unused.
    """
    # a copy: ``auto`` settings are resolved on it, never on the caller's object
    cfg = copy.deepcopy(config) if isinstance(config, InstanceConfig) else load_instance_config(config)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("the instance model trains in one process; run `medseg train` without torchrun")
    run_dir = Path(out)
    last = run_dir / "last.pt"
    if resume and not last.exists():
        raise InputError(f"{run_dir} has no last.pt to resume; start a new run without --resume")
    if not resume and last.exists():
        raise OutputError(f"{run_dir} already holds a run; pass --resume to continue or extend it, or choose another --out")
    dev = resolve_device(device, Dist())
    ckpt = ck.load_checkpoint(last) if resume else None
    if ckpt is not None and epochs is None:
        epochs = int(ckpt["total_epochs"])
    epochs = int(epochs or cfg.epochs)
    if ckpt is not None and ckpt["iteration"] == 0 and int(ckpt["epoch"]) + 1 >= epochs:
        raise InputError(f"{run_dir} finished {int(ckpt['epoch']) + 1} epochs; pass a larger --epochs to extend it")
    if init is not None and resume:
        raise InputError("--init starts a new run from an earlier run's weights; drop --resume (resume continues "
                         "this run's own weights)")
    return _run(cfg, Path(dataset), run_dir, epochs, dev, fold, seed, ckpt, EpochReporter(progress), init)


def _run(cfg: InstanceConfig, dataset: Path, run_dir: Path, epochs: int, dev, fold, seed: int, ckpt, rep,
         init=None) -> dict:
    spec = load_dataset(dataset)
    if ckpt is None:
        check_or_raise(spec)
    class_values = resolve_classes(cfg, spec.labels, spec) if ckpt is None else \
        {str(k): int(v) for k, v in ckpt.get("classes", {}).items()} or resolve_classes(cfg, spec.labels, spec)
    names = list(class_values)
    class_map = {v: i + 1 for i, v in enumerate(class_values.values())}
    model_classes = {"background": 0, **{n: i + 1 for i, n in enumerate(names)}}
    train_ids, val_ids = fold_cases(load_or_create_splits(spec.root, [c.case_id for c in spec.cases]), fold)
    by_id = {c.case_id: c for c in spec.cases}
    label_values = sorted(spec.labels.values())
    rep.line(f"reading {len(train_ids)} training and {len(val_ids)} validation cases (axial slices at "
             f"{cfg.data.spacing_mm[0]:g} x {cfg.data.spacing_mm[1]:g} mm)")
    cases = [load_case(by_id[i], cfg.data, list(class_values.values()), label_values) for i in train_ids]
    if cfg.data.windows == "auto":
        from medseg.instance.channels import lesion_windows

        cfg.data.windows = lesion_windows([c.image for c in cases], [c.label for c in cases],
                                          list(class_values.values()), cfg.data.spacing_mm)
        rep.line("windows: auto -> " + ", ".join(f"level {lv:g} width {w:g} HU" for lv, w in cfg.data.windows)
                 + " (from the lesion classes and the tissue around them)")
    val_cases = [(read_volume(by_id[i].images[0]), read_volume(by_id[i].label)) for i in val_ids]
    torch.manual_seed(seed)
    model = build_model(cfg.model, len(model_classes), load_pretrained=ckpt is None and init is None,
                        spacing_mm=cfg.data.spacing_mm)
    init_info = None
    if init is not None:
        from medseg.train.init import instance_init_source, load_init_weights

        _, init_ckpt, old_classes = instance_init_source(init)
        init_info = load_init_weights(model, init_ckpt, old_classes, model_classes)
    elif ckpt is not None and (run_dir / "run.json").is_file():
        import json as _json

        init_info = _json.loads((run_dir / "run.json").read_text()).get("init")
    model = model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optimizer
    if o.name == "adamw":
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]  # norms and biases: no weight decay
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=o.lr)
    else:
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    amp = autocast_dtype(cfg.precision, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    start_epoch, start_iter, loss_sum, best = 0, 0, 0.0, {"f1": -1.0, "ap50": -1.0, "epoch": -1,
                                                          "score_threshold": None}
    anchor = None
    if ckpt is not None:
        start_epoch, start_iter, loss_sum, best = ck.restore(ckpt, model, opt, scaler)
        anchor = extension_anchor(cfg, start_epoch, int(ckpt["total_epochs"]), epochs, ckpt.get("schedule_anchor"))
        if anchor is not None and tuple(anchor) != tuple(ckpt.get("schedule_anchor") or ()):
            rep.line(f"extending the run to {epochs} epochs: the learning rate continues from "
                     f"{cfg.optimizer.lr * anchor[1]:.3g} and decays from there")
    columns = metric_columns(names)
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if int(r["epoch"]) < start_epoch] if ckpt else []
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", config_dict(cfg))
    write_json(run_dir / "labels.json", {"labels": spec.labels, "classes": model_classes,
                                         "channels": {str(k): v for k, v in spec.channels.items()}})
    write_json(run_dir / "run.json", {"task": "instance", "dataset": str(dataset.resolve()), "fold": fold, "seed": seed,
                                      "train": train_ids, "val": val_ids, "medseg_version": __version__,
                                      "world_size": 1, "device": str(dev), "model": cfg.model.name,
                                      "classes": class_values, "init": init_info})
    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_epoch)
    ipe, bs = cfg.iterations_per_epoch, cfg.batch_size

    def payload(epoch: int, iteration: int, metrics: dict, loss_sum_: float) -> dict:
        return {"medseg_version": __version__, "task": "instance", "epoch": epoch, "iteration": iteration,
                "total_epochs": epochs, "schedule_anchor": anchor, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": {"name": cfg.schedule.name, "lr": opt.param_groups[0]["lr"]},
                "scaler": scaler.state_dict(), "rng": ck.rng_state(), "metrics": metrics or {}, "best": best,
                "labels": model_classes, "classes": class_values, "loss_sum": loss_sum_,
                "score_threshold": metrics.get("score_threshold") if metrics else None}

    metrics: dict = {}
    epoch, it_done, lr = start_epoch, start_iter, cfg.optimizer.lr
    try:
        for epoch in range(start_epoch, epochs):
            model.train()
            it_done = start_iter if epoch == start_epoch else 0
            loss_sum = loss_sum if epoch == start_epoch else 0.0
            order = epoch_order(cases, cfg.data, seed, epoch, ipe * bs)
            bar = rep.bar(epoch, epochs, ipe, it_done)
            t0, first = time.perf_counter(), it_done
            for it in range(it_done, ipe):
                lr = learning_rate(cfg, epoch, it, epochs, anchor)
                for g in opt.param_groups:
                    g["lr"] = lr
                images, targets = make_batch(cases, order[it * bs:(it + 1) * bs], cfg.data, class_map, seed, epoch, it * bs)
                images = [x.to(dev, non_blocking=True) for x in images]
                targets = [{k: v.to(dev, non_blocking=True) for k, v in t.items()} for t in targets]
                loss = train_step(model, images, targets, opt, scaler, params, cfg.optimizer.grad_clip, amp)
                if not math.isfinite(loss):
                    raise InputError(f"training diverged (loss {loss}) at epoch {epoch + 1}, iteration {it + 1}; "
                                     "lower optimizer.lr or raise schedule.warmup_iterations")
                loss_sum += loss
                it_done = it + 1
                if bar is not None:
                    rate = (it_done - first) / max(time.perf_counter() - t0, 1e-9)
                    bar.update(bar.task, advance=1, rate=f"{rate:.2f}", loss=f"{loss_sum / it_done:.4f}")
            if bar is not None:
                bar.stop()
            seconds = time.perf_counter() - t0
            train_loss = loss_sum / max(it_done, 1)
            metrics = {}
            if ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == epochs) and val_cases:
                tv = time.perf_counter()
                metrics = validate(model, val_cases, cfg, class_values, label_values, dev, amp)
                metrics["seconds"] = time.perf_counter() - tv
            ap = metrics.get("ap50", float("nan")) if metrics else float("nan")
            improved = bool(metrics) and (metrics["lesion_f1"], 0.0 if math.isnan(ap) else ap) > \
                (best["f1"], best["ap50"])
            if improved:
                best = {"f1": metrics["lesion_f1"], "ap50": 0.0 if math.isnan(ap) else ap, "epoch": epoch,
                        "score_threshold": metrics["score_threshold"]}
                write_json(run_dir / "threshold.json", {
                    "score_threshold": metrics["score_threshold"], "epoch": epoch, "val_lesion_f1": metrics["lesion_f1"],
                    "val_ap50": None if math.isnan(ap) else ap,
                    "f1_by_threshold": {f"{t:g}": round(v, 6) for t, v in metrics["f1_by_threshold"].items()}})
            ck.save_checkpoint(run_dir / "last.pt", payload(epoch, 0, metrics, 0.0))
            if improved or not (run_dir / "best.pt").exists():
                ck.save_checkpoint(run_dir / "best.pt", payload(epoch, 0, metrics, 0.0))
            rows.append(metric_row(epoch, lr, train_loss, seconds, metrics))
            write_metrics(run_dir / "metrics.csv", rows, columns)
            plot_curve(run_dir / "curve.png", rows)
            tb.add_scalar("train/loss", train_loss, epoch)
            tb.add_scalar("train/lr", lr, epoch)
            msg = f"epoch {epoch + 1}/{epochs}  loss {train_loss:.4f}  lr {lr:.3g}  {seconds:.1f} s " \
                  f"({(it_done - first) * bs / max(seconds, 1e-9):.2f} slices/s)"
            if metrics:
                for key in ("ap50", "lesion_f1"):
                    tb.add_scalar(f"val/{key}", metrics[key], epoch)
                msg += f"  | val mask AP50 {metrics['ap50']:.3f}, lesion F1 {metrics['lesion_f1']:.3f} " \
                       f"(P {metrics['lesion_precision']:.2f} R {metrics['lesion_recall']:.2f} at score " \
                       f">= {metrics['score_threshold']:g}, {metrics['n_ref']} lesions)" + \
                       ("  * best" if improved else "")
            tb.flush()
            rep.line(msg)
            start_iter = 0
    except KeyboardInterrupt:
        ck.save_checkpoint(run_dir / "last.pt", payload(epoch, it_done, metrics, loss_sum))
        rep.line(f"interrupted at epoch {epoch + 1}, iteration {it_done}: saved {run_dir / 'last.pt'}; "
                 "continue with --resume")
        raise
    finally:
        tb.close()
    return {"epoch": epochs - 1, "best_f1": best["f1"], "best_epoch": best["epoch"], "metrics": metrics,
            "score_threshold": best.get("score_threshold"), "run_dir": str(run_dir), "model": model,
            "task": "instance"}
