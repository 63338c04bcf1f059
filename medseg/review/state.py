"""Review state of a folder of masks: worklist, statuses, corrections, audit log (no Qt).

Everything lives in ``REVIEW_FOLDER/review/``; the predictions and images are only read::

    review/state.json            status, reviewer, seconds spent, last update per case (atomic writes)
    review/corrected/<case>.nii.gz   the corrected mask, on exactly the prediction's grid (atomic writes)
    review/audit.jsonl           one JSON line per status change (appended, never rewritten)

Every file and folder is written with the modes a plain ``open`` gives (``0o666 & ~umask``,
0644 with umask 022), so a second reviewer account in the group can read the review.

Statuses: ``not started`` -> ``in progress`` (opened or edited) -> ``approved`` (accepted as
predicted), ``corrected`` (accepted with edits) or ``flagged`` (needs a second look). A final
case is reopened (``in progress``) by editing it again or by :meth:`ReviewSession.reopen`.

Notes: a case's ``note`` is what a reviewer wrote with a status change (e.g. why it was
flagged). Changes made by the program (``opened``, ``edited``, a correction found after a
restart) never replace it; every change is an audit line with its ``event`` (``opened``,
``edited``, ``restored`` or ``reviewer``) and the note in force, so the audit log is the
case's status history.

A DICOM SEG prediction is read on its image's grid (the SEG references the image series), so
corrections and the export are on the scan's full grid.

Reopening after a crash restores everything: statuses come from ``state.json`` (rebuilt from
``audit.jsonl`` if it is missing or damaged) and each case's working mask is its saved
correction when there is one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
import numpy as np

from medseg.errors import GeometryError, InputError, MedsegError, OutputError
from medseg.io import read_volume, write_mask_like
from medseg.io.atomic import atomic_path
from medseg.io.labels import LabelTable, label_values, mask_label_table, read_labels
from medseg.metrics import dice, volume_ml
from medseg.metrics.labels import as_label_map
from medseg.review.cases import ReviewCase, Worklist, discover
from medseg.volume import Volume

STATUSES = ("not started", "in progress", "approved", "corrected", "flagged")
FINAL_STATUSES = ("approved", "corrected", "flagged")
STATE_VERSION = 1
#: ``event`` of an audit line: a reviewer's status change, or what the program recorded by itself.
REVIEWER_EVENT = "reviewer"
AUTO_EVENTS = ("opened", "edited", "restored")
#: The notes that audit lines written before ``event`` existed used for the program's changes.
_LEGACY_AUTO_NOTES = ("opened", "edited", "correction found on disk after a restart")


def reviewed_classes(review_dir: str | Path) -> LabelTable | None:
    """The classes reviewers added by name (napari Correction tools > Add class):
    ``REVIEW_FOLDER/review/labels.json`` (None when there is none or it is unreadable)."""
    path = Path(review_dir) / "labels.json"
    if not path.is_file():
        return None
    try:
        return read_labels(path)
    except InputError:
        return None


def with_reviewed(table: LabelTable, reviewed: LabelTable | None, present: set[int] | None = None) -> LabelTable:
    """``table`` plus the reviewers' named classes whose values it does not name (with
    ``present``: only those values); a name ``table`` uses for another value gets ``_<value>``."""
    if reviewed is None:
        return table
    labels, colors = dict(table.labels), dict(table.colors)
    known = set(labels.values())
    for name, value in sorted(reviewed.labels.items(), key=lambda kv: kv[1]):
        if value <= 0 or value in known or (present is not None and value not in present):
            continue
        key = name if name not in labels else f"{name}_{value}"
        labels[key] = value
        known.add(value)
        if name in reviewed.colors:
            colors[key] = reviewed.colors[name]
    return LabelTable(labels, colors, table.source)


def now_iso() -> str:
    """Local time with its UTC offset, to the second (ISO 8601)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class CaseState:
    status: str = "not started"
    reviewer: str = ""
    seconds: float = 0.0
    updated: str | None = None
    note: str = ""


@dataclass
class LoadedCase:
    """A case read for display. ``labels`` is the working mask: the saved correction when
    there is one (``restored``), else a copy of the prediction. ``uncertainty`` is the case's
    uncertainty map (per-voxel entropy, nats, on its own grid: the scan's) when ``medseg predict
    --uncertainty`` wrote one; ``notes`` says why one that exists could not be read."""

    case: ReviewCase
    image: Volume | None
    prediction: Volume
    labels: np.ndarray
    classes: dict[int, str]
    restored: bool
    table: LabelTable | None = None  # names and colours (RGB 0-255) of the classes
    uncertainty: Volume | None = None
    notes: list[str] = field(default_factory=list)


