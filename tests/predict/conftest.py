"""A tiny trained U-Net run (session-wide, ~10 s on 2 cores) and the phantom dataset it came from."""

import os
from pathlib import Path

import pytest

from medseg.data.phantoms import write_phantom_dataset
from medseg.plans import save_plan
from tests.train.conftest import tiny_config, tiny_plan


def train_tiny(root: Path, **config) -> Path:
    """Train a 2-epoch tiny run on 3 small phantoms under ``root``; returns the run folder."""
    from medseg.train.trainer import train

    ds = root / "ds"
    if not ds.exists():
        write_phantom_dataset(ds, cases=3, seed=0, size="small")
    plan = root / "plan.yaml"
    save_plan(tiny_plan(), plan)
    run = root / f"run{len(list(root.glob('run*')))}"
    old = os.environ.get("MEDSEG_CACHE")
    os.environ["MEDSEG_CACHE"] = str(root / "cache")
    try:
        train(tiny_config(**config), ds, run, plan=plan, progress=False)
    finally:
        if old is None:
            os.environ.pop("MEDSEG_CACHE", None)
        else:
            os.environ["MEDSEG_CACHE"] = old
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("predict_run"))


@pytest.fixture(scope="session")
def phantom_images(tiny_run) -> list[Path]:
    """The 3 phantom CT images (``phantom_00N_0000.nii.gz``) the tiny run trained on."""
    return sorted((tiny_run.parent / "ds" / "imagesTr").glob("*_0000.nii.gz"))
