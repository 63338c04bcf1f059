"""Training the 3D U-Net: ``train(config, dataset, out)`` -- the same for the CLI, the Python API
and torchrun (DDP).

:class:`UNetTask` is what the U-Net brings to the shared loop of :mod:`medseg.train.loop` (run
directory, checkpoints, resume, logs, Ctrl-C / SIGTERM). Resume is exact: every patch is seeded
by its global index (see :mod:`medseg.data.loader`), the learning rate is a function of the
epoch, and ``last.pt`` records the epoch *and* the iteration reached, so an interrupted run
continues with the very batches it would have seen.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from medseg._version import __version__
from medseg.errors import InputError
from medseg.model.config import TrainConfig, config_dict, load_config
from medseg.model.device import autocast_dtype, resolve_device
from medseg.model.network import build_network
from medseg.plans import Plan
from medseg.preprocess import Preprocessor
from medseg.train.components import build_loss, build_optimizer, extension_anchor, set_lr
from medseg.train.distributed import cleanup, init_distributed
from medseg.train.loop import (EpochReporter, RunState, Task, check_run_dir, earlier_run, fit, resume_point,
                               start_state, unwrap)
from medseg.model.rundir import CONFIG, PLAN, RUN_INFO, RunDir
from medseg.train.curve import metric_columns, plot_curve
from medseg.train.setup import loader_for, prepare
from medseg.train.validation import validate


def train(config: str | Path | dict | TrainConfig | None, dataset: str | Path, out: str | Path, *, epochs: int | None = None,
          device: str = "auto", fold: int | str = 0, resume: bool = False, seed: int = 0,
          plan: "str | Path | Plan | None" = None, gpu_memory_gb: float = 8.0, progress: bool = True,
          init: str | Path | None = None) -> dict:
    """Train a U-Net; returns ``{"epoch", "best_dice", "best_epoch", "metrics", "run_dir", "model"}``
    (``model``: the trained torch module, final weights, on its device).

    Args:
        config: a YAML preset (``configs/unet_organs.yaml``), its parsed contents (a dict), a
            `TrainConfig`, or None (defaults).
        dataset: nnU-Net v2 or Decathlon dataset folder.
        out: run directory (created; must not hold a run unless ``resume``).
        epochs: total epochs (default: the config's; with ``resume``, larger extends a finished run).
        fold: 0-4 from ``DATASET/splits.json``, or ``"all"``.
        plan: a plan YAML from ``medseg plan``, or a `Plan` (default: computed from the dataset
            for the training device -- a CPU plan without a GPU, see :func:`medseg.data.plan.make_plan`).
        init: an earlier run directory to fine-tune from (its plan and weights; see
            :mod:`medseg.train.init`). Not with ``plan`` or ``resume``.

    Epochs are numbered from 1 in the console, ``metrics.csv`` and ``curve.png``. Extending a
    run (``resume`` with a larger ``epochs``) continues its learning rate from the value it had
    and decays it to 0 over the added epochs (:func:`medseg.train.components.lr_factor`); for a
    fresh schedule start a new run with ``init``.
    """
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    run_dir = Path(out)
    check_run_dir(run_dir, resume)
    if init is not None and (resume or plan is not None):
        raise InputError("--init starts a new run from an earlier run's plan and weights; "
                         + ("drop --resume (resume continues this run's own weights)" if resume else
                            "drop --plan (the earlier run's plan is used so its weights fit)"))
    wants_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    d = init_distributed("cuda" if wants_cuda else "cpu")
    dev = resolve_device(device, d)
    try:
        return _run(cfg, Path(dataset), run_dir, epochs, dev, fold, resume, seed, plan, gpu_memory_gb, progress, d, init)
    finally:
        cleanup(d)


def _init_plan(init, dataset: Path) -> tuple[Plan, Path, dict]:
    """The plan of a fine-tuning run (the earlier run's, with this dataset's labels and class
    roles), the checkpoint to start from and the earlier run's labels."""
    from medseg.data.classes import dataset_class_roles
    from medseg.data.layout import load_dataset
    from medseg.plans import ClassPolicy
    from medseg.train.init import init_plan, init_source

    src, ckpt_path = init_source(init)
    spec = load_dataset(dataset)
    plan = init_plan(src, spec.labels, spec.channels, spec.name)
    old_labels = RunDir(src, "--init").plan().dataset.labels
    roles = dataset_class_roles(spec)
    return (dataclasses.replace(plan, classes=ClassPolicy(roles.small_structures, plan.classes.small_structure_weight,
                                                          roles.keep_largest, roles.reasons)), ckpt_path, old_labels)



class UNetTask(Task):
    """The 3D U-Net in the shared loop (:mod:`medseg.train.loop`): patches from a DataLoader
    (one sampler shard per DDP rank), Dice + cross-entropy, AMP with a grad scaler, gradient
    clipping at 12, the rate set per epoch; ``best.pt`` has the best mean foreground Dice."""

    epoch_base = 1  # metrics.csv and TensorBoard number epochs from 1, as the console
    extension_decay = "decays to 0 at epoch {epochs}"

    def __init__(self, cfg: TrainConfig, run, data, run_dir: Path, epochs: int, dev: torch.device, dist, rep):
        super().__init__(cfg, run_dir, epochs, rep, dist)
        self.run, self.data, self.plan, self.dev = run, data, run.plan, dev
        self.labels = run.plan.dataset.labels
        self.columns = metric_columns(self.labels)
        self.best_start = {"dice": -1.0, "epoch": -1}

    def build(self, seed: int, init_ckpt=None, old_labels=None) -> dict | None:
        """Network, loss, optimiser and grad scaler; with ``init_ckpt`` the earlier run's weights
        (returns what :func:`medseg.train.init.load_init_weights` reports)."""
        cfg, plan, dev = self.cfg, self.plan, self.dev
        torch.manual_seed(seed)
        model = build_network(cfg, plan, len(plan.dataset.channels), max(self.labels.values()) + 1)
        init_info = None
        if init_ckpt is not None:
            from medseg.train.init import load_init_weights

            init_info = load_init_weights(model, init_ckpt, old_labels, self.labels)
        model = model.to(dev)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
            if cfg.channels_last:
                model = model.to(memory_format=torch.channels_last_3d)
        self.model = self.step_model = model
        self.loss_fn = build_loss(cfg, plan).to(dev)
        self.opt = build_optimizer(cfg, model.parameters())
        self.amp = autocast_dtype(cfg.precision, dev)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=self.amp == torch.float16)
        return init_info

    def distribute(self) -> None:
        """DDP and ``torch.compile`` (after ``last.pt`` is loaded), the loader, the validation preprocessor."""
        if self.dist.enabled:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.dev.index] if self.dev.type == "cuda" else None)
        self.step_model = torch.compile(self.model) if (self.cfg.compile and self.dev.type == "cuda") else self.model
        self.loader = loader_for(self.data, self.plan, self.cfg)
        self.pre = Preprocessor(self.plan)

    def anchor(self, start_epoch, old_total, new_total, old_anchor):
        return extension_anchor(self.cfg, start_epoch, old_total, new_total, old_anchor)

    def batches(self, state: RunState):
        set_lr(self.opt, self.cfg, state.epoch, self.epochs, state.anchor)
        self.loader.sampler.set_epoch(state.epoch, state.iteration * self.plan.training.batch_size)
        return self.loader

    def step(self, state: RunState, batch) -> float:
        x = batch["image"].to(self.dev, non_blocking=True)
        y = batch["label"][:, None].to(self.dev, non_blocking=True)
        if self.cfg.channels_last and self.dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.dev.type, dtype=self.amp, enabled=self.amp is not None):
            loss = self.loss_fn(self.step_model(x), y)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 12.0)
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())

    def evaluate(self) -> dict:
        if not self.run.val_cached:
            return {}
        sw = self.cfg.sliding_window
        return validate(self.model, self.run.val_cached, self.run.val_cases, self.pre, self.labels,
                        self.plan.training.patch_size, sw.overlap, sw.batch_size, self.dev, self.amp)

    def best_after(self, epoch, metrics, best):
        # NaN (nothing to score) never improves
        return {"dice": metrics["dice_mean"], "epoch": epoch} if metrics["dice_mean"] > best["dice"] else None

    def row(self, epoch, lr, loss, seconds, metrics):
        row = {"epoch": epoch + 1, "lr": f"{lr:.6g}", "train_loss": f"{loss:.6f}", "seconds": f"{seconds:.2f}"}
        if metrics:
            row["val_dice_mean"] = f"{metrics['dice_mean']:.6f}"
            row.update({f"val_dice_{n}": f"{v:.6f}" for n, v in metrics["dice"].items()})
        return row

    def plot(self, path, rows):
        plot_curve(path, rows)

    def speed(self, seconds, iterations):
        return f"{self.cfg.iterations_per_epoch / max(seconds, 1e-9):.2f} it/s"

    def summary(self, metrics):
        per = ", ".join(f"{n} {v:.3f}" if v == v else f"{n} n/a" for n, v in metrics["dice"].items())
        return f"  | val Dice {metrics['dice_mean']:.4f} ({per})"

    def scalars(self, metrics):
        return {f"val/dice_{n}": v for n, v in (metrics.get("dice") or {}).items()}

    def checkpoint_keys(self, metrics):
        return {"labels": self.labels}


