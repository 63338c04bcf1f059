"""Instance-model fixtures: a tiny phantom dataset and a tiny, fast Mask R-CNN config."""

import pytest
import yaml

from medseg.data.phantoms import write_phantom_dataset

#: A config small enough for seconds of CPU training (not for learning anything).
TINY = {
    "task": "instance",
    "data": {"classes": ["tumour"], "spacing_mm": [2.5, 2.5], "empty_slice_rate": 0.0},
    "model": {"rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 50,
              "rpn_post_nms_top_n_test": 20, "box_batch_size_per_image": 32, "detections_per_image": 5,
              "trainable_backbone_layers": 0},
    "schedule": {"warmup_iterations": 1},
    "optimizer": {"lr": 0.002},
    "epochs": 1, "iterations_per_epoch": 2, "batch_size": 1,
    "inference": {"batch_size": 16},
}


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("instance_phantoms") / "ds"
    write_phantom_dataset(root, cases=3, seed=0, size="small")
    return root


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("instance_cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_CACHE", str(tmp_path / "cache"))
