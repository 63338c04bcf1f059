"""``medseg phantoms OUT_DIR``: write a synthetic CT dataset (nnU-Net v2 layout) with known labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from medseg.cli.common import int_at_least
from medseg.cli.progress import progress_bar
from medseg.data.phantoms import FAMILIES, SIZES, write_phantom_dataset


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "phantoms",
        parents=parents,
        help="write synthetic abdominal CT phantoms with labels (nnU-Net v2 layout)",
        description="Write a synthetic CT dataset in the nnU-Net v2 raw layout: an abdomen-like body with "
        "liver, spleen, two kidneys and 0-3 tumours, labels background/liver/spleen/kidney/tumour, random "
        "spacing, storage orientation and obliquity. Deterministic for a seed; rerunning with the same "
        "options resumes an interrupted run or adds cases.",
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                   help="dataset folder to create (new, empty, or a previous phantom dataset)")
    p.add_argument("--cases", type=int_at_least(1), default=10, metavar="N", help="number of cases (default 10)")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S",
                   help="random seed (default 0); case i is the same whatever N")
    p.add_argument("--size", choices=list(SIZES), default="small",
                   help="small: miniature abdomen, about 70-150 x 50-120 x 15-55 voxels, for quick CPU training "
                   "(default); medium: adult size, about 320-630 x 250-480 x 35-125 voxels")
    p.add_argument("--family", choices=list(FAMILIES), default="abdomen",
                   help="abdomen: 0-3 liver/kidney tumours labelled tumour (default); metastases: 1-6 liver "
                   "metastases labelled metastasis (labels 0 background, 1 metastasis, 2 liver, 3 spleen, 4 kidney)")
    p.add_argument("--dicom-study", action="store_true",
                   help="also write every third case (0, 3, ...) as DICOM series under OUT_DIR/dicom_study/"
                   "PATIENT_*/STUDY_*/SERIES_*, with its label in OUT_DIR/dicom_study_labels/")


def _shape_range(shapes: list[list[int]]) -> str:
    lo = "x".join(str(min(s[a] for s in shapes)) for a in range(3))
    hi = "x".join(str(max(s[a] for s in shapes)) for a in range(3))
    return lo if lo == hi else f"{lo} to {hi}"


def run(args: argparse.Namespace) -> int:
    summaries: list[dict] = []
    log_lines = not Console(file=sys.stderr).is_terminal  # no bar in logs: one line per case
    with progress_bar("phantoms", args.cases) as advance:

        def progress(done: int, total: int, summary: dict) -> None:
            summaries.append(summary)
            advance(summary["case"])
            if log_lines:
                shape = "x".join(map(str, summary["shape"]))
                sys.stderr.write(f"[{done}/{total}] {summary['case']}: {shape} {summary['orientation']}, "
                                 f"{summary['n_tumours']} tumour(s)\n")

        out = write_phantom_dataset(args.out_dir, args.cases, args.seed, args.size, args.dicom_study,
                                    progress=progress, family=args.family)
    n_tum = sum(s["n_tumours"] for s in summaries)
    with_tum = sum(1 for s in summaries if s["n_tumours"])
    orientations = len({s["orientation"] for s in summaries})
    n_dicom = sum(1 for s in summaries if s.get("dicom"))
    dicom = f"; {n_dicom} case(s) also as DICOM in {out / 'dicom_study'}" if n_dicom else ""
    sys.stderr.write(
        f"wrote {len(summaries)} {args.size} phantom cases (seed {args.seed}): "
        f"shapes {_shape_range([s['shape'] for s in summaries])}, "
        f"{orientations} orientation(s), {n_tum} tumour(s) in {with_tum} case(s){dicom}\n"
    )
    print(out)
    return 0
