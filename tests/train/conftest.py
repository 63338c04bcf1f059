"""A tiny phantom dataset and a coarse plan so that training tests take seconds on a CPU."""

import pytest

from medseg.data.phantoms import write_phantom_dataset
from medseg.model.config import TrainConfig
from medseg.plans import DatasetInfo, Network, Normalization, Plan, Preprocessing, Training, save_plan


def tiny_plan() -> Plan:
    return Plan(
        medseg_plan=1,
        dataset=DatasetInfo("MedsegPhantoms", {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "tumour": 4}, {0: "CT"}),
        preprocessing=Preprocessing((2.5, 2.5, 3.5), [Normalization(0, "ct", (-200.0, 300.0), 50.0, 100.0)]),
        network=Network("DynUNet", [(3, 3, 3)] * 3, [(1, 1, 1), (2, 2, 2), (2, 2, 2)], [8, 16, 32]),
        training=Training((16, 16, 8), 2, 0.5),
        gpu_memory_gb=8.0, estimated_memory_gb=1.0,
    )


def tiny_config(**kw) -> TrainConfig:
    base = dict(epochs=2, iterations_per_epoch=3, val_every=1, num_workers=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms") / "ds"
    write_phantom_dataset(root, cases=3, seed=0, size="small")
    plan_path = root.parent / "plan.yaml"
    save_plan(tiny_plan(), plan_path)
    return root, plan_path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_CACHE", str(tmp_path / "cache"))
