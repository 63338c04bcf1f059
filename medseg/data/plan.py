"""The plan: every preprocessing and training-shape decision, as an editable YAML file.

In the spirit of nnU-Net's plans, derived from the dataset fingerprint
(:mod:`medseg.data.fingerprint`) and a GPU memory budget:

* target spacing: the median spacing per axis; for anisotropic data (largest/smallest median
  spacing > 3) the low-resolution axis uses the 10th percentile instead, so few cases are
  upsampled heavily along it;
* normalisation: CT -> clip to the 0.5 / 99.5 percentiles of foreground intensities, then
  z-score with the foreground mean / std; other modalities -> per-image z-score;
* network (MONAI DynUNet): an axis is downsampled while its feature map stays >= 8 voxels
  and its spacing is not more than twice the finest axis's (anisotropic axes wait);
  filters ``base_filters`` (32, nnU-Net's) * 2^stage up to 320; at most 6 stages. 16 base
  filters train ~3x faster on a CPU (measured on 2 cores) at a small cost in capacity;
* patch size: starts at the median resampled shape (at most 256 per axis, rounded to what
  the pooling needs) and the largest axis shrinks until the estimated memory fits;
* batch size: what the remaining memory allows, at least 2, and at most 5% of the dataset's
  voxels per batch;
* class roles (:mod:`medseg.data.classes`): which classes are small structures (extra sampling
  and loss weight with ``class_weights: auto``) and which are one component in every training
  case (keep-largest post-processing with ``keep_largest: auto``).

**Plans for a CPU** (``device="cpu"``; ``medseg plan``/``medseg train`` choose it when no GPU is
there, or with ``--device cpu``): a GPU plan spends a memory budget, a CPU plan spends compute.
On a CPU a training step costs about (patch voxels x filters), so the plan

* uses ``CPU_BASE_FILTERS`` (16) filters in the first stage (3x faster than 32 on 2 cores at a
  small cost in capacity; measured);
* coarsens the target spacing -- finest axes first, never finer than the GPU target -- until
  the median case fits in ``CPU_PATCH_VOXELS`` voxels, so that one patch sees (nearly) a whole
  case, as nnU-Net's patch does on a GPU; but never coarser than ``CPU_MAX_COARSENING`` times
  the finest GPU target spacing, nor than a third of the median diameter of the smallest small
  structure (so lesions stay resolved);
* then takes the patch from the median shape, shrunk until it fits ``CPU_PATCH_VOXELS``, and
  batch 2 (on a CPU many small steps beat fewer large ones).

The memory estimate is a rough model (documented in :func:`estimate_memory_gb`) -- edit the
plan file when you know better.
"""

from __future__ import annotations

import math

import numpy as np

from medseg.config import ConfigError
# the plan file's types and I/O live in medseg.plans (preprocessing, training and prediction read
# plans without this planner); they stay importable from here, where plans are made
from medseg.plans import (PLAN_VERSION, ClassPolicy, DatasetInfo, Network, Normalization, Plan, Preprocessing,
                          Training, load_plan, save_plan)

ANISOTROPY_RATIO = 3.0
MIN_FEATURE_MAP = 8
MAX_STAGES = 6
BASE_FILTERS = 32
MAX_FILTERS = 320
MAX_PATCH = 256
#: bytes of activations/gradients per (voxel x feature channel) in training, incl. AMP, both
#: encoder and decoder -- calibrated so a 128^3 DynUNet (32..320 filters) needs ~5 GB per sample,
#: in line with nnU-Net's 3d_fullres default (patch 128^3, batch 2, ~10 GB).
BYTES_PER_VOXEL_FEATURE = 56.0
FIXED_OVERHEAD_GB = 1.0
#: CPU plans (see the module docstring): about 5 training iterations/s (batch 2) on 2 cores
CPU_BASE_FILTERS = 16
CPU_PATCH_VOXELS = 80_000
CPU_MAX_COARSENING = 3.0
CPU_BATCH = 2


# ---- planning --------------------------------------------------------------------------

def default_gpu_memory() -> float:
    """Memory (GB) of the first CUDA GPU, or 8 when there is none (a typical training card)."""
    try:
        import torch

        if torch.cuda.is_available():
            return round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    except Exception:  # torch missing or CUDA broken
        pass
    return 8.0


def target_spacing(spacings: np.ndarray) -> tuple[float, float, float]:
    """Median spacing per axis; the low-res axis takes the 10th percentile when anisotropic.

    Args:
        spacings: (n_cases, 3) mm, in canonical (RAS) axis order.
    """
    med = np.median(spacings, axis=0)
    target = med.copy()
    worst = int(np.argmax(med))
    others = [a for a in range(3) if a != worst]
    if med[worst] > ANISOTROPY_RATIO * max(med[others]):
        target[worst] = np.percentile(spacings[:, worst], 10)
    return tuple(float(round(v, 4)) for v in target)


