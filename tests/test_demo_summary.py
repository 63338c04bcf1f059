"""`make demo`'s summary names its organ classes from the run's plan, not from a built-in list."""

import dataclasses

from medseg.demo_summary import organ_classes
from medseg.plans import ClassPolicy, save_plan
from tests.train.conftest import tiny_plan


def test_organ_classes_come_from_the_plan(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    plan = dataclasses.replace(tiny_plan(), classes=ClassPolicy(["tumour"], 3.0, []))
    save_plan(plan, run / "plan.yaml")
    names = ["background", "liver", "spleen", "kidney", "tumour"]
    assert organ_classes(run, names) == ["liver", "spleen", "kidney"]
    save_plan(dataclasses.replace(tiny_plan(), classes=ClassPolicy(["spleen", "tumour"], 3.0, [])), run / "plan.yaml")
    assert organ_classes(run, ["background", "lung", "spleen", "tumour"]) == ["lung"]
    assert organ_classes(tmp_path / "no_run", ["background", "a"]) == ["a"]  # no plan: every foreground class
