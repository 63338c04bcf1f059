"""The training loop every model kind shares: run-directory guards, resume, the epochs, the
checkpoints, the logs and Ctrl-C / SIGTERM (docs/concepts/design.md, "Ideas taken from the
best codebases in the field": torchvision's short ``train_one_epoch`` / ``evaluate``).

A model kind brings a :class:`Task` -- its model, optimiser and grad scaler, the batches of an
epoch, one optimiser step, a validation and how it scores -- and the loop does the rest the same
way for all: ``last.pt`` every epoch and ``best.pt`` on improvement, ``metrics.csv`` (rewritten),
``curve.png``, TensorBoard scalars, the progress bar or plain log lines (:class:`EpochReporter`),
validation every ``val_every`` epochs and at the last, and on Ctrl-C or SIGTERM
(:mod:`medseg.signals`) a ``last.pt`` holding the iteration reached. Under DDP only rank 0
validates and writes, and the ranks meet at the end of each epoch.

Resume is exact: ``last.pt`` records the epoch *and* the iteration reached with the loss summed
so far, and a task's batches and learning rate are functions of (epoch, iteration), so
``--resume`` continues with the very batches the run would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from medseg._version import __version__
from medseg.errors import InputError, OutputError
from medseg.io.atomic import clean_stale_temps
from medseg.model import checkpoint as ck
from medseg.signals import Terminated, stop_loader_workers, terminating
from medseg.train.distributed import Dist
from medseg.model.rundir import BEST, LAST, RUN_INFO, RunDir


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


class Task:
    """What a model kind gives the loop. The trainer sets the attributes, then ``model``, ``opt``
    and ``scaler`` (before :func:`start_state` loads ``last.pt`` into them); the methods below
    that do nothing here are the optional ones.

    Attributes:
        cfg: the config (the loop reads ``iterations_per_epoch``, ``val_every``, ``optimizer.lr``
            and ``schedule.name``).
        run_dir, epochs, rep: the run directory, the run's total epochs, its `EpochReporter`.
        dist: the process group (`Dist`; rank 0 validates and writes).
        columns: the ``metrics.csv`` columns.
        best_start: the best record before any validation (``{"epoch": -1, ...}``).
        loader: a torch DataLoader whose workers stop on Ctrl-C, or None.
        epoch_base: ``metrics.csv`` and TensorBoard number the 0-based epoch ``e`` as ``e + epoch_base``.
        best_from_first_epoch: write ``best.pt`` at the first epoch even before it improves.
        extension_decay: how the rate of an extended run decays (``{epochs}``: the new total).
    """

    loader = None
    epoch_base = 0
    best_from_first_epoch = False
    extension_decay = "decays from there"

    def __init__(self, cfg, run_dir: Path, epochs: int, rep: EpochReporter, dist: Dist | None = None):
        self.cfg, self.run_dir, self.epochs, self.rep = cfg, Path(run_dir), epochs, rep
        self.dist = dist if dist is not None else Dist()
        self.model = self.opt = self.scaler = None

    def anchor(self, start_epoch: int, old_total: int, new_total: int, old_anchor):
        """The schedule anchor of a run resumed with ``new_total`` epochs (see the trainers)."""
        raise NotImplementedError

    def batches(self, state: RunState):
        """The batches of ``state.epoch`` from ``state.iteration`` on (and the rate they train at)."""
        raise NotImplementedError

    def step(self, state: RunState, batch) -> float:
        """One optimiser step on ``batch`` (iteration ``state.iteration``); returns its loss."""
        raise NotImplementedError

    def evaluate(self) -> dict:
        """The validation metrics, {} when there is nothing to validate."""
        raise NotImplementedError

    def best_after(self, epoch: int, metrics: dict, best: dict) -> dict | None:
        """The new best record when ``metrics`` beat ``best``, else None."""
        raise NotImplementedError

    def on_improved(self, epoch: int, metrics: dict) -> None:
        """Files to write next to ``best.pt``."""

    def row(self, epoch: int, lr: float, loss: float, seconds: float, metrics: dict) -> dict:
        """The ``metrics.csv`` row of an epoch."""
        raise NotImplementedError

    def plot(self, path: Path, rows: list[dict]) -> None:
        """Draw ``curve.png`` from the ``metrics.csv`` rows."""
        raise NotImplementedError

    def speed(self, seconds: float, iterations: int) -> str:
        """The speed in the epoch's console line, e.g. ``"3.20 it/s"``."""
        raise NotImplementedError

    def summary(self, metrics: dict) -> str:
        """The validation part of the epoch's console line."""
        raise NotImplementedError

    def scalars(self, metrics: dict) -> dict[str, float]:
        """Validation scalars for TensorBoard (``{"val/<name>": value}``)."""
        return {}

    def checkpoint_keys(self, metrics: dict) -> dict:
        """The task's own checkpoint keys (``labels`` at least)."""
        raise NotImplementedError


