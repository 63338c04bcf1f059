"""The plan file (``plan.yaml``): its schema as validated dataclasses, and reading/writing it.

A plan holds every preprocessing and training-shape decision for a dataset: target spacing and
intensity normalisation (what :class:`medseg.preprocess.Preprocessor` applies), the network shape,
patch and batch size, and the class roles. :mod:`medseg.data.plan` derives one from a dataset
fingerprint (``make_plan``, ``plan_dataset``); training, prediction and preprocessing only read it,
through the types here (so they need nothing from :mod:`medseg.data`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from medseg.config import ConfigError, from_dict, load_yaml, to_dict

__all__ = ["PLAN_VERSION", "Plan", "DatasetInfo", "Preprocessing", "Normalization", "Network", "Training",
           "ClassPolicy", "load_plan", "save_plan"]

PLAN_VERSION = 1


@dataclass
class Normalization:
    """Intensity normalisation of one input channel.

    scheme ``ct``: clip to ``clip`` (HU) then ``(x - mean) / std``; ``zscore``: per image
    ``(x - mean(x)) / std(x)``; ``none``: unchanged.
    """

    channel: int
    scheme: Literal["ct", "zscore", "none"]
    clip: tuple[float, float] | None = None
    mean: float | None = None
    std: float | None = None

    def validate(self, where: str) -> None:
        if self.scheme == "ct":
            if self.clip is None or self.mean is None or self.std is None:
                raise ConfigError(f"{where}: scheme 'ct' needs clip, mean and std")
            if not self.clip[0] < self.clip[1] or self.std <= 0:
                raise ConfigError(f"{where}: need clip[0] < clip[1] and std > 0")


@dataclass
class Preprocessing:
    target_spacing: tuple[float, float, float]
    normalization: list[Normalization]
    orientation: Literal["RAS"] = "RAS"

    def validate(self, where: str) -> None:
        if min(self.target_spacing) <= 0:
            raise ConfigError(f"{where}.target_spacing: spacings must be > 0 mm, got {list(self.target_spacing)}")


@dataclass
class Network:
    """MONAI DynUNet shape: one kernel and stride per stage (first stride is 1)."""

    name: Literal["DynUNet", "UNet"]
    kernels: list[tuple[int, int, int]]
    strides: list[tuple[int, int, int]]
    filters: list[int]

    def validate(self, where: str) -> None:
        if not (len(self.kernels) == len(self.strides) == len(self.filters)) or not self.kernels:
            raise ConfigError(f"{where}: kernels, strides and filters need one entry per stage (same length)")

    @property
    def divisor(self) -> tuple[int, int, int]:
        """Patch sizes must be multiples of this per axis (product of strides)."""
        return tuple(int(np.prod([s[a] for s in self.strides])) for a in range(3))


@dataclass
class Training:
    patch_size: tuple[int, int, int]
    batch_size: int
    foreground_fraction: float = 0.33

    def validate(self, where: str) -> None:
        if min(self.patch_size) < 1 or self.batch_size < 1:
            raise ConfigError(f"{where}: patch_size entries and batch_size must be >= 1")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise ConfigError(f"{where}.foreground_fraction: must be between 0 and 1, got {self.foreground_fraction}")


@dataclass
class DatasetInfo:
    name: str
    labels: dict[str, int]
    channels: dict[int, str]


@dataclass
class ClassPolicy:
    """Class roles derived from the training labels (:mod:`medseg.data.classes`); edit to override.

    ``small_structures`` get ``small_structure_weight`` as patch-sampling and cross-entropy
    weight when a config says ``class_weights: auto``; ``keep_largest`` is what
    ``postprocess.keep_largest: auto`` keeps one component of. ``reasons`` says why (informative).
    """

    small_structures: list[str] = field(default_factory=list)
    small_structure_weight: float = 3.0
    keep_largest: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        if self.small_structure_weight < 0:
            raise ConfigError(f"{where}.small_structure_weight: must be >= 0, got {self.small_structure_weight}")

    def weights(self) -> dict[str, float]:
        """``{class name: weight}`` for ``class_weights: auto``."""
        return {n: float(self.small_structure_weight) for n in self.small_structures}


@dataclass
class Plan:
    """The whole plan file (``medseg_plan: 1``). ``fingerprint`` is informative only.
    ``device``: what the shapes were sized for (``gpu``: a memory budget; ``cpu``: compute)."""

    medseg_plan: int
    dataset: DatasetInfo
    preprocessing: Preprocessing
    network: Network
    training: Training
    gpu_memory_gb: float
    estimated_memory_gb: float
    device: Literal["gpu", "cpu"] = "gpu"
    classes: ClassPolicy = field(default_factory=ClassPolicy)
    fingerprint: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def validate(self, where: str) -> None:
        labels = set(self.dataset.labels)
        for key in ("small_structures", "keep_largest"):
            bad = [n for n in getattr(self.classes, key) if n not in labels]
            if bad:
                raise ConfigError(f"{where}.classes.{key}: {bad[0]!r} is not a label of this plan's dataset; "
                                  f"use one of {', '.join(n for n in self.dataset.labels if n != 'background')}")
        if self.medseg_plan != PLAN_VERSION:
            raise ConfigError(f"{where}.medseg_plan: version {self.medseg_plan} is not supported (expected {PLAN_VERSION})")
        div = self.network.divisor
        bad = [a for a in range(3) if self.training.patch_size[a] % div[a]]
        if bad:
            raise ConfigError(
                f"{where}.training.patch_size: {list(self.training.patch_size)} must be a multiple of "
                f"{list(div)} per axis (the network's total downsampling)"
            )
        if len(self.preprocessing.normalization) != len(self.dataset.channels):
            raise ConfigError(f"{where}.preprocessing.normalization: need one entry per channel ({len(self.dataset.channels)})")

    def preprocessing_key(self) -> dict:
        """What the preprocessing cache depends on (see :mod:`medseg.data.cache`)."""
        return {"version": PLAN_VERSION, "preprocessing": to_dict(self.preprocessing)}


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write the plan as commented YAML (atomically)."""
    from medseg.io.atomic import write_text_atomic

    path = Path(path)
    header = (
        "# medseg plan: preprocessing and training shapes derived from the dataset fingerprint.\n"
        "# Edit freely; `medseg train` validates it. See README: The plan file.\n"
    )
    data = to_dict(plan)
    notes = data.pop("notes")
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    text += yaml.safe_dump({"notes": notes}, default_flow_style=False, width=100)
    return write_text_atomic(path, text)


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; errors name the key and the allowed values."""
    return from_dict(Plan, load_yaml(path), where=Path(path).name)
