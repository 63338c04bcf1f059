"""Training samples: cases in model space, the per-epoch crop plan, and batches of targets.

Every case is read once (the same readers as prediction), reoriented to canonical RAS and
resampled in-plane (:mod:`medseg.instance.slices`), and kept in memory as float32 HU (X, Y, K)
plus uint8 labels, with the centres of its per-slice instances and its labelled box.

Crops (``data.crop_px`` > 0): each item of an epoch is a ``crop_px x crop_px`` window of one
slice. A share ``lesion_crop_fraction`` is centred on a per-slice instance, drawn uniformly
(``lesion_sampling: slices``) or from a uniformly drawn 3D lesion (``lesions``: a lesion on two
slices is seen as often as one on ten), the centre jittered uniformly by up to
``crop_jitter x crop_px`` pixels per axis. The others are
negatives: with ``negative_crops: structures`` (default) each is centred on a random voxel of a
structure drawn uniformly from the case's other labels (its organs) and "the labelled box", so
a small organ (a kidney, whose medulla looks like a hypodense lesion) is seen as often as the
large one around the lesions; with ``box`` (and for the box choice) at a uniformly random
centre inside the case's labelled box (all foreground labels) on a uniformly random slice.
With ``hard_negative_fraction`` > 0 that share of the negatives is centred on the model's own
false positives instead (:mod:`medseg.instance.mining`).
Windows reaching outside the slice are padded with air (every channel 0), so every crop has
the same size. With ``crop_px: 0`` the items are whole slices:
every slice holding an instance plus a random share ``empty_slice_rate`` of the others.

The plan is a function of (seed, epoch) only and flips / transposes / intensity offsets of
(seed, epoch, item position), so a resumed run sees the very batches it would have seen.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from medseg.data.layout import Case
from medseg.instance.channels import intensity_range, slice_channels
from medseg.instance.config import InstanceDataConfig
from medseg.instance.extract import slice_instances
from medseg.instance.slices import image_to_model, labels_to_model, slice_record
from medseg.io import read_volume

#: An item of the epoch plan: (case index, slice k, crop origin x, crop origin y); origins are
#: model-space pixels (may be negative or reach past the slice: padded) and ignored for whole slices.
Item = tuple[int, int, int, int]


@dataclass
class SliceCase:
    """One case in model space.

    Attributes:
        image: float32 ``(X, Y, K)`` HU (or raw MR intensities); label: uint8 ``(X, Y, K)``
            dataset values; scale: percentile scaling (MR) or None.
        with_instances: int ``(n,)`` indices of the slices holding an instance.
        centres: int ``(m, 3)`` rows ``(k, x, y)``: the centre of every per-slice instance.
        box: ``(x0, x1, y0, y1)`` labelled in-plane box (all foreground labels), end exclusive.
        structures: label value -> int ``(n, 3)`` rows ``(k, x, y)``: up to
            :data:`STRUCTURE_SAMPLES` random voxels of each non-lesion foreground label (the
            centres of negative crops).
        lesion_of: int ``(m,)``: the 3D lesion (index within the case) of each row of
            ``centres`` (:func:`instance_centres`); None: each row is its own lesion.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    scale: tuple[float, float] | None
    with_instances: np.ndarray
    centres: np.ndarray
    box: tuple[int, int, int, int]
    structures: dict[int, np.ndarray] = field(default_factory=dict)
    lesion_of: np.ndarray | None = None


#: Voxels kept per structure and case as negative-crop centres (a seeded sample).
STRUCTURE_SAMPLES = 4096


def structure_voxels(label: np.ndarray, class_values: list[int], case_id: str) -> dict[int, np.ndarray]:
    """Label value -> ``(n, 3)`` int rows ``(k, x, y)``: a sample (seeded by ``case_id``) of up to
    :data:`STRUCTURE_SAMPLES` voxels of each foreground label that is not a lesion class."""
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    out = {}
    for v in np.unique(label).tolist():
        if v == 0 or v in class_values:
            continue
        idx = np.flatnonzero(label.ravel() == v)
        if len(idx) > STRUCTURE_SAMPLES:
            idx = np.sort(rng.choice(idx, STRUCTURE_SAMPLES, replace=False))
        x, y, k = np.unravel_index(idx, label.shape)
        out[int(v)] = np.stack([k, x, y], axis=1).astype(np.int64)
    return out


