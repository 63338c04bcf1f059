"""Plan values for hand-made fingerprints, YAML round trip, and validation messages."""

import numpy as np
import pytest
import yaml

from medseg.config import ConfigError
from medseg.data.plan import estimate_memory_gb, make_plan, network_topology, target_spacing
from medseg.plans import load_plan, save_plan


def _fp(spacings, shapes, name="CT"):
    return {
        "name": "known", "labels": {"background": 0, "organ": 1}, "channels": {0: name},
        "spacings": spacings, "shapes": shapes,
        "intensity": {"0": {"mean": 50.0, "std": 20.0, "median": 48.0, "p00_5": -80.0, "p99_5": 210.0, "min": -1000.0, "max": 900.0}},
        "class_fraction": {"background": 0.9, "organ": 0.1},
    }


def test_target_spacing_median_and_anisotropic_10th_percentile():
    iso = np.array([[1.0, 1.0, 1.2], [0.8, 0.9, 1.0], [1.2, 1.1, 1.4]])
    assert target_spacing(iso) == (1.0, 1.0, 1.2)
    z = np.array([1.5, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    aniso = np.stack([np.full(10, 0.8), np.full(10, 0.8), z], axis=1)  # median z 5.0 > 3 * 0.8
    assert target_spacing(aniso) == pytest.approx((0.8, 0.8, np.percentile(z, 10)))


def test_known_isotropic_plan_is_hand_computed():
    """128^3 at 1 mm, 10 cases, 8 GB: the 128^3 patch needs ~11 GB at batch 2 (hand sum of
    voxels x filters x 56 bytes), so axes shrink by 16 until 112^3 (7.7 GB) fits."""
    fp = _fp([[1.0, 1.0, 1.0]] * 10, [[128, 128, 128]] * 10)
    k, s, f = network_topology(np.array([128, 128, 128]), (1.0, 1.0, 1.0))
    assert s == [(1, 1, 1)] + [(2, 2, 2)] * 4 and f == [32, 64, 128, 256, 320] and k == [(3, 3, 3)] * 5
    by_hand = 1.0 + 2 * (128**3 * 32 + 64**3 * 64 + 32**3 * 128 + 16**3 * 256 + 8**3 * 320) * 56 / 1e9
    assert estimate_memory_gb((128, 128, 128), s, f, 2) == pytest.approx(by_hand)
    assert by_hand > 8
    plan = make_plan(fp, gpu_memory_gb=8)
    assert plan.training.patch_size == (112, 112, 112)
    assert plan.training.batch_size == 2
    assert plan.estimated_memory_gb <= 8
    n = plan.preprocessing.normalization[0]
    assert (n.scheme, n.clip, n.mean, n.std) == ("ct", (-80.0, 210.0), 50.0, 20.0)


def test_bigger_budget_keeps_patch_and_batch_is_capped_by_dataset_size():
    small = make_plan(_fp([[1.0, 1.0, 1.0]] * 10, [[128, 128, 128]] * 10), gpu_memory_gb=80)
    assert small.training.patch_size == (128, 128, 128)
    assert small.training.batch_size == 2  # 5% of 10 cases' voxels < one patch: cap at the minimum 2
    big = make_plan(_fp([[1.0, 1.0, 1.0]] * 100, [[128, 128, 128]] * 100), gpu_memory_gb=80)
    assert big.training.batch_size == 5  # 5% of 100 * 128^3 voxels = 5 patches


def test_anisotropic_network_pools_in_plane_first():
    k, s, f = network_topology(np.array([160, 160, 32]), (0.8, 0.8, 3.0))
    assert k[0] == (3, 3, 1) and s[1] == (2, 2, 1)  # z (3 mm) waits while x/y catch up
    assert any(st[2] == 2 for st in s[2:])


def test_mr_gets_zscore():
    plan = make_plan(_fp([[1.0, 1.0, 1.0]] * 4, [[64, 64, 64]] * 4, name="T2"), 8)
    assert plan.preprocessing.normalization[0].scheme == "zscore"


def test_yaml_round_trip_and_helpful_errors(tmp_path):
    plan = make_plan(_fp([[0.8, 0.8, 2.5]] * 6, [[200, 200, 60]] * 6), 8)
    path = save_plan(plan, tmp_path / "plan.yaml")
    again = load_plan(path)
    assert again.training == plan.training and again.preprocessing == plan.preprocessing
    data = yaml.safe_load(path.read_text())

    def broken(mutate, match):
        d = yaml.safe_load(path.read_text())
        mutate(d)
        p = tmp_path / "bad.yaml"
        p.write_text(yaml.safe_dump(d))
        with pytest.raises(ConfigError, match=match):
            load_plan(p)

    broken(lambda d: d["training"].update(patch_sizes=[1, 2, 3]), r"unknown key 'patch_sizes'; allowed keys: patch_size")
    broken(lambda d: d["network"].update(name="ResNet"), r"network.name: 'ResNet' is not allowed; choose one of 'DynUNet', 'UNet'")
    broken(lambda d: d["training"].update(patch_size=[65, 64, 16]), r"patch_size.*multiple of")
    broken(lambda d: d["preprocessing"].update(target_spacing=[1, 1]), r"target_spacing: expected 3 values")
    broken(lambda d: d["preprocessing"]["normalization"][0].update(scheme="ct", clip=None), "needs clip")
    broken(lambda d: d.pop("training"), "required key 'training'")
    assert data["medseg_plan"] == 1


def test_base_filters_sets_the_network_width_and_memory_follows():
    """base_filters 16 halves every stage's width (same kernels, strides and patch); the memory
    estimate is the hand sum with the narrower filters."""
    fp = _fp([[1.0, 1.0, 1.0]] * 10, [[64, 64, 64]] * 10)
    wide, narrow = make_plan(fp, 8), make_plan(fp, 8, base_filters=16)
    assert wide.network.filters == [32, 64, 128, 256]
    assert narrow.network.filters == [16, 32, 64, 128]
    assert narrow.network.strides == wide.network.strides and narrow.training.patch_size == wide.training.patch_size
    by_hand = 1.0 + narrow.training.batch_size * (64**3 * 16 + 32**3 * 32 + 16**3 * 64 + 8**3 * 128) * 56 / 1e9
    assert narrow.estimated_memory_gb == pytest.approx(by_hand, abs=0.01)
    with pytest.raises(ConfigError, match="base filters"):
        make_plan(fp, 8, base_filters=2)
