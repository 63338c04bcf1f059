"""``InstancePredictor``: an instance run directory -> per-case lesion instance maps + lesion tables.

``medseg predict`` picks it for runs whose ``run.json`` says ``"task": "instance"``
(the task table of :mod:`medseg.model.tasks`); the batch engine writes ``mask`` as the case's
output and ``tables["lesions"]`` as ``OUT/<case>_lesions.csv``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from medseg.config import load_yaml
from medseg.errors import GeometryError, InputError
from medseg.instance.config import instance_config_from_dict
from medseg.instance.inference import assemble, detect, detection_floor
from medseg.instance.model import build_model, load_weights
from medseg.instance.slices import image_to_model, slice_record
from medseg.model import checkpoint as ck
from medseg.model.device import autocast_dtype, resolve_device
from medseg.model.rundir import BEST, CONFIG, LABELS, RunDir
from medseg.predict.protocol import PredictorProtocol
from medseg.predict.result import CasePrediction
from medseg.train.distributed import Dist
from medseg.volume import Volume


class InstancePredictor(PredictorProtocol):
    """Slice-wise Mask R-CNN + cross-slice linking, on exactly the source grid.

    Attributes:
        labels: the model's class map, background 0 included (e.g. ``{"background": 0, "tumour": 1}``).
        model_id: ``<run folder>-<sha256 prefix of the weights>`` (the manifest records it).
        run_dir: the run directory.
        cfg: the run's `InstanceConfig` (``inference`` updated by ``from_run``'s overrides).
    """

    def __init__(self, model, cfg, labels: dict[str, int], run_dir: Path, device: torch.device,
                 checkpoint: str = BEST, organ_mask_labels: list[int] | None = None, n_channels: int = 1,
                 organ_predictor=None):
        self.model, self.cfg, self.labels, self.run_dir, self.device = model, cfg, labels, Path(run_dir), device
        self.class_names = {v: n for n, v in labels.items() if v}
        self.organ_mask_labels = organ_mask_labels
        self.n_channels = n_channels  # the dataset's channels (the batch engine reads them all; channel 0 is used)
        self.organ_predictor = organ_predictor
        self.model_id = RunDir(run_dir).model_id(checkpoint)
        self.amp = autocast_dtype(cfg.precision, device)
        self.threshold_source = "config"

    @classmethod
    def from_run(cls, run_dir, device: str = "auto", tta: bool = False, overlap=None, score_threshold: float | None = None,
                 organ_mask_labels: list[int] | None = None, organ_model=None) -> "InstancePredictor":
        """Load ``RUN_DIR/best.pt`` (``last.pt`` when there is no best yet) and the run's config.

        The score threshold is, in this order: ``score_threshold`` when given; the run config's
        ``inference.score_threshold`` when it is a number; else (``auto``) the threshold the
        training run chose on validation (``best.pt["score_threshold"]``, the one of
        ``RUN/threshold.json``; with ``inference.tta`` the one of the run's final validation with
        TTA); 0.5 for a run that never validated. ``self.cfg.inference.score_threshold``
        holds the value used and ``self.threshold_source`` says where it came from. A mask
        threshold of ``auto`` becomes the one stored beside the score threshold (0.5 for runs
        that never validated or predate it).
        ``organ_model``: a U-Net run directory; its mask of each case restricts the lesions kept
        (values ``organ_mask_labels``, default every organ). ``tta`` and ``overlap`` go to that
        organ model (the instance model itself has neither).
        """
        run = RunDir(run_dir)
        run.require(CONFIG, LABELS)
        cfg = instance_config_from_dict(load_yaml(run.config_path), where=str(run.config_path))
        labels = run.classes
        n_channels = max(1, len(run.channels))
        path = run.checkpoint()
        checkpoint = path.name
        ckpt = ck.load_checkpoint(path)
        if score_threshold is not None:
            if not 0 <= float(score_threshold) <= 1:
                raise InputError(f"score threshold {score_threshold}: must be in [0, 1]")
            threshold, source = float(score_threshold), "given"
        elif cfg.inference.score_threshold != "auto":
            threshold, source = float(cfg.inference.score_threshold), "config"
        elif ckpt.get("score_threshold") is not None:
            threshold, source = float(ckpt["score_threshold"]), f"validation ({checkpoint})"
            inf = cfg.inference
            if inf.final_tta and (ckpt.get("calibration") or {}).get("tta") != inf.tta:
                source += (f", chosen without TTA: the run has not finished its final validation with tta {inf.tta} "
                           "(`medseg train --resume` runs it)")
        else:
            threshold, source = 0.5, "default (the run never validated)"
        cfg.inference.score_threshold = threshold
        if cfg.inference.mask_threshold == "auto":  # chosen with the score threshold, or 0.5
            cfg.inference.mask_threshold = float(ckpt.get("mask_threshold") or 0.5)
        dev = resolve_device(device, Dist())
        model = build_model(cfg.model, len(labels), load_pretrained=False, spacing_mm=cfg.data.spacing_mm)
        load_weights(model, ckpt["model"])
        model.to(dev).eval()
        organ = None
        if organ_model is not None:
            from medseg.predict.registry import load_predictor

            organ = load_predictor(organ_model, device=device, tta=tta, overlap=overlap)
        out = cls(model, cfg, labels, run.path, dev, checkpoint, organ_mask_labels, n_channels, organ)
        out.threshold_source = source
        return out

    def predict(self, channels: Volume | list[Volume], progress: Callable[[int, int], None] | None = None,
                cancel: threading.Event | None = None, organ_mask: Volume | None = None,
                uncertainty: bool = False) -> CasePrediction:
        """Lesions of one case.

        Args:
            channels: the case's image channels (one Volume each, one grid); the model reads the
                first (the dataset's channel 0).
            progress: ``progress(done_slices, total_slices)`` after each slice batch.
            cancel: when set, raises `medseg.errors.Cancelled` before the next batch.
            organ_mask: optional organ label Volume on the same grid: only lesions inside it
                (``inference.organ_overlap`` of their voxels) are kept. Without it, the organ
                model given to ``from_run`` (if any) makes one.
            uncertainty: accepted for the batch engine; the instance model has no uncertainty map
                (each lesion has its ``score`` in the table instead).

        Returns:
            `CasePrediction` with a uint16 instance map on exactly the grid of ``channels[0]``.
        """
        channels = [channels] if isinstance(channels, Volume) else list(channels)
        if not channels:
            raise InputError("no image given; pass the case's image channels")
        first = channels[0]
        for c in channels[1:]:
            if not c.same_grid(first):
                raise GeometryError("image channels are not on one grid; resample them onto the first channel")
        t0 = time.perf_counter()
        if organ_mask is None and self.organ_predictor is not None:
            organ_mask = self.organ_predictor.predict(channels, cancel=cancel).mask
        rec = slice_record(first, self.cfg.data.spacing_mm)
        vol = image_to_model(first, rec)
        t1 = time.perf_counter()
        dets = detect(self.model, vol, self.cfg, self.device, detection_floor(self.cfg), self.amp, progress, cancel)
        t2 = time.perf_counter()
        res = assemble(dets, rec, self.cfg, self.class_names, organ_mask, self.organ_mask_labels)
        mask = Volume(res.ids.array, first.affine.copy(), {"model_id": self.model_id})
        assert mask.shape == first.shape and (mask.affine == first.affine).all()
        t3 = time.perf_counter()
        return CasePrediction(mask=mask, labels=dict(self.labels), volumes_ml=res.volumes_ml,
                              tables={"lesions": res.rows},
                              timings={"preprocess": t1 - t0, "network": t2 - t1, "postprocess": t3 - t2})

    def __call__(self, volume: Volume) -> Volume:
        """The instance map of one single-channel volume (``predict([volume]).mask``)."""
        return self.predict([volume]).mask
