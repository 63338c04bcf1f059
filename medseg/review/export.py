"""Export reviewed cases as an nnU-Net v2 raw dataset that ``medseg check-dataset``, ``medseg
plan`` and training accept as is (no Qt, no napari; used by the napari review widget and by
``medseg review DIR --export OUT``)::

    OUT/dataset.json               channel_names, labels, numTraining, file_ending ".nii.gz",
                                   medseg_review (status and reviewer per case),
                                   medseg_added_classes (values painted that the run did not name)
    OUT/imagesTr/<case>_0000.nii.gz   the scan, converted from any format medseg reads
    OUT/labelsTr/<case>.nii.gz        the corrected mask (or the approved prediction), on the image grid
    OUT/labels.json                   the same labels with their colours (medseg.io.labels)

Labels: the run's class table (the review folder's ``labels.json`` written by ``medseg
predict``, else its ``dataset.json``, else the masks' own segment names), so the dataset trains
with the preset that made the predictions; **every** value present in an exported mask is
declared -- a value painted during review that the table does not know is named by the class the
reviewer added in napari (Correction tools > Add class, recorded in ``REVIEW_FOLDER/review/labels.json``,
:func:`medseg.review.state.reviewed_classes`), else ``class_<v>`` (:meth:`medseg.io.labels.LabelTable.with_values`);
either way it is listed in :attr:`ExportResult.added`.

The dataset is built in a hidden temporary folder next to OUT and renamed to OUT at the end,
so an interrupted export leaves no half dataset. OUT must not exist (or be an empty folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medseg.data.nnunet_writer import dataset_meta, write_case, write_dataset_json
from medseg.errors import MedsegError, OutputError
from medseg.io import read_volume
from medseg.io.labels import LabelTable, label_values, write_labels
from medseg.review.state import reviewed_classes, with_reviewed

if TYPE_CHECKING:
    from medseg.review.state import ReviewSession

DEFAULT_STATUSES = ("approved", "corrected")


@dataclass
class ExportResult:
    """``cases`` exported; ``skipped`` (case, reason); ``labels`` the declared name -> value;
    ``added`` value -> name of classes present in the masks that the run did not name."""

    out: Path
    cases: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    added: dict[int, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for a status bar or the terminal."""
        text = f"exported {len(self.cases)} case(s) to {self.out}"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} ({'; '.join(f'{c}: {m}' for c, m in self.skipped[:3])})"
        named = {v: n for v, n in self.added.items() if n != f"class_{v}"}
        unnamed = {v: n for v, n in self.added.items() if v not in named}
        if named:
            text += "; classes added in review: " + ", ".join(f"{v} = {n}" for v, n in sorted(named.items()))
        if unnamed:
            text += ("; label value(s) not named by the run were declared as "
                     + ", ".join(f"{v} = {n}" for v, n in sorted(unnamed.items()))
                     + " -- rename them in dataset.json if they are a real class")
        return text


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} already exists and is not empty; choose a new dataset folder "
                          "(e.g. Dataset901_Reviewed)")


def _is_ct(volume) -> bool:
    modality = str(volume.meta.get("modality") or "").upper()
    if modality:
        return modality == "CT"
    a = volume.array
    return a.dtype.kind in "iu" and a.size > 0 and int(a.min()) <= -500


def _run_table(session: "ReviewSession", cases: list[str]) -> LabelTable:
    """The folder's class table, else the first exported case's (SEG segments / a nearby
    labels.json), without the ``class_<v>`` fill-ins (those are added from the masks)."""
    if session.worklist.table is not None:
        return session.worklist.table
    from medseg.io.labels import mask_label_table

    first = session.case(cases[0])
    pred = session.prediction(first.case)
    table = mask_label_table(pred.with_array(pred.array * 0), first.mask)  # names only, no fill-ins
    return table


def export_nnunet(session: "ReviewSession", out: str | Path, *, statuses: Sequence[str] = DEFAULT_STATUSES,
                  channel_name: str | None = None, name: str | None = None,
                  progress: Callable[[str], None] | None = None) -> ExportResult:
    """Write the cases whose status is in ``statuses`` as an nnU-Net dataset at ``out``.

    A case whose mask is not on its image's grid is skipped (listed in the result), never
    resampled silently. The session is only read (it may be opened ``readonly``).

    Raises:
        OutputError: ``out`` exists and is not empty.
        MedsegError: no case has one of ``statuses``, or none could be exported.
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
            write_case(tmp, c.case, [image], labels, overwrite=False)
            present |= set(label_values(labels))
            channel = channel or ("CT" if _is_ct(image) else "image")
            result.cases.append(c.case)
        if not result.cases:
            raise MedsegError("no case could be exported: " + "; ".join(f"{c}: {m}" for c, m in result.skipped))
        run_table = _run_table(session, result.cases)
        run_values = set(run_table.labels.values())
        table, _ = with_reviewed(run_table, reviewed_classes(session.review_dir), present).with_values(present | {0})
        added = sorted(v for v in table.labels.values() if v not in run_values and v != 0)
        result.labels = dict(sorted(table.labels.items(), key=lambda kv: kv[1]))
        result.added = {v: table.name_of(v) for v in added}
        dataset = dataset_meta(
            name or out.name, {"0": channel}, result.labels, len(result.cases),
            description=f"Masks reviewed with medseg review in {session.folder.resolve()}",
            medseg_review={c: {"status": session.state(c).status, "reviewer": session.state(c).reviewer}
                           for c in result.cases},
            medseg_added_classes={str(v): n for v, n in result.added.items()} if result.added else None,
            medseg_labels_source=table.source or None)
        write_dataset_json(tmp, dataset)
        write_labels(tmp, table)  # the class colours, for viewers
        _check_out(out)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result

