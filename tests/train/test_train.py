"""Training: config validation, run-directory contents, exact resume, extension, Ctrl-C,
overfitting, checkpoint errors, and the CLI."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from medseg.config import ConfigError
from medseg.errors import InputError, OutputError
from medseg.train import load_config
from medseg.model.checkpoint import load_checkpoint
from medseg.model.config import config_dict
from medseg.train.trainer import train
from tests.train.conftest import tiny_config

RUN_FILES = {"config.yaml", "plan.yaml", "labels.json", "run.json", "last.pt", "best.pt", "metrics.csv", "curve.png", "tensorboard"}


def _weights(run_dir, name="last.pt"):
    return load_checkpoint(run_dir / name)["model"]


def _same(a, b, atol=0.0):
    return all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


@pytest.mark.parametrize("content, match", [
    ("optimiser: {name: sgd}", r"unknown key 'optimiser'; allowed keys: model, loss, optimizer"),
    ("optimizer: {name: adam}", r"optimizer.name: 'adam' is not allowed; choose one of 'sgd', 'adamw'"),
    ("epochs: 0", r"epochs: must be >= 1"),
    ("patch_size: [16, 16]", r"patch_size: expected 3 values"),
    ("schedule: {name: step}", r"schedule.name: 'step' is not allowed; choose one of 'poly', 'cosine', 'constant'"),
    ("optimizer: {lr: fast}", r"optimizer.lr: expected a number"),
    ("model: {name: UNet, deep_supervision: true}", r"model.deep_supervision: only DynUNet has deep supervision"),
])
def test_config_errors_name_the_key_and_allowed_values(tmp_path, content, match):
    p = tmp_path / "c.yaml"
    p.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_exponent_without_a_dot_is_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads ``lr: 1e-3`` as the string '1e-3'; medseg reads the number."""
    p = tmp_path / "c.yaml"
    p.write_text("optimizer: {lr: 3e-4, weight_decay: 1E-5}\n")
    import yaml

    assert yaml.safe_load(p.read_text())["optimizer"]["lr"] == "3e-4"
    cfg = load_config(p)
    assert cfg.optimizer.lr == 3e-4 and cfg.optimizer.weight_decay == 1e-5


def test_overrides_are_yaml_values_at_dotted_keys_on_a_copy():
    from medseg.config import apply_overrides

    data = {"epochs": 5, "optimizer": {"name": "adamw", "lr": 0.001}, "inference": {"tta": "flips"}}
    out = apply_overrides(data, ["epochs=20", "optimizer.lr=2e-4", "inference.tta=none", "data.spacing_mm=[0.8, 0.8]",
                                 "model.pretrained_weights=null", "description=a = b"])
    assert out == {"epochs": 20, "optimizer": {"name": "adamw", "lr": 2e-4}, "inference": {"tta": "none"},
                   "data": {"spacing_mm": [0.8, 0.8]}, "model": {"pretrained_weights": None}, "description": "a = b"}
    assert data == {"epochs": 5, "optimizer": {"name": "adamw", "lr": 0.001}, "inference": {"tta": "flips"}}
    assert apply_overrides(None, ["epochs=3"]) == {"epochs": 3}
    # the overridden mapping is what the config class reads: an unknown key gets its message
    with pytest.raises(ConfigError, match=r"unknown key 'epoch'; allowed keys"):
        load_config(apply_overrides({}, ["epoch=3"]))
    assert load_config(apply_overrides({}, ["epochs=3"])).epochs == 3
    for bad, match in (("epochs", "expected KEY=VALUE"), ("=3", "expected KEY=VALUE"), ("a..b=1", "expected KEY=VALUE"),
                       ("epochs=[1", "not valid YAML"), ("epochs.x=1", r"epochs is a value \(5\), not a section")):
        with pytest.raises(ConfigError, match=match):
            apply_overrides(data, [bad])


