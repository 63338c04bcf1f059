"""The instance model's learning-rate schedule: warm-up, cosine, and extending a finished run
(``--resume --epochs N``) continues from the last rate instead of jumping back up."""

import math

import pytest

from medseg.instance.config import load_instance_config
from medseg.instance.trainer import extension_anchor, learning_rate


@pytest.fixture
def cfg():
    c = load_instance_config("configs/maskrcnn_lesions_cpu.yaml")
    c.optimizer.lr, c.iterations_per_epoch = 1e-3, 10
    c.schedule.warmup_iterations, c.schedule.warmup_factor, c.schedule.min_lr_factor = 5, 0.1, 0.05
    return c


def test_warmup_then_cosine_hand_computed(cfg):
    assert learning_rate(cfg, 0, 0, 10) == pytest.approx(1e-4)                   # warm-up starts at 0.1 x lr
    assert learning_rate(cfg, 0, 5, 10) == pytest.approx(1e-3)                   # warm-up over after 5 steps
    f9 = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 9 / 10))
    assert learning_rate(cfg, 9, 3, 10) == pytest.approx(1e-3 * f9)


def test_extension_continues_from_the_last_rate(cfg):
    assert extension_anchor(cfg, 10, 10, 10, None) is None                       # exact resume: unchanged
    anchor = extension_anchor(cfg, 10, 10, 20, None)
    last = learning_rate(cfg, 9, 0, 10)
    assert anchor[0] == 10 and 1e-3 * anchor[1] == pytest.approx(last)
    extended = [learning_rate(cfg, e, 0, 20, anchor) for e in range(10, 20)]
    assert extended[0] == pytest.approx(last)                                    # no jump back up
    assert all(b < a for a, b in zip(extended, extended[1:]))                    # decays from there
    assert extended[-1] >= 1e-3 * 0.05
    # without the anchor the rate would have jumped back to the middle of a 20-epoch cosine
    assert learning_rate(cfg, 10, 0, 20) > 5 * last
    # extended again while unfinished (stopped before epoch 15 of 20): epoch 15 keeps the rate it
    # would have had, and the decay continues from there
    again = extension_anchor(cfg, 15, 20, 30, anchor)
    assert 1e-3 * again[1] == pytest.approx(learning_rate(cfg, 15, 0, 20, anchor))
    assert learning_rate(cfg, 15, 0, 30, again) == pytest.approx(learning_rate(cfg, 15, 0, 20, anchor))
