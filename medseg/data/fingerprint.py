"""Dataset fingerprint: what the plan is derived from.

Per case (in canonical RAS axis order, so spacings compare across storage orientations):
spacing (mm) and shape; per channel, intensities sampled inside the foreground (label > 0,
up to ``SAMPLES_PER_CASE`` voxels per case with a fixed seed); voxel fraction per class; the
connected components of each class (ml), from which :mod:`medseg.data.classes` derives the
class roles (small structures, keep-largest classes).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from medseg.data.classes import case_components
from medseg.data.layout import DatasetSpec
from medseg.io import read_volume
from medseg.preprocess.orientation import canonical_transform, reoriented_affine

SAMPLES_PER_CASE = 10_000


def _case_stats(images, label, rng, values) -> tuple[list, list, list[np.ndarray], dict[int, int], int, dict]:
    first = images[0]
    tr = canonical_transform(first.affine)
    can_aff = reoriented_affine(first.affine, tr, first.shape)
    spacing = np.linalg.norm(can_aff[:3, :3], axis=0)
    shape = [int(first.shape[int(a)]) for a in np.argsort(tr[:, 0])]
    fg = label.array > 0
    idx = np.flatnonzero(fg)
    if idx.size > SAMPLES_PER_CASE:
        idx = rng.choice(idx, SAMPLES_PER_CASE, replace=False)
    samples = [np.asarray(im.array).ravel()[idx].astype(np.float64) for im in images]
    present, counts = np.unique(label.array, return_counts=True)
    comps = case_components(np.asarray(label.array), float(abs(np.linalg.det(label.affine[:3, :3]))) / 1000.0, values)
    return spacing.tolist(), shape, samples, dict(zip(present.tolist(), counts.tolist())), int(label.array.size), comps


def compute_fingerprint(spec: DatasetSpec, progress: Callable[[str], None] | None = None, seed: int = 0) -> dict:
    """Fingerprint of the training cases of ``spec`` (plain JSON/YAML-able dict).

    Keys: name, labels, channels, case_ids, spacings (n, 3) mm, shapes (n, 3), intensity
    (per channel: mean, std, median, p00_5, p99_5, min, max of foreground samples),
    class_fraction (label name -> fraction of all voxels), components (label name -> per case,
    the component volumes in ml, largest first; empty where the class is absent).
    """
    rng = np.random.default_rng(seed)
    spacings, shapes, ids = [], [], []
    samples: dict[int, list[np.ndarray]] = {c: [] for c in spec.channels}
    counts: dict[int, int] = {}
    total = 0
    fg_values = [v for v in spec.labels.values() if v != 0]
    components: dict[int, list[list[float]]] = {v: [] for v in fg_values}
    for case in spec.cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = [read_volume(p) for p in case.images]
            label = read_volume(case.label)
        sp, sh, smp, cnt, n, comps = _case_stats(images, label, rng, fg_values)
        for v in fg_values:
            components[v].append(comps[v])
        spacings.append(sp)
        shapes.append(sh)
        ids.append(case.case_id)
        for c, s in zip(spec.channels, smp):
            samples[c].append(s)
        for v, k in cnt.items():
            counts[v] = counts.get(v, 0) + k
        total += n
        if progress:
            progress(case.case_id)
    intensity = {}
    for c, parts in samples.items():
        x = np.concatenate(parts) if parts else np.zeros(0)
        if x.size == 0:
            intensity[str(c)] = None
            continue
        intensity[str(c)] = {
            "mean": float(x.mean()), "std": float(x.std()), "median": float(np.median(x)),
            "p00_5": float(np.percentile(x, 0.5)), "p99_5": float(np.percentile(x, 99.5)),
            "min": float(x.min()), "max": float(x.max()),
        }
    names = spec.label_names
    return {
        "name": spec.name,
        "labels": dict(spec.labels),
        "channels": {int(k): v for k, v in spec.channels.items()},
        "case_ids": ids,
        "spacings": spacings,
        "shapes": shapes,
        "intensity": intensity,
        "class_fraction": {names.get(v, str(v)): counts.get(v, 0) / max(total, 1) for v in spec.label_values},
        "components": {names.get(v, str(v)): comps for v, comps in components.items()},
    }
