"""Validation chooses the score threshold of best lesion F1 (hand-computed with a stand-in network
whose detections and scores are known), stores it with the run, and prediction uses it unless
the config (or the caller) sets one."""

import json

import numpy as np
import pytest
import torch
import yaml
from scipy import ndimage

from medseg.instance.config import InstanceConfig, instance_config_from_dict
from medseg.instance.predictor import InstancePredictor
from medseg.instance.validation import best_threshold, validate
from medseg.volume import Volume
from tests.instance.conftest import TINY


class ScoredBlobNet:
    """Detects each 8-connected blob of channel 0: bright ones (> 0.9, HU > 124 in the first
    window) score 0.8, dimmer ones (0.6-0.9) score 0.3."""

    def eval(self):
        return self

    def __call__(self, images):
        out = []
        for img in images:
            c0 = img[0].numpy()
            masks, scores = [], []
            for sel, score in ((c0 > 0.9, 0.8), ((c0 > 0.6) & (c0 <= 0.9), 0.3)):
                cc, n = ndimage.label(sel, np.ones((3, 3)))
                masks += [cc == i for i in range(1, n + 1)]
                scores += [score] * n
            m = np.stack(masks) if masks else np.zeros((0, *c0.shape), bool)
            out.append({"boxes": torch.zeros((len(m), 4)), "labels": torch.ones(len(m), dtype=torch.int64),
                        "scores": torch.tensor(scores, dtype=torch.float32).reshape(-1),
                        "masks": torch.from_numpy(m[:, None].astype(np.float32))})
        return out


def _case():
    """40 x 40 x 8 voxels of 1 mm: two labelled lesions (label 2, 200 HU, bright) and one
    unlabelled decoy (100 HU: detected with score 0.3) in a 40 HU organ (label 1)."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in (40, 40, 8)], indexing="ij")
    hu = np.full((40, 40, 8), 40, np.int16)
    lab = np.ones((40, 40, 8), np.uint8)
    for c, v, labelled in (((10, 10, 3), 200, True), ((28, 12, 4), 200, True), ((20, 30, 4), 100, False)):
        ball = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= 9
        hu[ball] = v
        if labelled:
            lab[ball] = 2
    return Volume(hu, np.eye(4)), Volume(lab, np.eye(4))


def _cfg():
    cfg = InstanceConfig()
    cfg.data.spacing_mm = (1.0, 1.0)
    cfg.data.min_instance_pixels = 1   # every detected blob pixel set is a reference instance too
    return cfg


def test_validation_picks_the_threshold_of_best_f1_by_hand():
    """t <= 0.3: 2 TP + 1 FP -> F1 = 2 (2/3) (1) / (5/3) = 0.8; 0.3 < t <= 0.8: F1 1; t > 0.8:
    nothing predicted -> 0. Tied best 0.4-0.8 -> the median, 0.6. AP50: both lesions found in
    every slice, ranked above the decoy -> 1."""
    m = validate(ScoredBlobNet(), [_case()], _cfg(), {"lesion": 2}, [0, 1, 2], torch.device("cpu"))
    expect = {0.1: 0.8, 0.2: 0.8, 0.3: 0.8, 0.4: 1.0, 0.5: 1.0, 0.6: 1.0, 0.7: 1.0, 0.8: 1.0, 0.9: 0.0}
    assert m["f1_by_threshold"] == pytest.approx(expect)
    assert m["score_threshold"] == 0.6 and m["lesion_f1"] == 1.0 and m["n_ref"] == 2
    assert m["ap50"] == pytest.approx(1.0) and m["f1"] == {"lesion": 1.0}


def test_best_threshold_rule():
    assert best_threshold({0.1: 0.5, 0.2: 0.9, 0.3: 0.7}) == 0.2
    assert best_threshold({0.1: 1.0, 0.2: 1.0, 0.3: 1.0, 0.4: 1.0}) == 0.2      # even tie: the lower middle
    assert best_threshold({0.5: 0.0, 0.3: 0.0, 0.7: 0.0}) == 0.5


def _run_dir(tmp_path, stored, config_threshold="auto"):
    """A run folder: TINY's model with random weights and a stored threshold."""
    from medseg.instance.model import build_model

    cfg = instance_config_from_dict({**TINY, "inference": {**TINY["inference"], "score_threshold": config_threshold}})
    model = build_model(cfg.model, 2, spacing_mm=cfg.data.spacing_mm)
    torch.save({"medseg_checkpoint": 1, "model": model.state_dict(), "score_threshold": stored, "epoch": 0},
               tmp_path / "best.pt")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**TINY, "inference": {**TINY["inference"],
                                                                                 "score_threshold": config_threshold}}))
    (tmp_path / "labels.json").write_text(json.dumps({"labels": {"background": 0, "tumour": 4},
                                                      "classes": {"background": 0, "tumour": 1}}))
    return tmp_path