def network_topology(patch: np.ndarray, spacing, base_filters: int = BASE_FILTERS) -> tuple[list, list, list]:
    """DynUNet kernels/strides/filters for a patch (voxels) at ``spacing`` (mm).

    An axis is pooled while its feature map stays >= MIN_FEATURE_MAP and its current
    spacing is at most twice the finest current spacing; kernels are 1 along axes whose
    spacing is still more than twice the finest (anisotropic axes get in-plane convs first).
    """
    size = np.asarray(patch, float)
    sp = np.asarray(spacing, float)
    kernels, strides = [], [(1, 1, 1)]
    while True:
        kernels.append(tuple(1 if sp[a] > 2 * sp.min() else 3 for a in range(3)))
        if len(strides) >= MAX_STAGES:
            break
        pool = tuple(2 if (size[a] / 2 >= MIN_FEATURE_MAP and sp[a] <= 2 * sp.min()) else 1 for a in range(3))
        if max(pool) == 1:
            break
        strides.append(pool)
        size = size / np.array(pool)
        sp = sp * np.array(pool)
    filters = [min(base_filters * 2**i, MAX_FILTERS) for i in range(len(kernels))]
    return kernels, strides[: len(kernels)], filters


def estimate_memory_gb(patch, strides, filters, batch_size: int) -> float:
    """Rough training memory: fixed overhead + batch * sum over stages of voxels * filters
    * BYTES_PER_VOXEL_FEATURE. Good to a factor of ~1.5; edit the plan to correct it."""
    vox = float(np.prod(patch))
    total = 0.0
    for stride, f in zip(strides, filters):
        vox /= float(np.prod(stride))
        total += vox * f
    return FIXED_OVERHEAD_GB + batch_size * total * BYTES_PER_VOXEL_FEATURE / 1e9


def _round_to(patch: np.ndarray, div) -> np.ndarray:
    return np.maximum(np.asarray(div), (np.floor(patch / np.asarray(div)) * np.asarray(div))).astype(int)


def choose_patch_and_batch(median_shape, spacing, gpu_memory_gb: float, dataset_voxels: float,
                           base_filters: int = BASE_FILTERS, max_voxels: float | None = None):
    """Patch size, network and batch size fitting ``gpu_memory_gb`` (see module docstring).

    ``max_voxels`` (CPU plans): the patch must also hold at most this many voxels, and the
    batch is ``CPU_BATCH``.
    """
    patch = np.minimum(np.asarray(median_shape, float), MAX_PATCH)
    patch = np.maximum(patch, MIN_FEATURE_MAP)
    while True:
        kernels, strides, filters = network_topology(patch, spacing, base_filters)
        div = [int(np.prod([s[a] for s in strides])) for a in range(3)]
        rounded = _round_to(patch, div)  # multiple of the pooling, never above the median shape
        mem = estimate_memory_gb(rounded, strides, filters, batch_size=2)
        fits = mem <= gpu_memory_gb and (max_voxels is None or np.prod(rounded) <= max_voxels)
        if fits or np.prod(rounded) <= MIN_FEATURE_MAP**3:
            break
        # shrink the axis that is largest in mm (keeps the field of view roughly isotropic)
        axis = int(np.argmax(rounded * np.asarray(spacing)))
        patch[axis] = max(MIN_FEATURE_MAP, rounded[axis] - div[axis])
    if max_voxels is not None:
        batch = CPU_BATCH
    else:
        per_sample = (estimate_memory_gb(rounded, strides, filters, 1) - FIXED_OVERHEAD_GB)
        batch = int(max(2, math.floor((gpu_memory_gb - FIXED_OVERHEAD_GB) / max(per_sample, 1e-9))))
        batch_cap = max(2, int(0.05 * dataset_voxels / float(np.prod(rounded))))
        batch = min(batch, batch_cap)
    est = estimate_memory_gb(rounded, strides, filters, batch)
    return tuple(int(v) for v in rounded), batch, (kernels, strides, filters), est


