"""Metrics benchmark: ``medseg.metrics.evaluate_case`` vs MONAI's metric classes.

One synthetic 512x512x300 label-map pair (spacing 0.8 x 0.8 x 2.5 mm; five "organs":
ellipsoids of several sizes, the prediction shifted, resized and with a missed and a spurious
blob) is scored in this one process by

* medseg: ``evaluate_case(pred, ref, spacing, tolerance_mm=1)`` -- Dice, IoU, HD95, ASSD,
  NSD, volumes *and* lesion-wise detection, for every class;
* MONAI (baseline): ``DiceMetric``, ``HausdorffDistanceMetric(percentile=95)``,
  ``SurfaceDistanceMetric(symmetric=True)`` and ``SurfaceDiceMetric([1.0])`` with
  ``spacing=``, per class on ``[1, 1, H, W, D]`` tensors (the one-hot conversion included).

ratio = medseg time / MONAI time (below 1: medseg is faster). The script also prints how far
the two agree. Run: ``.venv/bin/python bench/metrics.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np
import torch

SHAPE = (512, 512, 300)
SPACING = (0.8, 0.8, 2.5)
#: label: (centre in voxels, radii in mm) of each reference "organ".
ORGANS = {
    1: ((180, 250, 150), (95.0, 80.0, 85.0)),   # liver-sized
    2: ((350, 300, 160), (55.0, 45.0, 60.0)),   # spleen-sized
    3: ((300, 150, 120), (30.0, 25.0, 45.0)),   # kidney-sized
    4: ((180, 420, 120), (30.0, 25.0, 45.0)),
    5: ((400, 400, 200), (12.0, 12.0, 15.0)),   # lesion-sized
}


def _ellipsoid(a: np.ndarray, label: int, centre, radii_mm, shift=(0, 0, 0)) -> None:
    """Paint an ellipsoid into ``a`` (only inside its bounding box, to stay fast)."""
    r_vox = [r / s for r, s in zip(radii_mm, SPACING)]
    c = [cc + sh for cc, sh in zip(centre, shift)]
    lo = [max(0, int(cc - r) - 1) for cc, r in zip(c, r_vox)]
    hi = [min(n, int(cc + r) + 2) for cc, r, n in zip(c, r_vox, SHAPE)]
    g = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    inside = sum(((gi - cc) / r) ** 2 for gi, cc, r in zip(g, c, r_vox)) <= 1.0
    box = a[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    box[inside] = label


def make_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pred, ref) uint8 label maps of shape SHAPE."""
    rng = np.random.default_rng(seed)
    ref = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    for label, (centre, radii) in ORGANS.items():
        _ellipsoid(ref, label, centre, radii)
        scale = rng.uniform(0.93, 1.07, size=3)
        shift = rng.integers(-4, 5, size=3) * (1, 1, 0.4)
        _ellipsoid(pred, label, centre, np.asarray(radii) * scale, shift)
    _ellipsoid(ref, 5, (100, 100, 60), (8.0, 8.0, 10.0))    # a lesion the prediction misses
    _ellipsoid(pred, 5, (420, 100, 250), (6.0, 6.0, 8.0))   # a spurious predicted lesion
    return pred, ref


def run_medseg(pred: np.ndarray, ref: np.ndarray) -> dict[int, dict]:
    from medseg.metrics import evaluate_case

    rows = evaluate_case(pred, ref, spacing=SPACING, tolerance_mm=1.0).rows
    return {r["label"]: r for r in rows}


def run_monai(pred: np.ndarray, ref: np.ndarray) -> dict[int, dict]:
    from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric, SurfaceDistanceMetric

    out = {}
    for label in sorted(ORGANS):
        p = torch.from_numpy(pred == label)[None, None]
        r = torch.from_numpy(ref == label)[None, None]
        out[label] = {
            "dice": DiceMetric(include_background=True)(p, r).item(),
            "hd95_mm": HausdorffDistanceMetric(include_background=True, percentile=95)(p, r, spacing=SPACING).item(),
            "assd_mm": SurfaceDistanceMetric(include_background=True, symmetric=True)(p, r, spacing=SPACING).item(),
            "nsd": SurfaceDiceMetric([1.0], include_background=True)(p, r, spacing=SPACING).item(),
        }
    return out


def _timed(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each (median reported)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    pred, ref = make_pair()
    small = (pred[200:240, 200:240, 140:160], ref[200:240, 200:240, 140:160])
    run_medseg(*small), run_monai(*small)  # warm-up: imports, first calls
    t_med, med = _timed(lambda: run_medseg(pred, ref), args.repeat)
    t_mon, mon = _timed(lambda: run_monai(pred, ref), args.repeat)
    d_dice = max(abs(med[c]["dice"] - mon[c]["dice"]) for c in ORGANS)
    d_dist = max(abs(med[c][k] - mon[c][k]) / mon[c][k] for c in ORGANS for k in ("hd95_mm", "assd_mm"))
    d_nsd = max(abs(med[c]["nsd"] - mon[c]["nsd"]) for c in ORGANS)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, torch {torch.__version__}, "
          f"GPU used by medseg: {__import__('medseg.metrics.surface', fromlist=['x']).gpu_available()}")
    print(f"pair: {'x'.join(map(str, SHAPE))} uint8 label maps, spacing {SPACING} mm, {len(ORGANS)} classes, "
          f"median of {args.repeat} run(s)")
    print(f"{'label':>5} {'dice':>8} {'hd95 mm':>9} {'assd mm':>9} {'nsd':>7}  (medseg)")
    for c in sorted(ORGANS):
        r = med[c]
        print(f"{c:>5} {r['dice']:8.4f} {r['hd95_mm']:9.3f} {r['assd_mm']:9.3f} {r['nsd']:7.4f}")
    print(f"agreement with MONAI: max |dDice| {d_dice:.2e}, max relative d(HD95, ASSD) {d_dist:.2e}, "
          f"max |dNSD| {d_nsd:.2e}")
    print(f"medseg evaluate_case (all metrics + lesions): {t_med:7.2f} s")
    print(f"MONAI Dice+HD95+ASSD+NSD metric classes:      {t_mon:7.2f} s")
    print(f"ratio medseg / MONAI: {t_med / t_mon:.3f}  ({t_mon / t_med:.1f}x faster)")


if __name__ == "__main__":
    main()
