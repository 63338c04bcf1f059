"""Validation: sliding-window inference over whole cached validation volumes, Dice per class
computed on each case's *original* label grid (the prediction is inverted first)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from medseg.data.cache import CachedCase
from medseg.data.layout import Case
from medseg.io import read_volume
from medseg.metrics.overlap import dice_from_counts, overlap_counts
from medseg.model.inversion import predict_on_source_grid
from medseg.preprocess import Preprocessor, PreprocessRecord


def validate(model: torch.nn.Module, cached: list[CachedCase], cases: list[Case], pre: Preprocessor, labels: dict[str, int],
             patch_size, overlap: float, sw_batch: int, device: torch.device, autocast_dtype=None) -> dict:
    """Mean and per-class Dice over validation cases, on the original label grids.

    Returns ``{"dice_mean": float, "dice": {name: float}, "per_case": {case: {name: dice}}}``.
    ``dice`` is each class's Dice over the voxels of all validation cases pooled (see
    :func:`pooled_dice`); a class absent from every reference *and* every prediction has nothing
    to score and is NaN. ``dice_mean`` is the mean over the foreground classes that have a score
    (NaN when none has), which picks the best checkpoint -- an absent, unpredicted class is not a
    free 1.0. ``per_case`` holds each case's own Dice (1 where a class is absent from both the
    reference and the prediction of that case).
    """
    was_training = model.training
    model.eval()
    counts: dict[str, dict[str, tuple[int, int, int]]] = {}
    by_id = {c.case_id: c for c in cases}
    for cc in cached:
        rec = PreprocessRecord.from_dict(cc.meta()["record"])
        # the very windows and inversion `medseg predict` uses, so validation Dice is prediction Dice
        pred_src, _ = predict_on_source_grid(model, cc.image(), rec, pre, patch_size, max(labels.values()) + 1,
                                             overlap=overlap, batch_size=sw_batch, device=device,
                                             autocast_dtype=autocast_dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = read_volume(by_id[cc.case_id].label)
        counts[cc.case_id] = {name: overlap_counts(pred_src.array == v, ref.array == v) for name, v in labels.items() if v != 0}
    model.train(was_training)
    per_case = {case: {n: dice_from_counts(*c) for n, c in by_class.items()} for case, by_class in counts.items()}
    by_class = pooled_dice(counts)
    return {"dice_mean": mean_dice(by_class), "dice": by_class, "per_case": per_case}


def mean_dice(by_class: dict[str, float]) -> float:
    """Mean of the classes that have a score (NaN entries, nothing to score, are left out);
    NaN when no class has one."""
    scored = [v for v in by_class.values() if not np.isnan(v)]
    return float(np.mean(scored)) if scored else float("nan")


def pooled_dice(counts: dict[str, dict[str, tuple[int, int, int]]]) -> dict[str, float]:
    """Per-class Dice from ``{case: {class: (intersection, n_pred, n_ref)}}`` voxel counts summed
    over cases (nnU-Net's validation Dice). Unlike the mean of per-case Dice, a few false-positive
    voxels in a case without the class (common for tumours) cost a few voxels, not a whole 0,
    so the best-checkpoint choice is not driven by noise on rare classes. A class with no voxel in
    any reference or prediction is NaN (nothing to score)."""
    names = list(next(iter(counts.values()), {}))  # every case has every class
    totals = {n: np.sum([c[n] for c in counts.values()], axis=0) for n in names}
    return {n: float(dice_from_counts(*(int(v) for v in t))) if t[1] + t[2] > 0 else float("nan")
            for n, t in totals.items()}