def cpu_spacing(target, extent_mm, smallest_structure_mm: float | None = None) -> tuple[tuple[float, float, float], str]:
    """The CPU plan's target spacing (mm) and a note saying what bound it.

    Coarsens the finest axes first: spacing ``max(target[a], s)`` per axis, with the smallest
    ``s`` for which the median case (``extent_mm``, per axis) fits in ``CPU_PATCH_VOXELS``;
    ``s`` is capped at ``CPU_MAX_COARSENING`` x the finest target spacing and at a third of
    ``smallest_structure_mm`` (the median diameter of the smallest small structure).
    """
    t = np.asarray(target, float)
    e = np.asarray(extent_mm, float)

    def voxels(s: float) -> float:
        return float(np.prod(e / np.maximum(t, s)))

    cap = CPU_MAX_COARSENING * float(t.min())
    why_cap = f"at most {CPU_MAX_COARSENING:g}x the finest target spacing"
    if smallest_structure_mm and smallest_structure_mm / 3 < cap:
        cap, why_cap = smallest_structure_mm / 3, f"a third of the smallest structure's median diameter " \
                                                 f"({smallest_structure_mm:.3g} mm)"
    lo, hi = float(t.min()), max(cap, float(t.min()))
    if voxels(lo) <= CPU_PATCH_VOXELS:
        return tuple(float(round(v, 4)) for v in t), "the median case fits a CPU patch at the target spacing"
    if voxels(hi) > CPU_PATCH_VOXELS:
        s, why = hi, f"capped: {why_cap}"
    else:
        for _ in range(60):  # bisection on s: voxels(s) is non-increasing
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if voxels(mid) <= CPU_PATCH_VOXELS else (mid, hi)
        s, why = hi, f"coarsened so the median case fits a CPU patch ({CPU_PATCH_VOXELS} voxels)"
    return tuple(float(round(max(v, s), 4)) for v in t), why


def _smallest_structure_mm(fingerprint: dict, small: list[str]) -> float | None:
    """Median equivalent-sphere diameter (mm) of the smallest small structure's components."""
    comps = fingerprint.get("components") or {}
    diam = []
    for name in small:
        vols = [v for case in comps.get(name, []) for v in case if v > 0]
        if vols:
            diam.append(float((6 * np.median(vols) * 1000 / np.pi) ** (1 / 3)))
    return min(diam) if diam else None


def class_policy(fingerprint: dict) -> ClassPolicy:
    """:class:`ClassPolicy` from a fingerprint with ``components`` (empty when it has none)."""
    from medseg.data.classes import class_stats, derive_roles

    comps = fingerprint.get("components")
    if not comps:
        return ClassPolicy()
    roles = derive_roles(class_stats(comps, fingerprint["labels"], len(fingerprint["spacings"])))
    return ClassPolicy(roles.small_structures, 3.0, roles.keep_largest, roles.reasons)


def make_plan(fingerprint: dict, gpu_memory_gb: float = 8.0, spacing=None, base_filters: int | None = None,
              device: str = "gpu") -> Plan:
    """Derive a plan from :func:`medseg.data.fingerprint.compute_fingerprint` output.

    ``device``: ``gpu`` sizes patch and batch for ``gpu_memory_gb``; ``cpu`` for CPU compute
    (coarser spacing, 16 filters, a patch of at most ``CPU_PATCH_VOXELS``; module docstring).
    ``spacing`` (mm, 3 values) replaces the automatic target spacing -- coarser trains and
    predicts faster, finer keeps small structures; patch, batch and network are then derived
    for that spacing. ``base_filters``: feature maps of the first network stage (doubling per
    stage, at most 320); default 32 as nnU-Net on a GPU, 16 on a CPU.
    """
    if device not in ("gpu", "cpu"):
        raise ConfigError(f"plan device must be 'gpu' or 'cpu', got {device!r}")
    cpu = device == "cpu"
    spacings = np.asarray(fingerprint["spacings"], float)
    shapes = np.asarray(fingerprint["shapes"], float)
    if spacing is not None and (len(spacing) != 3 or not all(math.isfinite(float(v)) and float(v) > 0 for v in spacing)):
        raise ConfigError(f"target spacing must be 3 positive values in mm, got {list(spacing)}")
    if base_filters is None:
        base_filters = CPU_BASE_FILTERS if cpu else BASE_FILTERS
    if int(base_filters) != base_filters or not 4 <= base_filters <= MAX_FILTERS:
        raise ConfigError(f"base filters must be a whole number from 4 to {MAX_FILTERS}, got {base_filters}")
    classes = class_policy(fingerprint)
    auto_tgt = target_spacing(spacings)
    spacing_note = None
    if spacing is not None:
        tgt = tuple(round(float(v), 4) for v in spacing)
    elif cpu:
        extent = np.median(shapes * spacings, axis=0)
        tgt, spacing_note = cpu_spacing(auto_tgt, extent, _smallest_structure_mm(fingerprint, classes.small_structures))
    else:
        tgt = auto_tgt
    resampled = shapes * spacings / np.asarray(tgt)
    median_shape = np.median(resampled, axis=0)
    dataset_voxels = float(np.sum(np.prod(resampled, axis=1)))
    patch, batch, (kernels, strides, filters), est = choose_patch_and_batch(
        median_shape, tgt, gpu_memory_gb, dataset_voxels, int(base_filters), CPU_PATCH_VOXELS if cpu else None)
    norms = []
    for ch, name in fingerprint["channels"].items():
        st = fingerprint["intensity"].get(str(ch)) or fingerprint["intensity"].get(ch)
        if name.strip().upper() == "CT" and st is not None:
            clip = (round(st["p00_5"], 4), round(st["p99_5"], 4))
            norms.append(Normalization(int(ch), "ct", clip, round(st["mean"], 4), round(max(st["std"], 1e-6), 4)))
        else:
            norms.append(Normalization(int(ch), "zscore"))
    notes = [
        f"sized for a {'CPU (compute budget)' if cpu else 'GPU (memory budget)'}"
        + ("" if cpu else f"; `medseg plan --device cpu` sizes it for a CPU"),
        f"target spacing {list(tgt)} mm " + ("(set by the user; " if spacing is not None else "(from ")
        + f"{len(spacings)} cases, median {np.median(spacings, axis=0).round(4).tolist()}"
        + (f"; GPU target {list(auto_tgt)}, {spacing_note}" if spacing_note else "") + ")",
        f"median shape at target spacing {median_shape.round(1).tolist()}",
        f"patch {list(patch)}, batch {batch}: estimated {est:.1f} GB"
        + (f" of {gpu_memory_gb:g} GB" if not cpu else f", at most {CPU_PATCH_VOXELS} voxels"),
        "small structures (extra sampling and loss weight with class_weights: auto): "
        + (", ".join(classes.small_structures) or "none"),
        "keep-largest-component classes (postprocess.keep_largest: auto): " + (", ".join(classes.keep_largest) or "none"),
    ]
    return Plan(
        medseg_plan=PLAN_VERSION,
        dataset=DatasetInfo(fingerprint["name"], dict(fingerprint["labels"]), {int(k): v for k, v in fingerprint["channels"].items()}),
        preprocessing=Preprocessing(tgt, norms),
        network=Network("DynUNet", kernels, strides, filters),
        training=Training(patch, batch),
        gpu_memory_gb=float(gpu_memory_gb),
        estimated_memory_gb=round(float(est), 2),
        device="cpu" if cpu else "gpu",
        classes=classes,
        fingerprint=fingerprint_summary(fingerprint),
        notes=notes,
    )


