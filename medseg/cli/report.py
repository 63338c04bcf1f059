"""``medseg report PRED_DIR --out REPORT``: a folder a person can open after a batch.

REPORT/report.md      summary: Dice per class (when --ref is given), cases, links to the pictures
REPORT/overlays/      one PNG per case: image | reference | prediction at a representative slice
REPORT/curve.png      the training curve of --run (when given)
REPORT/manifest.csv   a copy of PRED_DIR/manifest.csv
REPORT/metrics/       metrics.csv, lesions.csv, summary.json of `medseg evaluate` (with --ref)
REPORT/labels.json    the class names and colours used

Predictions may be NIfTI/NRRD or DICOM SEG (``medseg predict --format dicom-seg``: ``<case>/seg.dcm``,
drawn on the grid of the DICOM series it references). Class names come from PRED_DIR/labels.json,
else ``--run``'s labels.json, else the SEG's segment labels. The report is built in a hidden
temporary folder next to REPORT and renamed at the end, so a failed report leaves no folder.
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
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")


def _manifest_rows(pred: Path) -> list[dict]:
    path = pred / "manifest.csv"
    if not path.is_file():
        raise InputError(f"{pred} has no manifest.csv; give the --out folder of `medseg predict`")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:  # a binary or damaged file
        raise InputError(f"{path} is not a readable manifest ({type(e).__name__}); give the --out folder of "
                         "`medseg predict`") from None


def _read_input(text: str):
    from medseg.io import read_volume

    first = text.split(";")[0]
    path, _, uid = first.partition("#")
    return read_volume(path, series_uid=uid or None)


def _label_table(pred: Path, run: Path | None, rows: list[dict]):
    """Class names and colours: PRED_DIR/labels.json (written by `medseg predict`), else the
    run's labels.json, else the segment labels of the first DICOM SEG prediction; None if none."""
    from medseg.io.dicom_seg import is_dicom_seg, seg_label_table
    from medseg.io.labels import read_labels

    table = read_labels(pred)
    if table is None and run is not None:
        table = read_labels(run) if (run / "labels.json").is_file() else None
    if table is None:
        for r in rows:
            path = pred / r["output"]
            if is_dicom_seg(path):
                return seg_label_table(path)
    return table


def _prediction_on_image(path: Path, image, table):
    """The predicted mask; a DICOM SEG on its image's grid (looked up by source instance when
    the image is the DICOM series, else placed by position)."""
    from medseg.io import read_volume
    from medseg.io.dicom_seg import is_dicom_seg, place_on_grid, read_dicom_seg

    if not is_dicom_seg(path):
        return read_volume(path)
    if image.meta.get("format") == "dicom":
        try:
            return read_dicom_seg(path, source=image, labels=table)[0]
        except InputError:
            pass
    vol = read_dicom_seg(path, labels=table)[0]
    placed = place_on_grid(vol, image.geometry)
    return placed if placed is not None else vol


