"""medseg against nnU-Net v2 on the same machine, in two parts (issue 20), each from one run.

*Same model*: an nnU-Net model trained here with nnU-Net's own trainer (bench/nnunet_budget_train.py)
predicted on the same held-out phantoms by ``nnUNetv2_predict`` (its defaults: step 0.5,
mirroring, 3 preprocessing and 3 export processes) and by ``medseg predict --model FOLDER``
(its defaults). Both run as child processes; wall time and peak host RAM (the sum of the PSS of
the process and all its children -- shared pages counted once --, sampled every 50 ms, the same
way for both); voxel agreement
of the masks. Goals: >= 1.5x faster, <= 0.5x the peak RAM, >= 99.9 % identical voxels.

*Same data, same CPU time*: nnU-Net (its 3d_fullres plan and trainer, time-budgeted) and medseg
(its automatic CPU plan and preset, bench/train_phantoms.py) trained on the same training
phantoms for the same wall-clock minutes, one after the other on an idle machine, both scored
with ``medseg evaluate`` on the same held-out phantoms (Dice per class, lesion F1).

    .venv/bin/python bench/vs_nnunet.py [--minutes 15] [--train-cases 256] [--test-cases 32]
        [--speed-cases 8] [--work bench/.work/vs_nnunet]

Trained models are cached in --work (delete it to retrain); the script says what it reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATASET_ID = 900


def _log(msg: str) -> None:
    print(f"[vs_nnunet {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measured(cmd: list, env: dict | None = None) -> tuple[float, float]:
    """Run ``cmd``; returns (wall seconds, peak MiB of the PSS summed over the process tree)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [p, *p.children(recursive=True)]
                rss = 0
                for q in procs:
                    try:
                        rss += q.memory_full_info().pss  # shared pages split between the processes
                    except psutil.Error:
                        pass
                peak = max(peak, rss)
            except psutil.Error:
                pass
            stop.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, peak / 2**20


def nnunet_env(work: Path) -> dict:
    env = dict(os.environ)
    for name, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"), ("nnUNet_results", "results")):
        env[name] = str(work / "nnunet" / sub)
    env.setdefault("nnUNet_n_proc_DA", "1")  # one augmentation worker beside the trainer on 2 cores
    return env


def train_medseg(work: Path, args) -> Path:
    run = work / "medseg" / "run"
    if (run / "best.pt").is_file() or (run / "last.pt").is_file():
        _log(f"reusing the medseg run {run}")
        return run
    _log(f"medseg: bench/train_phantoms.py --minutes {args.minutes} (data, plan, training, its own evaluation)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, ROOT / "bench" / "train_phantoms.py", "--minutes", str(args.minutes),
                          "--train-cases", str(args.train_cases), "--test-cases", str(args.test_cases),
                          "--lung-epochs", "0", "--keep", work / "medseg"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"train_phantoms failed:\n{out.stderr[-3000:]}")
    (work / "medseg" / "train_phantoms.txt").write_text(out.stdout)
    _log(f"medseg trained in {(time.perf_counter() - t0) / 60:.1f} min (with data and its evaluation)")
    return run


