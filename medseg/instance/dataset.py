"""Training slices: cases in model space, the per-epoch slice order, and batches of targets.

Every case is read once (the same readers as prediction), reoriented to canonical RAS and
resampled in-plane (:mod:`medseg.instance.slices`), and kept in memory as float32 HU (X, Y, K)
plus uint8 labels. Per epoch, the slices used are every slice holding an instance plus a
seeded random share (``empty_slice_rate``) of the others, shuffled; the order is a function of
(seed, epoch) only, so a resumed run sees the very batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medseg.data.layout import Case
from medseg.instance.channels import intensity_range, slice_channels
from medseg.instance.config import InstanceDataConfig
from medseg.instance.extract import slice_instances
from medseg.instance.slices import image_to_model, labels_to_model, slice_record
from medseg.io import read_volume


@dataclass
class SliceCase:
    """One case in model space: ``image`` float32 (X, Y, K), ``label`` uint8 (X, Y, K)
    (dataset values), ``scale`` (percentile scaling or None) and the slices holding instances."""

    case_id: str
    image: np.ndarray
    label: np.ndarray
    scale: tuple[float, float] | None
    with_instances: np.ndarray  # slice indices


def load_case(case: Case, cfg: InstanceDataConfig, class_values: list[int], label_values: list[int]) -> SliceCase:
    """Read and convert one training case (its first image channel and its label)."""
    image = read_volume(case.images[0])
    rec = slice_record(image, cfg.spacing_mm)
    arr = image_to_model(image, rec)
    lab = labels_to_model(read_volume(case.label), rec, label_values)
    has = np.isin(lab, class_values).any(axis=(0, 1))
    return SliceCase(case.case_id, arr, lab, intensity_range(arr, cfg), np.flatnonzero(has))


def epoch_order(cases: list[SliceCase], rate: float, seed: int, epoch: int, needed: int) -> list[tuple[int, int]]:
    """``needed`` (case index, slice) pairs for ``epoch``: instance slices plus a ``rate`` share
    of the empty ones, shuffled, repeated (reshuffled) when more are needed. Deterministic."""
    rng = np.random.default_rng([seed, epoch])
    pool = []
    for ci, c in enumerate(cases):
        pool += [(ci, int(k)) for k in c.with_instances]
        empty = np.setdiff1d(np.arange(c.image.shape[2]), c.with_instances)
        pool += [(ci, int(k)) for k in empty[rng.random(len(empty)) < rate]]
    if not pool:
        pool = [(ci, k) for ci, c in enumerate(cases) for k in range(c.image.shape[2])]
    order: list[tuple[int, int]] = []
    while len(order) < needed:
        order += [pool[i] for i in rng.permutation(len(pool))]
    return order[:needed]


def make_sample(case: SliceCase, k: int, cfg: InstanceDataConfig, class_map: dict[int, int],
                flip: tuple[bool, bool] = (False, False)) -> tuple[torch.Tensor, dict]:
    """Image ``(3, X, Y)`` float32 in [0, 1] and torchvision target of slice ``k`` (flipped along
    x and/or y when asked)."""
    img = slice_channels(case.image, k, cfg, case.scale)
    lab = case.label[:, :, k]
    for axis, f in enumerate(flip):
        if f:
            img, lab = np.flip(img, axis + 1), np.flip(lab, axis)
    t = slice_instances(np.ascontiguousarray(lab), class_map, cfg.connectivity, cfg.min_instance_pixels)
    target = {"boxes": torch.from_numpy(t["boxes"]), "labels": torch.from_numpy(t["labels"]),
              "masks": torch.from_numpy(t["masks"])}
    return torch.from_numpy(np.ascontiguousarray(img)), target


def make_batch(cases: list[SliceCase], items: list[tuple[int, int]], cfg: InstanceDataConfig,
               class_map: dict[int, int], seed: int, epoch: int, first_index: int):
    """Images and targets for ``items``; flips are drawn from (seed, epoch, item position)."""
    images, targets = [], []
    for j, (ci, k) in enumerate(items):
        flip = (False, False)
        if cfg.flip:
            r = np.random.default_rng([seed, epoch, first_index + j, 7]).random(2)
            flip = (bool(r[0] < 0.5), bool(r[1] < 0.5))
        img, tgt = make_sample(cases[ci], k, cfg, class_map, flip)
        images.append(img)
        targets.append(tgt)
    return images, targets