def fingerprint_summary(fp: dict) -> dict:
    """The informative part of the fingerprint kept in the plan file (no per-case lists)."""
    sp = np.asarray(fp["spacings"], float)
    sh = np.asarray(fp["shapes"], float)
    return {
        "n_cases": len(sp),
        "median_spacing": np.median(sp, axis=0).round(4).tolist(),
        "min_spacing": sp.min(axis=0).round(4).tolist(),
        "max_spacing": sp.max(axis=0).round(4).tolist(),
        "median_shape": np.median(sh, axis=0).round(1).tolist(),
        "intensity": fp["intensity"],
        "class_fraction": fp["class_fraction"],
        "class_stats": _class_stats_summary(fp),
    }


def _class_stats_summary(fp: dict) -> dict:
    from medseg.data.classes import class_stats

    comps = fp.get("components")
    if not comps:
        return {}
    return {n: s.to_dict() for n, s in class_stats(comps, fp["labels"], len(fp["spacings"])).items()}


def plan_device(device: str = "auto") -> str:
    """``gpu`` or ``cpu`` for a training device name (``auto``: CUDA when available)."""
    if device == "auto":
        try:
            import torch

            return "gpu" if torch.cuda.is_available() else "cpu"
        except Exception:  # torch missing or CUDA broken
            return "cpu"
    return "gpu" if device in ("cuda", "gpu") else "cpu"


def plan_dataset(dataset, out=None, *, spacing=None, gpu_memory_gb: float | None = None,
                 base_filters: int | None = None, device: str = "auto", progress=None) -> Plan:
    """What ``medseg plan`` does, as one call: check the dataset, fingerprint it, derive the plan
    for the training ``device`` (``auto``: a GPU plan when CUDA is available, else a CPU plan;
    ``cpu``; ``cuda``/``gpu``) and, when ``out`` is given, write it (YAML). ``spacing`` overrides
    the target spacing (mm); ``base_filters`` the first stage's width.

    Raises:
        InputError: the dataset has problems (the message lists the first ones).
    """
    from medseg.data.fingerprint import compute_fingerprint
    from medseg.data.layout import load_dataset
    from medseg.data.validate import check_dataset
    from medseg.errors import InputError

    spec = load_dataset(dataset)
    report = check_dataset(spec)
    if not report.ok:
        raise InputError(f"{len(report.problems)} problem(s) in {spec.root}: " + "; ".join(report.lines()[:3])
                         + f" -- see `medseg check-dataset {spec.root}`")
    plan = make_plan(compute_fingerprint(spec, progress=progress), gpu_memory_gb or default_gpu_memory(), spacing=spacing,
                     base_filters=base_filters, device=plan_device(device))
    if out is not None:
        save_plan(plan, out)
    return plan
