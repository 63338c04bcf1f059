"""The CPU recipe learns: from random weights, within a CPU minute, on a synthetic blob dataset,
held-out 3D lesion F1 >= 0.8 with the score threshold the run chose on validation. Trained
through the public API (``medseg.train``) and loaded with ``medseg.load_predictor``; then
``medseg predict`` + ``medseg report`` on the held-out cases show the lesion table."""

import csv
import json
import time

import numpy as np
import pytest
import torch
import yaml

import medseg
from medseg.io import read_volume
from medseg.metrics import lesion_matching, pooled_rates
from medseg.instance.config import InstanceInferenceConfig
from tests.instance.conftest import LEARN

LEARN_MASK_LEVELS = InstanceInferenceConfig().val_mask_thresholds


@pytest.fixture(scope="session")
def learned(blobs, tmp_path_factory):
    train_ds, test_ds, n_test = blobs
    out = tmp_path_factory.mktemp("learned") / "run"
    torch.set_num_threads(1)
    t0 = time.process_time()  # CPU seconds of this process (one thread): independent of the machine's load
    result = medseg.train(LEARN, train_ds, out, device="cpu", progress=False, plan="ignored-by-instance")
    return out, result, time.process_time() - t0


def test_public_api_trains_an_instance_run_that_learns(learned, blobs):
    out, result, seconds = learned
    _, test_ds, n_test = blobs
    assert result["task"] == "instance" and result["run_dir"] == str(out)
    run = json.loads((out / "run.json").read_text())
    assert run["task"] == "instance" and run["classes"] == {"lesion": 2}        # classes: auto -> the lesion class
    # windows: auto -> numbers from the data (lesions -20 / 150 HU in a 60 HU organ, noise SD 12 HU),
    # recorded for prediction: the first window spans both lesion kinds, not the -900 HU air
    (level, width), *_ = yaml.safe_load((out / "config.yaml").read_text())["data"]["windows"]
    assert -70 <= level - width / 2 <= -15 and 145 <= level + width / 2 <= 200, (level, width)
    stored = json.loads((out / "threshold.json").read_text())["score_threshold"]
    assert stored == result["score_threshold"] == torch.load(out / "best.pt", weights_only=True)["score_threshold"]
    pred = medseg.load_predictor(out, device="cpu")
    assert type(pred).__name__ == "InstancePredictor"
    assert pred.cfg.inference.score_threshold == stored and pred.threshold_source.startswith("validation")
    stored_mask = json.loads((out / "threshold.json").read_text())["mask_threshold"]   # mask_threshold: auto
    assert stored_mask == result["mask_threshold"] == pred.cfg.inference.mask_threshold
    assert stored_mask in LEARN_MASK_LEVELS
    results = []
    for img_path in sorted((test_ds / "imagesTr").iterdir()):
        ref = read_volume(test_ds / "labelsTr" / img_path.name.replace("_0000", "")).array == 2
        res = pred.predict([read_volume(img_path)])
        results.append(lesion_matching(res.mask.array > 0, ref))
    precision, recall, f1 = pooled_rates(results)
    assert sum(r.n_ref for r in results) == n_test >= 8
    # the budget is the config's 80 steps (about a CPU minute here); no timed assertion
    assert f1 >= 0.8, f"held-out lesion F1 {f1:.3f} (P {precision:.2f}, R {recall:.2f}) after {seconds:.0f} CPU s"


def _f1(run, test_ds):
    pred = medseg.load_predictor(run, device="cpu")
    results = []
    for img_path in sorted((test_ds / "imagesTr").iterdir()):
        ref = read_volume(test_ds / "labelsTr" / img_path.name.replace("_0000", "")).array == 2
        results.append(lesion_matching(pred.predict([read_volume(img_path)]).mask.array > 0, ref))
    return pooled_rates(results)[2]


def test_init_fine_tunes_an_instance_run_from_its_weights(learned, blobs, tmp_path):
    """--init loads the earlier run's weights: 4 steps with a tiny learning rate keep the learned
    F1 (from random weights 4 steps find nothing); run.json records the source."""
    out, _, _ = learned
    train_ds, test_ds, _ = blobs
    cfg = {**LEARN, "epochs": 1, "iterations_per_epoch": 4, "optimizer": {"name": "adamw", "lr": 1e-6},
           "schedule": {"warmup_iterations": 0}}
    tuned = tmp_path / "tuned"
    medseg.train(cfg, train_ds, tuned, device="cpu", progress=False, init=out)
    info = json.loads((tuned / "run.json").read_text())["init"]
    assert info["run"] == str(out.resolve()) and info["head_reset"] == []
    assert _f1(tuned, test_ds) >= 0.8
    with pytest.raises(medseg.InputError, match="U-Net run"):
        medseg.train(cfg, train_ds, tmp_path / "x", device="cpu", progress=False, init=_unet_like(tmp_path))


def _unet_like(tmp_path):
    run = tmp_path / "unet_run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"task": "semantic"}))
    (run / "labels.json").write_text(json.dumps({"labels": {"background": 0, "x": 1}, "classes": {}}))
    return run


def test_predict_and_report_on_an_instance_folder_show_the_lesion_table(learned, blobs, tmp_path):
    from tests.conftest import run_cli

    out, _, _ = learned
    _, test_ds, _ = blobs
    images = sorted((test_ds / "imagesTr").iterdir())[:2]
    r = run_cli("predict", *images, "--model", out, "--out", tmp_path / "pred", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    r = run_cli("report", tmp_path / "pred", "--ref", test_ds / "labelsTr", "--run", out, "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    for row in csv.DictReader(open(tmp_path / "pred" / "manifest.csv")):
        table = list(csv.DictReader(open(tmp_path / "pred" / f"{row['case']}_lesions.csv")))
        section = md.split(f"### {row['case']}")[1].split("###")[0]
        assert f"lesions ({len(table)};" in section
        if table:
            assert "| lesion | class | score | volume (ml) |" in section
            for t in table:   # every lesion of the table, with its class and volume
                assert f"| {t['id']} | lesion | {float(t['score']):.2f} | {float(t['volume_ml']):.3f} |" in section
        ids = np.unique(read_volume(tmp_path / "pred" / row["output"]).array)
        assert sorted(int(t["id"]) for t in table) == [int(v) for v in ids if v]
        assert (tmp_path / "rep" / "overlays" / f"{row['case']}.png").stat().st_size > 1000
