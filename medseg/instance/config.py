"""Instance-model configuration: a YAML with ``task: instance`` parsed into validated dataclasses.

Errors name the key path and the allowed values (:func:`medseg.config.from_dict`). See
``configs/maskrcnn_lesions_cpu.yaml`` (CPU) and ``configs/maskrcnn_lesions.yaml`` (GPU) for
commented presets. Units: spacings in mm, CT windows as
(level, width) in HU, overlaps as fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medseg.config import ConfigError, from_dict, load_yaml, to_dict


@dataclass
class InstanceDataConfig:
    """How slices, crops and their targets are made from a dataset.

    Attributes:
        classes: ``auto`` (default): the dataset's lesion-like classes (``small_structures`` of
            :func:`medseg.data.classes.dataset_class_roles`, derived from the training labels);
            or a list of dataset label names whose per-slice connected components are instances.
        spacing_mm: in-plane target spacing (mm per pixel) of the canonical axial slices
            (x = R, y = A); crops, anchors and inference all work at this scale.
        channels: ``windows``: three CT windows of the slice; ``neighbours`` (2.5D): slices
            k - d, k, k + d (d = ``neighbour_offset``) through the first window (or percentiles).
        intensity: ``ct``: windows in HU; ``percentile``: 0.5-99.5 percentile of the volume
            mapped to [0, 1] (MR); only with ``channels: neighbours``.
        windows: (level, width) HU; three for ``windows``, the first is used for ``neighbours``.
            ``auto``: derived from the training data (:func:`medseg.instance.channels.lesion_windows`:
            the HU range of the lesion classes and the tissue around them, at 1x, 2x and 4x its
            width), so a lung-nodule or a bone-lesion dataset gets its own windows; the run
            records the values it used.
        crop_px: training crops are ``crop_px x crop_px`` pixels at ``spacing_mm`` (0: whole
            slices). Slices smaller than a crop are padded with air (every channel 0).
        lesion_crop_fraction: share of crops centred on a lesion (a random per-slice instance,
            centre jittered by up to ``crop_jitter`` x ``crop_px`` per axis); the others are
            negatives, placed as ``negative_crops`` says.
        lesion_sampling: how lesion crops pick their instance: ``slices`` (default): a per-slice
            instance drawn uniformly, so a lesion is seen in proportion to its slice count;
            ``lesions``: a 3D lesion (26-connected) drawn uniformly, then one of its slices, so
            small lesions, the hard ones for lesion-wise F1, are seen as often as large ones.
        negative_crops: ``structures`` (default): centred on a random voxel of one of the
            case's other labels (organs) or of its labelled box, drawn uniformly, so every
            structure the model could mistake for a lesion is seen, however small; ``box``: at
            random inside the labelled region (organ box) of a random slice.
        crop_jitter: fraction of ``crop_px`` (0-0.5).
        empty_slice_rate: with ``crop_px: 0`` only: fraction of the slices without instances used
            per epoch (0-1).
        connectivity: 4 or 8 (pixels) for the per-slice components.
        min_instance_pixels: smaller components are not instances (model-space pixels).
        flip: random left-right / anterior-posterior flips of training crops.
        rotate90: random x <-> y transposes of training crops; with ``flip``, every one of the
            8 in-plane rotations / reflections by 90 degrees is drawn equally often.
        intensity_jitter: random offset of the input channels, +- this (fraction of the [0, 1]
            range), per crop.
        hard_negative_fraction: share of the negative crops centred (with ``crop_jitter``) on
            the model's own false positives, mined on training slices after each validation
            (:mod:`medseg.instance.mining`); 0 (default) mines nothing.
        mining_slices: training slices the model runs on per mining round.
        mining_score: detections scoring at least this are mined (when less than half of the
            mask lies on a lesion class).
    """

    classes: list[str] | Literal["auto"] = "auto"
    spacing_mm: tuple[float, float] = (0.8, 0.8)
    channels: Literal["windows", "neighbours"] = "windows"
    intensity: Literal["ct", "percentile"] = "ct"
    windows: list[tuple[float, float]] | Literal["auto"] = field(
        default_factory=lambda: [(60.0, 160.0), (100.0, 300.0), (40.0, 400.0)])
    neighbour_offset: int = 1
    crop_px: int = 160
    lesion_crop_fraction: float = 0.7
    crop_jitter: float = 0.3
    lesion_sampling: Literal["slices", "lesions"] = "slices"
    negative_crops: Literal["structures", "box"] = "structures"
    empty_slice_rate: float = 0.1
    connectivity: Literal[4, 8] = 8
    min_instance_pixels: int = 3
    flip: bool = True
    rotate90: bool = False
    intensity_jitter: float = 0.03
    hard_negative_fraction: float = 0.0
    mining_slices: int = 96
    mining_score: float = 0.5

    def validate(self, where: str) -> None:
        if self.classes != "auto" and not self.classes:
            raise ConfigError(f"{where}.classes: name at least one class of the dataset, or use auto")
        if any(s <= 0 for s in self.spacing_mm):
            raise ConfigError(f"{where}.spacing_mm: must be > 0 mm, got {list(self.spacing_mm)}")
        if self.windows == "auto":
            pass
        elif self.channels == "windows" and len(self.windows) != 3:
            raise ConfigError(f"{where}.windows: channels 'windows' needs exactly 3 (level, width) windows, "
                              f"got {len(self.windows)}")
        if self.channels == "neighbours" and self.intensity == "ct" and not self.windows:
            raise ConfigError(f"{where}.windows: channels 'neighbours' with intensity 'ct' needs one window")
        if self.channels == "windows" and self.intensity == "percentile":
            raise ConfigError(f"{where}.intensity: 'percentile' goes with channels 'neighbours' "
                              "(windows are in HU); choose channels: neighbours or intensity: ct")
        if self.windows != "auto" and any(w <= 0 for _, w in self.windows):
            raise ConfigError(f"{where}.windows: widths must be > 0 HU")
        if self.neighbour_offset < 1:
            raise ConfigError(f"{where}.neighbour_offset: must be >= 1 slice")
        if self.crop_px != 0 and self.crop_px < 32:
            raise ConfigError(f"{where}.crop_px: must be 0 (whole slices) or >= 32 pixels, got {self.crop_px}")
        for name, hi in (("lesion_crop_fraction", 1.0), ("crop_jitter", 0.5), ("empty_slice_rate", 1.0),
                         ("intensity_jitter", 0.5), ("hard_negative_fraction", 1.0), ("mining_score", 1.0)):
            if not 0 <= getattr(self, name) <= hi:
                raise ConfigError(f"{where}.{name}: must be in [0, {hi:g}], got {getattr(self, name)}")
        if self.min_instance_pixels < 1:
            raise ConfigError(f"{where}.min_instance_pixels: must be >= 1")
        if self.mining_slices < 1:
            raise ConfigError(f"{where}.mining_slices: must be >= 1 slice, got {self.mining_slices}")


#: ResNet stage -> output stride (pixels per feature cell).
STAGE_STRIDE = {1: 4, 2: 8, 3: 16, 4: 32}


@dataclass
class InstanceModelConfig:
    """torchvision Mask R-CNN. Nothing is ever downloaded.

    ``name: maskrcnn`` (default) builds torchvision's ``MaskRCNN`` from the parts below, sized
    for a CPU; ``maskrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn_v2`` are torchvision's
    standard models (ResNet-50, 256-channel FPN), the ones a local COCO weights file fits.

    Attributes:
        backbone: ``resnet18`` | ``resnet34`` | ``resnet50`` (``name: maskrcnn`` only).
        norm: ``group`` (GroupNorm, 32 groups: works with small batches from random weights),
            ``batch`` (trainable BatchNorm), ``frozen`` (FrozenBatchNorm2d, for pretrained
            weights). The torchvision models use ``frozen`` with pretrained weights, else ``batch``.
        fpn_channels: FPN width (``name: maskrcnn``).
        returned_layers: ResNet stages 1-4 fed to the FPN (strides 4, 8, 16, 32 with
            ``stem_stride: 4``); one more level (max-pooled from the last) is added.
        stem_stride: 4 (torchvision: the stem's stride-2 conv and its max-pool) or 2 (no
            max-pool: every stage at half the stride, so a 5-pixel lesion spans 2-3 feature cells
            of stage 1 instead of about one; about 3x the backbone compute). ``name: maskrcnn`` only.
        anchor_sizes_mm: anchor side (mm) per FPN level, smallest level first: one per returned
            layer plus one for the pooled level. Converted to pixels with ``data.spacing_mm``.
        aspect_ratios: anchor height / width ratios, the same at every level.
        box_head_size: width of the two-layer box head (torchvision: 1024).
        mask_head_layers: 3 x 3 conv layers of the mask head (torchvision: 4), ``fpn_channels`` wide.
        roi_sampling_ratio: bilinear samples per bin side of the box head's 7 x 7 RoIAlign
            (torchvision: 2). 1 makes RoIAlign (whose backward is single-threaded on a CPU) about
            4x cheaper; bins of the small RoIs lesions give are under a feature cell anyway.
        box_context_mm: 0 (torchvision: the box head sees the proposal only) or a side in mm:
            the box head also pools a context box around each proposal (twice its size, and at
            least this side), so that it can tell a lesion from look-alike normal tissue by
            what surrounds it (a hypodense lesion in the liver vs the renal medulla). About
            doubles the box head's first layer. ``name: maskrcnn`` only.
        pretrained_weights: a LOCAL file: a torchvision Mask R-CNN state dict (e.g. the COCO
            file of ``maskrcnn_resnet50_fpn``) or ``best.pt`` / ``last.pt`` of a medseg run.
        trainable_backbone_layers: 0-5 backbone stages trained (5: all).
        rpn_positive_fraction, box_positive_fraction: share of positives in the sampled
            anchors / proposals (torchvision: 0.5 / 0.25).
        box_hard_negative_fraction: share of the box head's sampled negatives taken as the
            proposals of highest RPN objectness (hard negatives: the lesion-like normal tissue a
            confident false positive comes from); the rest are drawn at random, as torchvision
            draws all of them (0, the default). ``name: maskrcnn`` and the torchvision models alike.
    """

    name: Literal["maskrcnn", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"] = "maskrcnn"
    backbone: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    norm: Literal["group", "batch", "frozen"] = "group"
    fpn_channels: int = 128
    returned_layers: list[int] = field(default_factory=lambda: [1, 2, 3])
    stem_stride: Literal[2, 4] = 4
    anchor_sizes_mm: list[float] = field(default_factory=lambda: [4.0, 8.0, 16.0, 32.0])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    box_head_size: int = 256
    mask_head_layers: int = 2
    roi_sampling_ratio: int = 2
    box_context_mm: float = 0.0
    pretrained_weights: str | None = None
    trainable_backbone_layers: int = 5
    rpn_batch_size_per_image: int = 128
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n_train: int = 600
    rpn_post_nms_top_n_train: int = 200
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 100
    box_batch_size_per_image: int = 64
    box_positive_fraction: float = 0.5
    box_hard_negative_fraction: float = 0.0
    detections_per_image: int = 30

    def validate(self, where: str) -> None:
        if not 0 <= self.trainable_backbone_layers <= 5:
            raise ConfigError(f"{where}.trainable_backbone_layers: must be 0-5, got {self.trainable_backbone_layers}")
        if not self.returned_layers or sorted(set(self.returned_layers)) != list(self.returned_layers) \
                or not set(self.returned_layers) <= {1, 2, 3, 4}:
            raise ConfigError(f"{where}.returned_layers: increasing ResNet stages from 1-4, got {self.returned_layers}")
        if self.stem_stride not in (2, 4) or (self.stem_stride != 4 and self.name != "maskrcnn"):
            raise ConfigError(f"{where}.stem_stride: 4, or 2 with name: maskrcnn; got {self.stem_stride}")
        n_levels = (len(self.returned_layers) if self.name == "maskrcnn" else 4) + 1
        if len(self.anchor_sizes_mm) != n_levels:
            raise ConfigError(f"{where}.anchor_sizes_mm: give one size per FPN level ({n_levels}: the returned "
                              f"layers plus the pooled level), got {len(self.anchor_sizes_mm)}")
        if any(a <= 0 for a in self.anchor_sizes_mm) or any(r <= 0 for r in self.aspect_ratios):
            raise ConfigError(f"{where}.anchor_sizes_mm and aspect_ratios: must be > 0")
        if self.fpn_channels < 8 or self.fpn_channels % 8:
            raise ConfigError(f"{where}.fpn_channels: a multiple of 8 (GroupNorm groups), got {self.fpn_channels}")
        for name in ("rpn_positive_fraction", "box_positive_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{where}.{name}: must be in (0, 1], got {getattr(self, name)}")
        if not 0 <= self.box_hard_negative_fraction <= 1:
            raise ConfigError(f"{where}.box_hard_negative_fraction: must be in [0, 1], got "
                              f"{self.box_hard_negative_fraction}")
        if self.mask_head_layers < 1 or self.box_head_size < 8:
            raise ConfigError(f"{where}: mask_head_layers must be >= 1 and box_head_size >= 8")
        if self.box_context_mm < 0 or (self.box_context_mm and self.name != "maskrcnn"):
            raise ConfigError(f"{where}.box_context_mm: 0 (off) or a side in mm (> 0) with name: maskrcnn; got "
                              f"{self.box_context_mm}")
        if self.roi_sampling_ratio not in (1, 2, 3, 4):
            raise ConfigError(f"{where}.roi_sampling_ratio: 1-4 samples per bin side, got {self.roi_sampling_ratio}")


@dataclass
class InstanceOptimizerConfig:
    """``adamw`` (default: robust from random weights) or ``sgd`` (momentum); ``grad_clip``
    is the max global gradient norm (0: off); ``ema_decay`` > 0 keeps an exponential moving
    average of the weights (:mod:`medseg.train.ema`), which validation, ``best.pt`` and
    prediction use (0: off, the weights of the last step)."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    ema_decay: float = 0.0

    def validate(self, where: str) -> None:
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"{where}.ema_decay: must be in [0, 1) (0: off; e.g. 0.995), got {self.ema_decay}")


