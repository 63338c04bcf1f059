"""Training-loader throughput: medseg vs an equivalent MONAI pipeline, same phantoms, same run.

medseg:   PreprocessedCache (memory-mapped .npy) + PatchDataset + DataLoader(2 workers)
baseline: MONAI CacheDataset (LoadImaged, EnsureChannelFirstd, Orientationd RAS, Spacingd to
          the plan's target spacing, ScaleIntensityRanged = the plan's CT clip + z-score, SpatialPadd)
          + RandCropByPosNegLabeld (pos 1 : neg 2, i.e. 1/3 foreground) + the same
          augmentations (rotate p0.2 +-15 deg, zoom p0.2 0.85-1.25, flips p0.5 per axis,
          intensity scale p0.15, gamma p0.3 0.7-1.5, noise p0.1) + DataLoader(2 workers)

Both caches are filled first (not timed); then ``--batches`` batches of the plan's patch size
are drawn after a warm-up. Prints patches/s and the ratio medseg / MONAI (above 1 = faster).
Run: ``.venv/bin/python bench/loading.py [--cases 8] [--batches 60] [--size small]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch


def _phantoms(out: Path, cases: int, size: str) -> Path:
    from medseg.data.phantoms import write_phantom_dataset

    write_phantom_dataset(out, cases=cases, seed=0, size=size, dicom_study=False)
    return out


def _rate(loader, batches: int, batch_size: int) -> float:
    it = iter(loader)
    for _ in range(3):  # warm-up: workers started, first pages read
        next(it)
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        n += b["image"].shape[0]
    return n / (time.perf_counter() - t)


def medseg_loader(spec, plan, cache_dir: Path, length: int):
    from medseg.data.augment import AugmentConfig
    from medseg.data.cache import PreprocessedCache
    from medseg.data.loader import PatchDataset, make_loader
    from medseg.data.sampling import SamplingConfig

    cache = PreprocessedCache(spec, plan, cache_dir)
    cache.ensure(workers=2)
    ds = PatchDataset(cache.cases(), SamplingConfig(plan.training.patch_size, 1 / 3), AugmentConfig(), seed=0, length=length)
    return make_loader(ds, batch_size=plan.training.batch_size, num_workers=2)


def monai_loader(spec, plan, length: int):
    from monai import transforms as T
    from monai.data import CacheDataset, DataLoader
    from torch.utils.data import RandomSampler

    norm = plan.preprocessing.normalization[0]
    lo, hi = norm.clip
    patch = list(plan.training.patch_size)
    rot = math.radians(15)
    keys = ["image", "label"]
    det = [
        T.LoadImaged(keys), T.EnsureChannelFirstd(keys), T.Orientationd(keys, axcodes="RAS"),
        T.Spacingd(keys, pixdim=plan.preprocessing.target_spacing, mode=("bilinear", "nearest")),
        T.ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=(lo - norm.mean) / norm.std,
                               b_max=(hi - norm.mean) / norm.std, clip=True),
        T.SpatialPadd(keys, spatial_size=patch),  # medseg pads small volumes too; MONAI's crop refuses them
    ]
    rand = [
        T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=patch, pos=1, neg=2, num_samples=1),
        T.RandRotated(keys, range_x=rot, range_y=rot, range_z=rot, prob=0.2, mode=("bilinear", "nearest")),
        T.RandZoomd(keys, min_zoom=0.85, max_zoom=1.25, prob=0.2, mode=("trilinear", "nearest"), keep_size=True),
        T.RandFlipd(keys, prob=0.5, spatial_axis=0), T.RandFlipd(keys, prob=0.5, spatial_axis=1),
        T.RandFlipd(keys, prob=0.5, spatial_axis=2),
        T.RandScaleIntensityd("image", factors=0.25, prob=0.15),
        T.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3),
        T.RandGaussianNoised("image", prob=0.1, std=0.1),
    ]
    files = [{"image": str(c.images[0]), "label": str(c.label)} for c in spec.cases]
    pipeline = T.Compose(det + rand)
    pipeline.set_random_state(0)
    ds = CacheDataset(files, pipeline, cache_rate=1.0, num_workers=2, progress=False)
    # one long epoch, like medseg's: cases drawn with replacement
    sampler = RandomSampler(ds, replacement=True, num_samples=length)
    return DataLoader(ds, batch_size=plan.training.batch_size, sampler=sampler, num_workers=2, persistent_workers=True)


def main() -> None:
    ap = argparse.ArgumentParser(description="medseg vs MONAI training loader throughput")
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--size", default="small", choices=["small", "medium"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    from medseg.data.fingerprint import compute_fingerprint
    from medseg.data.layout import load_dataset
    from medseg.data.plan import make_plan

    with tempfile.TemporaryDirectory() as tmp:
        root = _phantoms(Path(tmp) / "phantoms", args.cases, args.size)
        spec = load_dataset(root)
        plan = make_plan(compute_fingerprint(spec), gpu_memory_gb=8)
        length = args.batches * plan.training.batch_size + 16
        t = time.perf_counter()
        ours = medseg_loader(spec, plan, Path(tmp) / "cache", length)
        t_cache_ours = time.perf_counter() - t
        t = time.perf_counter()
        base = monai_loader(spec, plan, length)
        t_cache_base = time.perf_counter() - t
        r_ours = _rate(ours, args.batches, plan.training.batch_size)
        r_base = _rate(base, args.batches, plan.training.batch_size)
    print(f"machine: {platform.node()} | {platform.machine()} | {torch.get_num_threads()} torch thread(s) per process, "
          f"2 loader workers | torch {torch.__version__}")
    print(f"data: {args.cases} {args.size} phantoms, patch {list(plan.training.patch_size)}, batch {plan.training.batch_size}, "
          f"target spacing {list(plan.preprocessing.target_spacing)} mm")
    print(f"cache fill: medseg {t_cache_ours:.1f} s, MONAI CacheDataset {t_cache_base:.1f} s")
    print(f"{'loader':34} {'patches/s':>10}")
    print(f"{'medseg PatchDataset':34} {r_ours:10.1f}")
    print(f"{'MONAI CacheDataset+RandCropByPosNeg':34} {r_base:10.1f}")
    print(f"ratio medseg / MONAI: {r_ours / r_base:.2f}")


if __name__ == "__main__":
    main()