def test_prediction_uses_the_stored_threshold_unless_overridden(tmp_path):
    (tmp_path / "a").mkdir()
    run = _run_dir(tmp_path / "a", 0.7)
    p = InstancePredictor.from_run(run, device="cpu")
    assert p.cfg.inference.score_threshold == 0.7 and p.threshold_source == "validation (best.pt)"
    assert InstancePredictor.from_run(run, device="cpu", score_threshold=0.25).cfg.inference.score_threshold == 0.25
    (tmp_path / "b").mkdir()
    fixed = InstancePredictor.from_run(_run_dir(tmp_path / "b", 0.7, config_threshold=0.4), device="cpu")
    assert fixed.cfg.inference.score_threshold == 0.4 and fixed.threshold_source == "config"
    (tmp_path / "c").mkdir()
    never = InstancePredictor.from_run(_run_dir(tmp_path / "c", None), device="cpu")
    assert never.cfg.inference.score_threshold == 0.5 and never.threshold_source.startswith("default")


def test_the_threshold_decides_which_detections_become_lesions(tmp_path):
    """With the stand-in network, 0.6 keeps the two lesions and drops the decoy; 0.2 keeps all three."""
    image, label = _case()
    (tmp_path / "best.pt").write_bytes(b"weights")
    for thr, n in ((0.6, 2), (0.2, 3)):
        cfg = _cfg()
        cfg.inference.score_threshold = thr
        res = InstancePredictor(ScoredBlobNet(), cfg, {"background": 0, "lesion": 1}, tmp_path,
                                torch.device("cpu")).predict([image])
        assert len(res.tables["lesions"]) == n
        if n == 2:
            np.testing.assert_array_equal(res.mask.array > 0, label.array == 2)


