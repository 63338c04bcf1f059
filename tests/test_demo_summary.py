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


def test_instance_line_scores_both_models_on_the_same_lesions(tmp_path):
    """Hand-made demo folder: 2 reference lesions; the instance map covers one and adds a false
    lesion, the U-Net covers both -> F1 0.5 (found 1, 1 false) and 1.0 (found 2, 0 false)."""
    import csv
    import json

    import numpy as np

    from medseg.demo_summary import instance_line
    from medseg.io import write_volume
    from medseg.volume import Volume

    aff = np.eye(4)
    ref = np.zeros((20, 20, 6), np.uint8)
    ref[8:12, 8:12, 1:4] = 1  # liver, not a lesion class
    ref[2:5, 2:5, 1:3] = 4
    ref[14:17, 14:17, 2:5] = 4
    inst = np.zeros_like(ref, dtype=np.uint16)
    inst[2:5, 2:5, 1:3] = 1
    inst[8:10, 15:18, 0:2] = 2  # false
    unet = np.where(ref == 4, 4, 0).astype(np.uint8)
    for sub in ("heldout/labelsTr", "instance_predictions", "predictions", "instance_run", "run"):
        (tmp_path / sub).mkdir(parents=True)
    write_volume(Volume(ref, aff), tmp_path / "heldout/labelsTr/case_0.nii.gz")
    write_volume(Volume(inst, aff), tmp_path / "instance_predictions/case_0.nii.gz")
    write_volume(Volume(unet, aff), tmp_path / "predictions/case_0.nii.gz")
    (tmp_path / "instance_run/run.json").write_text(json.dumps({"classes": {"tumour": 4}}))
    (tmp_path / "run/labels.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 4}}))
    for sub in ("instance_predictions", "predictions"):
        with open(tmp_path / sub / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["case", "status", "output"])
            w.writeheader()
            w.writerow({"case": "case_0", "status": "done", "output": "case_0.nii.gz"})
    line = instance_line(tmp_path)
    assert line == ("held-out 3D lesion F1 (tumour): instance model (Mask R-CNN) 0.500 (found 1; 1 of 2 predicted "
                    "lesions false), U-Net 1.000 (found 2; 0 of 2 predicted lesions false), on the same 2 reference "
                    "lesions of 1 case")
