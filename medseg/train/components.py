"""Loss, optimiser and schedule from config values (explicit registries, no subclasses).

The network itself is :func:`medseg.model.network.build_network` (prediction builds it too).
"""

from __future__ import annotations

import math

import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss

from medseg.model.config import TrainConfig, resolve_class_weights
from medseg.plans import Plan


def build_loss(cfg: TrainConfig, plan: Plan) -> torch.nn.Module:
    """Dice + cross-entropy (MONAI DiceCELoss) on logits vs integer labels (B, 1, ...)."""
    labels = plan.dataset.labels
    weights = resolve_class_weights(cfg.loss.class_weights, labels, "loss.class_weights", plan)
    n = max(labels.values()) + 1
    w = None
    if weights:
        w = torch.ones(n)
        for v, x in weights.items():
            w[v] = x
    loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=cfg.loss.include_background_dice,
                      weight=w, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)
    return _DeepSupervised(loss) if cfg.model.deep_supervision else loss


class _DeepSupervised(torch.nn.Module):
    """Loss over DynUNet's deep-supervision output (B, heads, C, X, Y, Z) in training mode (every
    head up-sampled to full size, main head first): MONAI's DeepSupervisionLoss, weights 1, 1/2,
    1/4, ... Plain (B, C, X, Y, Z) logits (eval mode) get the plain loss."""

    def __init__(self, loss: torch.nn.Module):
        super().__init__()
        self.ds = DeepSupervisionLoss(loss, weight_mode="exp")

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        heads = list(output.unbind(1)) if output.dim() == target.dim() + 1 else output
        return self.ds(heads, target)


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    o = cfg.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def _shape(cfg: TrainConfig, t: float) -> float:
    """The schedule's decay shape at progress ``t`` in [0, 1] (1 at t = 0)."""
    s = cfg.schedule
    t = min(1.0, max(0.0, t))
    if s.name == "poly":
        return (1 - t) ** s.poly_exponent
    if s.name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def lr_factor(cfg: TrainConfig, epoch: int, total_epochs: int, anchor: tuple[int, float] | None = None) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based): linear warm-up, then poly / cosine.

    ``anchor = (a, f)``: the run was extended (``--resume --epochs N`` with a new N) at epoch
    ``a``, where its factor was ``f``; from ``a`` on the factor decays from ``f`` to 0 at
    ``total_epochs`` with the same shape, so the rate never jumps back up.
    """
    s = cfg.schedule
    if anchor is not None and epoch >= anchor[0]:
        a, f = int(anchor[0]), float(anchor[1])
        return f * _shape(cfg, (epoch - a) / max(1, total_epochs - a))
    if epoch < s.warmup_epochs:
        return (epoch + 1) / (s.warmup_epochs + 1)
    span = max(1, total_epochs - s.warmup_epochs)
    return _shape(cfg, (epoch - s.warmup_epochs) / span)


def extension_anchor(cfg: TrainConfig, start_epoch: int, old_total: int, new_total: int,
                     old_anchor: tuple[int, float] | None) -> tuple[int, float] | None:
    """The anchor for a run resumed with ``new_total`` epochs that was planned for ``old_total``:
    unchanged when the totals agree (exact resume), else the rate last used continues
    (see :func:`lr_factor`)."""
    if new_total == old_total:
        return tuple(old_anchor) if old_anchor else None
    last = min(start_epoch, old_total - 1)
    return (start_epoch, lr_factor(cfg, last, old_total, tuple(old_anchor) if old_anchor else None))


def set_lr(optimizer: torch.optim.Optimizer, cfg: TrainConfig, epoch: int, total_epochs: int,
           anchor: tuple[int, float] | None = None) -> float:
    """Set the learning rate for ``epoch`` (stateless: resuming recomputes it exactly)."""
    lr = cfg.optimizer.lr * lr_factor(cfg, epoch, total_epochs, anchor)
    for g in optimizer.param_groups:
        g["lr"] = lr
    return lr