def test_link_threshold_keeps_a_lesions_faint_ends():
    """One ball (radius 3 voxels, 123 voxels over 7 slices) bright (score 0.8) only in its centre
    slice (29 voxels) and dim (0.3) elsewhere, and a dim decoy. Thresholding each detection at
    t = 0.6 keeps the centre slice only: 29/123 < half the lesion -> missed (F1 0). With
    ``link_score_threshold: 0.2`` the dim slices join the lesion, whose best score 0.8 keeps it,
    and the decoy (best 0.3) is dropped -> F1 1."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in (40, 40, 9)], indexing="ij")
    hu = np.full((40, 40, 9), 40, np.int16)
    lab = np.ones((40, 40, 9), np.uint8)
    ball = (x - 12) ** 2 + (y - 12) ** 2 + (z - 4) ** 2 <= 9
    hu[ball], lab[ball] = 100, 2
    hu[ball & (z == 4)] = 200
    hu[((x - 28) ** 2 + (y - 28) ** 2 + (z - 4) ** 2) <= 4] = 100
    case = (Volume(hu, np.eye(4)), Volume(lab, np.eye(4)))
    assert ball.sum() == 123 and (ball & (z == 4)).sum() == 29
    cfg = _cfg()
    cfg.inference.val_thresholds = [0.6]
    plain = validate(ScoredBlobNet(), [case], cfg, {"lesion": 2}, [0, 1, 2], torch.device("cpu"))
    assert plain["lesion_f1"] == 0.0 and plain["lesion_precision"] == 1.0
    cfg.inference.link_score_threshold = 0.2
    linked = validate(ScoredBlobNet(), [case], cfg, {"lesion": 2}, [0, 1, 2], torch.device("cpu"))
    assert linked["lesion_f1"] == 1.0 and linked["score_threshold"] == 0.6


class SpillNet(ScoredBlobNet):
    """Detects each bright blob (channel 0 > 0.9) with score 0.8 and a soft mask: probability
    1 on the blob and 0.45 on a 2-pixel ring around it (a mask that spills past the edge)."""

    def __call__(self, images):
        out = []
        for img in images:
            c0 = img[0].numpy()
            cc, n = ndimage.label(c0 > 0.9, np.ones((3, 3)))
            probs = []
            for i in range(1, n + 1):
                blob = cc == i
                ring = ndimage.binary_dilation(blob, np.ones((3, 3)), iterations=2) & ~blob
                probs.append(blob * 1.0 + ring * 0.45)
            m = np.stack(probs).astype(np.float32) if probs else np.zeros((0, *c0.shape), np.float32)
            out.append({"boxes": torch.zeros((n, 4)), "labels": torch.ones(n, dtype=torch.int64),
                        "scores": torch.full((n,), 0.8), "masks": torch.from_numpy(m[:, None])})
        return out


def test_validation_chooses_the_mask_threshold_and_prediction_uses_it(tmp_path):
    """One ball lesion: at mask threshold 0.4 the prediction is the ball plus its ring, less than
    half of it inside the lesion -> the lesion is covered (recall 1) but the prediction is false
    (precision 0): F1 0. At 0.6 the prediction is the ball: F1 1. ``auto`` picks 0.6; a fixed
    0.4 gets F1 0; the predictor of a run that stored 0.6 predicts the ball exactly."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in (40, 40, 9)], indexing="ij")
    ball = (x - 15) ** 2 + (y - 15) ** 2 + (z - 4) ** 2 <= 9
    hu = np.where(ball, 200, 40).astype(np.int16)
    lab = np.where(ball, 2, 1).astype(np.uint8)
    case = (Volume(hu, np.eye(4)), Volume(lab, np.eye(4)))
    spill = sum(int((ndimage.binary_dilation(ball[:, :, k], np.ones((3, 3)), iterations=2)).sum()) for k in range(9))
    assert ball.sum() / spill < 0.5  # the precondition: the spilled prediction is a false one
    cfg = _cfg()
    cfg.inference.val_thresholds = [0.5]
    cfg.inference.mask_threshold = "auto"
    cfg.inference.val_mask_thresholds = [0.4, 0.6]
    auto = validate(SpillNet(), [case], cfg, {"lesion": 2}, [0, 1, 2], torch.device("cpu"))
    assert auto["f1_by_mask_threshold"] == {0.4: 0.0, 0.6: 1.0}
    assert auto["mask_threshold"] == 0.6 and auto["lesion_f1"] == 1.0 and auto["score_threshold"] == 0.5
    cfg.inference.mask_threshold = 0.4
    fixed = validate(SpillNet(), [case], cfg, {"lesion": 2}, [0, 1, 2], torch.device("cpu"))
    assert fixed["mask_threshold"] == 0.4 and fixed["lesion_f1"] == 0.0 and fixed["lesion_recall"] == 1.0
    cfg.inference.mask_threshold = 0.6
    (tmp_path / "best.pt").write_bytes(b"weights")
    res = InstancePredictor(SpillNet(), cfg, {"background": 0, "lesion": 1}, tmp_path, torch.device("cpu")).predict([case[0]])
    np.testing.assert_array_equal(res.mask.array > 0, ball)


def test_the_run_stores_the_mask_threshold_for_prediction(tmp_path):
    """``mask_threshold: auto`` in the run config: the predictor takes the stored value (0.5
    when none was stored); a number in the config wins."""
    from medseg.instance.model import build_model

    def run(folder, stored, config_value):
        folder.mkdir()
        inf = {**TINY["inference"], "mask_threshold": config_value}
        cfg = instance_config_from_dict({**TINY, "inference": inf})
        state = build_model(cfg.model, 2, spacing_mm=cfg.data.spacing_mm).state_dict()
        ckpt = {"medseg_checkpoint": 1, "model": state, "score_threshold": 0.6, "epoch": 0}
        if stored is not None:
            ckpt["mask_threshold"] = stored
        torch.save(ckpt, folder / "best.pt")
        (folder / "config.yaml").write_text(yaml.safe_dump({**TINY, "inference": inf}))
        (folder / "labels.json").write_text(json.dumps({"labels": {"background": 0, "tumour": 4},
                                                          "classes": {"background": 0, "tumour": 1}}))
        return InstancePredictor.from_run(folder, device="cpu").cfg.inference.mask_threshold

    assert run(tmp_path / "a", 0.7, "auto") == 0.7
    assert run(tmp_path / "b", None, "auto") == 0.5
    assert run(tmp_path / "c", 0.7, 0.4) == 0.4
