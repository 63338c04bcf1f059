"""Which predictor serves a run directory: an explicit dict keyed by ``run.json["task"]``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from medseg.errors import InputError

#: task -> "module:Class"; the class has ``from_run(run_dir, device=..., tta=..., overlap=..., **kw)``.
PREDICTORS = {
    "semantic": "medseg.predict.predictor:Predictor",
    "instance": "medseg.instance.predictor:InstancePredictor",
}


def run_task(run_dir: str | Path) -> str:
    """The task recorded in ``RUN_DIR/run.json`` (runs written before the key existed: semantic)."""
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not path.is_file():
        raise InputError(f"{run_dir} is not a medseg run directory (no run.json); give the --out folder of `medseg train`")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is unreadable ({e}); restore it from the training run") from e
    task = info.get("task", "semantic")
    if task not in PREDICTORS:
        raise InputError(f"{path}: unknown task {task!r}; this medseg knows {', '.join(PREDICTORS)}")
    return task


def load_predictor(run_dir: str | Path, **options):
    """The predictor for ``run_dir`` (``options`` go to its ``from_run``: device, tta, overlap, ...)."""
    module, cls = PREDICTORS[run_task(run_dir)].split(":")
    return getattr(importlib.import_module(module), cls).from_run(run_dir, **options)


def model_id(run_dir: str | Path, checkpoint: str = "best.pt") -> str:
    """A short id of the weights: ``<run folder name>-<first 12 hex of sha256(checkpoint)>``.

    The manifest records it; ``--resume`` only skips cases done with the same id.
    """
    import hashlib

    path = Path(run_dir) / checkpoint
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{Path(run_dir).resolve().name}-{h.hexdigest()[:12]}"