def _run(cfg, dataset, run_dir, epochs, dev, fold, resume, seed, plan_path, gpu_memory_gb, progress, d, init=None) -> dict:
    rep = EpochReporter(progress and d.main)
    ckpt, epochs = resume_point(run_dir, resume, epochs, cfg.epochs)
    init_ckpt = old_labels = None
    if init is not None:
        plan_path, init_ckpt, old_labels = _init_plan(init, dataset)
    plan_path = plan_path if isinstance(plan_path, (Plan, type(None))) else Path(plan_path)
    run, data = prepare(dataset, cfg, run_dir, plan_path, resume, fold, seed, gpu_memory_gb, d,
                        device_kind="gpu" if dev.type == "cuda" else "cpu")
    task = UNetTask(cfg, run, data, run_dir, epochs, dev, d, rep)
    init_info = task.build(seed, init_ckpt, old_labels)
    state = start_state(task, ckpt)
    task.distribute()
    if d.main:
        if init_info is None and resume:
            init_info = earlier_run(run_dir).get("init")
        _write_run_files(task, dataset, fold, seed, init_info)
    state = fit(task, state)
    return {"epoch": epochs - 1, "best_dice": state.best["dice"], "best_epoch": state.best["epoch"],
            "metrics": state.metrics, "run_dir": str(run_dir), "model": unwrap(task.model)}


