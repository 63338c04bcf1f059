"""``medseg evaluate --pred PRED --ref REF``: score predicted label maps against references.

Prints a markdown table (mean ± std per class) on stdout; with ``--out DIR`` also writes
metrics.csv, lesions.csv, summary.json (and instances.csv with ``--instances``). Exits 2 when
any reference case could not be scored (they are listed; the others are still scored).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from medseg.errors import InputError, MedsegError, warn


def _fraction(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return v


def _mm(text: str) -> float:
    v = float(text)
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a distance in mm >= 0, got {text}")
    return v


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=parents,
        help="score predicted label maps against references (Dice, HD95, ASSD, NSD, lesions)",
        description="Score predictions against reference label maps, per case and class: Dice, IoU, "
        "HD95 and ASSD in mm, normalised surface Dice, volumes in ml, and lesion-wise detection "
        "(connected components). PRED and REF are two files or two folders matched by case id "
        "(file name without suffix). Prints a markdown summary; --out writes the tables.",
    )
    p.add_argument("--pred", type=Path, required=True,
                   help="predicted label map (NIfTI, NRRD, DICOM SEG), or a folder of them (a `medseg predict` output: "
                   "<case>.nii.gz or <case>/seg.dcm; <case>_uncertainty maps are ignored)")
    p.add_argument("--ref", type=Path, required=True, help="reference label map, or a folder of them")
    p.add_argument("--labels", type=Path, metavar="JSON",
                   help="dataset.json declaring the labels (nnU-Net v2 or Decathlon style): every declared "
                   "class is reported and an undeclared value is an error (default: the labels.json of a "
                   "`medseg predict` folder given as --pred, as `medseg report` does; else the values found)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder for metrics.csv, lesions.csv and summary.json (default: print the table only)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--tolerance-mm", type=_mm, default=1.0, metavar="T",
                   help="tolerance of the normalised surface Dice, in mm (default 1)")
    p.add_argument("--resample-pred", action="store_true",
                   help="resample each prediction onto its reference grid (nearest neighbour) when the grids "
                   "differ (default: refuse)")
    p.add_argument("--lesion-overlap", type=_fraction, default=0.5, metavar="F",
                   help="fraction of a lesion's voxels the other mask must cover to count as detected (default 0.5)")
    p.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=26,
                   help="voxel connectivity of lesions (default 26)")
    p.add_argument("--instances", action="store_true",
                   help="the label maps are instance maps (one id per object): score the foreground and add "
                   "instance matching and panoptic quality (instances.csv)")
    p.add_argument("--iou-threshold", type=_fraction, default=0.5, metavar="F",
                   help="with --instances: IoU above which two objects match (default 0.5)")


def run(args: argparse.Namespace) -> int:
    # Imported here so that other commands do not pay for loading the metrics at start-up.
    from medseg.cli.progress import progress_bar
    from medseg.metrics.folders import evaluate_folders, match_cases
    from medseg.metrics.labels import load_labels
    from medseg.metrics.report import check_output_dir, markdown_table, summarize, write_outputs

    if args.out is not None:
        check_output_dir(args.out, args.overwrite)
    if args.iou_threshold >= 1:
        raise InputError("--iou-threshold must be below 1; use 0.5 for panoptic quality")
    if args.labels is None and (args.pred / "labels.json").is_file():
        args.labels = args.pred / "labels.json"  # a `medseg predict` folder: its run's classes, by name
        sys.stderr.write(f"classes from {args.labels} (pass --labels to use another file)\n")
    labels = load_labels(args.labels) if args.labels else None
    matched = match_cases(args.pred, args.ref)
    if matched.extra_pred:
        warn(f"{len(matched.extra_pred)} prediction(s) have no reference case and are not scored: "
             + ", ".join(matched.extra_pred[:10]) + (" ..." if len(matched.extra_pred) > 10 else ""))
    options = dict(tolerance_mm=args.tolerance_mm, resample_pred=args.resample_pred, lesion_threshold=args.lesion_overlap,
                   connectivity=args.connectivity, instances=args.instances, iou_threshold=args.iou_threshold)
    with progress_bar("evaluating", len(matched.pairs)) as advance:
        ev = evaluate_folders(args.pred, args.ref, labels=labels, progress=advance, **options)
    if args.labels:
        ev.settings["labels"] = str(args.labels)
    summary = summarize(ev)
    if args.out is not None:
        written = write_outputs(ev, args.out, summary)
        sys.stderr.write(f"wrote {', '.join(str(p) for p in written)}\n")
    sys.stdout.write(markdown_table(summary) + "\n")
    if ev.failed:
        listed = "; ".join(f"{c}: {m}" for c, m in list(ev.failed.items())[:5])
        more = " ..." if len(ev.failed) > 5 else ""
        where = f" (every reason is in the error column of {args.out / 'metrics.csv'})" if args.out else ""
        raise MedsegError(f"{len(ev.failed)} of {len(matched.pairs) + len(matched.problems)} case(s) could not "
                          f"be scored ({listed}{more}); fix them and rerun{where}")
    return 0
