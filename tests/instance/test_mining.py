"""Hard-negative mining (:mod:`medseg.instance.mining`): which detections are mined, where the
hard negative crops are centred, and that a run with mining resumes exactly."""

import numpy as np
import pytest
import torch

from medseg.instance import dataset as inst_dataset
from medseg.instance.config import InstanceDataConfig, instance_config_from_dict
from medseg.instance.dataset import SliceCase, epoch_order
from medseg.instance.mining import mine_false_positives
from medseg.instance.trainer import train_instance
from medseg.model.checkpoint import load_checkpoint
from tests.instance.conftest import TINY

LESION = 4


def _case(k_slices=3):
    image = np.zeros((40, 30, k_slices), np.float32)
    label = np.zeros((40, 30, k_slices), np.uint8)
    label[5:25, 5:25, :] = 1          # an organ
    label[10:14, 10:14, 1] = LESION   # a lesion on slice 1
    return SliceCase("c", image, label, None, np.array([1]), np.array([[1, 12, 12]]), (5, 25, 5, 25),
                     {1: np.array([[0, 15, 15], [2, 20, 20]])}, np.array([0]))


class FakeDetector(torch.nn.Module):
    """Returns, for each image, three detections: on the lesion of slice 1 (score 0.9, mask
    centre (12, 12), 16 of its 25 pixels on the lesion), off it (0.8, mask centre (30, 20)), and
    off it with a low score (0.3)."""

    def forward(self, images):
        out = []
        for img in images:
            X, Y = img.shape[-2:]
            masks = torch.zeros(3, 1, X, Y)
            masks[0, 0, 10:15, 10:15] = 1.0
            masks[1, 0, 28:33, 18:23] = 0.9
            masks[2, 0, 2:6, 2:6] = 1.0
            out.append({"scores": torch.tensor([0.9, 0.8, 0.3]), "labels": torch.ones(3, dtype=torch.int64),
                        "masks": masks, "boxes": torch.zeros(3, 4)})
        return out


def test_mining_keeps_confident_detections_that_lie_off_the_lesions():
    cfg = InstanceDataConfig(windows=[(40.0, 400.0)] * 3)
    rows = mine_false_positives(FakeDetector(), [_case()], cfg, [LESION], torch.device("cpu"), seed=0, epoch=0,
                                n_slices=10, min_score=0.5)
    # 3 slices, each with one false positive >= 0.5; the lesion detection counts only on slice 1
    # (elsewhere it lies on no lesion voxel and is a false positive too)
    assert sorted(rows) == sorted([(0, 0, 12, 12), (0, 0, 30, 20), (0, 1, 30, 20), (0, 2, 12, 12),
                                   (0, 2, 30, 20)])
    assert mine_false_positives(FakeDetector(), [_case()], cfg, [LESION], torch.device("cpu"), 0, 0, 10, 0.95) == []
    assert len(mine_false_positives(FakeDetector(), [_case()], cfg, [LESION], torch.device("cpu"), 0, 0, 1,
                                    0.5)) in (1, 2)  # one slice only


def test_hard_negative_crops_are_centred_on_the_mined_rows():
    cases = [_case(), _case()]
    pool = [(1, 2, 30, 7)]
    cfg = InstanceDataConfig(crop_px=32, lesion_crop_fraction=0.0, crop_jitter=0.25, hard_negative_fraction=1.0)
    items = epoch_order(cases, cfg, seed=0, epoch=3, needed=50, hard=pool)
    for ci, k, x0, y0 in items:
        assert (ci, k) == (1, 2)
        assert abs(x0 + 16 - 30) <= 8 + 1 and abs(y0 + 16 - 7) <= 8 + 1
    half = InstanceDataConfig(crop_px=32, lesion_crop_fraction=0.0, hard_negative_fraction=0.5)
    share = np.mean([(ci, k) == (1, 2) and abs(x0 + 16 - 30) <= 11 for ci, k, x0, y0 in
                     epoch_order(cases, half, 0, 3, 400, hard=pool)])
    assert 0.45 < share < 0.75  # half the crops, plus structure crops that happen to fall there
    # without a share (or a pool) the plan is the one a run without mining draws
    plain = InstanceDataConfig(crop_px=32, lesion_crop_fraction=0.5)
    assert epoch_order(cases, plain, 0, 3, 60, hard=pool) == epoch_order(cases, plain, 0, 3, 60)


def test_a_run_with_mining_resumes_exactly(phantoms, tmp_path, monkeypatch):
    cfg = instance_config_from_dict({**TINY, "data": {**TINY["data"], "hard_negative_fraction": 0.5,
                                                      "mining_score": 0.0}})
    ref = tmp_path / "ref"
    train_instance(cfg, phantoms, ref, epochs=2, device="cpu", progress=False)
    pool = load_checkpoint(ref / "last.pt")["hard_negatives"]
    assert len(pool) > 0 and all(len(r) == 4 for r in pool)

    real, calls, orders = inst_dataset.make_batch, [], []

    def interrupt(cases, items, *a, **k):
        calls.append(1)
        if len(calls) == 4:  # the second batch of epoch 2 (2 iterations per epoch)
            raise KeyboardInterrupt
        return real(cases, items, *a, **k)

    out = tmp_path / "run"
    monkeypatch.setattr("medseg.instance.trainer.make_batch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_instance(cfg, phantoms, out, epochs=2, device="cpu", progress=False)
    stopped = load_checkpoint(out / "last.pt")
    assert (stopped["epoch"], stopped["iteration"]) == (1, 1) and len(stopped["hard_negatives"]) > 0
    real_order = inst_dataset.epoch_order

    def order(*a):
        orders.append(a[5])
        return real_order(*a)

    monkeypatch.setattr("medseg.instance.trainer.make_batch", real)
    monkeypatch.setattr("medseg.instance.trainer.epoch_order", order)
    train_instance(cfg, phantoms, out, device="cpu", resume=True, progress=False)
    # the resumed epoch drew its crops from the pool stored at the interruption
    assert [list(r) for r in orders[0]] == stopped["hard_negatives"]
    a, b = load_checkpoint(out / "last.pt"), load_checkpoint(ref / "last.pt")
    assert all(torch.allclose(a["model"][n].float(), b["model"][n].float(), atol=1e-5) for n in a["model"])
    assert a["hard_negatives"] == b["hard_negatives"]