def _write_run_files(task: UNetTask, dataset: Path, fold, seed: int, init_info) -> None:
    """config.yaml, plan.yaml, labels.json and run.json (:class:`medseg.model.rundir.RunDir`), and the
    plan's console line."""
    cfg, plan, run, run_dir = task.cfg, task.plan, task.run, task.run_dir
    from medseg.io.labels import LabelTable, write_labels
    from medseg.plans import save_plan

    run_dir.mkdir(parents=True, exist_ok=True)
    rd = RunDir(run_dir)
    rd.write_yaml(CONFIG, config_dict(cfg))
    save_plan(plan, rd.file(PLAN))
    write_labels(run_dir, LabelTable(task.labels, source=str(run_dir.resolve())),
                 {"channels": {str(k): v for k, v in plan.dataset.channels.items()}})
    task.rep.line(f"plan: {'CPU' if plan.device == 'cpu' else 'GPU'} plan, spacing "
                  f"{list(plan.preprocessing.target_spacing)} mm, patch {list(plan.training.patch_size)}, "
                  f"batch {plan.training.batch_size}, filters {plan.network.filters[0]}..{plan.network.filters[-1]}; "
                  f"small structures: {', '.join(plan.classes.small_structures) or 'none'}")
    rd.write_json(RUN_INFO, {"dataset": str(Path(dataset).resolve()), "fold": fold, "seed": seed,
                             "train": run.train_ids, "val": run.val_ids, "medseg_version": __version__,
                             "world_size": task.dist.world, "device": str(task.dev),
                             "cascade": config_dict(cfg)["cascade"], "init": init_info})
