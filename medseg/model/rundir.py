"""The run directory: one owner of its file names, reading, writing, checks and error messages.

A run directory is the ``--out`` folder of ``medseg train`` (docs/concepts/design.md: a run is
self-describing)::

    RUN_DIR/config.yaml     the resolved training config
    RUN_DIR/plan.yaml       the dataset plan (U-Net runs)
    RUN_DIR/labels.json     {"labels": {name: value}, "channels": {index: name}, ...}; instance runs
                            add "classes" (the model's classes, background 0 included)
    RUN_DIR/run.json        task (none: semantic), dataset, fold, case ids, seed, medseg version, init
    RUN_DIR/best.pt         the best validated weights; RUN_DIR/last.pt the last epoch's (resume)
    RUN_DIR/metrics.csv     one row per epoch
    RUN_DIR/threshold.json  instance runs: the score (and mask) thresholds chosen on validation

Predictors also accept an nnU-Net v2 results folder (:mod:`medseg.model.nnunet_folder`); its
task is ``nnunet`` and the folder module reads the rest.

    run = RunDir.open("runs/organs")    # InputError unless a run directory or nnU-Net folder
    run.task, run.labels, run.plan()    # "semantic", {"background": 0, ...}, the Plan
    run.checkpoint()                    # RUN_DIR/best.pt, else RUN_DIR/last.pt
    run.model_id()                      # "organs-3f2a9c1b0d4e"

The trainers write through the same class (:meth:`RunDir.write_json`, :meth:`RunDir.write_yaml`,
:meth:`RunDir.write_metrics`; atomic, honouring the umask: :mod:`medseg.io.atomic`), so readers
and writers share the file names below.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import InputError
from medseg.io.labels import LABELS_FILE

__all__ = ["RunDir", "CONFIG", "PLAN", "LABELS", "RUN_INFO", "BEST", "LAST", "METRICS", "THRESHOLD", "NNUNET"]

CONFIG = "config.yaml"
PLAN = "plan.yaml"
LABELS = LABELS_FILE
RUN_INFO = "run.json"
BEST = "best.pt"
LAST = "last.pt"
METRICS = "metrics.csv"
THRESHOLD = "threshold.json"
#: The task of an nnU-Net v2 results folder (it has no run.json).
NNUNET = "nnunet"
#: The task of a run whose run.json names none (runs written before the key existed).
DEFAULT_TASK = "semantic"


@dataclass(frozen=True)
class RunDir:
    """A medseg run directory (or an nnU-Net results folder), read on demand: nothing is cached,
    so a property always reflects the files as they are now.

    Attributes:
        path: the folder.
        role: what the folder is to the caller (``--init``, ``--organ-model``); it comes before
            the path in error messages (``--init runs/a is not a medseg run directory ...``).
    """

    path: Path
    role: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def open(cls, path: str | Path, role: str = "") -> "RunDir":
        """``path`` as a run directory; InputError when it has no run.json and is not an nnU-Net
        results folder either."""
        run = cls(path, role)
        if not run.info_path.is_file() and run.nnunet_folder is None:
            raise run._neither()
        return run

    def _neither(self) -> InputError:
        return InputError(f"{self.where} is neither a medseg run directory (no run.json) nor an nnU-Net results "
                          "folder (dataset.json, plans.json, fold_*/); give the --out folder of `medseg train` "
                          "or a TRAINER__PLANS__CONFIGURATION folder under nnUNet_results")

    # ---- files ------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """The folder as messages name it (``role`` first)."""
        return self._named(self.path)

    def _named(self, path: Path) -> str:
        return f"{self.role} {path}" if self.role else str(path)

    def file(self, name: str) -> Path:
        """``path / name``."""
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.file(CONFIG)

    @property
    def plan_path(self) -> Path:
        return self.file(PLAN)

    @property
    def labels_path(self) -> Path:
        return self.file(LABELS)

    @property
    def info_path(self) -> Path:
        return self.file(RUN_INFO)

    def require(self, *names: str) -> None:
        """InputError naming the first of ``names`` that is not a file in the run."""
        for name in names:
            if not self.file(name).is_file():
                raise InputError(f"{self.where} is not a medseg run directory ({name} missing); "
                                 "give the --out folder of `medseg train`")

    def _json(self, name: str) -> dict:
        self.require(name)
        path = self.file(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"{self._named(path)} is unreadable ({e}); restore it from the training run") from e
        if not isinstance(data, dict):
            raise InputError(f"{self._named(path)} is unreadable (not a JSON object); restore it from the training run")
        return data

    # ---- what the run is ----------------------------------------------------------------------
    @property
    def nnunet_folder(self) -> Path | None:
        """The nnU-Net model folder at ``path`` (itself, or its only model subfolder), else None."""
        from medseg.model.nnunet_folder import find_model_folder

        return find_model_folder(self.path)

    @property
    def info(self) -> dict:
        """``run.json``; InputError when it is missing or unreadable."""
        return self._json(RUN_INFO)

    @property
    def task(self) -> str:
        """The model kind: ``run.json["task"]`` (``semantic`` when absent), checked against the
        registered tasks; ``nnunet`` for an nnU-Net results folder."""
        if not self.info_path.is_file():
            if self.nnunet_folder is not None:
                return NNUNET
            raise self._neither()
        task = self.info.get("task", DEFAULT_TASK)
        from medseg.model.tasks import TASKS

        if task not in TASKS:
            raise InputError(f"{self._named(self.info_path)}: unknown task {task!r}; this medseg knows {', '.join(TASKS)}")
        return task

    @property
    def labels(self) -> dict[str, int]:
        """The dataset's labels {name: value} (``labels.json["labels"]``)."""
        return self._label_table("labels", "has no labels ({}); restore it from the training run")

    @property
    def classes(self) -> dict[str, int]:
        """An instance model's classes {name: value}, background 0 included
        (``labels.json["classes"]``)."""
        return self._label_table("classes", "has no model classes ({}); it is not from an instance run")

    @property
    def channels(self) -> dict[int, str]:
        """The dataset's input channels {index: name} (``labels.json["channels"]``; {} when absent)."""
        return self._label_table("channels", "has unreadable channels ({}); restore it from the training run",
                                 keys=int, values=str, required=False)

    def _label_table(self, key: str, problem: str, keys=str, values=int, required: bool = True) -> dict:
        """``labels.json[key]`` as {keys(k): values(v)}; InputError saying ``problem`` (formatted
        with the error) when it is malformed, or missing and ``required``."""
        data = self._json(LABELS)
        try:
            table = data[key] if required else (data.get(key) or {})
            return {keys(k): values(v) for k, v in table.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"{self._named(self.labels_path)} {problem.format(e)}") from e

    def plan(self):
        """The run's :class:`~medseg.plans.Plan` (``plan.yaml``; U-Net runs)."""
        from medseg.plans import load_plan

        self.require(PLAN)
        return load_plan(self.plan_path)

    # ---- weights ------------------------------------------------------------------------------
    def checkpoint(self, name: str = BEST) -> Path:
        """The weights file ``name``; for ``best.pt`` (the default), ``last.pt`` when the run never
        validated. InputError when there is none."""
        if not self.path.is_dir():
            raise InputError(f"{self.where} is not a folder; give the --out folder of a `medseg train` run")
        names = (BEST, LAST) if name == BEST else (name,)
        for n in names:
            if self.file(n).is_file():
                return self.file(n)
        raise InputError(f"{self.where} has no weights ({' or '.join(names)}); the training has not saved a "
                         "checkpoint yet -- give the --out folder of a `medseg train` run that has")

    def model_id(self, checkpoint: str = BEST) -> str:
        """A short id of the weights: ``<run folder name>-<first 12 hex of sha256(checkpoint)>``
        (``checkpoint`` found as :meth:`checkpoint` finds it). The manifest records it;
        ``--resume`` only skips cases done with the same id."""
        h = hashlib.sha256()
        with open(self.checkpoint(checkpoint), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return f"{self.path.resolve().name}-{h.hexdigest()[:12]}"

    # ---- writing (the trainers) ---------------------------------------------------------------
    def write_json(self, name: str, data) -> Path:
        """Write ``path / name`` as indented JSON, atomically; returns the file."""
        from medseg.io.atomic import write_text_atomic

        write_text_atomic(self.file(name), json.dumps(data, indent=1))
        return self.file(name)

    def write_yaml(self, name: str, data) -> Path:
        """Write ``path / name`` as block-style YAML (key order kept), atomically; returns the file."""
        import yaml

        from medseg.io.atomic import write_text_atomic

        write_text_atomic(self.file(name), yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100))
        return self.file(name)

    def metrics_rows(self) -> list[dict]:
        """The rows of ``metrics.csv`` (column -> text), [] when there is none yet."""
        path = self.file(METRICS)
        if not path.exists():
            return []
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def write_metrics(self, rows: list[dict], columns: list[str]) -> None:
        """Rewrite ``metrics.csv`` (atomically) with ``rows``: rows after a resume point are dropped."""
        from medseg.io.atomic import write_csv_atomic

        write_csv_atomic(self.file(METRICS), rows, columns)