def instance_centres(label: np.ndarray, class_values: list[int],
                     connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The per-slice instances of ``class_values`` in a model-space label ``(X, Y, K)``.

    Returns:
        centres: ``(m, 3)`` int rows ``(k, x, y)``: rounded centre of mass of every per-slice
            connected component (``connectivity`` 4 or 8 pixels).
        lesion_of: ``(m,)`` int: the 3D lesion (0-based) each belongs to: the 26-connected
            component of ``class_values`` holding it.
    """
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    fg = np.isin(label, class_values)
    lesions3d, _ = ndimage.label(fg, np.ones((3, 3, 3), bool))
    out, owner = [], []
    for k in np.flatnonzero(fg.any(axis=(0, 1))):
        cc, n = ndimage.label(fg[:, :, k], structure=structure)
        ids = range(1, n + 1)
        # a per-slice component lies in exactly one 26-connected component: any voxel names it
        owner += [int(v) - 1 for v in ndimage.maximum(lesions3d[:, :, k], cc, ids)]
        for c in ndimage.center_of_mass(fg[:, :, k], cc, ids):
            out.append((int(k), int(round(c[0])), int(round(c[1]))))
    return np.asarray(out, np.int64).reshape(-1, 3), np.asarray(owner, np.int64)


def load_case(case: Case, cfg: InstanceDataConfig, class_values: list[int], label_values: list[int]) -> SliceCase:
    """Read and convert one training case (its first image channel and its label)."""
    image = read_volume(case.images[0])
    rec = slice_record(image, cfg.spacing_mm)
    arr = image_to_model(image, rec)
    lab = labels_to_model(read_volume(case.label), rec, label_values)
    has = np.isin(lab, class_values).any(axis=(0, 1))
    fg = lab.any(axis=2)
    xs, ys = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    box = (int(xs[0]), int(xs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1) if len(xs) else (0, lab.shape[0], 0, lab.shape[1])
    centres, owner = instance_centres(lab, class_values, cfg.connectivity)
    return SliceCase(case.case_id, arr, lab, intensity_range(arr, cfg), np.flatnonzero(has), centres, box,
                     structure_voxels(lab, class_values, case.case_id), owner)


def epoch_order(cases: list[SliceCase], cfg: InstanceDataConfig, seed: int, epoch: int, needed: int,
                hard: list[tuple[int, int, int, int]] | None = None) -> list[Item]:
    """``needed`` items for ``epoch`` (rules in the module docstring). Deterministic.

    ``hard``: mined false-positive centres ``(case index, k, x, y)``
    (:mod:`medseg.instance.mining`); a share ``hard_negative_fraction`` of the negative crops is
    centred on one of them, jittered like lesion crops."""
    rng = np.random.default_rng([seed, epoch])
    if cfg.crop_px == 0:
        return _slice_order(cases, cfg.empty_slice_rate, rng, needed)
    size = cfg.crop_px
    lesions = _lesion_pool(cases, cfg.lesion_sampling)
    out: list[Item] = []
    for _ in range(needed):
        if lesions and rng.random() < cfg.lesion_crop_fraction:
            rows = lesions[int(rng.integers(len(lesions)))]
            # a one-row group draws nothing: with `slices` (every group one row) the random
            # stream, and so every existing run's crop plan, is the one it always was
            ci, k, x, y = rows[int(rng.integers(len(rows)))] if len(rows) > 1 else rows[0]
            j = cfg.crop_jitter * size
            cx, cy = x + rng.uniform(-j, j), y + rng.uniform(-j, j)
        elif hard and cfg.hard_negative_fraction > 0 and rng.random() < cfg.hard_negative_fraction:
            ci, k, x, y = hard[int(rng.integers(len(hard)))]
            j = cfg.crop_jitter * size
            cx, cy = x + rng.uniform(-j, j), y + rng.uniform(-j, j)
        else:
            ci = int(rng.integers(len(cases)))
            case = cases[ci]
            pick = len(case.structures)  # the labelled box
            if cfg.negative_crops == "structures" and case.structures:
                pick = int(rng.integers(len(case.structures) + 1))
            if pick < len(case.structures):
                rows = case.structures[sorted(case.structures)[pick]]
                k, cx, cy = (int(v) for v in rows[int(rng.integers(len(rows)))])
            else:
                k = int(rng.integers(case.image.shape[2]))
                x0, x1, y0, y1 = case.box
                cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        out.append((int(ci), int(k), int(round(cx - size / 2)), int(round(cy - size / 2))))
    return out


def _lesion_pool(cases: list[SliceCase], sampling: str) -> list[list[tuple[int, int, int, int]]]:
    """The groups a lesion crop is drawn from (a group uniformly, then one of its rows), rows
    ``(case index, k, x, y)``: one group per per-slice instance (``slices``), or one per 3D
    lesion holding its per-slice instances (``lesions``)."""
    groups: dict[tuple[int, int], list] = {}
    for ci, case in enumerate(cases):
        owner = case.lesion_of if sampling == "lesions" and case.lesion_of is not None else None
        for j, c in enumerate(case.centres.tolist()):
            key = (ci, int(owner[j]) if owner is not None else j)
            groups.setdefault(key, []).append((ci, *c))
    return list(groups.values())


def _slice_order(cases: list[SliceCase], rate: float, rng: np.random.Generator, needed: int) -> list[Item]:
    pool = []
    for ci, c in enumerate(cases):
        pool += [(ci, int(k), 0, 0) for k in c.with_instances]
        empty = np.setdiff1d(np.arange(c.image.shape[2]), c.with_instances)
        pool += [(ci, int(k), 0, 0) for k in empty[rng.random(len(empty)) < rate]]
    if not pool:
        pool = [(ci, k, 0, 0) for ci, c in enumerate(cases) for k in range(c.image.shape[2])]
    order: list[Item] = []
    while len(order) < needed:
        order += [pool[i] for i in rng.permutation(len(pool))]
    return order[:needed]


def _window(a: np.ndarray, x0: int, y0: int, size: int, fill) -> np.ndarray:
    """``a[..., x0:x0+size, y0:y0+size]`` (last two axes), padded with ``fill`` outside."""
    out = np.full((*a.shape[:-2], size, size), fill, a.dtype)
    X, Y = a.shape[-2:]
    sx, sy = max(x0, 0), max(y0, 0)
    ex, ey = min(x0 + size, X), min(y0 + size, Y)
    if ex > sx and ey > sy:
        out[..., sx - x0:ex - x0, sy - y0:ey - y0] = a[..., sx:ex, sy:ey]
    return out


def make_sample(case: SliceCase, item: Item, cfg: InstanceDataConfig, class_map: dict[int, int],
                flip: tuple[bool, bool] = (False, False), offset: float = 0.0,
                transpose: bool = False) -> tuple[torch.Tensor, dict]:
    """Image ``(3, S, S)`` (or ``(3, X, Y)`` for whole slices; ``(3, Y, X)`` transposed) float32
    in [0, 1] and the torchvision target of one item, flipped along x and/or y when asked, then
    x and y swapped when ``transpose``, channels shifted by ``offset`` (then clipped to [0, 1])."""
    _, k, x0, y0 = item
    img = slice_channels(case.image, k, cfg, case.scale)
    lab = case.label[:, :, k]
    if cfg.crop_px:
        img = _window(img, x0, y0, cfg.crop_px, np.float32(0))
        lab = _window(lab, x0, y0, cfg.crop_px, np.uint8(0))
    for axis, f in enumerate(flip):
        if f:
            img, lab = np.flip(img, axis + 1), np.flip(lab, axis)
    if transpose:
        img, lab = img.transpose(0, 2, 1), lab.T
    if offset:
        img = np.clip(img + np.float32(offset), 0, 1)
    t = slice_instances(np.ascontiguousarray(lab), class_map, cfg.connectivity, cfg.min_instance_pixels)
    target = {"boxes": torch.from_numpy(t["boxes"]), "labels": torch.from_numpy(t["labels"]),
              "masks": torch.from_numpy(t["masks"])}
    return torch.from_numpy(np.ascontiguousarray(img, np.float32)), target


def make_batch(cases: list[SliceCase], items: list[Item], cfg: InstanceDataConfig,
               class_map: dict[int, int], seed: int, epoch: int, first_index: int):
    """Images and targets for ``items``; flips, transposes and intensity offsets are drawn from (seed,
    epoch, item position)."""
    images, targets = [], []
    for j, item in enumerate(items):
        r = np.random.default_rng([seed, epoch, first_index + j, 7]).random(4)
        flip = (bool(r[0] < 0.5), bool(r[1] < 0.5)) if cfg.flip else (False, False)
        offset = float((2 * r[2] - 1) * cfg.intensity_jitter)
        img, tgt = make_sample(cases[item[0]], item, cfg, class_map, flip, offset, cfg.rotate90 and bool(r[3] < 0.5))
        images.append(img)
        targets.append(tgt)
    return images, targets
