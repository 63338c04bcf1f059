"""`Predictor`: a U-Net run directory applied to scans, result on exactly the source grid.

Pipeline (the one data flow of docs/concepts/design.md): the run's plan preprocessing (reorient -> resample ->
normalise) -> streaming Gaussian sliding windows (:mod:`medseg.model.sliding`; optional
mirroring TTA) -> class probabilities resampled onto the source grid, argmax there
(:mod:`medseg.model.inversion`) -> postprocessing from the run's config (largest component / minimum size per class). A cascade
run (config ``cascade``) first runs its organ model, crops the scan around the organ with the
configured margin, runs itself on the crop and pastes the result back.

    from medseg.predict import Predictor
    predictor = Predictor.from_run("runs/organs")      # loads best.pt once
    mask = predictor(read_volume("ct.nii.gz"))          # Volume, same grid as the CT
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from medseg.errors import InputError, warn
from medseg.model.cascade import organ_box
from medseg.model.checkpoint import load_checkpoint
from medseg.model.config import TrainConfig, load_config, resolve_class_weights, resolve_keep_largest
from medseg.model.device import autocast_dtype, resolve_device
from medseg.model.inversion import model_space_windows, to_source_grid
from medseg.model.network import build_network
from medseg.model.rundir import BEST, CONFIG, LABELS, PLAN, RunDir
from medseg.predict.postprocess import class_volumes, clean_labels
from medseg.predict.protocol import PredictorProtocol
from medseg.predict.registry import cascade_model_id, organ_model_dir
from medseg.predict.result import CasePrediction
from medseg.preprocess import Preprocessor
from medseg.volume import Volume


class Predictor(PredictorProtocol):
    """A loaded U-Net run (implements :class:`~medseg.predict.protocol.PredictorProtocol`).
    Attributes: ``labels`` {name: value}, ``model_id``, ``run_dir``, ``n_channels``, ``device``,
    ``tta``, ``overlap``; ``stage1`` (the organ Predictor of a cascade, or None)."""

    def __init__(self, run_dir: Path, model: torch.nn.Module, config: TrainConfig, plan, labels: dict[str, int],
                 device: torch.device, tta: bool, overlap: float, batch_size: int, model_id: str,
                 stage1: "Predictor | None" = None):
        self.run_dir, self.model, self.config, self.plan = run_dir, model, config, plan
        self.labels, self.device, self.tta, self.overlap = labels, device, tta, overlap
        self.batch_size, self.model_id, self.stage1 = batch_size, model_id, stage1
        self.pre = Preprocessor(plan)
        self.n_channels = len(plan.dataset.channels)
        pp = config.postprocess
        self.keep_largest = resolve_keep_largest(pp.keep_largest, labels, plan)
        self.min_ml = resolve_class_weights(pp.min_component_ml, labels, "postprocess.min_component_ml")

    @classmethod
    def from_run(cls, run_dir, device: str = "auto", tta: bool = False, overlap: float | None = None,
                 checkpoint: str = BEST, organ_model: str | Path | None = None,
                 batch_size: int | None = None) -> "Predictor":
        """Load ``RUN_DIR/{config.yaml, plan.yaml, labels.json, <checkpoint>}`` once.

        Args:
            device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
            overlap: sliding-window overlap in [0, 1) (default: the config's, 0.5).
            checkpoint: ``best.pt`` (default; ``last.pt`` when a run never validated).
            organ_model: the stage-1 run of a cascade (default: the config's ``cascade.organ_model``).
        Raises:
            InputError: not a run directory, unreadable checkpoint, missing organ model.
        """
        run = RunDir(run_dir)
        run.require(CONFIG, PLAN, LABELS)
        run_dir, checkpoint = run.path, run.checkpoint(checkpoint).name
        config = load_config(run.config_path)
        plan = run.plan()
        labels = plan.dataset.labels
        if overlap is not None and not 0 <= overlap < 1:
            raise InputError(f"--overlap {overlap}: must be in [0, 1)")
        if tta and not (config.augmentation.enabled and config.augmentation.mirror):
            warn(f"{run_dir} was trained without mirroring (augmentation.mirror: false), so mirrored "
                 "test-time augmentation shows it images it never saw and usually lowers accuracy; drop --tta")
        dev = resolve_device(device)
        ckpt = load_checkpoint(run.file(checkpoint), map_location="cpu")
        model = build_network(config, plan, len(plan.dataset.channels), max(labels.values()) + 1)
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise InputError(f"{run.file(checkpoint)} does not fit the network in {run.config_path} "
                             f"({str(e).splitlines()[0][:120]}); the run folder was mixed up -- retrain or restore it") from e
        model.to(dev).eval()
        stage1 = None
        mid = cascade_model_id(run_dir, checkpoint, organ_model)  # checks the organ model of a cascade
        if config.cascade is not None:
            ref = organ_model_dir(run_dir, organ_model, config.cascade.organ_model)
            stage1 = cls.from_run(ref, device=device, tta=tta, overlap=overlap, batch_size=batch_size)
        return cls(run_dir, model, config, plan, labels, dev, tta,
                   config.sliding_window.overlap if overlap is None else overlap,
                   batch_size or config.sliding_window.batch_size, mid, stage1)

    def __call__(self, volume: Volume | list[Volume]) -> Volume:
        """The mask Volume (uint8 class values) of one scan, on its exact grid."""
        return self.predict(volume).mask

    def predict(self, channels: Volume | list[Volume], progress=None, cancel=None,
                uncertainty: bool = False) -> CasePrediction:
        """Predict one case. ``channels``: one Volume per model input channel (same grid).

        ``progress(done, total)`` is called after each window batch; setting the
        ``threading.Event`` ``cancel`` raises :class:`medseg.errors.Cancelled`. With
        ``uncertainty`` the result holds the per-voxel entropy (nats, float32, source grid)
        and ``uncertainty_score``: mean entropy / ln(classes) over predicted foreground
        voxels (0 = certain, 1 = uniform), over all voxels when nothing was found.
        """
        channels = [channels] if isinstance(channels, Volume) else list(channels)
        if len(channels) != self.n_channels:
            names = ", ".join(self.plan.dataset.channels.values())
            raise InputError(f"the model expects {self.n_channels} input channel(s) ({names}); got {len(channels)}")
        if self.stage1 is None:
            return self._predict_single(channels, progress, cancel, uncertainty)
        return self._predict_cascade(channels, progress, cancel, uncertainty)

    def _predict_single(self, channels, progress, cancel, uncertainty) -> CasePrediction:
        t0 = time.perf_counter()
        image, rec = self.pre.image(channels)
        t1 = time.perf_counter()
        res = model_space_windows(self.model, image, rec, self.plan.training.patch_size, max(self.labels.values()) + 1,
                                  overlap=self.overlap, batch_size=self.batch_size, device=self.device,
                                  autocast_dtype=autocast_dtype("auto", self.device), tta=self.tta,
                                  entropy=uncertainty, progress=progress, cancel=cancel)
        del image
        t2 = time.perf_counter()
        mask = to_source_grid(res, rec, self.pre)  # timed with postprocessing, as before
        mask = clean_labels(mask, self.keep_largest, self.min_ml)
        mask = Volume(mask.array, channels[0].affine.copy(), {"model_id": self.model_id})
        assert mask.shape == channels[0].shape and np.array_equal(mask.affine, channels[0].affine)
        unc, score = None, None
        if uncertainty:
            fg = res.labels > 0
            ent = res.entropy / np.log(max(self.labels.values()) + 1)
            score = round(float(ent[fg].mean() if fg.any() else ent.mean()), 5)
            unc = Volume(self.pre.invert_image(res.entropy, rec).astype(np.float32), channels[0].affine.copy())
        t3 = time.perf_counter()
        return CasePrediction(mask, dict(self.labels), class_volumes(mask, self.labels), unc, score,
                              timings={"preprocess": t1 - t0, "network": t2 - t1, "postprocess": t3 - t2})

    def _predict_cascade(self, channels, progress, cancel, uncertainty) -> CasePrediction:
        first = self.stage1.predict(channels, progress=progress, cancel=cancel)
        casc = self.config.cascade
        organ_values = [first.labels[n] for n in casc.organ_labels if n in first.labels]
        if not organ_values:
            raise InputError(f"the organ model {self.stage1.run_dir} has no class {casc.organ_labels}; "
                             "it is not the stage 1 of this cascade")
        # the combined label map: this model's classes, then stage-1 classes it lacks
        labels = dict(self.labels)
        for name, v in first.labels.items():
            if name not in labels:
                labels[name] = max(labels.values()) + 1
        remap = np.zeros(max(first.labels.values()) + 1, np.uint8)
        for name, v in first.labels.items():
            remap[v] = labels[name]
        out = remap[first.mask.array]
        box = organ_box(first.mask, organ_values, casc.margin_mm)
        timings = {f"stage1_{k}": v for k, v in first.timings.items()}
        unc, score = None, None
        if box is not None:
            crops = [c.crop(*box) for c in channels]
            second = self._predict_single(crops, progress, cancel, uncertainty)
            start = np.clip(box[0], 0, channels[0].shape)
            sl = tuple(slice(int(a), int(a) + n) for a, n in zip(start, second.mask.shape))
            out[sl] = second.mask.array
            timings.update(second.timings)
            if uncertainty:
                full = np.zeros(channels[0].shape, np.float32)
                full[sl] = second.uncertainty.array
                unc, score = Volume(full, channels[0].affine.copy()), second.uncertainty_score
        notes = []
        if box is None:
            notes.append(f"stage 2 skipped: the organ model found no {'/'.join(casc.organ_labels)}; "
                         "the mask holds stage 1's classes only")
            warn(f"cascade: the organ model found no {'/'.join(casc.organ_labels)}; stage 2 was skipped for this case")
        mask = Volume(out, channels[0].affine.copy(), {"model_id": self.model_id})
        return CasePrediction(mask, labels, class_volumes(mask, labels), unc, score, timings=timings, notes=notes)
