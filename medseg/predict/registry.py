"""Which predictor serves a run directory: the model kind recorded in ``run.json["task"]``,
looked up in the task table of :mod:`medseg.model.tasks` (``semantic``: the U-Net
:class:`~medseg.predict.predictor.Predictor`; ``instance``: the Mask R-CNN
:class:`~medseg.instance.predictor.InstancePredictor`), or ``nnunet`` for an nnU-Net v2 results
folder (:class:`~medseg.nnunet.predictor.NnunetPredictor`); all implement
:class:`~medseg.predict.protocol.PredictorProtocol`)."""

from __future__ import annotations

from pathlib import Path

from medseg.errors import InputError
from medseg.model.rundir import BEST, NNUNET, RUN_INFO, RunDir
from medseg.model.tasks import TASKS
from medseg.predict.protocol import PredictorProtocol


def run_task(run_dir: str | Path) -> str:
    """The task recorded in ``RUN_DIR/run.json`` (runs written before the key existed: semantic);
    ``nnunet`` for an nnU-Net v2 results folder (:attr:`medseg.model.rundir.RunDir.task`)."""
    return RunDir.open(run_dir).task


def predictor_class(task: str) -> type[PredictorProtocol]:
    """The predictor class of a registered task (imported now)."""
    return TASKS[task].predictor()


def load_predictor(run_dir: str | Path, **options) -> PredictorProtocol:
    """The predictor for ``run_dir``: ``options`` go to its ``from_run`` (device, tta, overlap,
    organ_model; kind-specific ones such as ``score_threshold`` for an instance run)."""
    return predictor_class(run_task(run_dir)).from_run(run_dir, **options)


def model_id(run_dir: str | Path, checkpoint: str = BEST) -> str:
    """A short id of the weights: ``<run folder name>-<first 12 hex of sha256(checkpoint)>``
    (:meth:`medseg.model.rundir.RunDir.model_id`).

    The manifest records it; ``--resume`` only skips cases done with the same id.
    """
    return RunDir(run_dir).model_id(checkpoint)


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
    return _cascade_id(RunDir(run_dir), checkpoint, organ_model)


def _cascade_id(run: RunDir, checkpoint: str, organ_model: str | Path | None) -> str:
    mid = run.model_id(checkpoint)
    if run.config_path.is_file():
        from medseg.model.config import load_config

        casc = load_config(run.config_path).cascade
        if casc is not None:
            ref = organ_model_dir(run.path, organ_model, casc.organ_model)
            if ref is None:
                raise InputError(f"{run.path} is stage 2 of a cascade; give its organ model run with --organ-model "
                                 "RUN_DIR (or set cascade.organ_model in its config.yaml)")
            organ = RunDir(ref, "--organ-model")
            organ.require(RUN_INFO)
            mid += f"+{_cascade_id(organ, BEST, None)}"
    return mid


def describe_run(run_dir: str | Path, organ_model=None, folds=None) -> tuple[dict[str, int], str, int]:
    """(labels {name: value}, model id, input channels) of a run or nnU-Net model folder, read
    without loading the model (the Ray driver, the napari run check). ``organ_model``: the
    stage-1 run of a cascade, part of the model id; ``folds``: those of an nnU-Net model folder.
    Raises InputError for a folder that cannot serve predictions (no weights, no plan)."""
    run = RunDir.open(run_dir)
    task = run.task
    if task == NNUNET:
        from medseg.model.nnunet_folder import open_model_folder

        folder = open_model_folder(run.path, folds)
        return dict(folder.labels), folder.model_id, len(folder.channels)
    ckpt = run.checkpoint().name
    if task == "instance":  # the predictor reads every dataset channel (the model uses the first)
        return run.classes, run.model_id(ckpt), max(1, len(run.channels))
    plan = run.plan()
    return dict(plan.dataset.labels), cascade_model_id(run.path, ckpt, organ_model), len(plan.dataset.channels)
