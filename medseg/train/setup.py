"""Everything a run needs before its first step: dataset check, plan, folds, cache, loader.

Training reads the same readers and the same preprocessing as prediction (docs/concepts/design.md), through
the preprocessed cache of :mod:`medseg.data.cache`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from medseg.config import ConfigError
from medseg.data.augment import GROUPS as AUGMENT_GROUPS, AugmentConfig
from medseg.data.cache import CachedCase, PreprocessedCache
from medseg.data.layout import Case, DatasetSpec, load_dataset
from medseg.data.loader import PatchDataset, make_loader
from medseg.data.plan import make_plan
from medseg.data.sampling import SamplingConfig
from medseg.data.validate import check_dataset
from medseg.errors import InputError
from medseg.model.config import TrainConfig, resolve_class_weights
from medseg.plans import Plan, load_plan
from medseg.train.distributed import Dist
from medseg.train.splits import fold_cases, load_or_create_splits


@dataclass
class RunData:
    spec: DatasetSpec
    plan: Plan
    train_ids: list[str]
    val_ids: list[str]
    train_cached: list[CachedCase]
    val_cached: list[CachedCase]
    val_cases: list[Case]


def check_or_raise(spec: DatasetSpec) -> None:
    report = check_dataset(spec)
    if not report.ok:
        shown = "; ".join(report.lines()[:5])
        raise InputError(f"{len(report.problems)} problem(s) in {spec.root} ({shown}); run `medseg check-dataset "
                         f"{spec.root}` and fix them before training")


def effective_plan(plan: Plan, cfg: TrainConfig) -> Plan:
    """The plan with the config's patch/batch overrides applied and re-validated."""
    training = dataclasses.replace(
        plan.training,
        patch_size=tuple(cfg.patch_size) if cfg.patch_size else plan.training.patch_size,
        batch_size=cfg.batch_size or plan.training.batch_size,
    )
    out = dataclasses.replace(plan, training=training)
    div = out.network.divisor
    if any(p % d for p, d in zip(out.training.patch_size, div)):
        raise ConfigError(f"patch_size {list(out.training.patch_size)} must be a multiple of {list(div)} per axis "
                          "(the network's downsampling)")
    return out


def resolve_plan(spec: DatasetSpec, run_dir: Path, plan_path: "Path | Plan | None", resume: bool, gpu_memory_gb: float, d: Dist,
                 device_kind: str = "gpu") -> Plan:
    """Resume: the run's plan. Else ``--plan`` (a file or a `Plan`) when given, else computed from
    the dataset for the training device (``device_kind``: ``gpu`` or ``cpu``, see
    :func:`medseg.data.plan.make_plan`)."""
    if resume:
        return load_plan(run_dir / "plan.yaml")
    if isinstance(plan_path, Plan):
        plan = plan_path
    elif plan_path:
        plan = load_plan(plan_path)
    else:
        plan = None
        if d.main:
            from medseg.data.fingerprint import compute_fingerprint

            plan = make_plan(compute_fingerprint(spec), gpu_memory_gb, device=device_kind)
        plan = d.broadcast(plan)
    if plan.dataset.labels != spec.labels:
        raise InputError(f"the plan's labels {plan.dataset.labels} differ from the dataset's {spec.labels}; "
                         "re-run `medseg plan` for this dataset")
    return plan


def prepare(dataset: Path, cfg: TrainConfig, run_dir: Path, plan_path: Path | None, resume: bool, fold, seed: int,
            gpu_memory_gb: float, d: Dist, progress=None, device_kind: str = "gpu") -> tuple[RunData, PatchDataset]:
    spec = load_dataset(dataset)
    if d.main and not resume:
        check_or_raise(spec)
    if cfg.cascade is not None:  # stage 2 trains on crops around the organ
        from medseg.train.cascade import crop_dataset

        if d.main:
            crop_dataset(spec, cfg.cascade.organ_labels, cfg.cascade.margin_mm)
        d.barrier()
        spec = crop_dataset(spec, cfg.cascade.organ_labels, cfg.cascade.margin_mm)
    d.barrier()
    plan = effective_plan(resolve_plan(spec, run_dir, plan_path, resume, gpu_memory_gb, d, device_kind), cfg)
    ids = [c.case_id for c in spec.cases]
    splits = load_or_create_splits(spec.root, ids) if d.main else None
    splits = d.broadcast(splits)
    train_ids, val_ids = fold_cases(splits, fold)
    cache = PreprocessedCache(spec, plan)
    if d.main:
        cache.ensure(progress=progress, workers=2)
    d.barrier()
    cached = {c.case_id: c for c in cache.cases()}
    by_id = {c.case_id: c for c in spec.cases}
    sampling = SamplingConfig(
        plan.training.patch_size, cfg.sampling.foreground_fraction,
        resolve_class_weights(cfg.sampling.class_weights, plan.dataset.labels, "sampling.class_weights", plan),
    )
    augment = None
    if cfg.augmentation.enabled:
        tgt = plan.preprocessing.target_spacing
        in_plane = cfg.augmentation.in_plane_rotation_only
        if in_plane is None:
            in_plane = max(tgt) > 3 * min(tgt)
        off = {p: 0.0 for group, ps in AUGMENT_GROUPS.items() if not getattr(cfg.augmentation, group) for p in ps}
        augment = AugmentConfig(in_plane_only=in_plane, **off)
    data = PatchDataset([cached[i] for i in train_ids], sampling, augment, seed=seed * 1000 + d.rank,
                        length=cfg.iterations_per_epoch * plan.training.batch_size)
    run = RunData(spec, plan, train_ids, val_ids, [cached[i] for i in train_ids], [cached[i] for i in val_ids],
                  [by_id[i] for i in val_ids])
    return run, data


def loader_for(data: PatchDataset, plan: Plan, cfg: TrainConfig):
    return make_loader(data, batch_size=plan.training.batch_size, num_workers=cfg.num_workers)
