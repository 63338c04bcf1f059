"""The shared training loop (medseg.train.loop): checkpoints, metrics.csv, the best checkpoint,
Ctrl-C / SIGTERM and exact resume, on a one-weight regression task; and both model kinds (the
U-Net and the Mask R-CNN) train through it.

References: a run that was never interrupted (resume must end with its very weights), and the
loop's contract written in medseg/train/loop.py.
"""

import csv
from types import SimpleNamespace

import pytest
import torch

from medseg import signals
from medseg.errors import InputError, OutputError
from medseg.model.checkpoint import load_checkpoint
from medseg.signals import Terminated
from medseg.train import loop
from medseg.train.loop import EpochReporter, Task, check_run_dir, fit, resume_point, start_state
from tests.train.conftest import tiny_config


class LineTask(Task):
    """Fit y = 3x - 1 with one linear unit; the batch of (epoch, iteration) comes from a generator
    seeded by both, so a resumed run sees the batches a straight run sees."""

    epoch_base = 1

    def __init__(self, run_dir, epochs, progress=False, stop_at=None, stop_with=KeyboardInterrupt):
        cfg = SimpleNamespace(iterations_per_epoch=4, val_every=2, optimizer=SimpleNamespace(lr=0.05),
                              schedule=SimpleNamespace(name="constant"))
        super().__init__(cfg, run_dir, epochs, EpochReporter(progress))
        self.columns = ["epoch", "lr", "train_loss", "seconds", "val_error"]
        self.best_start = {"error": float("inf"), "epoch": -1}
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.stop_at, self.stop_with = stop_at, stop_with

    def anchor(self, start_epoch, old_total, new_total, old_anchor):
        return None if new_total == old_total else (start_epoch, 1.0)

    def batches(self, state):
        for it in range(state.iteration, self.cfg.iterations_per_epoch):
            if (state.epoch, it) == self.stop_at:
                raise self.stop_with()
            x = torch.randn(8, 1, generator=torch.Generator().manual_seed(1000 * state.epoch + it))
            yield x, 3 * x - 1

    def step(self, state, batch):
        x, y = batch
        self.opt.zero_grad()
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def evaluate(self):
        x = torch.linspace(-1, 1, 5)[:, None]
        with torch.no_grad():
            return {"error": float(((self.model(x) - (3 * x - 1)) ** 2).mean())}

    def best_after(self, epoch, metrics, best):
        return {"error": metrics["error"], "epoch": epoch} if metrics["error"] < best["error"] else None

    def row(self, epoch, lr, loss, seconds, metrics):
        row = {"epoch": epoch + 1, "lr": f"{lr:.6g}", "train_loss": f"{loss:.6f}", "seconds": f"{seconds:.2f}"}
        return {**row, "val_error": f"{metrics['error']:.6f}"} if metrics else row

    def plot(self, path, rows):
        path.write_text(f"{len(rows)} rows\n")

    def speed(self, seconds, iterations):
        return f"{iterations} it"

    def summary(self, metrics):
        return f"  | val error {metrics['error']:.4f}"

    def checkpoint_keys(self, metrics):
        return {"labels": {"background": 0, "line": 1}}


def _train(run_dir, epochs=3, resume=False, **kw):
    ckpt, epochs = resume_point(run_dir, resume, None if resume else epochs, epochs)
    task = LineTask(run_dir, epochs, **kw)
    return task, fit(task, start_state(task, ckpt))


def _rows(run_dir):
    return list(csv.DictReader(open(run_dir / "metrics.csv")))


def test_a_run_writes_checkpoints_metrics_and_the_best(tmp_path):
    run = tmp_path / "run"
    _, state = _train(run)
    last = load_checkpoint(run / "last.pt")
    assert (last["epoch"], last["iteration"], last["total_epochs"], last["loss_sum"]) == (2, 0, 3, 0.0)
    assert last["labels"] == {"background": 0, "line": 1} and last["schedule_anchor"] is None
    # validation every 2 epochs and at the last: epochs 2 and 3 (numbered from 1, epoch_base)
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and [bool(r["val_error"]) for r in rows] == [False, True, True]
    assert state.best["epoch"] in (1, 2) and load_checkpoint(run / "best.pt")["epoch"] == state.best["epoch"]
    assert (run / "curve.png").read_text() == "3 rows\n" and any((run / "tensorboard").iterdir())


