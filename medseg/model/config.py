"""The U-Net run configuration (``config.yaml``): YAML presets in ``configs/`` parsed into
validated dataclasses. Training follows all of it; prediction reads the network, sliding-window,
cascade and postprocessing parts from the run's copy, so it lives below both.

Every key is optional except where noted; what the config leaves out comes from the dataset
plan (patch size, batch size, network shape) or from the defaults below (nnU-Net-like).
Class weights may name classes by label name (``tumour: 3``) or value (``4: 3``), or be
``auto``: the plan's small structures (lesion-like classes found in the training labels, see
:mod:`medseg.data.classes`) get ``plan.classes.small_structure_weight``. Likewise
``postprocess.keep_largest: auto`` takes the plan's single-component classes. Shipped presets
use ``auto`` and name no dataset label, so they fit any dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medseg.config import ConfigError, from_dict, load_yaml, to_dict


@dataclass
class ModelConfig:
    name: Literal["DynUNet", "UNet"] = "DynUNet"
    filters: list[int] | None = None  # None: the plan's filters
    # nnU-Net's deep supervision (DynUNet only): extra 1x1x1 heads on the decoder stages below
    # full resolution add their Dice + CE to the loss (weights 1, 1/2, 1/4, ...); prediction
    # uses the full-resolution head alone
    deep_supervision: bool = False

    def validate(self, where: str) -> None:
        if self.deep_supervision and self.name != "DynUNet":
            raise ConfigError(f"{where}.deep_supervision: only DynUNet has deep supervision heads; "
                              f"set model.name: DynUNet or deep_supervision: false")


@dataclass
class LossConfig:
    name: Literal["dice_ce"] = "dice_ce"
    class_weights: dict[str, float] | Literal["auto"] = field(default_factory=dict)  # cross-entropy weights by class
    include_background_dice: bool = False


@dataclass
class OptimizerConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5

    def validate(self, where: str) -> None:
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")


@dataclass
class ScheduleConfig:
    name: Literal["poly", "cosine", "constant"] = "poly"
    warmup_epochs: int = 0
    poly_exponent: float = 0.9


@dataclass
class SamplingConfigYaml:
    foreground_fraction: float = 0.33
    class_weights: dict[str, float] | Literal["auto"] = field(default_factory=dict)  # which foreground class to force


@dataclass
class AugmentationConfig:
    """On-the-fly augmentation (nnU-Net's set, :mod:`medseg.data.augment`). ``mirror``: random
    flips along each axis; turn it off when a class is told apart by its side (liver right,
    spleen left) and training is short -- medseg reorients every case to RAS, so sides are
    consistent. ``spatial``: rotation and scaling; ``intensity``: brightness, contrast, gamma
    and noise."""

    enabled: bool = True
    in_plane_rotation_only: bool | None = None  # None: in-plane only when the patch is anisotropic
    mirror: bool = True
    spatial: bool = True
    intensity: bool = True


@dataclass
class SlidingWindowConfig:
    overlap: float = 0.5
    batch_size: int = 2

    def validate(self, where: str) -> None:
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"{where}.overlap: must be in [0, 1), got {self.overlap}")


@dataclass
class CascadeConfig:
    """Two-stage cascade: the stage-2 model trains on crops around ``organ_labels`` (from the
    reference labels) with ``margin_mm``; at prediction time the organ model's output crops."""

    organ_labels: list[str]
    margin_mm: float = 20.0
    organ_model: str | None = None  # stage-1 run directory (absolute, or relative to this run's folder)


@dataclass
class PostprocessConfig:
    """Applied by ``medseg predict`` on the source grid, per class name (or value)."""

    keep_largest: list[str] | Literal["auto"] = field(default_factory=list)  # keep only the largest component
    min_component_ml: dict[str, float] = field(default_factory=dict)  # drop smaller components

    def validate(self, where: str) -> None:
        for k, v in self.min_component_ml.items():
            if v < 0:
                raise ConfigError(f"{where}.min_component_ml.{k}: must be >= 0 ml, got {v}")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sampling: SamplingConfigYaml = field(default_factory=SamplingConfigYaml)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    sliding_window: SlidingWindowConfig = field(default_factory=SlidingWindowConfig)
    cascade: CascadeConfig | None = None
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    epochs: int = 100
    iterations_per_epoch: int = 250
    val_every: int = 5
    batch_size: int | None = None  # None: from the plan
    patch_size: tuple[int, int, int] | None = None  # None: from the plan
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    compile: bool = False
    channels_last: bool = False
    num_workers: int = 2
    description: str = ""

    def validate(self, where: str) -> None:
        for name in ("epochs", "iterations_per_epoch", "val_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"{where}.num_workers: must be >= 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size: must be >= 1 (or left out: the plan's), got {self.batch_size}")


def load_config(path: "str | Path | dict | None") -> TrainConfig:
    """Read a config YAML (None: all defaults; a dict: its parsed contents). Errors name the key
    and the allowed values."""
    if path is None:
        return TrainConfig()
    if isinstance(path, dict):
        return from_dict(TrainConfig, path)
    data = load_yaml(path) or {}
    return from_dict(TrainConfig, data, where=Path(path).name)


def resolve_class_weights(weights: "dict[str, float] | str", labels: dict[str, int], where: str,
                          plan=None) -> dict[int, float]:
    """Map ``{name or value: weight}`` to ``{label value: weight}`` using the dataset labels.
    ``"auto"`` takes the plan's small-structure weights (:class:`medseg.plans.ClassPolicy`)."""
    if weights == "auto":
        weights = plan.classes.weights() if plan is not None else {}
    out: dict[int, float] = {}
    values = set(labels.values())
    for key, w in weights.items():
        k = str(key)
        if k in labels:
            out[labels[k]] = float(w)
        elif k.lstrip("-").isdigit() and int(k) in values:
            out[int(k)] = float(w)
        else:
            raise ConfigError(f"{where}: class {key!r} is not a label of this dataset; use one of {', '.join(labels)}")
        if w < 0:
            raise ConfigError(f"{where}.{key}: weights must be >= 0")
    return out


def resolve_keep_largest(keep: "list[str] | str", labels: dict[str, int], plan=None) -> list[int]:
    """Label values for ``postprocess.keep_largest`` (names, values or ``"auto"``: the plan's)."""
    if keep == "auto":
        keep = list(plan.classes.keep_largest) if plan is not None else []
    return list(resolve_class_weights({n: 1 for n in keep}, labels, "postprocess.keep_largest"))


def config_dict(cfg: TrainConfig) -> dict:
    return to_dict(cfg)
