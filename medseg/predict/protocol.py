"""The contract of a predictor: what the batch engine, the Ray workers, the napari segment widget
and the Python API rely on, whatever the model kind.

Both model kinds implement it explicitly (they subclass it): the U-Net's
:class:`medseg.predict.predictor.Predictor` and the Mask R-CNN's
:class:`medseg.instance.predictor.InstancePredictor`. A new kind implements it too and registers
itself in :mod:`medseg.model.tasks`; :func:`medseg.predict.registry.load_predictor` then serves
its runs. Kind-specific options are extra keyword arguments with defaults (the instance model's
``score_threshold``, the U-Net's ``checkpoint``); callers that do not know the kind pass only
the ones below (by keyword).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from medseg.predict.result import CasePrediction
from medseg.volume import Volume


@runtime_checkable
class PredictorProtocol(Protocol):
    """A loaded model that predicts one case at a time on exactly the source grid.

    Attributes:
        labels: ``{class name: value}`` of the model, background 0 included.
        model_id: ``<run folder>-<sha256 prefix of the weights>``; the manifest records it and
            ``--resume`` only skips cases done with the same id.
        n_channels: the input channels a case has (one Volume each, one grid).
        run_dir: the run directory it was loaded from.
    """

    labels: dict[str, int]
    model_id: str
    n_channels: int
    run_dir: Path

    @classmethod
    def from_run(cls, run_dir: str | Path, *, device: str = "auto", tta: bool = False, overlap: float | None = None,
                 organ_model: str | Path | None = None) -> PredictorProtocol:
        """Load ``run_dir`` once. ``device``: auto | cpu | cuda; ``tta``: mirrored test-time
        augmentation; ``overlap``: sliding-window overlap (None: the run's); ``organ_model``: the
        organ run the prediction depends on (a cascade's stage 1, the instance model's organ
        mask), None for the run's own setting. Raises InputError for a run it cannot load."""
        ...

    def predict(self, channels: Volume | list[Volume], *, progress: Callable[[int, int], None] | None = None,
                cancel: threading.Event | None = None, uncertainty: bool = False) -> CasePrediction:
        """Predict one case (its channels, one grid). ``progress(done, total)`` is called as the
        work advances; setting ``cancel`` raises :class:`medseg.errors.Cancelled`; with
        ``uncertainty`` the result holds an uncertainty map where the model has one."""
        ...

    def __call__(self, volume: Volume) -> Volume:
        """The mask of one single-channel scan (``predict([volume]).mask``)."""
        ...
