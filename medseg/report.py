"""A report folder a person can open after a batch: :func:`build_report` (what
``medseg report PRED_DIR --out REPORT`` runs).

REPORT/report.md      summary: Dice per class (with a reference folder), cases, links to the pictures
REPORT/overlays/      one PNG per case: image | reference | prediction at a representative slice
                      (radiological axial view, :mod:`medseg.overlay`); an instance model's folder
                      draws numbered lesions with a legend and lists its lesion table
REPORT/curve.png      the training curve of the run (when given)
REPORT/manifest.csv   a copy of PRED_DIR/manifest.csv
REPORT/metrics/       metrics.csv, lesions.csv, summary.json of `medseg evaluate` (with a reference)
REPORT/labels.json    the class names and colours used

Predictions may be NIfTI/NRRD or DICOM SEG (``medseg predict --format dicom-seg``: ``<case>/seg.dcm``,
drawn on the grid of the DICOM series it references). Class names come from PRED_DIR/labels.json,
else the run's labels.json, else the SEG's segment labels. The report is built in a hidden
temporary folder next to REPORT and renamed at the end, so a failed report leaves no folder.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError, OutputError
from medseg.predict.manifest import ManifestRecord, read_manifest

__all__ = ["Report", "build_report"]


@dataclass(frozen=True)
class Report:
    """What :func:`build_report` wrote.

    Attributes:
        path: ``REPORT/report.md``.
        cases_drawn: overlay pictures drawn (at most ``max_cases``).
        cases: cases with a prediction in the manifest (``done`` / ``skipped``).
        metrics_table: the Markdown lines of the per-class metrics table (empty without a reference).
    """

    path: Path
    cases_drawn: int
    cases: int
    metrics_table: list[str] = field(default_factory=list)


@contextmanager
def _no_progress(_what: str, _total: int):
    yield lambda _label=None: None


def build_report(pred: str | Path, out: str | Path, *, ref: str | Path | None = None, run: str | Path | None = None,
                 max_cases: int = 12, overwrite: bool = False,
                 progress: Callable | None = None) -> Report:
    """Write a report folder for a `medseg predict` output folder.

    Args:
        pred: the output folder of ``medseg predict`` (with ``manifest.csv``).
        out: the report folder to write (``REPORT/report.md`` ...); built in a hidden temporary
            folder next to it and renamed at the end.
        ref: a folder of reference label maps named like the predictions (or one file): adds the
            metrics table (Dice, HD95, surface Dice, lesions; :func:`medseg.metrics.folders.evaluate_folders`).
        run: the run directory that predicted: adds its training curve (and its class names
            when ``pred`` has no labels.json).
        max_cases: overlay pictures for at most this many cases (in manifest order).
        overwrite: replace an existing report folder.
        progress: ``progress(what, total)`` -> a context manager yielding ``advance(label)``
            (the CLI passes its progress bar); None: silent.

    Raises:
        InputError: no (readable) manifest, missing ``ref``; OutputError: ``out`` is ``pred``
            itself, a file, a non-empty folder that is no report, or a report without ``overwrite``.
    """
    import tempfile

    pred, out = Path(pred), Path(out)
    ref = Path(ref) if ref is not None else None
    run = Path(run) if run is not None else None
    if max_cases < 0:
        raise InputError(f"max_cases {max_cases}: give 0 or more")
    rows = [r for r in read_manifest(pred) if r.ok]
    _check_out(out, pred, overwrite)
    if ref is not None and not ref.exists():
        raise InputError(f"--ref {ref} does not exist; check the path")
    table = _label_table(pred, run, rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        lines, shown = _build(pred, ref, run, max_cases, rows, table, tmp, progress or _no_progress)
        _publish(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Report(out / "report.md", shown, len(rows), lines)


def _label_table(pred: Path, run: Path | None, rows: list[ManifestRecord]):
    """Class names and colours: PRED_DIR/labels.json (written by `medseg predict`), else the
    run's labels.json, else the segment labels of the first DICOM SEG prediction; None if none."""
    from medseg.io.dicom_seg import is_dicom_seg, seg_label_table
    from medseg.io.labels import read_labels

    table = read_labels(pred)
    if table is None and run is not None:
        table = read_labels(run) if (run / "labels.json").is_file() else None
    if table is None:
        for r in rows:
            path = pred / r.output
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


