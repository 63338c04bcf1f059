"""Instance-model configuration: a YAML with ``task: instance`` parsed into validated dataclasses.

Errors name the key path and the allowed values (:func:`medseg.config.from_dict`). See
``configs/maskrcnn_lesions.yaml`` for a commented preset. Units: spacings in mm, CT windows as
(level, width) in HU, overlaps as fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medseg.config import ConfigError, from_dict, load_yaml, to_dict


@dataclass
class InstanceDataConfig:
    """How slices and their targets are made from a dataset.

    Attributes:
        classes: dataset label names whose per-slice connected components are the instances.
        spacing_mm: in-plane target spacing (mm) of the canonical axial slices (x = R, y = A).
        channels: ``windows``: three CT windows of the slice; ``neighbours`` (2.5D): slices
            k - d, k, k + d (d = ``neighbour_offset``) through the first window (or percentiles).
        intensity: ``ct``: windows in HU; ``percentile``: 0.5-99.5 percentile of the volume
            mapped to [0, 1] (MR); only with ``channels: neighbours``.
        windows: (level, width) HU; three for ``windows``, the first is used for ``neighbours``.
        empty_slice_rate: fraction of the slices without instances used per epoch (0-1).
        connectivity: 4 or 8 (pixels) for the per-slice components.
        min_instance_pixels: smaller components are not instances (model-space pixels).
        flip: random left-right / anterior-posterior flips of training slices.
    """

    classes: list[str] = field(default_factory=lambda: ["tumour"])
    spacing_mm: tuple[float, float] = (0.8, 0.8)
    channels: Literal["windows", "neighbours"] = "windows"
    intensity: Literal["ct", "percentile"] = "ct"
    windows: list[tuple[float, float]] = field(default_factory=lambda: [(40.0, 400.0), (60.0, 150.0), (100.0, 1000.0)])
    neighbour_offset: int = 1
    empty_slice_rate: float = 0.1
    connectivity: Literal[4, 8] = 8
    min_instance_pixels: int = 3
    flip: bool = True

    def validate(self, where: str) -> None:
        if not self.classes:
            raise ConfigError(f"{where}.classes: name at least one class of the dataset (e.g. [tumour])")
        if any(s <= 0 for s in self.spacing_mm):
            raise ConfigError(f"{where}.spacing_mm: must be > 0 mm, got {list(self.spacing_mm)}")
        if self.channels == "windows" and len(self.windows) != 3:
            raise ConfigError(f"{where}.windows: channels 'windows' needs exactly 3 (level, width) windows, "
                              f"got {len(self.windows)}")
        if self.channels == "neighbours" and self.intensity == "ct" and not self.windows:
            raise ConfigError(f"{where}.windows: channels 'neighbours' with intensity 'ct' needs one window")
        if self.channels == "windows" and self.intensity == "percentile":
            raise ConfigError(f"{where}.intensity: 'percentile' goes with channels 'neighbours' "
                              "(windows are in HU); choose channels: neighbours or intensity: ct")
        if any(w <= 0 for _, w in self.windows):
            raise ConfigError(f"{where}.windows: widths must be > 0 HU")
        if self.neighbour_offset < 1:
            raise ConfigError(f"{where}.neighbour_offset: must be >= 1 slice")
        if not 0 <= self.empty_slice_rate <= 1:
            raise ConfigError(f"{where}.empty_slice_rate: must be in [0, 1], got {self.empty_slice_rate}")
        if self.min_instance_pixels < 1:
            raise ConfigError(f"{where}.min_instance_pixels: must be >= 1")


@dataclass
class InstanceModelConfig:
    """torchvision Mask R-CNN. Nothing is ever downloaded: ``pretrained_weights`` is a local file
    (a torchvision COCO state dict, or ``best.pt`` / ``last.pt`` of a previous medseg run)."""

    name: Literal["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"] = "maskrcnn_resnet50_fpn"
    pretrained_weights: str | None = None
    trainable_backbone_layers: int = 5
    anchor_sizes: tuple[int, int, int, int, int] = (8, 16, 32, 64, 128)  # px, one per FPN level
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 500
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_test: int = 300
    box_batch_size_per_image: int = 256
    detections_per_image: int = 50

    def validate(self, where: str) -> None:
        if not 0 <= self.trainable_backbone_layers <= 5:
            raise ConfigError(f"{where}.trainable_backbone_layers: must be 0-5, got {self.trainable_backbone_layers}")
        if any(a <= 0 for a in self.anchor_sizes):
            raise ConfigError(f"{where}.anchor_sizes: must be > 0 pixels")


@dataclass
class InstanceOptimizerConfig:
    name: Literal["sgd"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 10.0  # max gradient norm (0: off)

    def validate(self, where: str) -> None:
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")


@dataclass
class InstanceScheduleConfig:
    """Linear warm-up over ``warmup_iterations`` (from ``warmup_factor`` x lr), then per epoch:
    ``cosine`` to 0, ``constant``, or ``step`` (x ``gamma`` at each epoch in ``milestones``)."""

    name: Literal["cosine", "constant", "step"] = "cosine"
    warmup_iterations: int = 100
    warmup_factor: float = 0.001
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class InstanceInferenceConfig:
    """Prediction and validation settings.

    Attributes:
        score_threshold: detections below it are dropped (0-1).
        mask_threshold: a detection's mask probability that counts as inside (0-1).
        batch_size: slices per forward pass.
        link_overlap: a detection joins the lesion of a detection in an earlier slice when
            their intersection covers at least this fraction of the smaller of the two.
        max_gap: slices a lesion may skip (missed detections) and still be linked.
        min_lesion_voxels: smaller 3D lesions (source-grid voxels) are dropped.
        organ_overlap: with an organ mask, a lesion is kept when this fraction lies inside.
    """

    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    batch_size: int = 8
    link_overlap: float = 0.3
    max_gap: int = 1
    min_lesion_voxels: int = 1
    organ_overlap: float = 0.5

    def validate(self, where: str) -> None:
        for name in ("score_threshold", "mask_threshold", "link_overlap", "organ_overlap"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{where}.{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.batch_size < 1 or self.max_gap < 0 or self.min_lesion_voxels < 1:
            raise ConfigError(f"{where}: batch_size and min_lesion_voxels must be >= 1, max_gap >= 0")


@dataclass
class InstanceConfig:
    task: Literal["instance"] = "instance"
    description: str = ""
    data: InstanceDataConfig = field(default_factory=InstanceDataConfig)
    model: InstanceModelConfig = field(default_factory=InstanceModelConfig)
    optimizer: InstanceOptimizerConfig = field(default_factory=InstanceOptimizerConfig)
    schedule: InstanceScheduleConfig = field(default_factory=InstanceScheduleConfig)
    inference: InstanceInferenceConfig = field(default_factory=InstanceInferenceConfig)
    epochs: int = 20
    iterations_per_epoch: int = 100
    batch_size: int = 4  # slices per training step
    val_every: int = 1
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"

    def validate(self, where: str) -> None:
        for name in ("epochs", "iterations_per_epoch", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")


def is_instance_config(path: str | Path | None) -> bool:
    """True when the YAML at ``path`` says ``task: instance`` (unreadable files: False; the
    trainer that reads them reports the problem)."""
    if path is None:
        return False
    try:
        data = load_yaml(path)
    except ConfigError:
        return False
    return isinstance(data, dict) and data.get("task") == "instance"


def instance_config_from_dict(data: Any, where: str = "config") -> InstanceConfig:
    return from_dict(InstanceConfig, data or {}, where=where)


def load_instance_config(path: str | Path | None) -> InstanceConfig:
    """Read an instance config YAML (None: defaults). Errors name the key and allowed values."""
    if path is None:
        return InstanceConfig()
    return instance_config_from_dict(load_yaml(path), where=Path(path).name)


def config_dict(cfg: InstanceConfig) -> dict:
    return to_dict(cfg)
