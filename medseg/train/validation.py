"""Validation: sliding-window inference over whole cached validation volumes, Dice per class
computed on each case's *original* label grid (the prediction is inverted first)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from medseg.data.cache import CachedCase
from medseg.data.layout import Case
from medseg.io import read_volume
from medseg.metrics import dice
from medseg.preprocess import Preprocessor, PreprocessRecord


def predict_model_space(model: torch.nn.Module, image: np.ndarray, patch_size, n_classes: int, overlap: float,
                        sw_batch: int, device: torch.device, autocast_dtype=None) -> np.ndarray:
    """Argmax label map (X, Y, Z) uint8 of ``image`` (C, X, Y, Z) float32 in model space, with
    the very sliding windows `medseg predict` uses (so validation Dice is prediction Dice)."""
    from medseg.predict.sliding import sliding_window_labels

    return sliding_window_labels(model, image, patch_size, n_classes, overlap=overlap, batch_size=sw_batch,
                                 device=device, autocast_dtype=autocast_dtype).labels


def validate(model: torch.nn.Module, cached: list[CachedCase], cases: list[Case], pre: Preprocessor, labels: dict[str, int],
             patch_size, overlap: float, sw_batch: int, device: torch.device, autocast_dtype=None) -> dict:
    """Mean and per-class Dice over validation cases, on the original label grids.

    Returns ``{"dice_mean": float, "dice": {name: float}, "per_case": {case: {name: dice}}}``;
    the mean is over foreground classes of the per-class means (classes absent from both the
    reference and the prediction of a case count as Dice 1 for that case).
    """
    was_training = model.training
    model.eval()
    per_case: dict[str, dict[str, float]] = {}
    by_id = {c.case_id: c for c in cases}
    for cc in cached:
        pred = predict_model_space(model, cc.image(), patch_size, max(labels.values()) + 1, overlap, sw_batch,
                                   device, autocast_dtype)
        rec = PreprocessRecord.from_dict(cc.meta()["record"])
        pred_src = pre.invert_labels(pred, rec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = read_volume(by_id[cc.case_id].label)
        per_case[cc.case_id] = {name: float(dice(pred_src.array == v, ref.array == v)) for name, v in labels.items() if v != 0}
    model.train(was_training)
    names = [n for n, v in labels.items() if v != 0]
    mean_by_class = {n: float(np.mean([d[n] for d in per_case.values()])) for n in names}
    return {"dice_mean": float(np.mean(list(mean_by_class.values()))), "dice": mean_by_class, "per_case": per_case}
