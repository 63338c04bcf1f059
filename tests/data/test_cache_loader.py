"""Preprocessed cache (reuse, invalidation), patch sampling rates, augmentation, loader."""

import os
import time

import numpy as np
import pytest
import torch

from medseg.data.augment import AugmentConfig, AugmentParams, draw_params, flip, warp
from medseg.data.cache import PreprocessedCache
from medseg.data.fingerprint import compute_fingerprint
from medseg.data.layout import load_dataset
from medseg.data.loader import PatchDataset, make_loader
from medseg.data.plan import make_plan
from medseg.data.sampling import SamplingConfig, choose_patch, crop
from medseg.io import read_volume
from medseg.preprocess import Preprocessor
from tests.dataset_factory import write_dataset


@pytest.fixture
def dataset(tmp_path):
    spec = load_dataset(write_dataset(tmp_path / "ds", n=4, shape=(28, 24, 14)))
    plan = make_plan(compute_fingerprint(spec), gpu_memory_gb=8)
    return spec, plan, tmp_path / "cache"


def test_cache_matches_direct_preprocessing_and_is_reused(dataset):
    spec, plan, root = dataset
    cache = PreprocessedCache(spec, plan, root)
    assert cache.ensure() == {"computed": 4, "reused": 0}
    assert cache.ensure() == {"computed": 0, "reused": 4}
    c0 = cache.cases()[0]
    case = spec.cases[0]
    pre = Preprocessor(plan)
    img, rec = pre.image([read_volume(case.images[0])])
    lab = pre.label(read_volume(case.label), rec)
    np.testing.assert_array_equal(c0.image(), img)
    np.testing.assert_array_equal(c0.label(), lab)
    assert isinstance(c0.image(), np.memmap)
    locs = c0.locations()
    assert set(locs) == set(np.unique(lab)) - {0}
    assert all(np.all(lab[tuple(l.T)] == v) for v, l in locs.items())
    assert not any(p.name.startswith(".") for p in cache.folder.iterdir())  # no temp leftovers


def test_cache_invalidation_on_plan_and_source_change(dataset):
    spec, plan, root = dataset
    PreprocessedCache(spec, plan, root).ensure()
    plan.preprocessing.target_spacing = tuple(s * 1.5 for s in plan.preprocessing.target_spacing)
    other = PreprocessedCache(spec, plan, root)
    assert other.ensure() == {"computed": 4, "reused": 0}  # new plan -> new key
    src = spec.cases[2].label
    data = src.read_bytes()
    time.sleep(0.01)
    src.write_bytes(data)  # same content, new mtime: must be redone
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert other.ensure() == {"computed": 1, "reused": 3}


def test_a_change_that_keeps_size_and_mtime_is_seen(dataset):
    """A label edited in place with the same size, its mtime then set back (``cp -p``, ``touch -r``,
    ``rsync -t``): the cache must not serve the old preprocessed label."""
    spec, plan, root = dataset
    cache = PreprocessedCache(spec, plan, root)
    cache.ensure()
    case = spec.cases[1]
    src = case.label
    st = src.stat()
    vol = read_volume(src)
    import nibabel as nib

    replacement = src.with_name("edited_" + src.name)
    new = b""
    for idx in np.argwhere(vol.array > 0)[:200]:  # one voxel cleared, such that the file keeps its size
        edited = np.asarray(vol.array).copy()
        edited[tuple(idx)] = 0
        nib.save(nib.Nifti1Image(edited, vol.affine), str(replacement))
        new = replacement.read_bytes()
        if len(new) == st.st_size:
            break
    replacement.unlink()
    assert len(new) == st.st_size, "no same-size edit found"
    with open(src, "r+b") as f:  # in place: same inode
        f.write(new)
        f.truncate()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old mtime back
    assert src.stat().st_mtime_ns == st.st_mtime_ns and src.stat().st_ino == st.st_ino
    assert cache.ensure() == {"computed": 1, "reused": 3}
    cached = next(c for c in cache.cases() if c.case_id == case.case_id)
    lab = Preprocessor(plan).label(read_volume(src), Preprocessor(plan).image([read_volume(case.images[0])])[1])
    np.testing.assert_array_equal(cached.label(), lab)


def test_temporaries_of_killed_runs_are_removed_live_ones_kept(dataset):
    spec, plan, root = dataset
    cache = PreprocessedCache(spec, plan, root)
    cache.folder.mkdir(parents=True)
    dead_pid = 2**22 + 12345  # above Linux's pid_max limit: no such process
    dead = cache.folder / f".case_000.tmp-{dead_pid}-1"
    live = cache.folder / f".case_001.tmp-{os.getppid()}-1"  # e.g. another run filling the same cache
    for d in (dead, live):
        d.mkdir()
        (d / "image.npy").write_bytes(b"half")
    cache.ensure()
    assert not dead.exists() and live.exists()