@dataclasses.dataclass
class RunState:
    """Where a run stands: what ``last.pt`` records besides the training objects."""

    epoch: int = 0                   # the epoch running (0-based)
    iteration: int = 0               # iterations done in it
    loss_sum: float = 0.0            # their summed loss
    best: dict = dataclasses.field(default_factory=dict)
    anchor: tuple | None = None      # (epoch, schedule factor) where an extended run's schedule restarts
    metrics: dict = dataclasses.field(default_factory=dict)  # the latest validation
    resumed: bool = False


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """``--resume`` needs a ``last.pt``; a new run refuses a folder that holds one."""
    last = Path(run_dir) / LAST
    if resume and not last.exists():
        raise InputError(f"{run_dir} has no last.pt to resume; start a new run without --resume")
    if not resume and last.exists():
        raise OutputError(f"{run_dir} already holds a run; pass --resume to continue or extend it, "
                          "or choose another --out")


def resume_point(run_dir: Path, resume: bool, epochs: int | None, default_epochs: int) -> tuple[dict | None, int]:
    """``(last.pt or None, the run's total epochs)``: ``epochs``, else the resumed run's, else the
    config's. A finished run resumes only with a larger ``epochs`` (which extends it)."""
    ckpt = ck.load_checkpoint(Path(run_dir) / LAST) if resume else None
    if ckpt is not None and epochs is None:
        epochs = int(ckpt["total_epochs"])
    epochs = int(epochs or default_epochs)
    if ckpt is not None and ckpt["iteration"] == 0 and int(ckpt["epoch"]) + 1 >= epochs:
        raise InputError(f"{run_dir} finished {int(ckpt['epoch']) + 1} epochs; pass a larger --epochs to extend it")
    return ckpt, epochs


def earlier_run(run_dir: Path) -> dict:
    """The ``run.json`` of the run being resumed, {} when missing or unreadable."""
    try:
        return json.loads((Path(run_dir) / RUN_INFO).read_text())
    except (OSError, ValueError):
        return {}


def start_state(task: Task, ckpt: dict | None) -> RunState:
    """A new run's state, or ``last.pt`` loaded into the task's model, optimiser, grad scaler
    and the RNGs; an extended run says where its learning rate goes."""
    if ckpt is None:
        return RunState(best=dict(task.best_start))
    epoch, iteration, loss_sum, best = ck.restore(ckpt, task.model, task.opt, task.scaler)
    old = ckpt.get("schedule_anchor")
    anchor = task.anchor(epoch, int(ckpt["total_epochs"]), task.epochs, old)
    if anchor is not None and tuple(anchor) != tuple(old or ()):
        task.rep.line(f"extending the run to {task.epochs} epochs: the learning rate continues from "
                      f"{task.cfg.optimizer.lr * anchor[1]:.3g} and {task.extension_decay.format(epochs=task.epochs)}")
    return RunState(epoch, iteration, loss_sum, best, anchor, resumed=True)


def unwrap(model):
    """The model without its DDP and ``torch.compile`` wrappers."""
    m = model.module if hasattr(model, "module") else model
    return getattr(m, "_orig_mod", m)


def checkpoint(task: Task, state: RunState, finished: bool) -> dict:
    """The ``last.pt`` / ``best.pt`` payload: at the end of an epoch (``finished``), or with the
    iteration and loss sum reached in it."""
    return {"medseg_version": __version__, "epoch": state.epoch, "iteration": 0 if finished else state.iteration,
            "total_epochs": task.epochs, "model": unwrap(task.model).state_dict(), "optimizer": task.opt.state_dict(),
            "scheduler": {"name": task.cfg.schedule.name, "lr": task.opt.param_groups[0]["lr"]},
            "scaler": task.scaler.state_dict(), "rng": ck.rng_state(), "metrics": state.metrics or {},
            "best": state.best, "loss_sum": 0.0 if finished else state.loss_sum,
            "schedule_anchor": list(state.anchor) if state.anchor is not None else None,
            **task.checkpoint_keys(state.metrics)}


