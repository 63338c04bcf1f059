"""``medseg report PRED_DIR --out REPORT``: a folder a person can open after a batch (the
command line of :func:`medseg.report.build_report`, which documents the folder).

It writes REPORT/report.md, overlays/, curve.png, manifest.csv, metrics/ and labels.json; a failed
report leaves no folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.cli.common import int_at_least


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "report",
        parents=parents,
        help="overlay pictures, metrics and training curve of a `medseg predict` output folder",
        description="Write REPORT/report.md with overlay PNGs (image | reference | prediction, axial, radiological "
        "view) of every case of a `medseg predict` output folder, the Dice table when --ref holds reference "
        "label maps, the run's training curve, and a copy of the manifest.",
    )
    p.add_argument("pred", type=Path, metavar="PRED_DIR", help="output folder of `medseg predict` (with manifest.csv)")
    p.add_argument("--out", type=Path, required=True, metavar="REPORT", help="report folder to write")
    p.add_argument("--ref", type=Path, help="folder of reference label maps named like the predictions")
    p.add_argument("--run", type=Path, help="the run directory that predicted (adds its training curve)")
    p.add_argument("--max-cases", type=int_at_least(0), default=12, help="overlay pictures for at most this many cases (default 12)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")


def run(args: argparse.Namespace) -> int:
    """Build the report (:func:`medseg.report.build_report`) with a progress bar, print the
    metrics table and where the report is."""
    from medseg.cli.progress import progress_bar
    from medseg.report import build_report

    rep = build_report(args.pred, args.out, ref=args.ref, run=args.run, max_cases=args.max_cases,
                       overwrite=args.overwrite, progress=progress_bar)
    if rep.metrics_table:
        sys.stdout.write("\n".join(rep.metrics_table) + "\n")
    print(f"wrote {rep.path} ({rep.cases_drawn} overlay pictures)")
    return 0