def test_forced_patches_follow_the_configured_rates():
    rng = np.random.default_rng(0)
    shape = (60, 60, 30)
    locs = {1: np.argwhere(np.ones((5, 5, 5))) + 10, 4: np.array([[40, 40, 20]])}
    cfg = SamplingConfig((16, 16, 8), foreground_fraction=0.5, class_weights={4: 3.0})
    n = 4000
    choices = [choose_patch(shape, locs, cfg, rng) for _ in range(n)]
    forced = np.array([c.forced_class if c.forced_class is not None else 0 for c in choices])
    # P(tumour) = 0.5 * 3 / 4 = 0.375; P(organ) = 0.5 * 1 / 4 = 0.125 (binomial sd ~0.008)
    assert abs(np.mean(forced == 4) - 0.375) < 0.03
    assert abs(np.mean(forced == 1) - 0.125) < 0.03
    # a forced centre keeps its voxel inside the patch
    for c in choices:
        if c.forced_class == 4:
            assert np.all(np.abs(c.centre - [40, 40, 20]) <= np.array(cfg.patch_size) // 4)


def test_sampled_patches_contain_the_rare_class_at_the_configured_rate(dataset):
    spec, plan, root = dataset
    cache = PreprocessedCache(spec, plan, root)
    cache.ensure()
    cfg = SamplingConfig(plan.training.patch_size, foreground_fraction=0.5, class_weights={2: 1.0, 1: 1.0})
    ds = PatchDataset(cache.cases(), cfg, augment=None, seed=1, length=400)
    items = [ds[i] for i in range(400)]
    has_lesion = np.mean([(it["label"] == 2).any().item() for it in items])
    forced_lesion = np.mean([it["forced_class"] == 2 for it in items])
    assert abs(forced_lesion - 0.25) < 0.07
    assert has_lesion >= forced_lesion  # every forced patch contains its class
    assert all((it["label"] == 2).any() for it in items if it["forced_class"] == 2)


def test_crop_pads_outside_the_volume():
    a = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    out = crop(a, np.array([-1, 0, 0]), np.array([2, 3, 3]), np.float32(-5))
    assert out.shape == (3, 3, 3) and np.all(out[0] == -5)
    np.testing.assert_array_equal(out[1:], a[:2])


def test_augmentation_is_deterministic_and_geometric_ops_are_exact():
    cfg = AugmentConfig(p_rotate=1.0, p_scale=1.0)
    a = draw_params(np.random.default_rng(5), cfg)
    b = draw_params(np.random.default_rng(5), cfg)
    assert np.array_equal(a.matrix, b.matrix)
    assert (a.flips, a.brightness, a.gamma, a.noise_seed) == (b.flips, b.brightness, b.gamma, b.noise_seed)
    c = draw_params(np.random.default_rng(6), cfg)
    assert not np.array_equal(a.matrix, c.matrix)
    lab = np.random.default_rng(0).integers(0, 3, size=(9, 9, 5)).astype(np.uint8)
    img = lab[None].astype(np.float32)
    # 90 degrees about the k axis must equal np.rot90 on the label (nearest) and the image
    rot = AugmentParams(matrix=np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]))
    wi, wl = warp(img, lab, rot, (9, 9, 5))
    # the matrix maps output offsets to source offsets: out[i, j] = in[-j, i] (clockwise)
    np.testing.assert_array_equal(wl, np.rot90(lab, k=-1, axes=(0, 1)))
    np.testing.assert_allclose(wi[0], wl.astype(np.float32), atol=1e-5)
    fi, fl = flip(img, lab, (True, False, True))
    np.testing.assert_array_equal(fl, lab[::-1, :, ::-1])
    np.testing.assert_array_equal(fi[0], fl.astype(np.float32))


def test_loader_workers_give_the_same_batches_as_no_workers(dataset):
    spec, plan, root = dataset
    cache = PreprocessedCache(spec, plan, root)
    cache.ensure()
    cfg = SamplingConfig(plan.training.patch_size, 0.33)
    ds = PatchDataset(cache.cases(), cfg, AugmentConfig(p_rotate=0.5, p_scale=0.5, p_noise=0.5), seed=3, length=8)
    ref = list(make_loader(ds, batch_size=2, num_workers=0))
    par = list(make_loader(ds, batch_size=2, num_workers=2))
    assert len(ref) == len(par) == 4
    for a, b in zip(ref, par):
        assert a["image"].shape == (2, 1, *plan.training.patch_size) and a["label"].dtype == torch.int64
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    loader = make_loader(ds, batch_size=2, num_workers=0)
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))["image"], ref[0]["image"])  # a new epoch draws new patches
