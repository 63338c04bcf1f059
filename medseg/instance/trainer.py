"""Training the instance model: ``train_instance(config, dataset, out)`` -- what ``medseg train``
runs for a config with ``task: instance``.

:class:`InstanceTask` is what the model brings to the loop it shares with the U-Net
(:mod:`medseg.train.loop`: the run directory, checkpoints, resume, progress, Ctrl-C and
SIGTERM): ``config.yaml``, ``labels.json``, ``run.json`` (with ``"task": "instance"``),
``last.pt`` / ``best.pt`` (best 3D lesion F1, then AP50), ``metrics.csv``, ``curve.png``,
``tensorboard/``. The slice order and flips are functions of (seed, epoch, position) and the
learning rate of (epoch, iteration), so ``--resume`` after Ctrl-C continues with the very
batches the run would have seen. One process (no DDP).

Recipe: AdamW (or SGD with momentum), a short linear warm-up, then cosine / constant / step per
epoch; gradient-norm clipping; AMP (bf16, or fp16 with a grad scaler) on a GPU. Training uses
fixed-size crops (:mod:`medseg.instance.dataset`), prediction whole slices at the same scale.

Each validation sweeps the score threshold, and with ``inference.mask_threshold: auto`` the
mask threshold (:mod:`medseg.instance.validation`); the thresholds of the best epoch's F1 are
stored in ``best.pt`` (``"score_threshold"``, ``"mask_threshold"``) and
``RUN/threshold.json``, where :class:`~medseg.instance.predictor.InstancePredictor` finds it.
With ``inference.tta: flips`` and ``val_tta: final`` the epochs validate on the plain pass and
:func:`final_validation` validates ``best.pt``'s weights once with TTA after the last epoch; its
thresholds replace the stored ones (``best.pt["calibration"]`` records it). An interrupted final
validation is redone by ``--resume``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from pathlib import Path

import torch

from medseg._version import __version__
from medseg.config import ConfigError
from medseg.data.layout import load_dataset
from medseg.errors import InputError
from medseg.instance.config import InstanceConfig, config_dict, load_instance_config
from medseg.instance.dataset import epoch_order, load_case, make_batch
from medseg.instance.mining import mine_false_positives
from medseg.instance.model import build_model
from medseg.instance.report import metric_columns, metric_row, plot_curve
from medseg.instance.validation import validate
from medseg.io import read_volume
from medseg.model import checkpoint as ck
from medseg.model.rundir import BEST, CONFIG, LABELS, LAST, RUN_INFO, THRESHOLD, RunDir
from medseg.model.device import autocast_dtype, resolve_device
from medseg.train.distributed import Dist
from medseg.train.ema import WeightEMA
from medseg.train.loop import (EpochReporter, RunState, Task, check_run_dir, earlier_run, fit, resume_point,
                               start_state)
from medseg.train.setup import check_or_raise
from medseg.train.splits import fold_cases, load_or_create_splits


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
    "score_threshold", "mask_threshold", "run_dir", "final_validation", "model", "task"}``
    (``model``: the trained torch module, final weights -- their moving average with
    ``optimizer.ema_decay`` -- on its device; ``score_threshold``, ``mask_threshold``: the ones
    stored for prediction; ``final_validation``: the record of the final validation with TTA
    (:func:`final_validation`), or None).

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
    check_run_dir(run_dir, resume)
    dev = resolve_device(device, Dist())
    if init is not None and resume:
        raise InputError("--init starts a new run from an earlier run's weights; drop --resume (resume continues "
                         "this run's own weights)")
    finish_only = False
    try:
        ckpt, epochs = resume_point(run_dir, resume, epochs, cfg.epochs)
    except InputError:  # a finished run: --resume still completes an interrupted final validation
        if not (resume and _final_validation_pending(cfg, run_dir)):
            raise
        ckpt = ck.load_checkpoint(run_dir / LAST)
        epochs, finish_only = int(ckpt["total_epochs"]), True
    return _run(cfg, Path(dataset), run_dir, epochs, dev, fold, seed, ckpt, EpochReporter(progress), init,
                finish_only)


class InstanceTask(Task):
    """The slice-wise Mask R-CNN in the shared loop (:mod:`medseg.train.loop`): crops of axial
    slices in a seeded order, the rate set per iteration (:func:`learning_rate`), a non-finite
    loss stops the run; ``best.pt`` has the best (3D lesion F1, mask AP50) and its score
    threshold goes to ``threshold.json``."""

    best_from_first_epoch = True  # the predictor needs a best.pt even before a validation improves

    def __init__(self, cfg: InstanceConfig, run_dir: Path, epochs: int, dev, rep, seed: int,
                 class_values: dict[str, int]):
        super().__init__(cfg, run_dir, epochs, rep)
        self.dev, self.seed, self.class_values = dev, seed, class_values
        self.class_map = {v: i + 1 for i, v in enumerate(class_values.values())}
        self.model_classes = {"background": 0, **{n: i + 1 for i, n in enumerate(class_values)}}
        self.columns = metric_columns(list(class_values))
        self.best_start = {"f1": -1.0, "ap50": -1.0, "epoch": -1, "score_threshold": None, "mask_threshold": None}
        self.hard_negatives: list[tuple[int, int, int, int]] = []  # mined after each validation (mining.py)
        self.epoch = 0

    def read_cases(self, spec, fold) -> tuple[list[str], list[str]]:
        """Load the fold's training slices and validation volumes (and resolve ``windows: auto``);
        returns the (training, validation) case ids."""
        cfg, values = self.cfg, list(self.class_values.values())
        train_ids, val_ids = fold_cases(load_or_create_splits(spec.root, [c.case_id for c in spec.cases]), fold)
        by_id = {c.case_id: c for c in spec.cases}
        self.label_values = sorted(spec.labels.values())
        self.rep.line(f"reading {len(train_ids)} training and {len(val_ids)} validation cases (axial slices at "
                      f"{cfg.data.spacing_mm[0]:g} x {cfg.data.spacing_mm[1]:g} mm)")
        self.cases = [load_case(by_id[i], cfg.data, values, self.label_values) for i in train_ids]
        if cfg.data.windows == "auto":
            from medseg.instance.channels import lesion_windows

            cfg.data.windows = lesion_windows([c.image for c in self.cases], [c.label for c in self.cases], values,
                                              cfg.data.spacing_mm)
            self.rep.line("windows: auto -> " + ", ".join(f"level {lv:g} width {w:g} HU" for lv, w in cfg.data.windows)
                          + " (from the lesion classes and the tissue around them)")
        if 0 < cfg.val_max_cases < len(val_ids):
            self.rep.line(f"validating on the first {cfg.val_max_cases} of the fold's {len(val_ids)} validation cases "
                          "(val_max_cases)")
            val_ids = val_ids[:cfg.val_max_cases]
        self.val_cases = [(read_volume(by_id[i].images[0]), read_volume(by_id[i].label)) for i in val_ids]
        return train_ids, val_ids

    def build(self, pretrained: bool, init=None) -> dict | None:
        """Model, optimiser (AdamW without decay on norms and biases, or SGD) and grad scaler;
        with ``init`` an earlier run's weights (returns what ``load_init_weights`` reports)."""
        cfg, o = self.cfg, self.cfg.optimizer
        torch.manual_seed(self.seed)
        model = build_model(cfg.model, len(self.model_classes), load_pretrained=pretrained,
                            spacing_mm=cfg.data.spacing_mm)
        init_info = None
        if init is not None:
            from medseg.train.init import instance_init_source, load_init_weights

            _, init_ckpt, old_classes = instance_init_source(init)
            init_info = load_init_weights(model, init_ckpt, old_classes, self.model_classes)
        self.model = model.to(self.dev)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if o.name == "adamw":
            decay = [p for p in self.params if p.ndim > 1]
            no_decay = [p for p in self.params if p.ndim <= 1]  # norms and biases: no weight decay
            self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                          {"params": no_decay, "weight_decay": 0.0}], lr=o.lr)
        else:
            self.opt = torch.optim.SGD(self.params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        # precision: bf16 also trains in bf16 on CPUs with native bf16 (steps ~1.6x faster there); validation
        # runs in the precision prediction uses (fp32 on a CPU: score thresholds near 1 need its resolution)
        self.amp = autocast_dtype(cfg.precision, self.dev, cpu_bf16=True)
        self.eval_amp = autocast_dtype(cfg.precision, self.dev)
        self.scaler = torch.amp.GradScaler(self.dev.type, enabled=self.amp == torch.float16)
        self.ema = WeightEMA(self.model, o.ema_decay) if o.ema_decay > 0 else None
        return init_info

    def restore(self, ckpt: dict | None) -> None:
        """After ``--resume`` loaded ``last.pt``: its ``model`` is the average when the run keeps
        one, and ``train_model`` the weights training continues from; ``hard_negatives`` the
        mined pool the next crops are drawn from."""
        if ckpt is None:
            return
        self.hard_negatives = [tuple(int(v) for v in row) for row in ckpt.get("hard_negatives") or []]
        if "train_model" not in ckpt:
            return
        self.model.load_state_dict(ckpt["train_model"])
        if self.ema is not None:
            self.ema.load(ckpt["model"], int(ckpt.get("ema_updates", 0)))

    @property
    def eval_model(self):
        """The weights validation and ``best.pt`` use: the moving average when there is one."""
        return self.model if self.ema is None else self.ema.module

    def anchor(self, start_epoch, old_total, new_total, old_anchor):
        return extension_anchor(self.cfg, start_epoch, old_total, new_total, old_anchor)

    def batches(self, state: RunState):
        """The epoch's batches, each after setting its iteration's learning rate."""
        cfg, epoch, bs = self.cfg, state.epoch, self.cfg.batch_size
        self.epoch = epoch
        order = epoch_order(self.cases, cfg.data, self.seed, epoch, cfg.iterations_per_epoch * bs, self.hard_negatives)
        for it in range(state.iteration, cfg.iterations_per_epoch):
            lr = learning_rate(cfg, epoch, it, self.epochs, state.anchor)
            for g in self.opt.param_groups:
                g["lr"] = lr
            yield make_batch(self.cases, order[it * bs:(it + 1) * bs], cfg.data, self.class_map, self.seed, epoch,
                             it * bs)

    def step(self, state: RunState, batch) -> float:
        images = [x.to(self.dev, non_blocking=True) for x in batch[0]]
        targets = [{k: v.to(self.dev, non_blocking=True) for k, v in t.items()} for t in batch[1]]
        loss = train_step(self.model, images, targets, self.opt, self.scaler, self.params, self.cfg.optimizer.grad_clip,
                          self.amp)
        if not math.isfinite(loss):
            raise InputError(f"training diverged (loss {loss}) at epoch {state.epoch + 1}, iteration "
                             f"{state.iteration + 1}; lower optimizer.lr or raise schedule.warmup_iterations")
        if self.ema is not None:
            self.ema.update(self.model)
        return loss

    def evaluate(self, model=None, cfg: InstanceConfig | None = None) -> dict:
        """Validation of ``model`` (default: the weights validation uses) with ``cfg`` (default:
        the epochs' settings: the plain pass under ``val_tta: final``)."""
        if not self.val_cases:
            return {}
        epoch_validation = model is None and cfg is None
        if cfg is None:
            cfg = self.cfg
            if cfg.inference.final_tta:
                cfg = dataclasses.replace(cfg, inference=dataclasses.replace(cfg.inference, tta="none"))
        t0 = time.perf_counter()
        metrics = validate(self.eval_model if model is None else model, self.val_cases, cfg, self.class_values,
                           self.label_values, self.dev, self.eval_amp)
        d = self.cfg.data
        if epoch_validation and d.hard_negative_fraction > 0:  # the next epochs' hard negative crops
            self.hard_negatives = mine_false_positives(
                self.eval_model, self.cases, d, list(self.class_values.values()), self.dev, self.seed, self.epoch,
                d.mining_slices, d.mining_score, self.cfg.inference.batch_size, self.eval_amp)
            metrics["hard_negatives"] = len(self.hard_negatives)
        metrics["seconds"] = time.perf_counter() - t0
        return metrics

    def best_after(self, epoch, metrics, best):
        f1, ap = metrics["lesion_f1"], metrics["ap50"]
        score = (f1, 0.0 if math.isnan(ap) else ap)  # NaN AP50 (no lesion): F1 decides
        if not score > (best["f1"], best["ap50"]):
            return None
        return {"f1": f1, "ap50": score[1], "epoch": epoch, "score_threshold": metrics["score_threshold"],
                "mask_threshold": metrics["mask_threshold"]}

    def on_improved(self, epoch, metrics):
        self.write_thresholds(epoch, metrics, "none" if self.cfg.inference.final_tta else self.cfg.inference.tta)

    def write_thresholds(self, epoch: int, metrics: dict, tta: str) -> None:
        """``RUN/threshold.json``: the thresholds of ``metrics`` (validation with ``tta``) and their F1 curves."""
        ap = metrics["ap50"]
        RunDir(self.run_dir).write_json(THRESHOLD, {
            "score_threshold": metrics["score_threshold"], "mask_threshold": metrics["mask_threshold"], "epoch": epoch,
            "tta": tta, "val_lesion_f1": metrics["lesion_f1"], "val_ap50": None if math.isnan(ap) else ap,
            "f1_by_threshold": {f"{t:g}": round(v, 6) for t, v in metrics["f1_by_threshold"].items()},
            "f1_by_mask_threshold": {f"{t:g}": round(v, 6) for t, v in metrics["f1_by_mask_threshold"].items()}})

    def row(self, epoch, lr, loss, seconds, metrics):
        return metric_row(epoch, lr, loss, seconds, metrics)

    def plot(self, path, rows):
        plot_curve(path, rows)

    def speed(self, seconds, iterations):
        return f"{iterations * self.cfg.batch_size / max(seconds, 1e-9):.2f} slices/s"

    def summary(self, metrics):
        return (f"  | val mask AP50 {metrics['ap50']:.3f}, lesion F1 {metrics['lesion_f1']:.3f} "
                f"(P {metrics['lesion_precision']:.2f} R {metrics['lesion_recall']:.2f} at score "
                f">= {metrics['score_threshold']:g}, mask >= {metrics['mask_threshold']:g}, {metrics['n_ref']} lesions"
                + (f"; {metrics['hard_negatives']} false positives mined" if "hard_negatives" in metrics else "") + ")")

    def scalars(self, metrics):
        return {f"val/{key}": metrics[key] for key in ("ap50", "lesion_f1")} if metrics else {}

    def checkpoint_keys(self, metrics):
        keys = {"task": "instance", "labels": self.model_classes, "classes": self.class_values,
                "hard_negatives": [list(row) for row in self.hard_negatives],
                "score_threshold": metrics.get("score_threshold") if metrics else None,
                "mask_threshold": metrics.get("mask_threshold") if metrics else None}
        if self.ema is not None:  # "model" is what predicts; training resumes from "train_model"
            keys.update(model=self.ema.state_dict(), train_model=self.model.state_dict(),
                        ema_updates=self.ema.updates)
        return keys


def _final_validation_pending(cfg: InstanceConfig, run_dir: Path) -> bool:
    """Whether ``best.pt`` still lacks the final validation with ``cfg``'s TTA."""
    best = Path(run_dir) / BEST
    if not cfg.inference.final_tta or not best.is_file():
        return False
    return (ck.load_checkpoint(best).get("calibration") or {}).get("tta") != cfg.inference.tta


def final_validation(task: InstanceTask) -> dict | None:
    """Validate ``best.pt``'s weights with the config's TTA and store the thresholds chosen on
    the merged scores in ``best.pt`` (``score_threshold``, ``mask_threshold`` and
    ``calibration``, a record of this validation) and ``threshold.json``, each written
    atomically; only under ``inference.final_tta`` with validation cases. A ``best.pt``
    already validated with this TTA is left as it is. Returns the ``calibration`` record, or None.

    Ctrl-C or SIGTERM leave ``best.pt`` with the plain-pass thresholds; ``--resume`` then runs
    only this validation.
    """
    path = task.run_dir / BEST
    if not (task.cfg.inference.final_tta and task.val_cases and path.is_file()):
        return None
    best = ck.load_checkpoint(path)
    tta = task.cfg.inference.tta
    if (best.get("calibration") or {}).get("tta") == tta:
        return best["calibration"]
    epoch = int(best["epoch"])
    task.rep.line(f"final validation: best.pt (epoch {epoch + 1}) with tta {tta}, to choose the stored thresholds")
    model = copy.deepcopy(task.eval_model)
    model.load_state_dict(best["model"])
    try:
        m = task.evaluate(model, task.cfg)
    except KeyboardInterrupt:
        task.rep.line(f"interrupted in the final validation: {path} keeps the thresholds chosen without TTA; "
                      "--resume runs only this validation")
        raise
    plain = best.get("best") or {}
    record = {"tta": tta, "epoch": epoch, "score_threshold": m["score_threshold"],
              "mask_threshold": m["mask_threshold"], "val_lesion_f1": m["lesion_f1"],
              "val_lesion_precision": m["lesion_precision"], "val_lesion_recall": m["lesion_recall"],
              "plain_val_lesion_f1": plain.get("f1"), "plain_score_threshold": best.get("score_threshold"),
              "plain_mask_threshold": best.get("mask_threshold"), "seconds": m["seconds"]}
    best.update(score_threshold=m["score_threshold"], mask_threshold=m["mask_threshold"], calibration=record)
    ck.save_checkpoint(path, best)
    task.write_thresholds(epoch, m, tta)
    was = f" (without TTA {plain['f1']:.3f})" if plain.get("f1") is not None else ""
    task.rep.line(f"final validation with tta {tta}: lesion F1 {m['lesion_f1']:.3f}{was}, P {m['lesion_precision']:.2f} "
                  f"R {m['lesion_recall']:.2f} at score >= {m['score_threshold']:g}, mask >= {m['mask_threshold']:g}; "
                  f"stored for prediction ({m['seconds']:.0f} s)")
    return record


def _run(cfg: InstanceConfig, dataset: Path, run_dir: Path, epochs: int, dev, fold, seed: int, ckpt, rep,
         init=None, finish_only: bool = False) -> dict:
    spec = load_dataset(dataset)
    if ckpt is None:
        check_or_raise(spec)
    class_values = resolve_classes(cfg, spec.labels, spec) if ckpt is None else \
        {str(k): int(v) for k, v in ckpt.get("classes", {}).items()} or resolve_classes(cfg, spec.labels, spec)
    task = InstanceTask(cfg, run_dir, epochs, dev, rep, seed, class_values)
    train_ids, val_ids = task.read_cases(spec, fold)
    init_info = task.build(pretrained=ckpt is None and init is None, init=init)
    if init_info is None and ckpt is not None:
        init_info = earlier_run(run_dir).get("init")
    state = start_state(task, ckpt)
    task.restore(ckpt)
    run_dir.mkdir(parents=True, exist_ok=True)
    rd = RunDir(run_dir)
    rd.write_yaml(CONFIG, config_dict(cfg))
    rd.write_json(LABELS, {"labels": spec.labels, "classes": task.model_classes,
                           "channels": {str(k): v for k, v in spec.channels.items()}})
    rd.write_json(RUN_INFO, {"task": "instance", "dataset": str(dataset.resolve()), "fold": fold, "seed": seed,
                             "train": train_ids, "val": val_ids, "medseg_version": __version__,
                             "world_size": 1, "device": str(dev), "model": cfg.model.name,
                             "classes": class_values, "init": init_info})
    if not finish_only:
        state = fit(task, state)
    record = final_validation(task)
    stored = record or state.best  # the thresholds prediction uses
    return {"epoch": epochs - 1, "best_f1": state.best["f1"], "best_epoch": state.best["epoch"],
            "metrics": state.metrics, "score_threshold": stored.get("score_threshold"),
            "mask_threshold": stored.get("mask_threshold"), "run_dir": str(run_dir),
            "final_validation": record,
            "model": task.eval_model, "task": "instance"}
