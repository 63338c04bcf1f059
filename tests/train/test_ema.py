"""The weight moving average (medseg.train.ema) against a hand-written recurrence."""

import pytest
import torch
from torch import nn

from medseg.train.ema import WeightEMA


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_average_follows_the_warm_up_then_the_decay():
    net = _net()
    ema = WeightEMA(net, decay=0.9)
    expected = {k: v.clone().float() for k, v in net.state_dict().items()}
    for n in range(1, 21):
        with torch.no_grad():
            net[0].weight.add_(torch.randn_like(net[0].weight))
        net.train()(torch.randn(4, 3))  # moves the BatchNorm running statistics
        ema.update(net)
        d = min(0.9, (1 + n) / (10 + n))  # 0.18, 0.25, ... then 0.9 from n = 80 -- here the warm-up
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                expected[k] = d * expected[k] + (1 - d) * v.float()
            else:
                expected[k] = v.clone()
    got = ema.state_dict()
    for k, v in expected.items():
        assert torch.allclose(got[k].float(), v.float(), atol=1e-6), k
    assert int(got["1.num_batches_tracked"]) == 20  # integer buffers are copied
    assert ema.updates == 20 and not any(p.requires_grad for p in ema.module.parameters())
    assert not torch.allclose(got["0.weight"], net[0].weight)  # an average, not a copy


def test_settled_decay_and_reload():
    net = _net()
    ema = WeightEMA(net, decay=0.5)
    ema.updates = 100
    assert ema.factor() == 0.5
    before = ema.state_dict()["0.weight"].clone()
    with torch.no_grad():
        net[0].weight.add_(2.0)
    ema.update(net)
    assert torch.allclose(ema.state_dict()["0.weight"], 0.5 * before + 0.5 * net[0].weight)
    other = WeightEMA(_net(), decay=0.5)
    other.load(ema.state_dict(), ema.updates)
    assert other.updates == 101 and torch.equal(other.state_dict()["0.weight"], ema.state_dict()["0.weight"])


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_decay_outside_the_open_interval_is_refused(decay):
    with pytest.raises(ValueError, match="EMA decay"):
        WeightEMA(_net(), decay)