def _build(pred: Path, ref_dir: Path | None, run: Path | None, max_cases: int, rows: list[ManifestRecord], table,
           out: Path, progress) -> tuple[list[str], int]:
    from medseg.io.atomic import write_text_atomic
    from medseg.io.formats import split_suffix
    from medseg.io import read_volume
    from medseg.metrics.folders import list_cases, read_label_map
    from medseg.overlay import overlay_png

    labels = {n: v for n, v in table.labels.items()} if table is not None else None
    colors = {v: table.colors[n] for n, v in table.labels.items() if n in table.colors} if table is not None else None
    if run is not None and (run / "curve.png").is_file():
        shutil.copy(run / "curve.png", out / "curve.png")
    shutil.copy(pred / "manifest.csv", out / "manifest.csv")
    if table is not None:
        from medseg.io.labels import write_labels

        write_labels(out, table)
    lines = [f"# medseg report: {pred}", ""]
    if table is not None:
        lines += ["Classes: " + ", ".join(f"{v} {n}" for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v),
                  ""]
    dice_lines: list[str] = []
    refs: dict[str, Path] = {}
    if ref_dir is not None:
        from medseg.metrics.folders import evaluate_folders
        from medseg.metrics.report import markdown_table, summarize, write_outputs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            names = {v: n for n, v in labels.items()} if labels else None
            ev = evaluate_folders(pred, ref_dir, labels=names)
        summary = summarize(ev)
        write_outputs(ev, out / "metrics", summary)
        dice_lines = markdown_table(summary).splitlines()
        lines += ["## Metrics against the reference", "", *dice_lines, "",
                  "Per case: `metrics/metrics.csv`; lesions: `metrics/lesions.csv`.", ""]
        refs = list_cases(ref_dir)[0] if ref_dir.is_dir() else {}
    if (out / "curve.png").exists():
        lines += ["## Training curve", "", "![training curve](curve.png)", ""]
    lines += ["## Cases (image | reference | prediction; axial, patient's right on the left)", ""]
    from medseg.instance.report import report_hooks

    instance = report_hooks(pred, run)  # an instance model's folder: lesion colours, legend, tables
    shown = rows[: max_cases]
    with progress("overlays", len(shown)) as advance:
        for r in shown:
            case = r.case
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = read_volume(r.image, series_uid=r.series_uid)
                pred_vol = _prediction_on_image(pred / r.output, image, table)
                ref = None
                if ref_dir is not None:
                    stem = split_suffix(Path(r.output).name)[0]
                    hit = refs.get(case) or refs.get(Path(case).name) or refs.get(stem)
                    if ref_dir.is_file():
                        hit = ref_dir
                    ref = read_label_map(hit) if hit is not None else None
                    if ref is not None and ref.meta.get("format") == "dicom-seg" and not ref.same_grid(image.geometry):
                        from medseg.io.dicom_seg import place_on_grid

                        ref = place_on_grid(ref, image.geometry) or ref
            png = (instance.overlay if instance else overlay_png)(image, pred_vol, out / "overlays" / f"{case.replace('/', '__')}.png", reference=ref,
                              labels=labels, colors=colors, title=case)
            vols = ", ".join(f"{name} {v:.1f} ml" for name, v in r.volumes_ml.items())
            lines += [f"### {case}", "", f"![{case}]({png.relative_to(out)})", "", f"volumes: {vols}", ""]
            lines += instance.case_lines(case) if instance else []
            advance(case)
    if len(rows) > len(shown):
        lines.append(f"({len(rows) - len(shown)} more cases in manifest.csv; raise --max-cases to draw them)")
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    return dice_lines, len(shown)