def train_nnunet(work: Path, args) -> Path:
    env = nnunet_env(work)
    results = work / "nnunet" / "results" / f"Dataset{DATASET_ID}_MedsegPhantoms" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if (results / "fold_all" / "checkpoint_final.pth").is_file():
        _log(f"reusing the nnU-Net model {results}")
        return results
    raw = work / "nnunet" / "raw" / f"Dataset{DATASET_ID}_MedsegPhantoms"
    if raw.exists():
        shutil.rmtree(raw)
    raw.mkdir(parents=True)
    src = work / "medseg" / "train"
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).symlink_to(src / sub)
    ds = json.loads((src / "dataset.json").read_text())
    (raw / "dataset.json").write_text(json.dumps({k: v for k, v in ds.items() if k != "medseg_phantoms"}, indent=1))
    t0 = time.perf_counter()
    out = subprocess.run([BIN / "nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "2",
                          "--verify_dataset_integrity"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"nnUNetv2_plan_and_preprocess failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    t_plan = time.perf_counter() - t0
    _log(f"nnU-Net planned and preprocessed {ds.get('numTraining')} cases in {t_plan / 60:.1f} min")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, ROOT / "bench" / "nnunet_budget_train.py", str(DATASET_ID), str(args.minutes)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"nnU-Net training failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    line = out.stdout.strip().splitlines()[-1]
    (work / "nnunet" / "training.txt").write_text(f"plan+preprocess {t_plan:.0f} s\n{line}\n")
    _log(f"{line} (whole step {(time.perf_counter() - t0) / 60:.1f} min)")
    return results


def same_model(work: Path, model: Path, args) -> dict:
    """nnUNetv2_predict vs medseg predict on the first ``speed_cases`` held-out cases."""
    import nibabel as nib

    test = work / "medseg" / "test" / "imagesTr"
    inp = work / "speed_in"
    shutil.rmtree(inp, ignore_errors=True)
    inp.mkdir()
    for p in sorted(test.glob("*_0000.nii.gz"))[:args.speed_cases]:
        shutil.copy(p, inp / p.name)
    env = nnunet_env(work)
    res = {}
    for name in ("nnunet", "medseg"):
        out = work / f"speed_{name}"
        shutil.rmtree(out, ignore_errors=True)
        if name == "nnunet":
            cmd = [BIN / "nnUNetv2_predict", "-i", inp, "-o", out, "-d", str(DATASET_ID), "-c", "3d_fullres", "-f", "all",
                   "-device", "cpu", "--disable_progress_bar"]
        else:
            cmd = [BIN / "medseg", "predict", inp, "--model", model, "--out", out, "--device", "cpu", "--quiet"]
        _log(f"same model: {name} on {args.speed_cases} cases")
        res[name] = measured(cmd, env)
        _log(f"  {name}: {res[name][0]:.1f} s, peak {res[name][1]:.0f} MiB")
    agree, n, same_fg, fg = [], 0, 0, 0
    for p in sorted(inp.glob("*_0000.nii.gz")):
        case = p.name[:-len("_0000.nii.gz")]
        a = np.asarray(nib.load(work / "speed_nnunet" / f"{case}.nii.gz").dataobj)
        mine = work / "speed_medseg" / f"{case}.nii.gz"
        if not mine.is_file():
            mine = work / "speed_medseg" / f"{case}_0000.nii.gz"
        b = np.asarray(nib.load(mine).dataobj)
        agree.append(float((a == b).mean()))
        n += a.size
        same_fg += int(((a == b) & (a > 0)).sum())
        fg += int((a > 0).sum() + (b > 0).sum())
    return {"cases": args.speed_cases, "nnunet_s": res["nnunet"][0], "medseg_s": res["medseg"][0],
            "nnunet_mib": res["nnunet"][1], "medseg_mib": res["medseg"][1],
            "speedup": res["nnunet"][0] / res["medseg"][0], "ram_ratio": res["medseg"][1] / res["nnunet"][1],
            "agreement_min": min(agree), "agreement_mean": float(np.mean(agree)), "voxels": n,
            "foreground_dice": 2 * same_fg / fg if fg else float("nan"), "foreground_voxels": fg // 2}


def score(work: Path, model: Path, name: str) -> dict:
    """medseg predict + medseg evaluate on every held-out phantom; the summary's class means."""
    test = work / "medseg" / "test"
    pred, ev = work / f"heldout_{name}", work / f"eval_{name}"
    for d in (pred, ev):
        shutil.rmtree(d, ignore_errors=True)
    _log(f"same data: predicting the held-out phantoms with the {name} model")
    subprocess.run([BIN / "medseg", "predict", test / "imagesTr", "--model", model, "--out", pred, "--device", "cpu",
                    "--quiet"], check=True, capture_output=True)
    subprocess.run([BIN / "medseg", "evaluate", "--pred", pred, "--ref", test / "labelsTr", "--labels",
                    test / "dataset.json", "--out", ev], check=True, capture_output=True)
    return json.loads((ev / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget of each model")
    ap.add_argument("--train-cases", type=int, default=256)
    ap.add_argument("--test-cases", type=int, default=32)
    ap.add_argument("--speed-cases", type=int, default=8, help="held-out cases of the same-model timing")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / ".work" / "vs_nnunet")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    ms_run = train_medseg(work, args)
    nn_model = train_nnunet(work, args)
    sm = same_model(work, nn_model, args)
    s_nn, s_ms = score(work, nn_model, "nnunet"), score(work, ms_run, "medseg")
    import torch

    print(f"machine: {platform.node()} | {platform.machine()} | {os.cpu_count()} CPUs | torch {torch.__version__} | "
          f"load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    for f in (work / "nnunet" / "training.txt", work / "medseg" / "train_phantoms.txt"):
        if f.is_file():
            print(f"-- {f.relative_to(work)}:\n" + "\n".join(f.read_text().strip().splitlines()[-6:]))
    print(f"\nSame model ({sm['cases']} held-out phantoms, nnU-Net model trained here):")
    print(f"  nnUNetv2_predict: {sm['nnunet_s']:.1f} s, peak RAM {sm['nnunet_mib']:.0f} MiB")
    print(f"  medseg predict:   {sm['medseg_s']:.1f} s, peak RAM {sm['medseg_mib']:.0f} MiB")
    print(f"  speed-up {sm['speedup']:.2f}x (goal >= 1.5x), RAM ratio {sm['ram_ratio']:.2f} (goal <= 0.5), "
          f"identical voxels {100 * sm['agreement_mean']:.3f} % (worst case {100 * sm['agreement_min']:.3f} %, goal >= 99.9 %); "
          f"foreground: Dice {sm['foreground_dice']:.4f} between the two masks over ~{sm['foreground_voxels']} voxels")
    print(f"\nSame data, {args.minutes:g} min of training each ({args.train_cases} training / {args.test_cases} "
          "held-out phantoms), medseg evaluate:")
    print("  (mean over the held-out cases; a class absent from a case's reference and from its prediction "
          "counts as Dice 1 and lesion F1 1 for that case)")
    print(f"  {'class':<10} {'nnU-Net Dice':>12} {'medseg Dice':>12} {'nnU-Net lesion F1':>18} {'medseg lesion F1':>17}")
    for key, row in s_nn["per_class"].items():
        other = s_ms["per_class"][key]
        print(f"  {row['name']:<10} {row['dice']['mean']:>12.3f} {other['dice']['mean']:>12.3f} "
              f"{row['lesion_f1']['mean']:>18.3f} {other['lesion_f1']['mean']:>17.3f}")
    (work / "results.json").write_text(json.dumps({"same_model": sm, "nnunet": s_nn, "medseg": s_ms}, indent=1))
    print(f"\nall numbers: {work / 'results.json'}")


if __name__ == "__main__":
    main()
