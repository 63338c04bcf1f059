"""Which predictor serves a run directory: the model kind recorded in ``run.json["task"]``,
looked up in the task table of :mod:`medseg.model.tasks` (``semantic``: the U-Net
:class:`~medseg.predict.predictor.Predictor`; ``instance``: the Mask R-CNN
:class:`~medseg.instance.predictor.InstancePredictor`), or ``nnunet`` for an nnU-Net v2 results
folder (:class:`~medseg.nnunet.predictor.NnunetPredictor`); all implement
:class:`~medseg.predict.protocol.PredictorProtocol`)."""

from __future__ import annotations

import json
from pathlib import Path

from medseg.errors import InputError
from medseg.model.nnunet_folder import find_model_folder
from medseg.model.tasks import TASKS
from medseg.predict.protocol import PredictorProtocol


def run_task(run_dir: str | Path) -> str:
    """The task recorded in ``RUN_DIR/run.json`` (runs written before the key existed: semantic);
    ``nnunet`` for an nnU-Net v2 results folder (:mod:`medseg.model.nnunet_folder`)."""
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not path.is_file():
        if find_model_folder(run_dir) is not None:
            return "nnunet"
        raise InputError(f"{run_dir} is neither a medseg run directory (no run.json) nor an nnU-Net results folder "
                         "(dataset.json, plans.json, fold_*/); give the --out folder of `medseg train` or a "
                         "TRAINER__PLANS__CONFIGURATION folder under nnUNet_results")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is unreadable ({e}); restore it from the training run") from e
    task = info.get("task", "semantic")
    if task not in TASKS:
        raise InputError(f"{path}: unknown task {task!r}; this medseg knows {', '.join(TASKS)}")
    return task


def predictor_class(task: str) -> type[PredictorProtocol]:
    """The predictor class of a registered task (imported now)."""
    return TASKS[task].predictor()


def load_predictor(run_dir: str | Path, **options) -> PredictorProtocol:
    """The predictor for ``run_dir``: ``options`` go to its ``from_run`` (device, tta, overlap,
    organ_model; kind-specific ones such as ``score_threshold`` for an instance run)."""
    return predictor_class(run_task(run_dir)).from_run(run_dir, **options)


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


def organ_model_dir(run_dir: str | Path, organ_model: str | Path | None, configured: str | None) -> Path | None:
    """The stage-1 run of a cascade: ``organ_model`` (``--organ-model``) else the config's
    ``cascade.organ_model``, relative paths taken from the working folder, else from the run."""
    ref = organ_model or configured
    if not ref:
        return None
    ref = Path(ref)
    return ref if ref.is_absolute() or ref.exists() else Path(run_dir) / ref


def cascade_model_id(run_dir: str | Path, checkpoint: str, organ_model: str | Path | None) -> str:
    """:func:`model_id` of a run, and for a cascade of its stage-1 run too (``<stage 2>+<stage 1>``),
    so that ``--resume`` with another organ model redoes the cases."""
    mid = model_id(run_dir, checkpoint)
    cfg_path = Path(run_dir) / "config.yaml"
    if cfg_path.is_file():
        from medseg.model.config import load_config

        casc = load_config(cfg_path).cascade
        if casc is not None:
            ref = organ_model_dir(run_dir, organ_model, casc.organ_model)
            if ref is None:
                raise InputError(f"{run_dir} is stage 2 of a cascade; give its organ model run with --organ-model RUN_DIR "
                                 "(or set cascade.organ_model in its config.yaml)")
            if not (ref / "run.json").is_file():
                raise InputError(f"--organ-model {ref}: not a medseg run directory (no run.json); give the --out "
                                 "folder of the organ model's `medseg train`")
            ck = "best.pt" if (ref / "best.pt").is_file() else "last.pt"
            mid += f"+{cascade_model_id(ref, ck, None)}"
    return mid


def describe_run(run_dir: str | Path, organ_model=None, folds=None) -> tuple[dict[str, int], str, int]:
    """(labels {name: value}, model id, input channels) of a run or nnU-Net model folder, read
    without loading the model (the Ray driver, the napari run check). ``organ_model``: the
    stage-1 run of a cascade, part of the model id; ``folds``: those of an nnU-Net model folder.
    Raises InputError for a folder that cannot serve predictions (no weights, no plan)."""
    run_dir = Path(run_dir)
    task = run_task(run_dir)
    if task == "nnunet":
        from medseg.model.nnunet_folder import open_model_folder

        folder = open_model_folder(run_dir, folds)
        return dict(folder.labels), folder.model_id, len(folder.channels)
    ckpt = "best.pt" if (run_dir / "best.pt").is_file() else "last.pt"
    if not (run_dir / ckpt).is_file():
        raise InputError(f"{run_dir} has no best.pt or last.pt; give the --out folder of a finished `medseg train` run")
    if task == "instance":
        try:
            labels = {str(k): int(v) for k, v in json.loads((run_dir / "labels.json").read_text())["classes"].items()}
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise InputError(f"{run_dir / 'labels.json'} has no model classes ({e}); it is not from an instance run") from e
        return labels, model_id(run_dir, ckpt), 1
    from medseg.plans import load_plan

    if not (run_dir / "plan.yaml").is_file():
        raise InputError(f"{run_dir} is not a medseg run directory (plan.yaml missing); give the --out folder of `medseg train`")
    plan = load_plan(run_dir / "plan.yaml")
    return dict(plan.dataset.labels), cascade_model_id(run_dir, ckpt, organ_model), len(plan.dataset.channels)
