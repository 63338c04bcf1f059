"""The training loop: ``train(config, dataset, out)`` -- the same for the CLI, the Python API
and torchrun (DDP).

Resume is exact: every patch is seeded by its global index (see :mod:`medseg.data.loader`),
the learning rate is a function of the epoch, and ``last.pt`` records the epoch *and* the
iteration reached, so an interrupted run continues with the very batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from medseg._version import __version__
from medseg.errors import InputError, OutputError
from medseg.io.atomic import clean_stale_temps
from medseg.signals import Terminated, stop_loader_workers, terminating
from medseg.model import checkpoint as ck
from medseg.model.config import TrainConfig, config_dict, load_config
from medseg.model.device import autocast_dtype, resolve_device
from medseg.model.network import build_network
from medseg.train.components import build_loss, build_optimizer, extension_anchor, set_lr
from medseg.train.distributed import cleanup, init_distributed
from medseg.train.rundir import metric_columns, plot_curve, read_metrics, write_json, write_metrics, write_yaml
from medseg.train.setup import loader_for, prepare
from medseg.train.validation import validate
from medseg.plans import Plan, load_plan
from medseg.preprocess import Preprocessor


def _model_state(model) -> dict:
    m = model.module if hasattr(model, "module") else model
    m = getattr(m, "_orig_mod", m)  # torch.compile wrapper
    return m.state_dict()


class EpochReporter:
    """Per-epoch progress bar (rank 0, TTY) or one line per epoch."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        from rich.console import Console

        self.console = Console(file=sys.stderr)
        self.tty = self.console.is_terminal

    def bar(self, epoch: int, epochs: int, total: int, done: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._run = getattr(self, "_run", None) or (epoch, time.perf_counter())  # (first epoch, its start)
        self._epochs = epochs
        if self.enabled and not self.tty:  # a log: a plain line every ~30 s (medseg.progress_lines)
            from medseg.progress_lines import PlainProgress

            return PlainProgress(f"epoch {epoch + 1}/{epochs}", total, done, stream=sys.stderr)
        if not (self.enabled and self.tty):
            return None
        prog = Progress(TextColumn(f"epoch {epoch + 1}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]} it/s  loss {task.fields[loss]}"), TextColumn("ETA"),
                        TimeRemainingColumn(), console=self.console, transient=True)
        prog.start()
        prog.task = prog.add_task("train", total=total, completed=done, rate="-", loss="-")
        return prog

    def line(self, text: str) -> None:
        run = getattr(self, "_run", None)
        if run is not None and text.startswith("epoch ") and not self.tty:  # logs: add the run's ETA
            try:
                done_epoch = int(text.split()[1].split("/")[0])  # "epoch 3/40 ..." -> 3 finished
                per_epoch = (time.perf_counter() - run[1]) / max(done_epoch - run[0], 1)
                from medseg.progress_lines import format_eta

                text += f"  ETA {format_eta(per_epoch * (self._epochs - done_epoch))}"
            except (ValueError, IndexError):
                pass
        if self.enabled:
            self.console.print(text, highlight=False, soft_wrap=True)


def train(config: str | Path | TrainConfig | None, dataset: str | Path, out: str | Path, *, epochs: int | None = None,
          device: str = "auto", fold: int | str = 0, resume: bool = False, seed: int = 0,
          plan: "str | Path | Plan | None" = None, gpu_memory_gb: float = 8.0, progress: bool = True,
          init: str | Path | None = None) -> dict:
    """Train a U-Net; returns ``{"epoch", "best_dice", "best_epoch", "metrics", "run_dir", "model"}``
    (``model``: the trained torch module, final weights, on its device).

    Args:
        config: a YAML preset (``configs/unet_organs.yaml``), a `TrainConfig`, or None (defaults).
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
    last = run_dir / "last.pt"
    if resume and not last.exists():
        raise InputError(f"{run_dir} has no last.pt to resume; start a new run without --resume")
    if not resume and last.exists():
        raise OutputError(f"{run_dir} already holds a run; pass --resume to continue or extend it, or choose another --out")
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
    old_labels = load_plan(src / "plan.yaml").dataset.labels
    roles = dataset_class_roles(spec)
    return (dataclasses.replace(plan, classes=ClassPolicy(roles.small_structures, plan.classes.small_structure_weight,
                                                          roles.keep_largest, roles.reasons)), ckpt_path, old_labels)


def _run(cfg, dataset, run_dir, epochs, dev, fold, resume, seed, plan_path, gpu_memory_gb, progress, d, init=None) -> dict:
    rep = EpochReporter(progress and d.main)
    ckpt = ck.load_checkpoint(run_dir / "last.pt") if resume else None
    if ckpt is not None and epochs is None:
        epochs = int(ckpt["total_epochs"])
    epochs = int(epochs or cfg.epochs)
    init_ckpt = old_labels = None
    if init is not None:
        plan_path, init_ckpt, old_labels = _init_plan(init, dataset)
    if ckpt is not None and ckpt["iteration"] == 0 and int(ckpt["epoch"]) + 1 >= epochs:
        raise InputError(f"{run_dir} finished {int(ckpt['epoch']) + 1} epochs; pass a larger --epochs to extend it")
    run, data = prepare(dataset, cfg, run_dir, plan_path if isinstance(plan_path, (Plan, type(None))) else Path(plan_path), resume, fold, seed,
                        gpu_memory_gb, d, device_kind="gpu" if dev.type == "cuda" else "cpu")
    plan = run.plan
    labels = plan.dataset.labels
    n_in, n_out = len(plan.dataset.channels), max(labels.values()) + 1
    torch.manual_seed(seed)
    model = build_network(cfg, plan, n_in, n_out)
    init_info = None
    if init_ckpt is not None:
        from medseg.train.init import load_init_weights

        init_info = load_init_weights(model, init_ckpt, old_labels, labels)
    model = model.to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
    loss_fn = build_loss(cfg, plan).to(dev)
    opt = build_optimizer(cfg, model.parameters())
    amp_dtype = autocast_dtype(cfg.precision, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    start_epoch, start_iter, best, loss_sum = 0, 0, {"dice": -1.0, "epoch": -1}, 0.0
    anchor = None
    if ckpt is not None:
        start_epoch, start_iter, loss_sum, best = ck.restore(ckpt, model, opt, scaler)
        anchor = extension_anchor(cfg, start_epoch, int(ckpt["total_epochs"]), epochs, ckpt.get("schedule_anchor"))
        if anchor is not None and tuple(anchor) != tuple(ckpt.get("schedule_anchor") or ()):
            rep.line(f"extending the run to {epochs} epochs: the learning rate continues from "
                     f"{cfg.optimizer.lr * anchor[1]:.3g} and decays to 0 at epoch {epochs}")
    if d.enabled:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    step_model = torch.compile(model) if (cfg.compile and dev.type == "cuda") else model
    columns = metric_columns(labels)
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if int(r["epoch"]) <= start_epoch] if resume else []
    prev = {}
    if resume and (run_dir / "run.json").is_file():
        import json

        try:
            prev = json.loads((run_dir / "run.json").read_text())
        except (OSError, ValueError):
            prev = {}
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(run_dir / "config.yaml", config_dict(cfg))
        from medseg.plans import save_plan

        save_plan(plan, run_dir / "plan.yaml")
        from medseg.io.labels import LabelTable, write_labels

        write_labels(run_dir, LabelTable(labels, source=str(run_dir.resolve())),
                     {"channels": {str(k): v for k, v in plan.dataset.channels.items()}})
        rep.line(f"plan: {'CPU' if plan.device == 'cpu' else 'GPU'} plan, spacing {list(plan.preprocessing.target_spacing)} mm, "
                 f"patch {list(plan.training.patch_size)}, batch {plan.training.batch_size}, filters "
                 f"{plan.network.filters[0]}..{plan.network.filters[-1]}; small structures: "
                 f"{', '.join(plan.classes.small_structures) or 'none'}")
        write_json(run_dir / "run.json", {"dataset": str(Path(dataset).resolve()), "fold": fold, "seed": seed,
                                          "train": run.train_ids, "val": run.val_ids, "medseg_version": __version__,
                                          "world_size": d.world, "device": str(dev),
                                          "cascade": config_dict(cfg)["cascade"],
                                          "init": init_info if init_info is not None else prev.get("init")})
    tb = None
    if d.main:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_epoch + 1)
    loader = loader_for(data, plan, cfg)
    pre = Preprocessor(plan)

    def payload(epoch: int, iteration: int, metrics: dict | None, loss_sum_: float) -> dict:
        return {"medseg_version": __version__, "epoch": epoch, "iteration": iteration, "total_epochs": epochs,
                "model": _model_state(model), "optimizer": opt.state_dict(),
                "scheduler": {"name": cfg.schedule.name, "lr": opt.param_groups[0]["lr"]},
                "scaler": scaler.state_dict(), "rng": ck.rng_state(), "metrics": metrics or {},
                "best": best, "labels": labels, "loss_sum": loss_sum_,
                "schedule_anchor": list(anchor) if anchor is not None else None}

    metrics: dict = {}
    epoch = start_epoch
    it_done = start_iter

    def interrupted() -> None:  # Ctrl-C or SIGTERM (medseg.signals): keep the progress, stop the loader workers
        stop_loader_workers(loader)
        if d.main:
            ck.save_checkpoint(run_dir / "last.pt", payload(epoch, it_done, metrics, loss_sum))
            rep.line(f"{'terminated (SIGTERM)' if terminating() else 'interrupted'} at epoch {epoch + 1}, "
                     f"iteration {it_done}: saved {run_dir / 'last.pt'}; continue with --resume")

    if d.main:
        clean_stale_temps(run_dir)  # temporary files of writes a killed run left behind
    try:
        model.train()
        for epoch in range(start_epoch, epochs):
            lr = set_lr(opt, cfg, epoch, epochs, anchor)
            it_done = start_iter if epoch == start_epoch else 0
            loss_sum = loss_sum if epoch == start_epoch else 0.0
            loader.sampler.set_epoch(epoch, it_done * plan.training.batch_size)
            bar = rep.bar(epoch, epochs, cfg.iterations_per_epoch, it_done)
            t0 = time.perf_counter()
            for batch in loader:
                x = batch["image"].to(dev, non_blocking=True)
                y = batch["label"][:, None].to(dev, non_blocking=True)
                if cfg.channels_last and dev.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = loss_fn(step_model(x), y)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
                scaler.step(opt)
                scaler.update()
                loss_sum += float(loss.detach())
                it_done += 1
                if bar is not None:
                    rate = (it_done - (start_iter if epoch == start_epoch else 0)) / max(time.perf_counter() - t0, 1e-9)
                    bar.update(bar.task, advance=1, rate=f"{rate:.2f}", loss=f"{loss_sum / it_done:.4f}")
            if bar is not None:
                bar.stop()
            seconds = time.perf_counter() - t0
            train_loss = loss_sum / max(it_done, 1)
            row = {"epoch": epoch + 1, "lr": f"{lr:.6g}", "train_loss": f"{train_loss:.6f}", "seconds": f"{seconds:.2f}"}
            metrics = {}
            due = (epoch + 1) % cfg.val_every == 0 or epoch + 1 == epochs
            if d.main and due and run.val_cached:
                metrics = validate(model, run.val_cached, run.val_cases, pre, labels, plan.training.patch_size,
                                   cfg.sliding_window.overlap, cfg.sliding_window.batch_size, dev, amp_dtype)
                row["val_dice_mean"] = f"{metrics['dice_mean']:.6f}"
                row.update({f"val_dice_{n}": f"{v:.6f}" for n, v in metrics["dice"].items()})
            if d.main:
                improved = bool(metrics) and metrics["dice_mean"] > best["dice"]  # NaN (nothing to score) never improves
                if improved:
                    best = {"dice": metrics["dice_mean"], "epoch": epoch}
                ck.save_checkpoint(run_dir / "last.pt", payload(epoch, 0, metrics, 0.0))
                if improved:
                    ck.save_checkpoint(run_dir / "best.pt", payload(epoch, 0, metrics, 0.0))
                rows.append(row)
                write_metrics(run_dir / "metrics.csv", rows, columns)
                plot_curve(run_dir / "curve.png", rows)
                tb.add_scalar("train/loss", train_loss, epoch + 1)
                tb.add_scalar("train/lr", lr, epoch + 1)
                for n, v in (metrics.get("dice") or {}).items():
                    tb.add_scalar(f"val/dice_{n}", v, epoch + 1)
                tb.flush()
                msg = f"epoch {epoch + 1}/{epochs}  loss {train_loss:.4f}  lr {lr:.3g}  {seconds:.1f} s " \
                      f"({cfg.iterations_per_epoch / max(seconds, 1e-9):.2f} it/s)"
                if metrics:
                    per = ", ".join(f"{n} {v:.3f}" if v == v else f"{n} n/a" for n, v in metrics["dice"].items())
                    msg += f"  | val Dice {metrics['dice_mean']:.4f} ({per})" + ("  * best" if improved else "")
                rep.line(msg)
            d.barrier()
            start_iter = 0
    except RuntimeError as e:
        if "DataLoader worker" not in str(e):
            raise
        if terminating() or "signal: Terminated" in str(e):  # SIGTERM to the process group: workers died first
            interrupted()
            raise Terminated() from None
        raise InputError(
            "the data-loading worker processes could not start. When medseg.train is called from a script, "
            "put the calling code under `if __name__ == \"__main__\":` (Python re-imports the script in each "
            "worker), or set `num_workers: 0` in the config") from e
    except KeyboardInterrupt:  # also SIGTERM under the CLI (medseg.signals.Terminated)
        interrupted()
        raise
    finally:
        if tb is not None:
            tb.close()
    net = model.module if hasattr(model, "module") else model
    return {"epoch": epochs - 1, "best_dice": best["dice"], "best_epoch": best["epoch"], "metrics": metrics,
            "run_dir": str(run_dir), "model": net}
