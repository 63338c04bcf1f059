"""``medseg info PATH``: geometry and intensity summary of a scan, as text or one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from medseg.cli.common import add_read_options, read_kwargs
from medseg.errors import MedsegWarning
from medseg.io import read_volume
from medseg.volume import Volume

_AXIS_WORD = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "info",
        parents=parents,
        help="show shape, spacing, orientation and value range of a scan",
        description="Show a scan's grid (shape as stored, spacing in mm, RAS+ affine, orientation) "
        "and value range. For DICOM folders, list the series found.",
    )
    p.add_argument("path", type=Path, help="image file, DICOM file, or DICOM folder (searched recursively)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    add_read_options(p)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def describe(vol: Volume) -> dict:
    """The JSON report: keys documented in the README (``medseg info --json``)."""
    g = vol.geometry
    a = vol.array
    if a.size and np.issubdtype(a.dtype, np.floating):
        lo, hi = (np.nanmin(a), np.nanmax(a)) if not np.all(np.isnan(a)) else (np.nan, np.nan)
    elif a.size:
        lo, hi = a.min(), a.max()
    else:
        lo = hi = np.nan
    out = {
        "path": vol.meta.get("path"),
        "format": vol.meta.get("format"),
        "shape": list(vol.shape),
        "spacing": list(g.spacing),
        "origin": list(g.origin),
        "orientation": g.orientation,
        "affine_ras": g.affine.tolist(),
        "direction": g.direction.tolist(),
        "oblique": g.is_oblique,
        "sheared": g.is_sheared,
        "dtype": str(a.dtype),
        "min": _finite(lo) if np.issubdtype(a.dtype, np.floating) else int(lo),
        "max": _finite(hi) if np.issubdtype(a.dtype, np.floating) else int(hi),
    }
    if vol.meta.get("format") == "dicom":
        for key in ("series_uid", "study_uid", "modality", "description", "n_series", "series"):
            out[key] = vol.meta.get(key)
        out["skipped_files"] = len(vol.meta.get("skipped") or [])
    if vol.meta.get("segments"):
        out["segments"] = {str(k): v for k, v in vol.meta["segments"].items()}
    if vol.meta.get("nifti_version"):
        out["nifti_version"] = vol.meta["nifti_version"]
    return out


def _text(report: dict) -> str:
    r = report
    axes = ", ".join(f"{n}->{_AXIS_WORD[c]}" for n, c in zip("ijk", r["orientation"]))
    lines = [
        f"path         {r['path']}",
        f"format       {r['format']}" + (f" (NIfTI-{r['nifti_version']})" if r.get("nifti_version") else ""),
        f"shape        {' x '.join(map(str, r['shape']))}  (i, j, k as stored)",
        f"spacing      {' x '.join(f'{s:.5g}' for s in r['spacing'])} mm",
        f"orientation  {r['orientation']}  ({axes})"
        + ("  oblique" if r["oblique"] else "") + ("  sheared (gantry tilt)" if r["sheared"] else ""),
        f"origin       ({', '.join(f'{v:.3f}' for v in r['origin'])}) mm RAS+ (centre of voxel 0,0,0)",
        f"values       {r['dtype']}, min {r['min']}, max {r['max']}",
        "affine       voxel (i,j,k) -> RAS+ mm",
    ]
    lines += ["             " + "  ".join(f"{v:10.4f}" for v in row) for row in r["affine_ras"]]
    if r.get("segments"):
        lines.append("segments     " + ", ".join(f"{k}={v}" for k, v in r["segments"].items()))
    if r["format"] == "dicom":
        lines.insert(2, f"series       {r['series_uid']} ({r['modality']}"
                     + (f", '{r['description']}'" if r["description"] else "") + ")")
        if r["n_series"] > 1:
            lines.append(f"{r['n_series']} series in this path (read another with --series UID):")
            for s in r["series"]:
                mark = "*" if s["series_uid"] == r["series_uid"] else " "
                lines.append(f"  {mark} {s['series_uid']}  {s['modality'] or '?':4} {s['n_slices']:5d} slices  "
                             f"{s['description'] or ''}  [{s['folder']}]")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.json:
        # Collect warnings into the JSON too (they still go to stderr).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MedsegWarning)
            vol = read_volume(args.path, **read_kwargs(args))
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        report = describe(vol)
        report["warnings"] = [str(w.message) for w in caught if issubclass(w.category, MedsegWarning)]
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        vol = read_volume(args.path, **read_kwargs(args))
        sys.stdout.write(_text(describe(vol)) + "\n")
    return 0
