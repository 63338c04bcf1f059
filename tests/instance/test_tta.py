"""Test-time augmentation of the instance model (medseg.instance.tta): the consensus merge on
hand-made detections, and ``detect`` flipping each pass's masks back onto the slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.instance.tta import merge_passes


def _det(boxes, scores, labels=None, shape=(20, 20)):
    """Detections with square masks of probability 0.8 on ``boxes`` (x0, x1, y0, y1)."""
    masks = torch.zeros((len(boxes), 1, *shape))
    for n, (x0, x1, y0, y1) in enumerate(boxes):
        masks[n, 0, x0:x1, y0:y1] = 0.8
    labels = torch.tensor(labels if labels is not None else [1] * len(boxes), dtype=torch.int64)
    return {"masks": masks, "labels": labels, "scores": torch.tensor(scores, dtype=torch.float32)}


def test_merge_averages_over_all_passes_and_counts_a_missing_one_as_zero():
    # pass 0: A (0.9) at 2:6 and B (0.6) far away; pass 1: A shifted by one pixel (IoU 9/23 =
    # 0.39 >= 0.3) and C, of another class, on A's place; pass 2: nothing
    p0 = _det([(2, 6, 2, 6), (12, 16, 12, 16)], [0.9, 0.6])
    p1 = _det([(3, 7, 3, 7), (2, 6, 2, 6)], [0.6, 0.75], labels=[1, 2])
    p2 = _det([], [])
    out = merge_passes([p0, p1, p2])
    got = sorted(zip(out["scores"].tolist(), out["labels"].tolist()), reverse=True)
    assert [s for s, _ in got] == pytest.approx([0.5, 0.25, 0.2])  # A (0.9+0.6)/3, C 0.75/3, B 0.6/3
    assert [c for _, c in got] == [1, 2, 1]
    a = int(torch.argmax(out["scores"]))
    m = out["masks"][a, 0]
    assert m[3, 3] == pytest.approx(1.6 / 3) and m[2, 2] == pytest.approx(0.8 / 3) and m[6, 6] == pytest.approx(0.8 / 3)
    assert m[10, 10] == 0


def test_merge_takes_one_detection_per_pass_and_needs_the_overlap():
    # pass 1 holds two detections on A: only the higher-scoring one joins A's group; pass 2's
    # detection touches A by one column (IoU 4/28 < 0.3) and stays apart
    p0 = _det([(2, 6, 2, 6)], [0.9])
    p1 = _det([(2, 6, 2, 6), (3, 7, 2, 6)], [0.8, 0.7])
    p2 = _det([(2, 6, 5, 9)], [0.65])
    out = merge_passes([p0, p1, p2])
    assert sorted(out["scores"].tolist(), reverse=True) == pytest.approx([1.7 / 3, 0.7 / 3, 0.65 / 3])


def test_one_pass_is_returned_as_it_is_and_no_detections_merge_to_none():
    p = _det([(2, 6, 2, 6)], [0.9])
    assert merge_passes([p]) is p
    out = merge_passes([_det([], []), _det([], [])])
    assert out["masks"].shape == (0, 1, 20, 20) and len(out["scores"]) == 0


class LeftHalfDetector(torch.nn.Module):
    """Finds the bright pixels (channel 0 > 0.5) of each slice, but only in its x < X/2 half,
    as one detection of score 0.9 with mask probability 1: not flip-invariant, so the passes
    disagree in a way that tells whether each pass's mask was flipped back."""

    def forward(self, images):
        out = []
        for im in images:
            bright = im[0] > 0.5
            bright[im.shape[1] // 2:] = False
            if bright.any():
                out.append({"masks": bright[None, None].float(), "labels": torch.tensor([1]),
                            "scores": torch.tensor([0.9])})
            else:
                out.append({"masks": torch.zeros((0, 1, *im.shape[1:])), "labels": torch.zeros(0, dtype=torch.int64),
                            "scores": torch.zeros(0)})
        return out


def test_detect_flips_each_pass_back_before_merging():
    """A bright square in the x < X/2 half, off-centre in y: the plain and the y-flipped passes
    find it (the x-flipped one moves it to the blind half). Flipped back, the two masks coincide
    and merge into one detection of score 2/3 x 0.9 on the square; a y-flipped mask left
    unflipped would be a second detection of 0.3 on the mirror image."""
    from medseg.instance.config import instance_config_from_dict
    from medseg.instance.inference import detect
    from tests.instance.conftest import TINY

    cfg = instance_config_from_dict({**TINY, "data": {**TINY["data"], "windows": [[0, 100], [0, 200], [0, 400]]},
                                     "inference": {**TINY["inference"], "tta": "flips"}})
    vol = np.full((16, 12, 2), -100, np.float32)
    vol[2:5, 1:4, 0] = 100  # slice 0: x 2-4 (left half), y 1-3 (mirror: y 8-10)
    dets = detect(LeftHalfDetector(), vol, cfg, torch.device("cpu"), 0.1)
    assert len(dets[1].scores) == 0 and len(dets[0].scores) == 1
    assert dets[0].scores[0] == pytest.approx(0.6)
    expect = np.zeros((16, 12), bool)
    expect[2:5, 1:4] = True
    assert np.array_equal(dets[0].masks[0], expect)  # 2/3 >= the mask threshold 0.5
    cfg.inference.tta = "none"
    plain = detect(LeftHalfDetector(), vol, cfg, torch.device("cpu"), 0.1)
    assert plain[0].scores.tolist() == pytest.approx([0.9]) and np.array_equal(plain[0].masks[0], expect)


def test_tta_mode_is_checked():
    from medseg.config import ConfigError
    from medseg.instance.config import instance_config_from_dict
    from tests.instance.conftest import TINY

    with pytest.raises(ConfigError, match="tta"):
        instance_config_from_dict({**TINY, "inference": {**TINY["inference"], "tta": "rotations"}})
