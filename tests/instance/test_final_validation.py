"""``inference.tta: flips`` with ``val_tta: final``: the epochs validate on the plain pass, the
best weights are validated once with TTA after the last epoch, and the thresholds of that
validation are the ones stored and used for prediction; an interrupted final validation is
redone (and only it) by ``--resume``."""

import json

import pytest
import torch

from medseg.errors import InputError
from medseg.instance import trainer, validation
from medseg.instance.config import instance_config_from_dict
from medseg.instance.predictor import InstancePredictor
from medseg.instance.trainer import train_instance
from medseg.model.checkpoint import load_checkpoint
from tests.instance.conftest import TINY

#: not in TINY's val_thresholds (0.3, 0.6): only the TTA validation below can produce it
TTA_THRESHOLD = 0.45


def _recording_validate(monkeypatch, interrupt_tta: bool = False) -> list:
    """Wrap the trainer's ``validate``: record each call's TTA mode and the model's weights;
    the TTA validation returns TTA_THRESHOLD as its score threshold (or raises Ctrl-C)."""
    real, calls = validation.validate, []

    def wrapped(model, cases, cfg, *a, **k):
        calls.append((cfg.inference.tta, {n: t.detach().clone() for n, t in model.state_dict().items()}))
        if cfg.inference.tta != "none" and interrupt_tta:
            raise KeyboardInterrupt
        m = real(model, cases, cfg, *a, **k)
        if cfg.inference.tta != "none":
            m["score_threshold"] = TTA_THRESHOLD
        return m

    monkeypatch.setattr(trainer, "validate", wrapped)
    return calls


def _cfg(**inference):
    return instance_config_from_dict({**TINY, "inference": {**TINY["inference"], **inference}})


def test_epochs_validate_plainly_and_the_best_weights_choose_the_thresholds_with_tta(phantoms, tmp_path,
                                                                                       monkeypatch):
    calls = _recording_validate(monkeypatch)
    out = tmp_path / "run"
    res = train_instance(_cfg(tta="flips"), phantoms, out, epochs=2, device="cpu", progress=False)
    assert [c[0] for c in calls] == ["none", "none", "flips"]
    best = load_checkpoint(out / "best.pt")
    # the final validation ran on best.pt's weights (the moving average the epoch stored)
    assert all(torch.equal(calls[2][1][n], best["model"][n]) for n in best["model"])
    cal = best["calibration"]
    assert cal["tta"] == "flips" and cal["epoch"] == best["epoch"]
    assert best["score_threshold"] == cal["score_threshold"] == TTA_THRESHOLD == res["score_threshold"]
    assert res["final_validation"] == cal
    assert cal["plain_score_threshold"] in (0.3, 0.6) and cal["plain_val_lesion_f1"] == best["best"]["f1"]
    stored = json.loads((out / "threshold.json").read_text())
    assert stored["tta"] == "flips" and stored["score_threshold"] == TTA_THRESHOLD
    pred = InstancePredictor.from_run(out, device="cpu")
    assert pred.cfg.inference.score_threshold == TTA_THRESHOLD and "without TTA" not in pred.threshold_source
    # a resumed, finished, validated run has nothing left to do
    with pytest.raises(InputError, match="finished 2 epochs"):
        train_instance(_cfg(tta="flips"), phantoms, out, device="cpu", resume=True, progress=False)
    assert len(calls) == 3


def test_an_interrupted_final_validation_is_all_that_resume_runs(phantoms, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _recording_validate(monkeypatch, interrupt_tta=True)
    with pytest.raises(KeyboardInterrupt):
        train_instance(_cfg(tta="flips"), phantoms, out, epochs=1, device="cpu", progress=False)
    best = load_checkpoint(out / "best.pt")
    assert "calibration" not in best and best["score_threshold"] in (0.3, 0.6)
    assert json.loads((out / "threshold.json").read_text())["tta"] == "none"
    pred = InstancePredictor.from_run(out, device="cpu")
    assert "chosen without TTA" in pred.threshold_source and "--resume" in pred.threshold_source
    last_before = load_checkpoint(out / "last.pt")["model"]

    calls = _recording_validate(monkeypatch)
    res = train_instance(_cfg(tta="flips"), phantoms, out, device="cpu", resume=True, progress=False)
    assert [c[0] for c in calls] == ["flips"]  # no training, no plain validation
    assert res["score_threshold"] == TTA_THRESHOLD
    assert load_checkpoint(out / "best.pt")["calibration"]["tta"] == "flips"
    last = load_checkpoint(out / "last.pt")["model"]
    assert all(torch.equal(last[n], last_before[n]) for n in last)


def test_val_tta_every_validates_each_epoch_with_tta_and_none_has_no_final_validation(phantoms, tmp_path,
                                                                                       monkeypatch):
    calls = _recording_validate(monkeypatch)
    train_instance(_cfg(tta="flips", val_tta="every"), phantoms, tmp_path / "every", epochs=2, device="cpu",
                   progress=False)
    assert [c[0] for c in calls] == ["flips", "flips"]
    best = load_checkpoint(tmp_path / "every" / "best.pt")
    assert "calibration" not in best and best["score_threshold"] == TTA_THRESHOLD
    assert json.loads((tmp_path / "every" / "threshold.json").read_text())["tta"] == "flips"
    calls.clear()
    res = train_instance(_cfg(), phantoms, tmp_path / "plain", epochs=1, device="cpu", progress=False)
    assert res["final_validation"] is None
    assert [c[0] for c in calls] == ["none"]
    assert json.loads((tmp_path / "plain" / "threshold.json").read_text())["tta"] == "none"


def test_cli_names_the_tta_validation_whose_thresholds_it_stored(phantoms, tmp_path):
    import yaml

    from tests.conftest import run_cli

    cfg = tmp_path / "tta.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "inference": {**TINY["inference"], "tta": "flips"}}))
    r = run_cli("train", "--config", cfg, "--dataset", phantoms, "--out", tmp_path / "run", "--epochs", "1",
                "--device", "cpu")
    assert r.returncode == 0, r.stderr
    f1 = load_checkpoint(tmp_path / "run" / "best.pt")["calibration"]["val_lesion_f1"]
    assert "best validation 3D lesion F1 " in r.stdout and f"; with tta flips {f1:.4f} (its thresholds are stored)" in r.stdout