@dataclass
class InstanceScheduleConfig:
    """Linear warm-up over ``warmup_iterations`` (from ``warmup_factor`` x lr), then per epoch:
    ``cosine`` to ``min_lr_factor`` x lr, ``constant``, or ``step`` (x ``gamma`` at each epoch
    in ``milestones``)."""

    name: Literal["cosine", "constant", "step"] = "cosine"
    warmup_iterations: int = 30
    warmup_factor: float = 0.1
    min_lr_factor: float = 0.05
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class InstanceInferenceConfig:
    """Prediction and validation settings.

    Attributes:
        score_threshold: ``auto`` (default): the threshold that maximised validation lesion F1,
            stored by the training run (``RUN/best.pt``, ``RUN/threshold.json``); a number
            (0-1) overrides it. A 3D lesion is kept when its best slice detection scores at least
            this.
        link_score_threshold: detections scoring at least this (when lower than
            ``score_threshold``) are linked into lesions, so a lesion keeps its fainter first and
            last slices (hysteresis, :func:`medseg.instance.linking.link_lesions`); ``null``
            (default): ``score_threshold``, i.e. every detection is thresholded on its own.
        val_score_threshold: validation keeps detections above this for AP50 (low, so that AP
            sees the whole precision-recall curve) and sweeps F1 over ``val_thresholds``.
        val_thresholds: score thresholds tried for the validation lesion F1.
        mask_threshold: a detection's mask probability that counts as inside (0-1), or
            ``auto``: the one of ``val_mask_thresholds`` that, with the chosen score threshold,
            maximised validation lesion F1, stored by the run beside the score threshold (0.5
            for a run that never validated). A predicted lesion counts as found only when half
            of it lies in the reference lesion, so masks that spill past a small lesion's edge
            make false positives; the validation choice corrects that bias.
        val_mask_thresholds: the mask thresholds tried when ``mask_threshold`` is ``auto``.
        batch_size: slices per forward pass.
        link_overlap: a detection joins the lesion of a detection in an earlier slice when
            their intersection covers at least this fraction of the smaller of the two.
        max_gap: slices a lesion may skip (missed detections) and still be linked.
        min_lesion_voxels: smaller 3D lesions (source-grid voxels) are dropped.
        organ_overlap: with an organ mask, a lesion is kept when this fraction lies inside.
        tta: ``none`` (default) or ``flips``: every slice also runs flipped along x and along y
            and the three passes are merged by consensus (:mod:`medseg.instance.tta`; 3x the
            network time). The stored thresholds are chosen on merged scores (see ``val_tta``).
        val_tta: with ``tta: flips``, when validation runs the flipped passes too: ``final``
            (default) validates each epoch on the plain pass (that only picks the best epoch)
            and the best weights once more with TTA at the end of training, which chooses the
            thresholds stored for prediction (one TTA validation in all); ``every``: every
            validation with TTA (about 2.5x the validation time).
    """

    score_threshold: float | Literal["auto"] = "auto"
    link_score_threshold: float | None = None
    val_score_threshold: float = 0.05
    val_thresholds: list[float] = field(default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 10)])
    mask_threshold: float | Literal["auto"] = 0.5
    val_mask_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])
    batch_size: int = 8
    link_overlap: float = 0.3
    max_gap: int = 1
    min_lesion_voxels: int = 1
    organ_overlap: float = 0.5
    tta: Literal["none", "flips"] = "none"
    val_tta: Literal["final", "every"] = "final"

    @property
    def final_tta(self) -> bool:
        """Whether the epochs validate on the plain pass and only the final validation runs TTA."""
        return self.tta != "none" and self.val_tta == "final"

    def validate(self, where: str) -> None:
        if self.score_threshold != "auto" and not 0 <= self.score_threshold <= 1:
            raise ConfigError(f"{where}.score_threshold: auto or a number in [0, 1], got {self.score_threshold}")
        if self.link_score_threshold is not None and not 0 <= self.link_score_threshold <= 1:
            raise ConfigError(f"{where}.link_score_threshold: null or a number in [0, 1], got "
                              f"{self.link_score_threshold}")
        if not self.val_thresholds or not all(0 <= t <= 1 for t in self.val_thresholds):
            raise ConfigError(f"{where}.val_thresholds: one or more numbers in [0, 1]")
        if self.mask_threshold != "auto" and not 0 < self.mask_threshold < 1:
            raise ConfigError(f"{where}.mask_threshold: auto or a number in (0, 1), got {self.mask_threshold}")
        if not self.val_mask_thresholds or not all(0 < t < 1 for t in self.val_mask_thresholds):
            raise ConfigError(f"{where}.val_mask_thresholds: one or more numbers in (0, 1)")
        for name in ("val_score_threshold", "link_overlap", "organ_overlap"):
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
    epochs: int = 12
    iterations_per_epoch: int = 50
    batch_size: int = 4  # crops per training step
    val_every: int = 1
    val_max_cases: int = 0  # validate on the fold's first N validation cases (0: all of them)
    #: auto: bf16 autocast on a GPU with bf16 (else fp16), fp32 on a CPU. bf16 on a CPU with native
    #: bf16 (AVX-512 BF16 / AMX) trains in bf16 (steps ~1.6x faster) but validates and predicts in
    #: fp32; on other CPUs it means fp32 (emulated bf16 is ~10x slower).
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"

    def validate(self, where: str) -> None:
        if self.val_max_cases < 0:
            raise ConfigError(f"{where}.val_max_cases: must be >= 0 (0: every validation case), got "
                              f"{self.val_max_cases}")
        if self.model.name != "maskrcnn" and len(self.model.anchor_sizes_mm) != 5:
            raise ConfigError(f"{where}.model.anchor_sizes_mm: {self.model.name} has 5 FPN levels; give 5 sizes")
        for name in ("epochs", "iterations_per_epoch", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(self, name)}")


def is_instance_config(path) -> bool:
    """True when the YAML at ``path`` says ``task: instance`` (unreadable files: False; the
    trainer that reads them reports the problem)."""
    if path is None:
        return False
    if isinstance(path, InstanceConfig):
        return True
    if isinstance(path, dict):
        return path.get("task") == "instance"
    if not isinstance(path, (str, Path)):
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
    if isinstance(path, dict):
        return instance_config_from_dict(path)
    return instance_config_from_dict(load_yaml(path), where=Path(path).name)


def config_dict(cfg: InstanceConfig) -> dict:
    return to_dict(cfg)
