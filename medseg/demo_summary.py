"""The last step of ``make demo``: what was done, the Dice values, and what to open next.

``python -m medseg.demo_summary DEMO_DIR`` reads DEMO_DIR/report/metrics/summary.json,
DEMO_DIR/run/metrics.csv and DEMO_DIR/predictions/manifest.csv (written by the steps before).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

ORGANS = ("liver", "spleen", "kidney")


def main(demo: Path) -> int:
    summary = json.loads((demo / "report" / "metrics" / "summary.json").read_text())
    per = {c["name"] or k: c["dice"]["mean"] for k, c in summary["per_class"].items()}
    rows = list(csv.DictReader(open(demo / "run" / "metrics.csv")))
    minutes = sum(float(r["seconds"]) for r in rows) / 60
    manifest = list(csv.DictReader(open(demo / "predictions" / "manifest.csv")))
    organ = [per[n] for n in ORGANS if per.get(n) is not None]
    print(f"trained {len(rows)} epochs in {minutes:.1f} min -> {demo / 'run'}")
    print(f"predicted {sum(r['status'] == 'done' for r in manifest)} of {len(manifest)} cases -> {demo / 'predictions'}")
    print("held-out phantom Dice: " + ", ".join(f"{n} {v:.3f}" for n, v in per.items() if v is not None))
    if organ:
        print(f"mean organ Dice {sum(organ) / len(organ):.3f} (liver, spleen, kidney)")
    ct = next((r for r in manifest if r["case"] == "CTChest4"), None)
    if ct and ct["status"] == "done":
        vols = ", ".join(f"{k[10:]} {float(v):.0f} ml" for k, v in ct.items() if k.startswith("volume_ml_") and v)
        print(f"real chest CT (the model never saw real anatomy; a phantom-trained model is not meant for it): {vols}")
    print(f"report: {demo / 'report' / 'report.md'} (overlays in {demo / 'report' / 'overlays'}/, curve.png)")
    print(f"review and correct the masks in napari:  .venv/bin/medseg review {demo / 'predictions'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_out")))