class ReviewSession:
    """The review of one folder (see the module docstring). Not thread-safe except
    :meth:`load`, which only reads and may run in a worker thread."""

    def __init__(self, folder: str | Path, reviewer: str = "", *, readonly: bool = False):
        """``readonly``: only read the review (e.g. to export it); nothing under ``review/`` is
        written or renamed, a damaged state.json is rebuilt from the audit log in memory."""
        self.folder = Path(folder)
        self.readonly = readonly
        self.worklist: Worklist = discover(self.folder)
        self.reviewer = reviewer
        self.review_dir = self.folder / "review"
        self.corrected_dir = self.review_dir / "corrected"
        self.state_path = self.review_dir / "state.json"
        self.audit_path = self.review_dir / "audit.jsonl"
        self._by_id = {c.case: c for c in self.worklist.cases}
        self._lock = threading.Lock()
        self._predictions: dict[str, Volume] = {}
        self._saved: dict[str, np.ndarray] = {}
        self.states: dict[str, CaseState] = self._load_state()
        self._restore_orphan_corrections()

    # ---- cases ---------------------------------------------------------------------------
    @property
    def cases(self) -> list[ReviewCase]:
        return self.worklist.cases

    def case(self, case: str) -> ReviewCase:
        try:
            return self._by_id[case]
        except KeyError:
            raise InputError(f"no case {case!r} in {self.folder}") from None

    def state(self, case: str) -> CaseState:
        self.case(case)
        return self.states.setdefault(case, CaseState())

    def corrected_path(self, case: str) -> Path:
        return self.corrected_dir / f"{case}.nii.gz"

    def rows(self) -> list[dict]:
        """One dict per case for the worklist table."""
        out = []
        for c in self.cases:
            s = self.state(c.case)
            out.append({"case": c.case, "status": s.status, "uncertainty": c.uncertainty,
                        "reviewer": s.reviewer, "minutes": s.seconds / 60.0, "note": s.note,
                        "corrected": self.corrected_path(c.case).is_file()})
        return out

    # ---- persistence -----------------------------------------------------------------------
    def _load_state(self) -> dict[str, CaseState]:
        if self.state_path.is_file():
            try:
                data = json.loads(self.state_path.read_text(encoding="utf-8"))
                names = {f.name for f in fields(CaseState)}
                states = {}
                for case, raw in data["cases"].items():
                    s = CaseState(**{k: v for k, v in raw.items() if k in names})
                    states[case] = s if s.status in STATUSES else CaseState()
                return states
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                if self.readonly:
                    return self._states_from_audit()
                damaged = self.state_path.with_name(f"state.json.damaged-{int(time.time())}")
                os.replace(self.state_path, damaged)
        return self._states_from_audit()

    def _states_from_audit(self) -> dict[str, CaseState]:
        """Rebuild the statuses from the audit log (its last line per case wins)."""
        states: dict[str, CaseState] = {}
        if not self.audit_path.is_file():
            return states
        for line in self.audit_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(rec, dict) and rec.get("status") in STATUSES and rec.get("case"):
                note = str(rec.get("note") or "")
                if "event" not in rec and note in _LEGACY_AUTO_NOTES:  # an old line: not a reviewer's note
                    note = states[rec["case"]].note if rec["case"] in states else ""
                states[rec["case"]] = CaseState(rec["status"], rec.get("reviewer", ""), float(rec.get("seconds", 0.0)),
                                                rec.get("time"), note)
        return states

    def _restore_orphan_corrections(self) -> None:
        """A correction saved just before a crash, whose status change was not recorded."""
        if self.readonly:
            return
        for c in self.cases:
            if self.corrected_path(c.case).is_file() and self.state(c.case).status == "not started":
                self._change(c.case, "in progress", self.reviewer or "unknown", event="restored")

    def _write_state(self) -> None:
        data = {"version": STATE_VERSION, "folder": str(self.folder.resolve()), "layout": self.worklist.layout,
                "cases": {k: asdict(v) for k, v in sorted(self.states.items())}}
        with atomic_path(self.state_path, ".json") as tmp:
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")

    def _append_audit(self, record: dict) -> None:
        self.review_dir.mkdir(parents=True, exist_ok=True)
        with open(self.audit_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # ---- reading ----------------------------------------------------------------------------
    def prediction(self, case: str) -> Volume:
        """The predicted mask (validated as a label map), cached for the last few cases."""
        with self._lock:
            if case in self._predictions:
                return self._predictions[case]
        c = self.case(case)
        vol = read_volume(c.mask)
        if vol.meta.get("format") == "dicom-seg" and c.image is not None:
            vol = self._seg_on_image(c, vol)
        vol = vol.with_array(as_label_map(vol.array, f"mask {c.mask.name}"))
        with self._lock:
            self._predictions[case] = vol
            while len(self._predictions) > 3:
                self._predictions.pop(next(iter(self._predictions)))
        return vol

    def _seg_on_image(self, c: ReviewCase, vol: Volume) -> Volume:
        """A DICOM SEG on its image's full grid: looked up by source instance when the image is
        the DICOM series, else placed by position (the SEG alone spans only its frames)."""
        from medseg.io.dicom_seg import place_on_grid, read_dicom_seg

        image = read_volume(c.image, series_uid=c.series_uid)
        if image.meta.get("format") == "dicom":
            try:
                return read_dicom_seg(c.mask, source=image, labels=self.worklist.table)[0]
            except InputError:
                pass
        placed = place_on_grid(vol, image.geometry)
        return placed if placed is not None else vol

    def saved_correction(self, case: str) -> np.ndarray | None:
        """The last saved correction of ``case`` (None when there is none)."""
        if case in self._saved:
            return self._saved[case]
        path = self.corrected_path(case)
        if not path.is_file():
            return None
        vol = read_volume(path)
        pred = self.prediction(case)
        if not vol.same_grid(pred):
            raise GeometryError(f"{path} is not on the grid of the prediction {self.case(case).mask}; "
                                "move it away to start the correction again")
        arr = as_label_map(vol.array, f"correction {path.name}")
        self._saved[case] = arr
        return arr

    def label_table(self, case: str) -> LabelTable:
        """Names and colours of ``case``'s classes: the folder's labels.json / dataset.json (the
        run's names), else the mask's own (SEG segments, a labels.json next to it), plus
        ``class_<v>`` for every other value in the prediction or its saved correction."""
        pred = self.prediction(case)
        table = mask_label_table(pred, self.case(case).mask, self.worklist.table)
        table = with_reviewed(table, reviewed_classes(self.review_dir))  # classes reviewers added by name
        saved = self._saved.get(case)
        if saved is not None:
            table = table.with_values(label_values(saved))[0]
        return table

    def classes(self, case: str) -> dict[int, str]:
        """Class names by value (see :meth:`label_table`); 0 is ``background``."""
        names = dict(self.label_table(case).names)
        names[0] = names.get(0) or "background"
        return dict(sorted(names.items()))

    def load_steps(self, case: str):
        """Generator reading a case for display: yields a message before each step and
        returns the :class:`LoadedCase` (for napari's ``thread_worker`` with progress)."""
        c = self.case(case)
        yield f"{case}: reading the image"
        image = read_volume(c.image, series_uid=c.series_uid) if c.image else None
        yield f"{case}: reading the mask"
        pred = self.prediction(case)
        saved = self.saved_correction(case)
        labels = np.array(saved if saved is not None else pred.array, copy=True)
        table = self.label_table(case)
        uncertainty, notes = self.uncertainty(case)
        return LoadedCase(c, image, pred, labels, self.classes(case), saved is not None, table, uncertainty, notes)

    def uncertainty(self, case: str) -> tuple[Volume | None, list[str]]:
        """The case's uncertainty map (``medseg predict --uncertainty``), and why an existing
        one could not be used (a damaged map costs only the overlay, never the case)."""
        path = self.case(case).uncertainty_map
        if path is None:
            return None, []
        try:
            vol = read_volume(path)
        except MedsegError as e:
            return None, [f"uncertainty map not shown: {e}"]
        if vol.array.ndim != 3 or vol.array.dtype.kind not in "fiu":
            return None, [f"uncertainty map not shown: {path.name} is not a 3D map of numbers"]
        return vol, []

    def load(self, case: str) -> LoadedCase:
        """Read a case for display (image, prediction, working mask); changes nothing."""
        steps = self.load_steps(case)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    # ---- changes ----------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.readonly:
            raise MedsegError(f"the review of {self.folder} is open read-only; nothing can be changed")

    def save_correction(self, case: str, labels: np.ndarray) -> Path:
        """Save the working mask atomically to ``review/corrected/<case>.nii.gz`` on the
        prediction's exact grid. An edit to a finished case reopens it (``in progress``)."""
        self._writable()
        pred = self.prediction(case)
        labels = as_label_map(np.asarray(labels), f"correction of {case}")
        if labels.shape != pred.shape:
            raise GeometryError(f"the correction of {case} has shape {labels.shape}, the prediction {pred.shape}")
        path = self.corrected_path(case)
        c = self.case(case)
        if path.resolve() in {c.mask.resolve(), c.image.resolve() if c.image else None}:
            raise OutputError(f"refusing to overwrite the input {path}")
        previous = self._saved.get(case)
        if previous is not None and np.array_equal(previous, labels) and path.is_file():
            return path
        write_mask_like(labels, pred.geometry, path, overwrite=True)
        self._saved[case] = np.array(labels, copy=True)
        if self.state(case).status != "in progress":
            self._change(case, "in progress", self._who(None), event="edited")
        return path

    def open(self, case: str, reviewer: str | None = None) -> None:
        """Mark a case ``in progress`` when it is opened for the first time."""
        if self.state(case).status == "not started":
            self._change(case, "in progress", self._who(reviewer), event="opened")

    def accept(self, case: str, reviewer: str | None = None, note: str | None = None) -> dict:
        """``approved`` when the mask equals the prediction, else ``corrected``."""
        changed = self.change_summary(case)["voxels_changed"]
        return self.set_status(case, "corrected" if changed else "approved", reviewer, note)

    def flag(self, case: str, reviewer: str | None = None, note: str | None = None) -> dict:
        return self.set_status(case, "flagged", reviewer, note)

    def reopen(self, case: str, reviewer: str | None = None, note: str | None = None) -> dict:
        return self.set_status(case, "in progress", reviewer, note)

    def set_status(self, case: str, status: str, reviewer: str | None = None, note: str | None = None) -> dict | None:
        """Record a status change and append its audit line (returned). Setting the current
        status again records nothing and returns None. ``note`` replaces the case's note (``""``
        clears it); None keeps it.

        Raises:
            MedsegError: unknown status, going back to ``not started``, ``approved`` while the
                mask differs from the prediction, or ``corrected`` while it does not.
        """
        if status not in STATUSES:
            raise MedsegError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        if status == "not started":
            raise MedsegError("a case cannot go back to 'not started'; reopen it ('in progress') instead")
        who = self._who(reviewer)
        if status in ("approved", "corrected"):
            changed = self.change_summary(case)["voxels_changed"]
            if status == "approved" and changed:
                raise MedsegError(f"{case}: the mask differs from the prediction in {changed} voxels; "
                                  "mark it 'corrected' (or undo the edits to approve the prediction)")
            if status == "corrected" and not changed:
                raise MedsegError(f"{case}: the mask equals the prediction; mark it 'approved'")
        if self.state(case).status == status:
            return None
        return self._change(case, status, who, note, event=REVIEWER_EVENT)

    def add_time(self, case: str, seconds: float) -> None:
        """Add reviewing time (seconds the case was shown) to the case."""
        if seconds > 0 and not self.readonly:
            self.state(case).seconds += float(seconds)
            self._write_state()

    def _who(self, reviewer: str | None) -> str:
        who = (reviewer if reviewer is not None else self.reviewer).strip()
        if not who:
            raise MedsegError("enter a reviewer name first")
        return who

    def _change(self, case: str, status: str, reviewer: str, note: str | None = None, *, event: str) -> dict:
        """Change the status; ``note`` None keeps the case's note (the program's own changes,
        ``event`` in :data:`AUTO_EVENTS`, always keep it)."""
        self._writable()
        s = self.state(case)
        if event in AUTO_EVENTS or note is None:
            note = s.note
        record = {"case": case, "reviewer": reviewer, "time": now_iso(), "status": status, "previous": s.status,
                  "event": event, **self.change_summary(case), "seconds": round(s.seconds, 1), "note": note,
                  "correction": str(self.corrected_path(case).relative_to(self.folder))
                  if self.corrected_path(case).is_file() else None}
        s.status, s.reviewer, s.updated, s.note = status, reviewer, record["time"], note
        self._write_state()
        self._append_audit(record)
        return record

    def change_summary(self, case: str) -> dict:
        """How the saved correction differs from the prediction: ``voxels_changed``, foreground
        ``dice``, ``dice_per_class``, ``volume_ml`` (corrected) and ``volume_change_ml``
        (corrected minus predicted) per class value, and the class names."""
        pred_vol = self.prediction(case)
        pred = pred_vol.array
        corr = self.saved_correction(case)
        corr = pred if corr is None else corr
        values = sorted((set(label_values(pred)) | set(label_values(corr))) - {0})
        sp = pred_vol.spacing
        names = self.classes(case)
        return {
            "voxels_changed": int(np.count_nonzero(pred != corr)),
            "dice": round(dice(pred > 0, corr > 0), 6),
            "dice_per_class": {str(v): round(dice(pred == v, corr == v), 6) for v in values},
            "volume_ml": {str(v): round(volume_ml(corr == v, sp), 4) for v in values},
            "volume_change_ml": {str(v): round(volume_ml(corr == v, sp) - volume_ml(pred == v, sp), 4) for v in values},
            "classes": {str(v): names.get(v, f"class_{v}") for v in values},
        }

    def export_nnunet(self, out: str | Path, **kwargs):
        """Export the accepted cases as an nnU-Net dataset (see :mod:`medseg.review.export`)."""
        from medseg.review.export import export_nnunet

        return export_nnunet(self, out, **kwargs)