def test_presets_load_and_name_no_dataset_label():
    """Shipped presets fit any dataset: nothing in them names a label of the phantoms."""
    for name in ("unet_organs", "unet_tumor", "unet_tumor_cpu"):
        cfg = load_config(f"configs/{name}.yaml")
        assert cfg.model.name == "DynUNet"
        flat = json.dumps(config_dict(cfg))
        for label in ("liver", "spleen", "kidney", "tumour"):
            assert label not in flat, (name, label)
    cpu = load_config("configs/unet_tumor_cpu.yaml")
    assert cpu.sampling.class_weights == cpu.loss.class_weights == "auto" and cpu.postprocess.keep_largest == "auto"


def test_unknown_class_name_in_weights(phantoms, tmp_path):
    ds, plan = phantoms
    cfg = tiny_config()
    cfg.loss.class_weights = {"tumor": 2.0}  # the phantoms say "tumour"
    with pytest.raises(ConfigError, match=r"class 'tumor' is not a label of this dataset; use one of background, liver"):
        train(cfg, ds, tmp_path / "run", plan=plan, progress=False)


def test_two_epoch_run_writes_every_file(phantoms, tmp_path):
    ds, plan = phantoms
    out = tmp_path / "run"
    result = train(tiny_config(), ds, out, plan=plan, progress=False)
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    assert any((out / "tensorboard").iterdir())
    ck = torch.load(out / "last.pt", weights_only=True)  # plain data only
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "rng", "metrics", "medseg_version"} <= set(ck)
    assert ck["epoch"] == 1 and ck["iteration"] == 0 and ck["total_epochs"] == 2
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # numbered as the console prints them
    assert list(rows[0])[:6] == ["epoch", "lr", "train_loss", "seconds", "val_dice_mean", "val_dice_liver"]
    assert json.loads((out / "labels.json").read_text())["labels"]["tumour"] == 4
    run = json.loads((out / "run.json").read_text())
    assert set(run["train"]).isdisjoint(run["val"]) and (ds / "splits.json").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["iterations_per_epoch"] == 3
    assert 0 <= result["best_dice"] <= 1 and (out / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_finished_run_is_extended_by_a_larger_epochs(phantoms, tmp_path):
    ds, plan = phantoms
    part = tmp_path / "part"
    train(tiny_config(epochs=4), ds, part, plan=plan, epochs=2, progress=False)  # a finished 2-epoch run ...
    with pytest.raises(InputError, match="larger --epochs"):
        train(tiny_config(epochs=4), ds, part, plan=plan, epochs=2, resume=True, progress=False)
    ck2 = load_checkpoint(part / "last.pt")
    train(tiny_config(epochs=4), ds, part, plan=plan, epochs=4, resume=True, progress=False)  # ... extended to 4
    # (exactness of resume is proven by test_interrupted_run_resumes_exactly; here: the run grew to 4 epochs)
    rows = list(csv.DictReader(open(part / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    # the rate continues from the last one used and decays (poly) to 0 at epoch 4: no jump back up
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[2] == pytest.approx(lrs[1]) and lrs[3] < lrs[2] < lrs[0]
    assert load_checkpoint(part / "last.pt")["schedule_anchor"] == [2, pytest.approx(lrs[1] / 0.01)]
    assert ck2["optimizer"]["state"]  # momentum buffers were saved and restored
    assert load_checkpoint(part / "last.pt")["epoch"] == 3


def test_interrupted_run_resumes_exactly(phantoms, tmp_path, monkeypatch):
    ds, plan = phantoms
    straight = tmp_path / "straight"
    train(tiny_config(epochs=3), ds, straight, plan=plan, progress=False)

    from medseg.data import loader as loader_mod

    real = loader_mod.PatchDataset.sample
    calls = {"n": 0}

    def flaky(self, g):
        calls["n"] += 1
        if calls["n"] == 11:  # Ctrl-C in epoch 1, after 2 of its 3 iterations (batch 2)
            raise KeyboardInterrupt
        return real(self, g)

    monkeypatch.setattr(loader_mod.PatchDataset, "sample", flaky)
    inter = tmp_path / "inter"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(epochs=3), ds, inter, plan=plan, progress=False)
    ck = load_checkpoint(inter / "last.pt")
    assert (ck["epoch"], ck["iteration"]) == (1, 2)
    monkeypatch.setattr(loader_mod.PatchDataset, "sample", real)
    train(tiny_config(epochs=3), ds, inter, plan=plan, resume=True, progress=False)
    assert _same(_weights(straight), _weights(inter), atol=1e-5)
    assert load_checkpoint(inter / "last.pt")["epoch"] == 2


def test_loss_falls_when_overfitting_one_case(phantoms, tmp_path):
    ds, plan = phantoms
    cfg = tiny_config(epochs=8, iterations_per_epoch=6, val_every=8)
    cfg.augmentation.enabled = False
    cfg.optimizer.name, cfg.optimizer.lr = "adamw", 1e-2
    train(cfg, ds, tmp_path / "fit", plan=plan, fold="all", progress=False)
    losses = [float(r["train_loss"]) for r in csv.DictReader(open(tmp_path / "fit" / "metrics.csv"))]
    assert losses[-1] < 0.75 * losses[0], losses


def test_checkpoint_errors(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not a medseg checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_run_dir_guards(phantoms, tmp_path):
    ds, plan = phantoms
    with pytest.raises(InputError, match="no last.pt to resume"):
        train(tiny_config(), ds, tmp_path / "none", plan=plan, resume=True, progress=False)
    out = tmp_path / "run"
    train(tiny_config(epochs=1), ds, out, plan=plan, progress=False)
    with pytest.raises(OutputError, match="already holds a run"):
        train(tiny_config(epochs=1), ds, out, plan=plan, progress=False)


def test_cli_train_and_errors(cli, phantoms, tmp_path):
    ds, plan = phantoms
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\niterations_per_epoch: 2\nnum_workers: 0\n")
    r = cli("train", "--config", cfg, "--dataset", ds, "--out", tmp_path / "run", "--plan", plan, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "best mean foreground Dice" in r.stdout and (tmp_path / "run" / "best.pt").exists()
    # --set overrides the file's values (the file itself is untouched) and reaches the stored config
    r = cli("train", "--config", cfg, "--dataset", ds, "--out", tmp_path / "run2", "--plan", plan, "--device", "cpu",
            "--set", "iterations_per_epoch=3", "--set", "optimizer.lr=0.002")
    assert r.returncode == 0, r.stderr
    stored = yaml.safe_load((tmp_path / "run2" / "config.yaml").read_text())
    assert stored["iterations_per_epoch"] == 3 and stored["optimizer"]["lr"] == 0.002 and stored["epochs"] == 1
    assert cfg.read_text() == "epochs: 1\niterations_per_epoch: 2\nnum_workers: 0\n"
    for item, message in (("optimizer.lr", "error: --set 'optimizer.lr': expected KEY=VALUE"),
                          ("optimiser.lr=1", "error: config: unknown key 'optimiser'"),
                          ("epochs.n=2", "error: --set 'epochs.n=2': epochs is a value (1), not a section")):
        r = cli("train", "--config", cfg, "--dataset", ds, "--out", tmp_path / "x", "--set", item)
        assert r.returncode == 2 and r.stderr.strip().startswith(message), (item, r.stderr)
        assert "Traceback" not in r.stderr and not (tmp_path / "x").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: many\n")
    r = cli("train", "--config", bad, "--dataset", ds, "--out", tmp_path / "x")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: bad.yaml.epochs: expected an integer")
    assert "Traceback" not in r.stderr


def test_volume_crop_matches_nibabel_slicer():
    import nibabel as nib

    from medseg import Volume
    from tests.helpers import random_affine

    aff = random_affine(np.random.default_rng(2))
    data = np.arange(10 * 9 * 8, dtype=np.int16).reshape(10, 9, 8)
    crop = Volume(data, aff).crop((2, 1, 3), (7, 9, 6))
    ref = nib.Nifti1Image(data, aff).slicer[2:7, 1:9, 3:6]
    np.testing.assert_array_equal(crop.array, np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(crop.affine, ref.affine)


def test_cascade_stage_two_trains_on_organ_crops(phantoms, tmp_path):
    from medseg.data.layout import load_dataset
    from medseg.io import read_volume
    from medseg.train.cascade import crop_dataset
    from medseg.model.config import CascadeConfig

    ds, plan = phantoms
    spec = load_dataset(ds)
    crops = crop_dataset(spec, ["liver"], 10.0)
    assert [c.case_id for c in crops.cases] == [c.case_id for c in spec.cases]
    full, cut = read_volume(spec.cases[0].images[0]), read_volume(crops.cases[0].images[0])
    lab_full, lab_cut = read_volume(spec.cases[0].label), read_volume(crops.cases[0].label)
    assert np.all(np.array(cut.shape) <= np.array(full.shape)) and cut.same_grid(lab_cut)
    # every liver voxel is kept, at the same world position (crop geometry is exact)
    assert (lab_cut.array == 1).sum() == (lab_full.array == 1).sum()
    w_cut = lab_cut.geometry.index_to_world(np.argwhere(lab_cut.array == 1).mean(0))
    w_full = lab_full.geometry.index_to_world(np.argwhere(lab_full.array == 1).mean(0))
    assert np.allclose(w_cut, w_full, atol=1e-3)
    cfg = tiny_config(epochs=1)
    cfg.cascade = CascadeConfig(["liver"], 10.0)
    out = tmp_path / "stage2"
    train(cfg, ds, out, plan=plan, progress=False)
    assert json.loads((out / "run.json").read_text())["cascade"] == {"organ_labels": ["liver"], "margin_mm": 10.0,
                                                                "organ_model": None}
    with pytest.raises(InputError, match=r"'lver'\] are not labels"):
        crop_dataset(spec, ["lver"], 10.0)


@pytest.mark.parametrize("switch", ["mirror", "spatial", "intensity"])
def test_augmentation_switches_reach_the_patch_sampler(phantoms, tmp_path, switch):
    """`augmentation: {mirror|spatial|intensity: false}` zeroes exactly those probabilities in the
    training data's augmentation, and no drawn patch parameters use them (the sides stay put)."""
    from medseg.data.augment import AugmentConfig, draw_params
    from medseg.train.distributed import Dist
    from medseg.train.setup import prepare

    ds, plan = phantoms
    cfg = tiny_config()
    setattr(cfg.augmentation, switch, False)
    _, data = prepare(ds, cfg, tmp_path / "run", plan, False, "all", 0, 8.0, Dist())
    aug, default = data.augment, AugmentConfig()
    groups = {"mirror": ["p_flip"], "spatial": ["p_rotate", "p_scale"],
              "intensity": ["p_brightness", "p_contrast", "p_gamma", "p_noise"]}
    for name, keys in groups.items():
        for k in keys:
            assert getattr(aug, k) == (0.0 if name == switch else getattr(default, k)), (switch, k)
    draws = [draw_params(np.random.default_rng(i), aug) for i in range(200)]
    if switch == "mirror":
        assert not any(any(p.flips) for p in draws)
    if switch == "spatial":
        assert not any(p.spatial for p in draws)
    if switch == "intensity":
        assert all((p.brightness, p.contrast, p.gamma, p.noise_sigma) == (1.0, 1.0, 1.0, 0.0) for p in draws)
    assert any(p.spatial or any(p.flips) or p.gamma != 1.0 for p in draws)  # the others still act


def test_validation_dice_pools_voxels_over_cases():
    """Hand-computed: tumour 80 of 100 reference voxels found in case a (40 predicted outside),
    case b has no tumour but 5 false-positive voxels. Pooled Dice = 2*80 / (125 + 100) = 0.711;
    the per-case mean would be (0.727 + 0) / 2. A class absent from every reference and
    prediction has nothing to score: NaN, and left out of the mean that picks best.pt (counting
    it as 1.0 once inflated a run's mean from 0.21 to 0.47)."""
    from medseg.train.validation import mean_dice, pooled_dice

    counts = {"a": {"liver": (900, 950, 1000), "tumour": (80, 120, 100), "cyst": (0, 0, 0)},
              "b": {"liver": (500, 500, 600), "tumour": (0, 5, 0), "cyst": (0, 0, 0)}}
    got = pooled_dice(counts)
    assert list(got) == ["liver", "tumour", "cyst"]
    assert got["liver"] == pytest.approx(2 * 1400 / (1450 + 1600))
    assert got["tumour"] == pytest.approx(160 / 225)
    assert np.isnan(got["cyst"])
    assert mean_dice(got) == pytest.approx((2 * 1400 / (1450 + 1600) + 160 / 225) / 2)
    assert np.isnan(mean_dice({"cyst": float("nan")}))


def test_cases_added_after_the_folds_are_flagged(tmp_path):
    """splits.json is fixed once made; cases added later are in no fold, and the user is told."""
    from medseg.errors import MedsegWarning
    from medseg.train.splits import fold_cases, load_or_create_splits

    ids = [f"c{i:02d}" for i in range(10)]
    first = load_or_create_splits(tmp_path, ids)
    assert sorted(c for f in first for c in f["val"]) == ids
    with pytest.warns(MedsegWarning, match="2 case.*c10, c11.*delete splits.json"):
        again = load_or_create_splits(tmp_path, ids + ["c10", "c11"])
    train_ids, val_ids = fold_cases(again, 0)
    assert "c10" not in train_ids + val_ids and again == first


def test_deep_supervision_loss_is_monai_dice_ce_per_head_weighted_1_and_half():
    from monai.losses import DiceCELoss

    from medseg.train.components import build_loss
    from tests.train.conftest import tiny_plan

    cfg = tiny_config()
    cfg.model.deep_supervision = True
    loss = build_loss(cfg, tiny_plan())
    torch.manual_seed(0)
    out = torch.randn(2, 2, 5, 8, 8, 4)  # (B, heads, C, X, Y, Z): main head first
    y = torch.randint(0, 5, (2, 1, 8, 8, 4))
    ref = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, smooth_nr=1e-5, smooth_dr=1e-5, batch=True)
    assert float(loss(out, y)) == pytest.approx(float(ref(out[:, 0], y) + 0.5 * ref(out[:, 1], y)), rel=1e-6)
    assert float(loss(out[:, 0], y)) == pytest.approx(float(ref(out[:, 0], y)), rel=1e-6)  # eval-mode logits


def test_deep_supervision_run_trains_and_predicts_with_its_main_head(phantoms, tmp_path):
    from medseg.io import read_volume
    from medseg.predict import Predictor

    ds, plan = phantoms
    cfg = tiny_config(val_every=2)
    cfg.model.deep_supervision = True
    train(cfg, ds, tmp_path / "ds", plan=plan, fold="all", progress=False)
    assert any(k.startswith("deep_supervision_heads") for k in _weights(tmp_path / "ds"))
    assert yaml.safe_load((tmp_path / "ds" / "config.yaml").read_text())["model"]["deep_supervision"] is True
    image = read_volume(next((ds / "imagesTr").iterdir()))
    mask = Predictor.from_run(tmp_path / "ds", device="cpu")(image)
    assert mask.shape == image.shape and np.array_equal(mask.affine, image.affine)
