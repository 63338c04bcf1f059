"""The network: torchvision Mask R-CNN (ResNet-50 FPN, v1 or v2) for slice instances.

Contract (torchvision's): ``model(images, targets)`` in training mode returns a dict of losses;
in eval mode ``model(images)`` returns per image ``{"boxes" (N, 4) float (x1, y1, x2, y2)
pixels, "labels" (N,) int64 model classes, "scores" (N,), "masks" (N, 1, H, W) float
probabilities}``. ``images`` is a list of float ``(3, H, W)`` tensors in [0, 1].

Differences from torchvision's defaults, all deliberate:

* ``weights=None, weights_backbone=None`` always: nothing is downloaded. ``pretrained_weights``
  loads a local file (a torchvision state dict, e.g. the COCO file, or a medseg checkpoint).
  When its class count differs, the box predictor (``FastRCNNPredictor``) and the mask
  predictor (``MaskRCNNPredictor(..., 256, num_classes)``) are replaced, as in torchvision's
  fine-tuning tutorial. With such weights the v1 backbone uses frozen batch norm, as
  torchvision's pretrained v1 model does.
* No resizing inside the model: slices are already at the configured in-plane spacing (mm per
  pixel), so the scale is physical. Images are only padded to a multiple of 32.
* Smaller anchors (``anchor_sizes``, 8-128 px by default) for lesions of a few mm.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.misc import FrozenBatchNorm2d

from medseg.errors import InputError, short_reason
from medseg.instance.config import InstanceModelConfig

ARCHITECTURES = {"maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn, "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2}
_PREDICTOR_KEYS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.")


class _NoResize(GeneralizedRCNNTransform):
    """torchvision's transform (normalise, pad to a multiple of 32) without the resize, and with
    batches padded to at least ``MIN_SIDE`` pixels, so that the stride-32 features stay above
    1 x 1 (batch norm in training needs more than one value per channel)."""

    MIN_SIDE = 64

    def resize(self, image, target=None):
        return image, target

    def batch_images(self, images, size_divisible: int = 32):
        h = max(self.MIN_SIDE, max(int(img.shape[1]) for img in images))
        w = max(self.MIN_SIDE, max(int(img.shape[2]) for img in images))
        h, w = -(-h // size_divisible) * size_divisible, -(-w // size_divisible) * size_divisible
        batch = images[0].new_zeros((len(images), images[0].shape[0], h, w))
        for b, img in zip(batch, images):
            b[:, : img.shape[1], : img.shape[2]].copy_(img)
        return batch


def _construct(cfg: InstanceModelConfig, num_classes: int) -> MaskRCNN:
    anchors = AnchorGenerator(tuple((int(s),) for s in cfg.anchor_sizes), ((0.5, 1.0, 2.0),) * len(cfg.anchor_sizes))
    model = ARCHITECTURES[cfg.name](
        weights=None, weights_backbone=None, num_classes=num_classes,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        box_batch_size_per_image=cfg.box_batch_size_per_image, box_detections_per_img=cfg.detections_per_image,
    )
    model.rpn.anchor_generator = anchors  # 3 anchors per location, as the default: RPN head weights fit
    t = model.transform
    model.transform = _NoResize(t.min_size, t.max_size, t.image_mean, t.image_std, size_divisible=32)
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
                         f"({' or '.join(ARCHITECTURES)})")
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
    rh.mask_predictor = MaskRCNNPredictor(rh.mask_predictor.conv5_mask.in_channels, 256, num_classes)


def build_model(cfg: InstanceModelConfig, num_classes: int, load_pretrained: bool = True) -> MaskRCNN:
    """Mask R-CNN for ``num_classes`` classes (background included), on the CPU.

    With ``cfg.pretrained_weights`` (and ``load_pretrained``), the file's weights are loaded
    first, with the file's class count; the predictors are replaced when it differs.
    ``load_pretrained=False`` builds the same structure without reading the file (to load a
    run's own checkpoint on resume or for prediction).
    """
    if num_classes < 2:
        raise InputError("the instance model needs at least one foreground class (data.classes)")
    torch_state = read_state_dict(cfg.pretrained_weights) if (cfg.pretrained_weights and load_pretrained) else None
    frozen_bn = bool(cfg.pretrained_weights) and cfg.name == "maskrcnn_resnet50_fpn"
    if torch_state is None:  # also a run's model rebuilt for resume / prediction (same structure)
        model = _construct(cfg, num_classes)
        if frozen_bn:
            _freeze_batchnorm(model.backbone.body)
    else:
        n_file = file_num_classes(torch_state)
        model = _construct(cfg, n_file)
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
