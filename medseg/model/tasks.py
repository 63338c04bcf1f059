"""Model kinds ("tasks"): which trainer trains a config, which predictor serves a run.

``semantic`` is the 3D U-Net (:mod:`medseg.train`, :mod:`medseg.predict`), ``instance`` the
slice-wise Mask R-CNN (:mod:`medseg.instance`). A config names its task with a ``task:`` key
(none: semantic); a run directory records it in ``run.json`` (``"task"``; runs written before the
key existed: semantic). ``medseg.train(...)`` (:func:`medseg.train.train`) and
``medseg.load_predictor(...)`` (:func:`medseg.predict.registry.load_predictor`) look the task up
here.

The table is filled by the package facade, ``medseg/__init__.py``, which sits above every layer:
the trainers and predictors live in higher layers than this module (``instance`` even uses the
U-Net's training and prediction machinery), so nothing here imports them. Each entry holds two
functions that import its trainer and predictor on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import InputError

__all__ = ["Task", "TASKS", "register_task", "get_task", "config_task"]


@dataclass(frozen=True)
class Task:
    """One model kind.

    Attributes:
        name: the value of ``task`` in configs and in ``run.json``.
        trainer: ``() -> train``, where ``train(config, dataset, out, **options)`` trains a run
            and returns its result dict.
        predictor: ``() -> class``: a class implementing
            :class:`medseg.predict.protocol.PredictorProtocol` (``from_run(RUN_DIR, ...)``).
        tables: names of the per-case tables its predictor writes (``OUT/<case>_<name>.csv``);
            the batch counts them as the case's outputs (ownership checks, ``--overwrite``).
    """

    name: str
    trainer: Callable[[], Callable[..., dict]]
    predictor: Callable[[], type]
    tables: tuple[str, ...] = ()


#: name -> Task, in registration order (the facade registers ``semantic``, then ``instance``).
TASKS: dict[str, Task] = {}


def register_task(task: Task) -> None:
    """Add (or replace) a model kind."""
    TASKS[task.name] = task


def get_task(name: str, where: str = "task") -> Task:
    """The registered task ``name``; InputError naming the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise InputError(f"{where}: unknown task {name!r}; this medseg knows {', '.join(TASKS)}") from None


def config_task(config) -> str:
    """The task of a training config: its ``task`` (a YAML path, a dict, or a config object with a
    ``task`` attribute such as ``InstanceConfig``) when that names a registered task, else
    ``"semantic"`` (None means the U-Net's defaults; an unreadable file is semantic too, and the
    trainer that reads it reports the problem)."""
    task = None
    if isinstance(config, dict):
        task = config.get("task")
    elif isinstance(config, (str, Path)):
        from medseg.config import ConfigError, load_yaml

        try:
            data = load_yaml(config)
        except ConfigError:
            data = None
        task = data.get("task") if isinstance(data, dict) else None
    elif config is not None:
        task = getattr(config, "task", None)
    return task if isinstance(task, str) and task in TASKS else "semantic"
