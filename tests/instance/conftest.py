"""Instance-model fixtures: a tiny phantom dataset, a tiny fast Mask R-CNN config, and a
synthetic "blob" dataset on which the CPU recipe must learn within a minute."""

import json

import numpy as np
import pytest
import yaml

from medseg.data.phantoms import write_phantom_dataset

#: A config small enough for seconds of CPU training (not for learning anything).
TINY = {
    "task": "instance",
    "data": {"classes": ["tumour"], "spacing_mm": [2.5, 2.5], "crop_px": 32},
    "model": {"fpn_channels": 32, "returned_layers": [2, 3], "anchor_sizes_mm": [10, 20, 40], "box_head_size": 32,
              "mask_head_layers": 1, "rpn_batch_size_per_image": 32, "rpn_pre_nms_top_n_train": 100,
              "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20,
              "box_batch_size_per_image": 16, "detections_per_image": 5},
    "schedule": {"warmup_iterations": 1},
    "optimizer": {"lr": 0.002},
    "epochs": 1, "iterations_per_epoch": 2, "batch_size": 1, "val_every": 1,
    "inference": {"batch_size": 16, "val_thresholds": [0.3, 0.6]},
}

#: The CPU recipe of configs/maskrcnn_lesions_cpu.yaml, scaled to 48-px slices at 1 mm so that it
#: learns the blob dataset within a CPU minute (same backbone family, norm, optimiser, sampling).
LEARN = {
    "task": "instance",
    "data": {"classes": "auto", "spacing_mm": [1.0, 1.0], "crop_px": 48, "lesion_crop_fraction": 0.8,
             "windows": "auto"},
    "model": {"backbone": "resnet18", "norm": "group", "fpn_channels": 64, "returned_layers": [1, 2],
              "anchor_sizes_mm": [6, 12, 24], "box_head_size": 128, "mask_head_layers": 1,
              "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 100,
              "rpn_post_nms_top_n_test": 30, "detections_per_image": 10},
    "optimizer": {"name": "adamw", "lr": 0.002},
    "schedule": {"warmup_iterations": 10},
    "epochs": 2, "iterations_per_epoch": 40, "batch_size": 4, "val_every": 1,
    "inference": {"batch_size": 16, "mask_threshold": "auto"},
}

BLOB_LABELS = {"background": 0, "organ": 1, "lesion": 2}


def write_blob_dataset(root, cases: int, seed: int):
    """A tiny CT-like dataset (nnU-Net v2 layout): 48 x 48 x 6 voxels of 1 x 1 x 3 mm, a round
    "organ" (label 1, 60 HU, noise SD 12 HU) holding 0-3 round "lesions" (label 2, radius 3-6 mm,
    hypodense -20 HU or hyperdense 150 HU). Returns the number of lesions written."""
    from medseg.io import write_mask_like, write_volume
    from medseg.volume import Volume

    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    aff = np.diag([1.0, 1.0, 3.0, 1.0])
    x, y, z = np.meshgrid(np.arange(48), np.arange(48), np.arange(6) * 3.0, indexing="ij")
    n_lesions = 0
    for i in range(cases):
        hu = np.full((48, 48, 6), -900.0)
        lab = np.zeros((48, 48, 6), np.uint8)
        organ = (x - 24) ** 2 + (y - 24) ** 2 <= 21 ** 2
        hu[organ], lab[organ] = 60.0, 1
        centres = []
        for _ in range(int(rng.integers(0, 4)) if i else 2):     # case 0 always has lesions
            r = rng.uniform(3, 6)
            for _try in range(50):
                c = rng.uniform([13, 13, 4], [35, 35, 11])
                if all(np.linalg.norm(c - d) > r + rd + 3 for d, rd in centres):
                    break
            else:
                continue
            centres.append((c, r))
            ball = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= r * r
            hu[ball], lab[ball] = (-20.0 if rng.random() < 0.5 else 150.0), 2
            n_lesions += 1
        hu += rng.normal(0, 12, hu.shape)
        img = Volume(hu.astype(np.int16), aff)
        write_volume(img, root / "imagesTr" / f"blob_{i:03d}_0000.nii.gz")
        write_mask_like(Volume(lab, aff), img, root / "labelsTr" / f"blob_{i:03d}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "name": "Blobs", "channel_names": {"0": "CT"}, "labels": BLOB_LABELS, "numTraining": cases,
        "file_ending": ".nii.gz"}))
    return n_lesions


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("instance_phantoms") / "ds"
    write_phantom_dataset(root, cases=3, seed=0, size="small")
    return root


@pytest.fixture(scope="session")
def blobs(tmp_path_factory):
    """(training dataset, held-out dataset, held-out lesion count)."""
    base = tmp_path_factory.mktemp("blobs")
    write_blob_dataset(base / "train", 20, seed=0)
    n = write_blob_dataset(base / "test", 8, seed=1)
    return base / "train", base / "test", n


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("instance_cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_CACHE", str(tmp_path / "cache"))