def fit(task: Task, state: RunState) -> RunState:
    """Train the remaining epochs of the run; returns its final state.

    Raises:
        KeyboardInterrupt: Ctrl-C, or `Terminated` (SIGTERM): ``last.pt`` holds the progress.
        InputError: DataLoader workers could not start (a script without a ``__main__`` guard).
    """
    base, main = task.epoch_base, task.dist.main
    rows = [r for r in RunDir(task.run_dir).metrics_rows() if int(r["epoch"]) - base < state.epoch] \
        if state.resumed else []
    tb = None
    if main:
        clean_stale_temps(task.run_dir)  # temporary files of writes a killed run left behind
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(log_dir=str(task.run_dir / "tensorboard"), purge_step=state.epoch + base)
    first = state.epoch
    try:
        for epoch in range(first, task.epochs):
            if epoch != first:
                state.iteration, state.loss_sum = 0, 0.0
            state.epoch = epoch
            loss, seconds, iterations = train_one_epoch(task, state)
            end_epoch(task, state, rows, tb, loss, seconds, iterations)
            task.dist.barrier()
    except RuntimeError as e:
        if "DataLoader worker" not in str(e):
            raise
        if terminating() or "signal: Terminated" in str(e):  # SIGTERM to the process group: workers died first
            _save_interrupted(task, state)
            raise Terminated() from None
        raise InputError(
            "the data-loading worker processes could not start. When medseg.train is called from a script, "
            "put the calling code under `if __name__ == \"__main__\":` (Python re-imports the script in each "
            "worker), or set `num_workers: 0` in the config") from e
    except KeyboardInterrupt:  # also SIGTERM under the CLI (medseg.signals.Terminated)
        _save_interrupted(task, state)
        raise
    finally:
        if tb is not None:
            tb.close()
    return state


def train_one_epoch(task: Task, state: RunState) -> tuple[float, float, int]:
    """The optimiser steps of ``state.epoch`` from ``state.iteration`` on; returns (mean loss of
    the epoch, seconds, iterations run)."""
    task.model.train()
    first = state.iteration
    batches = task.batches(state)
    bar = task.rep.bar(state.epoch, task.epochs, task.cfg.iterations_per_epoch, first)
    t0 = time.perf_counter()
    for batch in batches:
        state.loss_sum += task.step(state, batch)
        state.iteration += 1
        if bar is not None:
            rate = (state.iteration - first) / max(time.perf_counter() - t0, 1e-9)
            bar.update(bar.task, advance=1, rate=f"{rate:.2f}", loss=f"{state.loss_sum / state.iteration:.4f}")
    if bar is not None:
        bar.stop()
    return state.loss_sum / max(state.iteration, 1), time.perf_counter() - t0, state.iteration - first


def end_epoch(task: Task, state: RunState, rows: list[dict], tb, loss: float, seconds: float, iterations: int) -> None:
    """Validate when due; on rank 0 write ``last.pt`` (and ``best.pt``), ``metrics.csv``,
    ``curve.png``, the TensorBoard scalars and the epoch's console line."""
    epoch, epochs, run_dir = state.epoch, task.epochs, task.run_dir
    lr = task.opt.param_groups[0]["lr"]
    state.metrics = metrics = {}
    due = (epoch + 1) % task.cfg.val_every == 0 or epoch + 1 == epochs
    if task.dist.main and due:
        state.metrics = metrics = task.evaluate()
    if not task.dist.main:
        return
    best = task.best_after(epoch, metrics, state.best) if metrics else None
    if best is not None:
        state.best = best
        task.on_improved(epoch, metrics)
    ck.save_checkpoint(run_dir / LAST, checkpoint(task, state, finished=True))
    if best is not None or (task.best_from_first_epoch and not (run_dir / BEST).exists()):
        ck.save_checkpoint(run_dir / BEST, checkpoint(task, state, finished=True))
    rows.append(task.row(epoch, lr, loss, seconds, metrics))
    RunDir(run_dir).write_metrics(rows, task.columns)
    task.plot(run_dir / "curve.png", rows)
    step = epoch + task.epoch_base
    tb.add_scalar("train/loss", loss, step)
    tb.add_scalar("train/lr", lr, step)
    for name, value in task.scalars(metrics).items():
        tb.add_scalar(name, value, step)
    tb.flush()
    msg = f"epoch {epoch + 1}/{epochs}  loss {loss:.4f}  lr {lr:.3g}  {seconds:.1f} s " \
          f"({task.speed(seconds, iterations)})"
    if metrics:
        msg += task.summary(metrics) + ("  * best" if best is not None else "")
    task.rep.line(msg)


def _save_interrupted(task: Task, state: RunState) -> None:
    """Ctrl-C or SIGTERM: stop the loader workers, keep the progress in ``last.pt``."""
    stop_loader_workers(task.loader)
    if task.dist.main:
        ck.save_checkpoint(task.run_dir / LAST, checkpoint(task, state, finished=False))
        task.rep.line(f"{'terminated (SIGTERM)' if terminating() else 'interrupted'} at epoch {state.epoch + 1}, "
                      f"iteration {state.iteration}: saved {task.run_dir / LAST}; continue with --resume")
