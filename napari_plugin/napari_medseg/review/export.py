"""Export reviewed cases as an nnU-Net v2 raw dataset, ready for ``medseg check-dataset``,
``medseg plan`` and training (no Qt)::

    OUT/dataset.json               channel_names, labels (background 0 + every class present),
                                   numTraining, file_ending ".nii.gz", medseg_review provenance
    OUT/imagesTr/<case>_0000.nii.gz   the scan, converted from any format medseg reads
    OUT/labelsTr/<case>.nii.gz        the corrected mask (or the approved prediction), on the image grid

The dataset is built in a hidden temporary folder next to OUT and renamed to OUT at the end,
so an interrupted export leaves no half dataset. OUT must not exist (or be an empty folder).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medseg.errors import MedsegError, OutputError
from medseg.io import read_volume, write_mask_like, write_volume
from napari_medseg.layers import is_ct, label_values

if TYPE_CHECKING:
    from napari_medseg.review.state import ReviewSession

DEFAULT_STATUSES = ("approved", "corrected")


@dataclass
class ExportResult:
    out: Path
    cases: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} already exists and is not empty; choose a new dataset folder "
                          "(e.g. Dataset901_Reviewed)")


def _label_names(session: "ReviewSession", cases: list[str], present: set[int]) -> dict[str, int]:
    by_value: dict[int, str] = {0: "background"}
    for case in cases:
        for v, name in session.classes(case).items():
            by_value.setdefault(int(v), name)
    out: dict[str, int] = {}
    for v in sorted(set(by_value) & (present | {0})):
        name = by_value[v] if v else "background"
        out[name if name not in out else f"{name}_{v}"] = v
    return out


def export_nnunet(session: "ReviewSession", out: str | Path, *, statuses: Sequence[str] = DEFAULT_STATUSES,
                  channel_name: str | None = None, name: str | None = None,
                  progress: Callable[[str], None] | None = None) -> ExportResult:
    """Write the cases whose status is in ``statuses`` as an nnU-Net dataset at ``out``.

    A case whose mask is not on its image's grid is skipped (listed in the result), never
    resampled silently.

    Raises:
        OutputError: ``out`` exists and is not empty.
        MedsegError: no case has one of ``statuses``.
    """
    out = Path(out)
    _check_out(out)
    chosen = [c for c in session.cases if session.state(c.case).status in statuses]
    if not chosen:
        raise MedsegError(f"no case is {' or '.join(statuses)} yet; review some cases before exporting")
    result = ExportResult(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    present: set[int] = set()
    channel = channel_name or session.worklist.channel_names.get("0")
    try:
        for c in chosen:
            if progress:
                progress(c.case)
            image = read_volume(c.image, series_uid=c.series_uid)
            pred = session.prediction(c.case)
            saved = session.saved_correction(c.case)
            labels = saved if saved is not None else pred.array
            if not pred.same_grid(image):
                result.skipped.append((c.case, "the mask is not on the image grid; resample it first"))
                continue
            write_volume(image, tmp / "imagesTr" / f"{c.case}_0000.nii.gz")
            write_mask_like(labels, image, tmp / "labelsTr" / f"{c.case}.nii.gz")
            present |= set(label_values(labels))
            channel = channel or ("CT" if is_ct(image) else "image")
            result.cases.append(c.case)
        if not result.cases:
            raise MedsegError("no case could be exported: " + "; ".join(f"{c}: {m}" for c, m in result.skipped))
        dataset = {
            "name": name or out.name,
            "description": f"Masks reviewed with medseg review in {session.folder.resolve()}",
            "channel_names": {"0": channel},
            "labels": _label_names(session, result.cases, present),
            "numTraining": len(result.cases),
            "file_ending": ".nii.gz",
            "medseg_review": {c: {"status": session.state(c).status, "reviewer": session.state(c).reviewer}
                              for c in result.cases},
        }
        (tmp / "dataset.json").write_text(json.dumps(dataset, indent=2), encoding="utf-8")
        _check_out(out)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result
