"""``medseg check-dataset DIR``: validate an nnU-Net v2 or Decathlon dataset folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medseg.cli.progress import progress_bar
from medseg.data.layout import load_dataset
from medseg.data.validate import check_dataset


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "check-dataset",
        parents=parents,
        help="validate a dataset folder (nnU-Net v2 or Medical Segmentation Decathlon layout)",
        description="Read every training case and report, per case: missing or unreadable files, "
        "image/label grids that differ (shape, or voxel centres beyond 1e-3 mm), label values not "
        "declared in dataset.json, and dataset.json paths that leave the folder. Exits 2 when "
        "there is any problem.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder holding dataset.json")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    spec = load_dataset(args.dataset)
    with progress_bar("checking cases", len(spec.cases)) as advance:
        report = check_dataset(spec, progress=advance)
    if args.json:
        out = {
            "dataset": str(spec.root),
            "layout": spec.layout,
            "cases": len(spec.cases),
            "test_cases": len(spec.test_cases),
            "labels": spec.labels,
            "channels": {str(k): v for k, v in spec.channels.items()},
            "ok": report.ok,
            "problems": [p.__dict__ for p in report.problems],
        }
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        labels = ", ".join(f"{v}={k}" for k, v in spec.labels.items())
        print(f"dataset  {spec.root} ({spec.layout} layout, '{spec.name}')")
        print(f"cases    {len(spec.cases)} training, {len(spec.test_cases)} test")
        print(f"channels {', '.join(f'{k}={v}' for k, v in spec.channels.items())}")
        print(f"labels   {labels}")
        if report.ok:
            present = ", ".join(f"{spec.label_names.get(v, v)} in {n}" for v, n in sorted(report.label_counts.items()))
            print(f"result   OK: no problems ({present} cases)")
        else:
            print(f"result   {len(report.problems)} problem(s):")
            for line in report.lines():
                print(f"  {line}")
    if not report.ok:
        sys.stderr.write(
            f"error: {len(report.problems)} problem(s) in {spec.root}; fix them (listed above) before training\n"
        )
        return 2
    return 0
