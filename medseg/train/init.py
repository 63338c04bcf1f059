"""Fine-tuning: start a new run from an earlier run's weights (``medseg train --init RUN_DIR``).

The new run takes the earlier run's plan -- spacing, normalisation and network shape -- so the
weights fit and the network sees inputs normalised as it learned them; only the dataset part of
the plan (labels, channels) and the class roles are those of the new dataset. Weights come from
``best.pt`` (else ``last.pt``); optimizer, schedule and epoch counter start afresh.

**Label sets.** Same number of classes: every weight is loaded (a renamed class keeps its
value's weights; the run says so). A different number of classes (for example a review export
that added a painted class): every weight is loaded except the output head(s) -- the layers
whose shape depends on the number of classes -- which start from random values; the run says
which. Channels must match in number.

Instance (Mask R-CNN) runs fine-tune the same way from an earlier instance run: the new
config's data settings apply, the network must be the earlier run's (same backbone and heads),
and the class-dependent predictor layers start afresh when the number of lesion classes changed.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from medseg.errors import InputError
from medseg.model.rundir import CONFIG, PLAN, RUN_INFO, RunDir
from medseg.plans import DatasetInfo, Plan

log = logging.getLogger("medseg")


def init_source(run_dir: str | Path) -> tuple[Path, Path]:
    """``(run_dir, checkpoint)`` of a U-Net run to start from; InputError when it is not one."""
    run = RunDir(run_dir, "--init")
    if run.info_path.is_file() and run.task == "instance":
        raise InputError(f"--init {run.path}: that is an instance (Mask R-CNN) run; a U-Net config fine-tunes from a U-Net run")
    run.require(PLAN, CONFIG)
    return run.path, run.checkpoint()


def init_plan(run_dir: str | Path, labels: dict[str, int], channels: dict[int, str], dataset_name: str) -> Plan:
    """The earlier run's plan with the new dataset's labels and channels (and no class roles,
    which :func:`medseg.train.setup.resolve_plan` derives from the new dataset)."""
    plan = RunDir(run_dir, "--init").plan()
    if len(channels) != len(plan.dataset.channels):
        raise InputError(f"--init {run_dir}: that run takes {len(plan.dataset.channels)} input channel(s) "
                         f"({', '.join(plan.dataset.channels.values())}), this dataset has {len(channels)}; "
                         "fine-tune on a dataset with the same channels")
    info = DatasetInfo(dataset_name, dict(labels), {int(k): v for k, v in channels.items()})
    notes = list(plan.notes) + [f"network, spacing and normalisation from --init {Path(run_dir).resolve()}"]
    return dataclasses.replace(plan, dataset=info, notes=notes)


def _class_dependent(old_shape, new_shape, n_old: int | None, n_new: int) -> bool:
    """Whether a tensor differs only by the number of classes along its first axis (k values per
    class: 1 for logits and masks, 4 for Mask R-CNN's box regression)."""
    if n_old is None or not old_shape or not new_shape or old_shape[1:] != new_shape[1:]:
        return False
    k, rest = divmod(old_shape[0], n_old)
    return rest == 0 and k >= 1 and new_shape[0] == k * n_new


def instance_init_source(run_dir: str | Path) -> tuple[Path, Path, dict[str, int]]:
    """``(run_dir, checkpoint, model classes)`` of an instance run to fine-tune from."""
    run = RunDir(run_dir, "--init")
    run.require(RUN_INFO)
    if run.task != "instance":
        raise InputError(f"--init {run.path}: that is a U-Net run; an instance config fine-tunes from an instance run")
    return run.path, run.checkpoint(), run.classes


def load_init_weights(model: torch.nn.Module, checkpoint: Path, old_labels: dict[str, int] | None,
                      new_labels: dict[str, int]) -> dict:
    """Load ``checkpoint``'s weights into ``model``; returns what was done, for ``run.json``.

    Keys whose shape differs (the class-dependent output heads when the label count changed)
    are left at their fresh values. Any other mismatch means the network is not the earlier
    run's and raises InputError.
    """
    from medseg.model.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)["model"]
    own = model.state_dict()
    n_new = max(new_labels.values()) + 1
    n_old = (max(old_labels.values()) + 1) if old_labels else None
    skipped, missing = [], [k for k in own if k not in state]
    load = {}
    for k, v in state.items():
        if k not in own:
            missing.append(k)
        elif own[k].shape == v.shape:
            load[k] = v
        elif _class_dependent(v.shape, own[k].shape, n_old, n_new):
            skipped.append(k)
        else:
            missing.append(k)
    if missing:
        raise InputError(f"--init {checkpoint.parent}: its weights do not fit this network ({missing[0]} differs); "
                         "the model config (model.name, model.filters, deep_supervision) must be the earlier run's")
    model.load_state_dict(load, strict=False)
    renamed = {}
    if old_labels and n_old == n_new:
        old_names = {v: n for n, v in old_labels.items()}
        renamed = {old_names[v]: n for n, v in new_labels.items() if v in old_names and old_names[v] != n}
    if skipped:
        log.warning(f"--init: the earlier run has {n_old} classes, this dataset {n_new}: the output head "
                    f"({len(skipped)} tensors) starts from random weights, every other layer from {checkpoint}")
    elif renamed:
        log.info("--init: classes renamed since the earlier run (same values): "
                 + ", ".join(f"{a} -> {b}" for a, b in renamed.items()))
    return {"run": str(checkpoint.parent.resolve()), "checkpoint": checkpoint.name, "head_reset": skipped,
            "renamed": renamed}
