"""Training from the CLI (``task: instance`` dispatch), the run directory, Ctrl-C + exact resume,
and prediction from the trained run on a flipped / oblique scan (output on the source grid)."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from medseg.config import ConfigError
from medseg.errors import InputError, OutputError
from medseg.instance import dataset as inst_dataset
from medseg.instance.config import instance_config_from_dict
from medseg.instance.trainer import train_instance
from medseg.model.checkpoint import load_checkpoint
from tests.instance.conftest import TINY

RUN_FILES = {"config.yaml", "labels.json", "run.json", "last.pt", "best.pt", "metrics.csv", "curve.png", "tensorboard"}


@pytest.fixture(scope="session")
def cli_run(phantoms, tiny_yaml, tmp_path_factory):
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("instance_run") / "run"
    r = run_cli("train", "--config", tiny_yaml, "--dataset", phantoms, "--out", out, "--epochs", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    return out, r


def test_cli_train_writes_an_instance_run(cli_run):
    out, r = cli_run
    assert "best validation 3D lesion F1" in r.stdout
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    run = json.loads((out / "run.json").read_text())
    assert run["task"] == "instance" and set(run["train"]).isdisjoint(run["val"]) and run["classes"] == {"tumour": 4}
    assert json.loads((out / "labels.json").read_text())["classes"] == {"background": 0, "tumour": 1}
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and ck["iteration"] == 0 and ck["task"] == "instance"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0"]
    assert list(rows[0])[:8] == ["epoch", "lr", "train_loss", "seconds", "val_ap50", "val_lesion_f1",
                                 "val_lesion_precision", "val_lesion_recall"]
    assert 0 <= float(rows[0]["val_lesion_f1"]) <= 1


def _train_until_ctrl_c(monkeypatch, cfg, dataset, out, at_batch: int) -> None:
    """Train until Ctrl-C arrives while the ``at_batch``-th batch (1-based) is being made."""
    real, calls = inst_dataset.make_batch, []

    def interrupt(*a, **k):
        calls.append(1)
        if len(calls) == at_batch:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr("medseg.instance.trainer.make_batch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_instance(cfg, dataset, out, device="cpu", progress=False)


def test_ctrl_c_then_resume_ends_with_the_same_weights(cli_run, phantoms, tmp_path, monkeypatch):
    out_ref, _ = cli_run
    cfg = instance_config_from_dict(TINY)
    real = inst_dataset.make_batch
    out = tmp_path / "run"
    _train_until_ctrl_c(monkeypatch, cfg, phantoms, out, at_batch=2)
    assert load_checkpoint(out / "last.pt")["iteration"] == 1
    with pytest.raises(OutputError, match="already holds a run; pass --resume"):
        train_instance(cfg, phantoms, out, device="cpu", progress=False)
    monkeypatch.setattr("medseg.instance.trainer.make_batch", real)
    train_instance(cfg, phantoms, out, device="cpu", resume=True, progress=False)
    a, b = load_checkpoint(out / "last.pt")["model"], load_checkpoint(out_ref / "last.pt")["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    with pytest.raises(InputError, match="finished 1 epochs; pass a larger --epochs"):
        train_instance(cfg, phantoms, out, device="cpu", resume=True, progress=False)
    # extending the finished run continues from its last rate (no jump back up the cosine)
    train_instance(cfg, phantoms, out, device="cpu", resume=True, epochs=2, progress=False)
    ck = load_checkpoint(out / "last.pt")
    assert ck["total_epochs"] == 2 and tuple(ck["schedule_anchor"])[0] == 1
    lrs = [float(r["lr"]) for r in csv.DictReader(open(out / "metrics.csv"))]
    assert len(lrs) == 2 and lrs[1] <= lrs[0] + 1e-12


def test_unknown_class_is_named(phantoms, tmp_path):
    cfg = instance_config_from_dict({**TINY, "data": {"classes": ["tumor"]}})
    with pytest.raises(ConfigError, match=r"data.classes: 'tumor' is not a foreground label of this dataset; "
                                          r"use one of liver, spleen, kidney, tumour"):
        train_instance(cfg, phantoms, tmp_path / "run", device="cpu", progress=False)


def test_prediction_from_the_run_lies_on_the_source_grid(cli_run, phantoms):
    from medseg.io import read_volume
    from medseg.predict.registry import load_predictor, run_task
    from medseg.volume import Volume

    out, _ = cli_run
    assert run_task(out) == "instance"
    pred = load_predictor(out, device="cpu", score_threshold=0.0)
    assert type(pred).__name__ == "InstancePredictor" and pred.labels == {"background": 0, "tumour": 1}
    src = read_volume(sorted((phantoms / "imagesTr").iterdir())[0])
    src = src.crop((0, 0, 4), (src.shape[0], src.shape[1], 10))  # six slices keep the test fast
    # the same voxels stored flipped along i and k, and tilted by 6 degrees
    c, s = math.cos(math.radians(6)), math.sin(math.radians(6))
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    flip[0, 3], flip[2, 3] = src.shape[0] - 1, src.shape[2] - 1
    rot = np.eye(4)
    rot[:2, :2] = [[c, -s], [s, c]]
    vol = Volume(np.ascontiguousarray(src.array[::-1, :, ::-1]), rot @ src.affine @ flip)
    res = pred.predict([vol])
    assert res.mask.shape == vol.shape and np.array_equal(res.mask.affine, vol.affine)
    assert res.mask.array.dtype == np.uint16
    assert sorted(np.unique(res.mask.array[res.mask.array > 0]).tolist()) == [r["id"] for r in res.tables["lesions"]]


def test_an_existing_lesion_table_is_not_replaced_without_overwrite(cli_run, phantoms, tmp_path):
    """The lesion table ``<case>_lesions.csv`` is an output of the case like its mask: a file of
    that name that medseg did not write stops the batch before anything is written."""
    from tests.conftest import run_cli

    out, _ = cli_run
    src = sorted((phantoms / "imagesTr").iterdir())[0]
    case = src.name.replace("_0000.nii.gz", "")
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / f"{case}.nii.gz").symlink_to(src)
    dest = tmp_path / "pred"
    dest.mkdir()
    table = dest / f"{case}_lesions.csv"
    table.write_text("someone else's table\n")
    r = run_cli("predict", inp, "--model", out, "--out", dest, "--device", "cpu")
    assert r.returncode == 2 and "were not written by a medseg" in r.stderr and str(table) in r.stderr, r.stderr
    assert table.read_text() == "someone else's table\n" and sorted(p.name for p in dest.iterdir()) == [table.name]


def test_weight_average_is_what_predicts_and_resumes_exactly(phantoms, tmp_path, monkeypatch):
    """With optimizer.ema_decay, best.pt / last.pt hold the average as "model" (what prediction
    loads) and the trained weights as "train_model"; Ctrl-C + resume restores both exactly."""
    from medseg.instance.predictor import InstancePredictor

    cfg = instance_config_from_dict({**TINY, "optimizer": {**TINY["optimizer"], "ema_decay": 0.9},
                                     "iterations_per_epoch": 3})
    ref = train_instance(cfg, phantoms, tmp_path / "ref", device="cpu", progress=False)
    ck_ref = load_checkpoint(tmp_path / "ref" / "last.pt")
    assert ck_ref["ema_updates"] == 3
    avg, raw = ck_ref["model"], ck_ref["train_model"]
    assert any(not torch.allclose(avg[k].float(), raw[k].float()) for k in avg)  # an average, not a copy
    assert all(torch.equal(v, ref["model"].state_dict()[k]) for k, v in avg.items())
    pred = InstancePredictor.from_run(tmp_path / "ref", device="cpu")
    best = load_checkpoint(tmp_path / "ref" / "best.pt")["model"]
    assert all(torch.equal(v, best[k]) for k, v in pred.model.state_dict().items())

    real = inst_dataset.make_batch
    out = tmp_path / "run"
    _train_until_ctrl_c(monkeypatch, cfg, phantoms, out, at_batch=3)
    assert load_checkpoint(out / "last.pt")["ema_updates"] == 2
    monkeypatch.setattr("medseg.instance.trainer.make_batch", real)
    train_instance(cfg, phantoms, out, device="cpu", resume=True, progress=False)
    ck = load_checkpoint(out / "last.pt")
    assert ck["ema_updates"] == 3
    for key in ("model", "train_model"):
        assert all(torch.allclose(ck[key][k].float(), ck_ref[key][k].float(), atol=1e-5) for k in ck_ref[key]), key


def test_val_max_cases_validates_on_the_first_cases_of_the_fold(tmp_path):
    from medseg.train.splits import fold_cases
    from tests.instance.conftest import write_blob_dataset

    write_blob_dataset(tmp_path / "blobs", cases=10, seed=0)
    cfg = instance_config_from_dict({**TINY, "data": {**TINY["data"], "classes": ["lesion"]}, "val_max_cases": 1})
    train_instance(cfg, tmp_path / "blobs", tmp_path / "run", device="cpu", progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    _, val_ids = fold_cases(json.loads((tmp_path / "blobs" / "splits.json").read_text()), 0)
    assert len(val_ids) == 2 and run["val"] == val_ids[:1]
    with pytest.raises(ConfigError, match="val_max_cases: must be >= 0"):
        instance_config_from_dict({**TINY, "val_max_cases": -1})