def _check_out(out: Path, pred: Path, overwrite: bool) -> None:
    if out.resolve() == pred.resolve() or pred.resolve().is_relative_to(out.resolve()):
        raise OutputError(f"--out {out} is PRED_DIR itself or holds it; write the report to another folder")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder for the report")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "report.md").exists():
            raise OutputError(f"{out} is not empty and holds no report; choose a new or empty --out folder")
        if not overwrite:
            raise OutputError(f"{out} already holds a report; pass --overwrite or choose another --out")


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished report folder ``tmp`` in place of ``out`` (renames only)."""
    import os

    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    """Build the report in a hidden temporary folder next to REPORT and rename it at the end:
    a failed report leaves no folder (and an older report untouched)."""
    import tempfile

    rows = [r for r in _manifest_rows(args.pred) if r.get("status") in ("done", "skipped") and r.get("output")]
    _check_out(args.out, args.pred, args.overwrite)
    if args.ref is not None and not args.ref.exists():
        raise InputError(f"--ref {args.ref} does not exist; check the path")
    table = _label_table(args.pred, args.run, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", suffix=".tmp", dir=args.out.parent))
    try:
        dice_lines, shown = _build(args, rows, table, tmp)
        _publish(tmp, args.out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if dice_lines:
        sys.stdout.write("\n".join(dice_lines) + "\n")
    print(f"wrote {args.out / 'report.md'} ({shown} overlay pictures)")
    return 0


def _build(args: argparse.Namespace, rows: list[dict], table, out: Path) -> tuple[list[str], int]:
    from medseg.cli.progress import progress_bar
    from medseg.io.atomic import write_text_atomic
    from medseg.io.formats import split_suffix
    from medseg.metrics.folders import list_cases, read_label_map
    from medseg.report import overlay_png

    labels = {n: v for n, v in table.labels.items()} if table is not None else None
    colors = {v: table.colors[n] for n, v in table.labels.items() if n in table.colors} if table is not None else None
    if args.run is not None and (args.run / "curve.png").is_file():
        shutil.copy(args.run / "curve.png", out / "curve.png")
    shutil.copy(args.pred / "manifest.csv", out / "manifest.csv")
    if table is not None:
        from medseg.io.labels import write_labels

        write_labels(out, table)
    lines = [f"# medseg report: {args.pred}", ""]
    if table is not None:
        lines += ["Classes: " + ", ".join(f"{v} {n}" for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v),
                  ""]
    dice_lines: list[str] = []
    refs: dict[str, Path] = {}
    if args.ref is not None:
        from medseg.metrics.folders import evaluate_folders
        from medseg.metrics.report import markdown_table, summarize, write_outputs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names = {v: n for n, v in labels.items()} if labels else None
            ev = evaluate_folders(args.pred, args.ref, labels=names)
        summary = summarize(ev)
        write_outputs(ev, out / "metrics", summary)
        dice_lines = markdown_table(summary).splitlines()
        lines += ["## Metrics against the reference", "", *dice_lines, "",
                  "Per case: `metrics/metrics.csv`; lesions: `metrics/lesions.csv`.", ""]
        refs = list_cases(args.ref)[0] if args.ref.is_dir() else {}
    if (out / "curve.png").exists():
        lines += ["## Training curve", "", "![training curve](curve.png)", ""]
    lines += ["## Cases (image | reference | prediction; axial, patient's right on the left)", ""]
    from medseg.instance.report import report_hooks

    instance = report_hooks(args.pred, args.run)  # an instance model's folder: lesion colours, legend, tables
    shown = rows[: args.max_cases]
    with progress_bar("overlays", len(shown)) as advance:
        for r in shown:
            case = r["case"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = _read_input(r["input"])
                pred = _prediction_on_image(args.pred / r["output"], image, table)
                ref = None
                if args.ref is not None:
                    stem = split_suffix(Path(r["output"]).name)[0]
                    hit = refs.get(case) or refs.get(Path(case).name) or refs.get(stem)
                    if args.ref.is_file():
                        hit = args.ref
                    ref = read_label_map(hit) if hit is not None else None
                    if ref is not None and ref.meta.get("format") == "dicom-seg" and not ref.same_grid(image.geometry):
                        from medseg.io.dicom_seg import place_on_grid

                        ref = place_on_grid(ref, image.geometry) or ref
            png = (instance.overlay if instance else overlay_png)(image, pred, out / "overlays" / f"{case.replace('/', '__')}.png", reference=ref,
                              labels=labels, colors=colors, title=case)
            vols = ", ".join(f"{k[10:]} {float(v):.1f} ml" for k, v in r.items() if k.startswith("volume_ml_") and v)
            lines += [f"### {case}", "", f"![{case}]({png.relative_to(out)})", "", f"volumes: {vols}", ""]
            lines += instance.case_lines(case) if instance else []
            advance(case)
    if len(rows) > len(shown):
        lines.append(f"({len(rows) - len(shown)} more cases in manifest.csv; raise --max-cases to draw them)")
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    return dice_lines, len(shown)
