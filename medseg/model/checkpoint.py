"""Checkpoints: plain dicts of tensors and numbers, loadable with ``weights_only=True``.

Contents: ``medseg_checkpoint`` (format), ``medseg_version``, ``epoch`` (last completed,
0-based), ``total_epochs``, ``model``, ``optimizer``, ``scheduler`` (``{"name", "lr"}``; the
rate is recomputed from the epoch, see :func:`medseg.train.components.set_lr`), ``scaler``,
``rng`` (torch, numpy and Python generator states), ``metrics`` (the latest validation),
``best`` (best mean foreground Dice so far and its epoch), ``labels``. Written atomically.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from medseg.errors import InputError, short_reason
from medseg.io.atomic import atomic_path

FORMAT = 1


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write ``payload`` (see module docstring) atomically."""
    with atomic_path(Path(path), ".pt") as tmp:
        torch.save({"medseg_checkpoint": FORMAT, **payload}, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a medseg checkpoint (``weights_only=True``: no code is unpickled).

    Raises:
        InputError: missing, corrupt/truncated, or not a medseg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; give a run folder with last.pt / best.pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as e:
        msg = short_reason(e, 160)
        raise InputError(f"{path} is not a readable checkpoint ({msg}); it is truncated, corrupt or not "
                         "from medseg -- use the other checkpoint (best.pt / last.pt) or retrain") from e
    if not isinstance(ckpt, dict) or ckpt.get("medseg_checkpoint") != FORMAT or "model" not in ckpt:
        raise InputError(f"{path} is not a medseg checkpoint (format {FORMAT}); it was made by another tool")
    bad = non_finite_weights(ckpt["model"])
    if bad:
        raise InputError(f"{path} holds NaN or infinite weights ({', '.join(bad[:3])}"
                         f"{' ...' if len(bad) > 3 else ''}); training diverged before it was saved -- use the other "
                         "checkpoint (best.pt / last.pt), or retrain with a lower learning rate")
    return ckpt


def non_finite_weights(state: dict) -> list[str]:
    """Names of the floating-point tensors in ``state`` that hold NaN or inf values."""
    if not isinstance(state, dict):
        return []
    return [k for k, t in state.items()
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]


def restore(ckpt: dict, model, optimizer, scaler) -> tuple[int, int, float, dict]:
    """Load a ``last.pt`` into the training objects (and the RNGs) for ``--resume``.

    Returns ``(start_epoch, start_iteration, loss_sum, best)``: the epoch to run next and the
    iteration reached in it (an epoch that had finished moves on to the next one).
    """
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    epoch, iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
    return (epoch + 1 if iteration == 0 else epoch), iteration, float(ckpt.get("loss_sum", 0.0)), dict(ckpt["best"])
