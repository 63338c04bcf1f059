"""The last step of ``make demo``: what was done, the Dice values, and what to open next.

``python -m medseg.demo_summary DEMO_DIR`` reads DEMO_DIR/report/metrics/summary.json,
DEMO_DIR/run/metrics.csv and DEMO_DIR/predictions/manifest.csv (written by the steps before).
When DEMO_DIR/instance_predictions/manifest.csv exists (the Mask R-CNN run DEMO_DIR/instance_run
predicted the held-out phantoms), it also prints the instance model's held-out 3D lesion F1 beside
the U-Net's lesion F1 on the same reference lesions (:func:`instance_line`).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path



def organ_classes(run: Path, names) -> list[str]:
    """The run's structure classes: its foreground classes that the plan did not mark as small
    structures (lesion-like: :class:`medseg.plans.ClassPolicy`), in ``names`` order."""
    small: set[str] = set()
    if (run / "plan.yaml").is_file():
        from medseg.plans import load_plan

        small = set(load_plan(run / "plan.yaml").classes.small_structures)
    return [n for n in names if n and n != "background" and n not in small]


def main(demo: Path) -> int:
    summary = json.loads((demo / "report" / "metrics" / "summary.json").read_text())
    per = {c["name"] or k: c["dice"]["mean"] for k, c in summary["per_class"].items()}
    rows = list(csv.DictReader(open(demo / "run" / "metrics.csv")))
    minutes = sum(float(r["seconds"]) for r in rows) / 60
    manifest = list(csv.DictReader(open(demo / "predictions" / "manifest.csv")))
    organs = organ_classes(demo / "run", per)
    organ = [per[n] for n in organs if per.get(n) is not None]
    print(f"trained {len(rows)} epochs in {minutes:.1f} min -> {demo / 'run'}")
    print(f"predicted {sum(r['status'] == 'done' for r in manifest)} of {len(manifest)} cases -> {demo / 'predictions'}")
    print("held-out phantom Dice: " + ", ".join(f"{n} {v:.3f}" for n, v in per.items() if v is not None))
    if organ:
        print(f"mean organ Dice {sum(organ) / len(organ):.3f} ({', '.join(organs)})")
    ct = next((r for r in manifest if r["case"] == "CTChest4"), None)
    if ct and ct["status"] == "done":
        vols = ", ".join(f"{k[10:]} {float(v):.0f} ml" for k, v in ct.items() if k.startswith("volume_ml_") and v)
        print(f"real chest CT (the model never saw real anatomy; a phantom-trained model is not meant for it): {vols}")
    line = instance_line(demo)
    if line:
        print(line)
    print(f"report: {demo / 'report' / 'report.md'} (overlays in {demo / 'report' / 'overlays'}/, curve.png)")
    print(f"review and correct the masks in napari:  .venv/bin/medseg review {demo / 'predictions'}")
    return 0


def instance_line(demo: Path, heldout: str = "heldout/labelsTr") -> str | None:
    """``"held-out 3D lesion F1 (classes): instance model (Mask R-CNN) 0.xxx (found T; F of P predicted
    lesions false), U-Net 0.xxx (...), on the same N reference lesions of C cases"`` or None
    without DEMO_DIR/instance_predictions/manifest.csv.

    Reference lesions: the 26-connected components of the instance run's classes
    (``instance_run/run.json["classes"]``) in DEMO_DIR/heldout/labelsTr; the instance map's
    objects (any id > 0) and the U-Net's mask of the same class names (DEMO_DIR/predictions,
    names from DEMO_DIR/run/labels.json) are matched with :func:`medseg.metrics.lesion_matching`
    (half-covered rule), counts pooled over the cases (:func:`medseg.metrics.pooled_rates`).
    """
    inst_dir = demo / "instance_predictions"
    if not (inst_dir / "manifest.csv").is_file():
        return None
    import numpy as np

    from medseg.io import read_volume
    from medseg.metrics import lesion_matching, pooled_rates

    classes = json.loads((demo / "instance_run" / "run.json").read_text())["classes"]
    unet_labels = json.loads((demo / "run" / "labels.json").read_text())["labels"] \
        if (demo / "run" / "labels.json").is_file() else {}
    unet_values = [int(v) for n, v in unet_labels.items() if n in classes]
    unet_out = {r["case"]: r for r in csv.DictReader(open(demo / "predictions" / "manifest.csv"))} \
        if (demo / "predictions" / "manifest.csv").is_file() else {}
    inst, unet = [], []
    for r in csv.DictReader(open(inst_dir / "manifest.csv")):
        ref_path = demo / heldout / f"{r['case']}.nii.gz"
        if r.get("status") not in ("done", "skipped") or not ref_path.is_file():
            continue
        ref = np.isin(read_volume(ref_path).array, [int(v) for v in classes.values()])
        inst.append(lesion_matching(read_volume(inst_dir / r["output"]).array > 0, ref))
        u = unet_out.get(r["case"])
        if u and u.get("status") in ("done", "skipped") and unet_values:
            unet.append(lesion_matching(np.isin(read_volume(demo / "predictions" / u["output"]).array, unet_values), ref))
    if not inst:
        return None
    n = sum(m.n_ref for m in inst)

    def counts(ms) -> str:
        # a prediction that half-covers a lesion but lies mostly outside it finds the lesion and is false too
        return (f"{pooled_rates(ms)[2]:.3f} (found {sum(m.tp for m in ms)}; "
                f"{sum(m.fp for m in ms)} of {sum(m.n_pred for m in ms)} predicted lesions false)")

    text = f"held-out 3D lesion F1 ({', '.join(classes)}): instance model (Mask R-CNN) {counts(inst)}"
    if len(unet) == len(inst):
        text += f", U-Net {counts(unet)}"
    return text + f", on the same {n} reference lesions of {len(inst)} case" + ("s" if len(inst) != 1 else "")


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_out")))
