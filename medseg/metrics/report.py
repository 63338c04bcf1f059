"""Outputs of an evaluation: metrics.csv, lesions.csv, instances.csv, summary.json and the
markdown table printed on the terminal. Files are written atomically (temporary file in the
output folder, then rename)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from medseg._version import __version__
from medseg.errors import OutputError
from medseg.io.atomic import atomic_path
from medseg.metrics.case import INSTANCE_COLUMNS, LESION_COLUMNS, ROW_COLUMNS
from medseg.metrics.folders import Evaluation

#: Columns of metrics.csv summarised in summary.json.
SUMMARY_METRICS = ("dice", "iou", "hd95_mm", "assd_mm", "nsd", "ref_ml", "pred_ml",
                   "lesion_precision", "lesion_recall", "lesion_f1", "lesion_dice")
INSTANCE_METRICS = ("precision", "recall", "f1", "sq", "rq", "pq")
OUTPUT_FILES = ("metrics.csv", "lesions.csv", "instances.csv", "summary.json")


def stats(values) -> dict:
    """``{mean, std, median, n, n_nan}`` of the finite values (std: sample, ddof=1).

    NaN values (a distance with one mask empty) are left out and counted in ``n_nan``;
    statistics of no value, and the std of one value, are None (JSON null).
    """
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    ok = v[~np.isnan(v)]
    out = {"mean": None, "std": None, "median": None, "n": int(ok.size), "n_nan": int(v.size - ok.size)}
    if ok.size:
        out.update(mean=float(ok.mean()), median=float(np.median(ok)))
    if ok.size > 1:
        out["std"] = float(ok.std(ddof=1))
    return out


def summarize(ev: Evaluation) -> dict:
    """The content of summary.json: statistics per class and overall (all classes pooled)."""
    ok = [r for r in ev.rows if r["status"] == "ok"]
    per_class = {}
    for label in sorted({r["label"] for r in ok}):
        rows = [r for r in ok if r["label"] == label]
        per_class[str(label)] = {"name": rows[0]["name"], "n": len(rows),
                                 **{m: stats(r[m] for r in rows) for m in SUMMARY_METRICS}}
    summary = {
        "medseg_version": __version__,
        "settings": ev.settings,
        "cases": {
            "scored": len({r["case"] for r in ok}),
            "failed": dict(ev.failed),
            "extra_pred": list(ev.extra_pred),
        },
        "per_class": per_class,
        "overall": {"n": len(ok), **{m: stats(r[m] for r in ok) for m in SUMMARY_METRICS}},
    }
    if ev.instances:
        summary["instances"] = {m: stats(r[m] for r in ev.instances) for m in INSTANCE_METRICS}
    return summary


def _fmt(s: dict, digits: int) -> str:
    if s["mean"] is None:
        return "–"
    text = f"{s['mean']:.{digits}f}"
    if s["std"] is not None:
        text += f" ± {s['std']:.{digits}f}"
    return text + (f" ({s['n_nan']} NaN)" if s["n_nan"] else "")


def markdown_table(summary: dict) -> str:
    """A short markdown table: mean ± std per class and overall."""
    tol = summary["settings"].get("tolerance_mm", 1.0)
    head = ["label", "name", "n", "Dice", "IoU", "HD95 mm", "ASSD mm", f"NSD@{tol:g}mm", "lesion F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---:", "---", "---:"] + ["---:"] * 6) + "|"]
    entries = [(k, v["name"], v) for k, v in summary["per_class"].items()]
    entries.append(("all", "", summary["overall"]))
    for label, name, s in entries:
        cells = [label, name, str(s["n"]), _fmt(s["dice"], 3), _fmt(s["iou"], 3), _fmt(s["hd95_mm"], 2),
                 _fmt(s["assd_mm"], 2), _fmt(s["nsd"], 3), _fmt(s["lesion_f1"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    if "instances" in summary:
        i = summary["instances"]
        lines.append("")
        lines.append(f"instances: PQ {_fmt(i['pq'], 3)}, SQ {_fmt(i['sq'], 3)}, RQ/F1 {_fmt(i['rq'], 3)}, "
                     f"precision {_fmt(i['precision'], 3)}, recall {_fmt(i['recall'], 3)}")
    return "\n".join(lines)


def _cell(v) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, (str, int, np.integer)):
        return "" if v is None else str(v)
    return f"{float(v):.8g}"


def _write_csv(path: Path, columns, rows: list[dict]) -> None:
    with atomic_path(path, ".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(columns)
            for r in rows:
                w.writerow([_cell(r[c]) for c in columns])


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse (before any work) an output folder that is a file or already holds results.

    Raises:
        OutputError: with what to do instead.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder for metrics.csv, lesions.csv and summary.json")
    existing = [n for n in OUTPUT_FILES if (out / n).exists()]
    if existing and not overwrite:
        raise OutputError(f"{out} already holds {', '.join(existing)}; choose another --out folder "
                          "or pass --overwrite to replace them")


def write_outputs(ev: Evaluation, out: Path, summary: dict | None = None) -> list[Path]:
    """Write metrics.csv, lesions.csv, summary.json (and instances.csv when present) to ``out``."""
    summary = summary or summarize(ev)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_csv(out / "metrics.csv", ROW_COLUMNS, ev.rows)
        _write_csv(out / "lesions.csv", LESION_COLUMNS, ev.lesions)
        written = [out / "metrics.csv", out / "lesions.csv"]
        if ev.instances:
            _write_csv(out / "instances.csv", INSTANCE_COLUMNS, ev.instances)
            written.append(out / "instances.csv")
        with atomic_path(out / "summary.json", ".json") as tmp:
            tmp.write_text(json.dumps(_json_safe(summary), indent=2) + "\n", encoding="utf-8")
        written.append(out / "summary.json")
    except OSError as e:
        raise OutputError(f"cannot write to {out} ({e.strerror or e}); choose a writable --out folder") from e
    return written
