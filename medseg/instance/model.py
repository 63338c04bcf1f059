"""The network: torchvision's ``MaskRCNN``, sized by the config (CPU: ResNet-18 + GroupNorm).

Contract (torchvision's): ``model(images, targets)`` in training mode returns a dict of losses;
in eval mode ``model(images)`` returns per image ``{"boxes" (N, 4) float (x1, y1, x2, y2)
pixels, "labels" (N,) int64 model classes, "scores" (N,), "masks" (N, 1, H, W) float
probabilities}``. ``images`` is a list of float ``(3, H, W)`` tensors in [0, 1] (H = model x,
W = model y; see :mod:`medseg.instance.slices`).

Two families, chosen by ``model.name``:

* ``maskrcnn`` (default): ``MaskRCNN`` on ``BackboneWithFPN`` over a torchvision ResNet
  (``backbone``: resnet18/34/50) whose normalisation is ``norm`` (``group``: GroupNorm, the
  choice from random weights with batches of a few crops; ``batch``; ``frozen``), optionally
  without the stem's max-pool (``stem_stride: 2``: features at strides 2-16), an FPN of
  ``fpn_channels`` over ``returned_layers`` plus a max-pooled level, a two-layer box head of
  ``box_head_size`` and a mask head of ``mask_head_layers`` convs. ResNet-18 + 128-channel FPN:
  about 5.7 M parameters (ResNet-50 FPN: 44 M).
* ``maskrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn_v2``: torchvision's standard models, the
  layout of the COCO weights files (frozen batch norm with pretrained v1 weights).

Differences from torchvision's defaults, all deliberate:

* ``weights=None, weights_backbone=None`` always: nothing is downloaded. ``pretrained_weights``
  loads a local file (a torchvision state dict, e.g. the COCO file, or a medseg checkpoint).
  When its class count differs, the box predictor (``FastRCNNPredictor``) and the mask
  predictor (``MaskRCNNPredictor``) are replaced, as in torchvision's fine-tuning tutorial.
* No resizing inside the model: slices are already at the configured in-plane spacing (mm per
  pixel), so the scale is physical. Images are only padded (with air: every channel 0) to a
  multiple of 32.
* Anchors are given in mm (``anchor_sizes_mm``, one per FPN level, for lesions of a few mm to
  a few cm) and converted to pixels with the in-plane spacing.
* Proposal sampling keeps more positives (``rpn_positive_fraction``, ``box_positive_fraction``)
  and fewer proposals: lesions are few and small. Optionally part of the box head's negatives
  are the highest-objectness proposals (``box_hard_negative_fraction``, :class:`HardNegativeSampler`).
"""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from medseg.errors import InputError, short_reason
from medseg.instance.config import InstanceModelConfig

ARCHITECTURES = {"maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn, "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2}
RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
IMAGE_MEAN, IMAGE_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet: the COCO weights expect it
_PREDICTOR_KEYS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.")


