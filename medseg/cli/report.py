"""``medseg report PRED_DIR --out REPORT``: a folder a person can open after a batch.

REPORT/report.md      summary: Dice per class (when --ref is given), cases, links to the pictures
REPORT/overlays/      one PNG per case: image | reference | prediction at a representative slice
REPORT/curve.png      the training curve of --run (when given)
REPORT/manifest.csv   a copy of PRED_DIR/manifest.csv
REPORT/metrics/       metrics.csv, lesions.csv, summary.json of `medseg evaluate` (with --ref)
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import warnings
from pathlib import Path

from medseg.cli.common import int_at_least
from medseg.errors import InputError, OutputError


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
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder's files")


def _manifest_rows(pred: Path) -> list[dict]:
    path = pred / "manifest.csv"
    if not path.is_file():
        raise InputError(f"{pred} has no manifest.csv; give the --out folder of `medseg predict`")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _read_input(text: str):
    from medseg.io import read_volume

    first = text.split(";")[0]
    path, _, uid = first.partition("#")
    return read_volume(path, series_uid=uid or None)


def run(args: argparse.Namespace) -> int:
    from medseg.cli.progress import progress_bar
    from medseg.io import read_volume
    from medseg.io.atomic import write_text_atomic
    from medseg.io.formats import split_suffix
    from medseg.report import overlay_png

    rows = [r for r in _manifest_rows(args.pred) if r.get("status") in ("done", "skipped") and r.get("output")]
    if (args.out / "report.md").exists() and not args.overwrite:
        raise OutputError(f"{args.out} already holds a report; pass --overwrite or choose another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    labels = None
    if args.run is not None:
        import json

        labels = json.loads((args.run / "labels.json").read_text())["labels"] if (args.run / "labels.json").is_file() else None
        if (args.run / "curve.png").is_file():
            shutil.copy(args.run / "curve.png", args.out / "curve.png")
    shutil.copy(args.pred / "manifest.csv", args.out / "manifest.csv")
    lines = [f"# medseg report: {args.pred}", ""]
    dice_lines: list[str] = []
    if args.ref is not None:
        from medseg.metrics.folders import evaluate_folders
        from medseg.metrics.report import markdown_table, summarize, write_outputs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = evaluate_folders(args.pred, args.ref, labels={v: n for n, v in labels.items()} if labels else None)
        summary = summarize(ev)
        write_outputs(ev, args.out / "metrics", summary)
        dice_lines = markdown_table(summary).splitlines()
        lines += ["## Metrics against the reference", "", *dice_lines, "",
                  "Per case: `metrics/metrics.csv`; lesions: `metrics/lesions.csv`.", ""]
    if (args.out / "curve.png").exists():
        lines += ["## Training curve", "", "![training curve](curve.png)", ""]
    lines += ["## Cases (image | reference | prediction; axial, patient's right on the left)", ""]
    shown = rows[: args.max_cases]
    with progress_bar("overlays", len(shown)) as advance:
        for r in shown:
            case = r["case"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = _read_input(r["input"])
                pred = read_volume(args.pred / r["output"])
                ref = None
                if args.ref is not None:
                    stem = split_suffix(Path(r["output"]).name)[0]
                    hits = [p for p in args.ref.glob(f"{stem}.*") if split_suffix(p.name)[0] == stem]
                    ref = read_volume(hits[0]) if hits else None
            png = overlay_png(image, pred, args.out / "overlays" / f"{case.replace('/', '__')}.png", reference=ref,
                              labels=labels, title=case)
            vols = ", ".join(f"{k[10:]} {float(v):.1f} ml" for k, v in r.items() if k.startswith("volume_ml_") and v)
            lines += [f"### {case}", "", f"![{case}]({png.relative_to(args.out)})", "", f"volumes: {vols}", ""]
            advance(case)
    if len(rows) > len(shown):
        lines.append(f"({len(rows) - len(shown)} more cases in manifest.csv; raise --max-cases to draw them)")
    write_text_atomic(args.out / "report.md", "\n".join(lines) + "\n")
    if dice_lines:
        sys.stdout.write("\n".join(dice_lines) + "\n")
    print(f"wrote {args.out / 'report.md'} ({len(shown)} overlay pictures)")
    return 0
