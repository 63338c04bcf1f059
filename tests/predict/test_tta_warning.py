"""Mirrored TTA on a model trained without mirroring is flagged (it lowers accuracy)."""

import shutil
import warnings

import pytest
import yaml

from medseg.errors import MedsegWarning
from medseg.predict import Predictor


def test_tta_warns_only_for_runs_trained_without_mirroring(tiny_run, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        Predictor.from_run(tiny_run, device="cpu", tta=True)  # trained with mirroring: silent
    run = tmp_path / "nomirror"
    shutil.copytree(tiny_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["augmentation"]["mirror"] = False
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.warns(MedsegWarning, match="without mirroring"):
        Predictor.from_run(run, device="cpu", tta=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        Predictor.from_run(run, device="cpu", tta=False)