@pytest.mark.parametrize("stop_with, said", [(KeyboardInterrupt, "interrupted"), (Terminated, "terminated (SIGTERM)")])
def test_an_interrupted_run_resumes_exactly(tmp_path, monkeypatch, capsys, stop_with, said):
    straight, _ = _train(tmp_path / "straight")
    run = tmp_path / "run"
    if stop_with is Terminated:
        monkeypatch.setitem(signals._state, "terminated", True)  # what medseg.signals' handler records
    with pytest.raises(stop_with):
        _train(run, progress=True, stop_at=(1, 2), stop_with=stop_with)
    assert f"{said} at epoch 2, iteration 2: saved {run / 'last.pt'}; continue with --resume" in capsys.readouterr().err
    ck = load_checkpoint(run / "last.pt")
    assert (ck["epoch"], ck["iteration"]) == (1, 2) and ck["loss_sum"] > 0
    with pytest.raises(OutputError, match="already holds a run; pass --resume"):
        check_run_dir(run, resume=False)
    resumed, _ = _train(run, resume=True)
    assert torch.equal(resumed.model.weight, straight.model.weight) and torch.equal(resumed.model.bias, straight.model.bias)
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3"]
    assert [r["train_loss"] for r in _rows(run)] == [r["train_loss"] for r in _rows(tmp_path / "straight")]


def test_run_directory_guards_and_extension(tmp_path):
    with pytest.raises(InputError, match="no last.pt to resume"):
        check_run_dir(tmp_path / "none", resume=True)
    run = tmp_path / "run"
    _train(run)
    with pytest.raises(InputError, match="finished 3 epochs; pass a larger --epochs to extend it"):
        resume_point(run, True, None, 3)
    ckpt, epochs = resume_point(run, True, 5, 3)
    task = LineTask(run, epochs)
    state = start_state(task, ckpt)
    assert (state.epoch, state.iteration, state.anchor) == (3, 0, (3, 1.0))
    fit(task, state)
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3", "4", "5"]
    assert load_checkpoint(run / "last.pt")["schedule_anchor"] == [3, 1.0]


def _tasks_seen(monkeypatch) -> list[str]:
    seen, real = [], loop.end_epoch

    def spy(task, *a, **k):
        seen.append(type(task).__name__)
        return real(task, *a, **k)

    monkeypatch.setattr(loop, "end_epoch", spy)
    return seen


def test_the_unet_trains_through_the_loop(phantoms, tmp_path, monkeypatch):
    from medseg.train.trainer import train

    seen = _tasks_seen(monkeypatch)
    ds, plan = phantoms
    train(tiny_config(epochs=1), ds, tmp_path / "run", plan=plan, progress=False)
    assert seen == ["UNetTask"]


def test_an_instance_run_stopped_by_sigterm_resumes_to_the_same_weights(phantoms, tmp_path, monkeypatch, capsys):
    """The instance model gets the U-Net's SIGTERM handling from the shared loop."""
    from medseg.instance import dataset as inst_dataset
    from medseg.instance.config import instance_config_from_dict
    from medseg.instance.trainer import train_instance
    from tests.instance.conftest import TINY

    seen = _tasks_seen(monkeypatch)
    ds, _ = phantoms
    cfg = instance_config_from_dict(TINY)
    train_instance(cfg, ds, tmp_path / "straight", device="cpu", progress=False)
    real, calls = inst_dataset.make_batch, []

    def sigterm_at_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            signals._state["terminated"] = True  # medseg.signals' handler: record, then raise
            raise Terminated()
        return real(*a, **k)

    monkeypatch.setitem(signals._state, "terminated", False)
    monkeypatch.setattr("medseg.instance.trainer.make_batch", sigterm_at_second)
    out = tmp_path / "run"
    with pytest.raises(Terminated):
        train_instance(cfg, ds, out, device="cpu", progress=True)
    assert "terminated (SIGTERM) at epoch 1, iteration 1: saved" in capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["iteration"] == 1
    monkeypatch.setattr("medseg.instance.trainer.make_batch", real)
    signals._state["terminated"] = False
    train_instance(cfg, ds, out, device="cpu", resume=True, progress=False)
    a, b = load_checkpoint(out / "last.pt")["model"], load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert set(seen) == {"InstanceTask"}
