"""An exponential moving average (EMA) of a model's weights, for validation and prediction.

After each optimiser step, every floating-point tensor of the average (parameters and buffers,
e.g. BatchNorm running statistics) moves towards the model's: ``ema += (1 - d) * (w - ema)``
with ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the ``num_updates`` rule of
TensorFlow's ``ExponentialMovingAverage``): the average follows the fast early changes, covers
about the last ``n / 9`` steps while the rule caps ``d``, and settles to a window of about
``1 / (1 - decay)`` steps. Integer buffers (``num_batches_tracked``) are copied. Not
``torch.optim.swa_utils.AveragedModel``: that has no such warm-up, and its state dict adds a
``module.`` prefix and a counter, where this one's loads into the plain model.

Meant for short, noisy runs: the last steps are averaged instead of taking whichever one the
run ended on. (On the instance-model phantoms it has not shown a measurable gain yet:
BENCHMARKS.md, session 12.)
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    """The averaged copy of ``model`` (same device, evaluation mode, no gradients).

    Attributes:
        module: the averaged model; validate and predict with it.
        decay: the settled decay ``d`` (0 < decay < 1).
        updates: steps averaged so far.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def factor(self) -> float:
        """The decay of the next update (after the warm-up: ``decay``)."""
        n = self.updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        d = self.factor()
        self.updates += 1
        src = model.state_dict()
        for name, t in self.module.state_dict().items():
            if t.is_floating_point():
                t.lerp_(src[name].detach().to(t.dtype), 1.0 - d)
            else:
                t.copy_(src[name])

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load(self, state: dict, updates: int) -> None:
        """Restore a saved average (``--resume``)."""
        self.module.load_state_dict(state)
        self.updates = int(updates)
