"""A tiny nnU-Net v2 model folder, built the way nnU-Net builds one (for tests).

nnU-Net's own fingerprint extraction and experiment planning run on a few small phantoms; the
3d_fullres network is nnU-Net's, built from the plans (narrowed to 8..64 features and a smaller
patch so that it trains in seconds), and trained briefly on nnU-Net's own preprocessing of the cases so that its
outputs are decisive. The checkpoint has the keys nnU-Net's predictor reads (``network_weights``,
``trainer_name``, ``init_args``, ``inference_allowed_mirroring_axes``), so ``nnUNetPredictor``
loads the folder exactly as it loads a folder written by ``nnUNetv2_train``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

DATASET_ID = 987
CONFIG = "3d_fullres"
FEATURES = [8, 16, 32, 64, 64, 64, 64]


def _env(root: Path) -> None:
    for name, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "res")):
        os.environ[name] = str(root / sub)


def build_model_folder(root: Path, *, cases: int = 5, seed: int = 21, steps: int = 120, labels: dict | None = None,
                       folds: tuple[int, ...] = (0,)) -> Path:
    """Plan, train briefly and save a model folder under ``root``; returns the
    ``nnUNetTrainer__nnUNetPlans__3d_fullres`` folder. ``labels``: rename the phantom classes
    ({old name: new name}) in dataset.json, as a user's dataset would name them."""
    import torch

    from medseg.data.phantoms import write_phantom_dataset

    _env(root)
    name = f"Dataset{DATASET_ID}_Tiny"
    raw = root / "raw" / name
    write_phantom_dataset(raw, cases=cases, seed=seed, size="small")
    ds = json.loads((raw / "dataset.json").read_text())
    if labels:
        ds["labels"] = {labels.get(k, k): v for k, v in ds["labels"].items()}
    ds = {k: v for k, v in ds.items() if k != "medseg_phantoms"}
    (raw / "dataset.json").write_text(json.dumps(ds, indent=1))

    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments

    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=False, verbose=False)
    plan_experiments([DATASET_ID])
    pre = root / "pre" / name
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    arch = plans["configurations"][CONFIG]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = FEATURES[:arch["n_stages"]]
    # a smaller patch (still a multiple of the network's total stride per axis): fast steps
    total = np.prod(np.array(arch["strides"]), axis=0)
    plans["configurations"][CONFIG]["patch_size"] = [int(t) * f for t, f in zip(total, (2, 3, 3))]
    out = root / "res" / name / f"nnUNetTrainer__nnUNetPlans__{CONFIG}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "plans.json").write_text(json.dumps(plans, indent=1))
    shutil.copy(raw / "dataset.json", out / "dataset.json")

    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(plans)
    cm = pm.get_configuration(CONFIG)
    pairs = []
    for img in sorted((raw / "imagesTr").glob("*_0000.nii.gz")):
        lab = raw / "labelsTr" / img.name.replace("_0000.nii.gz", ".nii.gz")
        data, props = SimpleITKIO().read_images([str(img)])
        seg, _ = SimpleITKIO().read_seg(str(lab))
        d, s, _ = cm.preprocessor_class(verbose=False).run_case_npy(data, seg, props, pm, cm, ds)
        pairs.append((torch.from_numpy(d).float(), torch.from_numpy(s).long().clamp_min(0)))  # -1: outside the non-zero crop
    n_classes = len(ds["labels"])
    patch = [int(p) for p in cm.patch_size]
    for fold in folds:
        torch.manual_seed(seed + fold)
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, n_classes, deep_supervision=False)
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        rng = np.random.default_rng(seed + fold)
        net.train()
        for step in range(steps):
            d, s = pairs[step % len(pairs)]
            x, y = _crop(d, s, patch, rng)
            loss = torch.nn.functional.cross_entropy(net(x[None]), y[None, 0])
            opt.zero_grad()
            loss.backward()
            opt.step()
        (out / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"plans": plans, "configuration": CONFIG, "fold": fold, "dataset_json": ds},
                    "inference_allowed_mirroring_axes": (0, 1, 2)}, out / f"fold_{fold}" / "checkpoint_final.pth")
    return out


def _crop(d, s, patch, rng):
    """A random ``patch``-sized crop of (C, *shape) data and seg, zero-padded where smaller."""
    import torch.nn.functional as F

    pads = [max(0, p - n) for p, n in zip(patch, d.shape[1:])]
    if any(pads):
        spec = [v for p in reversed(pads) for v in (p // 2, p - p // 2)]
        d, s = F.pad(d, spec), F.pad(s, spec)
    fg = np.argwhere(s[0].numpy() > 0)
    if len(fg) and rng.random() < 0.67:  # nnU-Net-style oversampling: centred on a class voxel
        centre = fg[rng.integers(len(fg))]
        starts = [int(np.clip(c - p // 2, 0, n - p)) for c, n, p in zip(centre, d.shape[1:], patch)]
    else:
        starts = [int(rng.integers(0, n - p + 1)) for n, p in zip(d.shape[1:], patch)]
    sl = (slice(None), *(slice(a, a + p) for a, p in zip(starts, patch)))
    return d[sl], s[sl]