class _NoResize(GeneralizedRCNNTransform):
    """torchvision's transform (normalise, pad to a multiple of 32) without the resize. Padding
    is air (raw value 0 in every channel, i.e. ``-mean / std`` after normalisation), and
    batches are at least ``MIN_SIDE`` pixels, so that the stride-32 features stay above 1 x 1."""

    MIN_SIDE = 64

    def resize(self, image, target=None):
        return image, target

    def batch_images(self, images, size_divisible: int = 32):
        h = max(self.MIN_SIDE, max(int(img.shape[1]) for img in images))
        w = max(self.MIN_SIDE, max(int(img.shape[2]) for img in images))
        h, w = -(-h // size_divisible) * size_divisible, -(-w // size_divisible) * size_divisible
        fill = -torch.as_tensor(self.image_mean, dtype=images[0].dtype, device=images[0].device) / \
            torch.as_tensor(self.image_std, dtype=images[0].dtype, device=images[0].device)
        batch = fill.view(1, -1, 1, 1).expand(len(images), -1, h, w).clone()
        for b, img in zip(batch, images):
            b[:, : img.shape[1], : img.shape[2]].copy_(img)
        return batch


class ContextRoIPool(nn.Module):
    """The box head's RoI pooling with context: for each proposal, the 7 x 7 features of the box
    itself and of a context box on the same centre (``factor`` x its sides, and at least
    ``min_side`` pixels), concatenated along channels: ``(R, 2 C, 7, 7)``. Each box is pooled
    from the FPN level its own size maps to (``MultiScaleRoIAlign``), so the context comes from
    a coarser level. Boxes are ``(x1, y1, x2, y2)`` pixels of the padded batch."""

    def __init__(self, pool: MultiScaleRoIAlign, factor: float, min_side: float):
        super().__init__()
        self.pool, self.factor, self.min_side = pool, float(factor), float(min_side)

    def context_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``(N, 4)`` boxes -> the context boxes on the same centres (may reach past the image:
        RoIAlign samples zeros there)."""
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        half = torch.clamp((boxes[:, 2:] - boxes[:, :2]) * (self.factor / 2), min=self.min_side / 2)
        return torch.cat([centre - half, centre + half], dim=1)

    def forward(self, features, proposals, image_shapes):
        own = self.pool(features, proposals, image_shapes)
        ctx = self.pool(features, [self.context_boxes(b) for b in proposals], image_shapes)
        return torch.cat([own, ctx], dim=1)


class HardNegativeSampler(BalancedPositiveNegativeSampler):
    """torchvision's proposal sampler, with ``hard_fraction`` of each image's negatives taken as
    the proposals of highest RPN objectness instead of at random (online hard negative mining
    by the RPN's ranking, which costs nothing: no extra forward pass).

    It relies on the order torchvision's RPN returns proposals in: per image, sorted by
    objectness, highest first (``batched_nms`` keeps boxes in decreasing score order), with the
    ground-truth boxes appended after them by ``RoIHeads.add_gt_proposals`` (and those are
    positives). So among the indices labelled negative (0), the first are the hardest.
    Positives and the remaining negatives are drawn at random, exactly as the base class does.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float, hard_fraction: float):
        super().__init__(batch_size_per_image, positive_fraction)
        self.hard_fraction = float(hard_fraction)

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``matched_idxs``: per image, ``(P,)`` int (-1 ignored, 0 negative, >= 1 positive) in
        proposal order. Returns per image uint8 ``(P,)`` masks of the sampled positives and
        negatives."""
        pos_out, neg_out = [], []
        for m in matched_idxs:
            positive = torch.where(m >= 1)[0]
            negative = torch.where(m == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            n_hard = int(round(num_neg * self.hard_fraction))
            rest = negative[n_hard:]
            picked = torch.cat([negative[:n_hard], rest[torch.randperm(rest.numel(), device=m.device)[:num_neg - n_hard]]])
            pos = torch.zeros_like(m, dtype=torch.uint8)
            neg = torch.zeros_like(m, dtype=torch.uint8)
            pos[positive[torch.randperm(positive.numel(), device=m.device)[:num_pos]]] = 1
            neg[picked] = 1
            pos_out.append(pos)
            neg_out.append(neg)
        return pos_out, neg_out


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (fewer when ``channels`` is not a multiple of 32)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def anchor_pixels(cfg: InstanceModelConfig, spacing_mm) -> tuple[tuple[int, ...], ...]:
    """Anchor sides in pixels per FPN level: ``anchor_sizes_mm`` / mean in-plane spacing, >= 2 px."""
    s = float(sum(spacing_mm)) / len(spacing_mm)
    return tuple((max(2, int(round(a / s))),) for a in cfg.anchor_sizes_mm)


def _norm_layer(norm: str):
    return {"group": group_norm, "batch": nn.BatchNorm2d, "frozen": FrozenBatchNorm2d}[norm]


def _construct(cfg: InstanceModelConfig, num_classes: int, spacing_mm) -> MaskRCNN:
    sizes = anchor_pixels(cfg, spacing_mm)
    anchors = AnchorGenerator(sizes, (tuple(cfg.aspect_ratios),) * len(sizes))
    common = dict(
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image, rpn_positive_fraction=cfg.rpn_positive_fraction,
        box_batch_size_per_image=cfg.box_batch_size_per_image, box_positive_fraction=cfg.box_positive_fraction,
        box_detections_per_img=cfg.detections_per_image, box_score_thresh=0.01,
    )
    if cfg.name == "maskrcnn":
        norm = _norm_layer(cfg.norm)
        body = RESNETS[cfg.backbone](weights=None, norm_layer=norm, zero_init_residual=cfg.norm != "frozen")
        if cfg.stem_stride == 2:  # finer features for lesions of a few pixels (no parameters change)
            body.maxpool = nn.Identity()
        stage_channels = {1: 64, 2: 128, 3: 256, 4: 512}
        mult = 4 if cfg.backbone == "resnet50" else 1
        in_channels = [stage_channels[k] * mult for k in cfg.returned_layers]
        backbone = BackboneWithFPN(body, {f"layer{k}": str(i) for i, k in enumerate(cfg.returned_layers)},
                                   in_channels, cfg.fpn_channels, extra_blocks=LastLevelMaxPool(),
                                   norm_layer=group_norm if cfg.norm == "group" else None)
        c = cfg.fpn_channels
        names = [str(i) for i in range(len(cfg.returned_layers))]
        head_norm = group_norm if cfg.norm == "group" else None
        model = MaskRCNN(
            backbone, num_classes=None, rpn_anchor_generator=anchors,
            box_roi_pool=MultiScaleRoIAlign(names, 7, cfg.roi_sampling_ratio),
            mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
            box_head=TwoMLPHead(c * 7 * 7 * (2 if cfg.box_context_mm else 1), cfg.box_head_size),
            box_predictor=FastRCNNPredictor(cfg.box_head_size, num_classes),
            mask_head=MaskRCNNHeads(c, [c] * cfg.mask_head_layers, 1, norm_layer=head_norm),
            mask_predictor=MaskRCNNPredictor(c, c, num_classes), **common)
        if cfg.box_context_mm:  # after construction: torchvision's constructor checks the pool's type
            px = cfg.box_context_mm / (float(sum(spacing_mm)) / len(spacing_mm))
            model.roi_heads.box_roi_pool = ContextRoIPool(model.roi_heads.box_roi_pool, 2.0, px)
    else:
        model = ARCHITECTURES[cfg.name](weights=None, weights_backbone=None, num_classes=num_classes, **common)
        model.roi_heads.box_roi_pool.sampling_ratio = cfg.roi_sampling_ratio
        model.rpn.anchor_generator = anchors
        if len(cfg.aspect_ratios) != 3:  # the RPN head predicts one score per anchor of a location
            from torchvision.models.detection.rpn import RPNHead

            conv_depth = 2 if cfg.name.endswith("_v2") else 1
            model.rpn.head = RPNHead(256, anchors.num_anchors_per_location()[0], conv_depth=conv_depth)
    if cfg.box_hard_negative_fraction:
        model.roi_heads.fg_bg_sampler = HardNegativeSampler(cfg.box_batch_size_per_image, cfg.box_positive_fraction,
                                                            cfg.box_hard_negative_fraction)
    t = model.transform
    model.transform = _NoResize(800, 1333, IMAGE_MEAN, IMAGE_STD, size_divisible=32)
    del t
    return model


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` below ``module`` by a ``FrozenBatchNorm2d`` (same statistics)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def _set_trainable_layers(model: MaskRCNN, n: int) -> None:
    """torchvision's rule: the last ``n`` of conv1, layer1..layer4 train (bn1 too when n == 5)."""
    layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][:n] + (["bn1"] if n == 5 else [])
    for name, p in model.backbone.body.named_parameters():
        p.requires_grad_(any(name.startswith(layer) for layer in layers))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Model weights from a local file: a plain state dict (torchvision), a medseg checkpoint
    (``best.pt`` / ``last.pt``), or a torchvision-references checkpoint (``{"model": ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model.pretrained_weights: {path} does not exist; give a local .pth/.pt file "
                         "(nothing is downloaded)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as e:
        raise InputError(f"model.pretrained_weights: {path} is not a readable weights file "
                         f"({short_reason(e, 160)}); give a torchvision state dict or a medseg best.pt") from e
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise InputError(f"model.pretrained_weights: {path} holds no state dict of tensors; give a torchvision "
                         "state dict or a medseg best.pt")
    return obj


def _load_matching(model: nn.Module, state: dict, path, arch: str) -> None:
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not (k.endswith("num_batches_tracked") and k not in own)}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = (f"{len(missing)} missing (e.g. {missing[:1]}), " if missing else "") + \
               (f"{len(unexpected)} unexpected (e.g. {unexpected[:1]}), " if unexpected else "") + \
               (f"{len(wrong)} of another shape (e.g. {wrong[:1]})" if wrong else "")
        raise InputError(f"model.pretrained_weights: {path} does not fit {arch}: {what.rstrip(', ')}; "
                         "set model.name to the architecture the file was saved from "
                         f"({' or '.join(['maskrcnn (with its backbone)', *ARCHITECTURES])})")
    model.load_state_dict(state, strict=False)


def file_num_classes(state: dict) -> int:
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise InputError("model.pretrained_weights: the file has no Mask R-CNN box predictor "
                         f"({key}); give a torchvision Mask R-CNN state dict or a medseg instance run's best.pt")
    return int(state[key].shape[0])


def replace_predictors(model: MaskRCNN, num_classes: int) -> None:
    """New box and mask predictors for ``num_classes`` (background included), randomly initialised."""
    rh = model.roi_heads
    rh.box_predictor = FastRCNNPredictor(rh.box_predictor.cls_score.in_features, num_classes)
    mp = rh.mask_predictor.conv5_mask
    rh.mask_predictor = MaskRCNNPredictor(mp.in_channels, mp.out_channels, num_classes)


def build_model(cfg: InstanceModelConfig, num_classes: int, load_pretrained: bool = True,
                spacing_mm: tuple[float, float] = (0.8, 0.8)) -> MaskRCNN:
    """Mask R-CNN for ``num_classes`` classes (background included), on the CPU.

    ``spacing_mm`` (the slices' in-plane mm per pixel, ``data.spacing_mm``) converts the
    anchor sizes from mm to pixels.

    With ``cfg.pretrained_weights`` (and ``load_pretrained``), the file's weights are loaded
    first, with the file's class count; the predictors are replaced when it differs.
    ``load_pretrained=False`` builds the same structure without reading the file (to load a
    run's own checkpoint on resume or for prediction).
    """
    if num_classes < 2:
        raise InputError("the instance model needs at least one foreground class (data.classes)")
    torch_state = read_state_dict(cfg.pretrained_weights) if (cfg.pretrained_weights and load_pretrained) else None
    frozen_bn = cfg.name != "maskrcnn" and (cfg.norm == "frozen" or (
        bool(cfg.pretrained_weights) and cfg.name == "maskrcnn_resnet50_fpn"))
    if torch_state is None:  # also a run's model rebuilt for resume / prediction (same structure)
        model = _construct(cfg, num_classes, spacing_mm)
        if frozen_bn:
            _freeze_batchnorm(model.backbone.body)
    else:
        n_file = file_num_classes(torch_state)
        model = _construct(cfg, n_file, spacing_mm)
        if frozen_bn:
            _freeze_batchnorm(model.backbone.body)
        _load_matching(model, torch_state, cfg.pretrained_weights, cfg.name)
        if n_file != num_classes:
            replace_predictors(model, num_classes)
    _set_trainable_layers(model, cfg.trainable_backbone_layers)
    return model


def load_weights(model: MaskRCNN, state: dict) -> None:
    """Load a medseg run's own weights (exact architecture; frozen batch norm tolerated)."""
    _load_matching(model, state, "the checkpoint", "this run's model")
