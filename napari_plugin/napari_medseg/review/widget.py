"""Review dock widget: a worklist table over a folder of masks, case navigation, statuses,
automatic saving of corrections. All state is in :class:`~napari_medseg.review.state.ReviewSession`
(plain Python); this module is the only Qt in the review.

Keyboard (when the viewer has focus): Shift+N next case, Shift+P previous case,
Shift+A accept (approved / corrected), Shift+F flag.
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medseg.errors import MedsegError
from medseg.volume import Volume
from napari_medseg.layers import image_layer_data, labels_layer_data, table_colors
from napari_medseg.review.state import LoadedCase, ReviewSession
from napari_medseg.view import go_to_world, radiological_axial_view

AUTOSAVE_MS = 1000
COLUMNS = ("case", "status", "uncertainty", "reviewer", "minutes")
KEYS = {"Shift-N": "next_case", "Shift-P": "previous_case", "Shift-A": "accept", "Shift-F": "flag"}


class _Item(QTableWidgetItem):
    """A table cell that sorts by its number (uncertainty, minutes) when it has one."""

    def __init__(self, text: str, number: float | None = None):
        super().__init__(text)
        self.number = number
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other):
        if isinstance(other, _Item) and self.number is not None and other.number is not None:
            return self.number < other.number
        if isinstance(other, _Item) and (self.number is None) != (other.number is None):
            return self.number is None  # empty cells first when ascending
        return super().__lt__(other)


class ReviewWidget(QWidget):
    """Review the masks of a folder (``medseg predict`` output, images/ + masks/, or an
    nnU-Net dataset) in ``napari_viewer``."""

    def __init__(self, napari_viewer, folder: str | Path | None = None, reviewer: str | None = None, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: ReviewSession | None = None
        self.current: str | None = None
        self.loaded: LoadedCase | None = None
        self.image_layer = None
        self.labels_layer = None
        self._requested: str | None = None
        self._snapshot: np.ndarray | None = None
        self._shown_at: float | None = None
        self._first_view = True
        self._closed = False
        self.worker = None
        self._save_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self._save_timer.timeout.connect(self.save_now)
        self._build(reviewer)
        for key, name in KEYS.items():
            self.viewer.bind_key(key, lambda _v, n=name: getattr(self, n)(), overwrite=True)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.close_session)  # napari closed: save the open case
        if folder is not None:
            self.open_folder(folder)

    # ---- layout ------------------------------------------------------------------------------
    def _build(self, reviewer: str | None) -> None:
        self.folder_edit = QLineEdit(placeholderText="folder with the masks to review")
        browse = QPushButton("Open…")
        browse.clicked.connect(self._browse)
        self.folder_edit.returnPressed.connect(lambda: self.open_folder(self.folder_edit.text()))
        self.reviewer_edit = QLineEdit(reviewer or _user())
        self.reviewer_edit.textChanged.connect(self._reviewer_changed)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSortingEnabled(True)
        self.table.cellDoubleClicked.connect(lambda row, _c: self.load_case(self.table.item(row, 0).text()))
        self.note_edit = QLineEdit(placeholderText="note (e.g. why it is flagged)")
        self.advance = QCheckBox("go to the next case after accept / flag", checked=True)
        self.progress = QProgressBar(visible=False)
        self.message = QLabel(wordWrap=True)
        self.export_button = QPushButton("Export accepted cases as nnU-Net dataset…")
        self.export_button.clicked.connect(self._export_dialog)

        top = QHBoxLayout()
        top.addWidget(self.folder_edit)
        top.addWidget(browse)
        who = QHBoxLayout()
        who.addWidget(QLabel("reviewer"))
        who.addWidget(self.reviewer_edit)
        nav = QHBoxLayout()
        for text, slot, tip in (("◀ Previous", self.previous_case, "Shift+P"), ("Next ▶", self.next_case, "Shift+N")):
            nav.addWidget(self._button(text, slot, tip))
        status = QHBoxLayout()
        for text, slot, tip in (("Accept", self.accept, "Shift+A: approved, or corrected if edited"),
                                ("Flag", self.flag, "Shift+F: needs a second look"),
                                ("Reopen", self.reopen, "back to in progress")):
            status.addWidget(self._button(text, slot, tip))
        layout = QVBoxLayout(self)
        for item in (top, who):
            layout.addLayout(item)
        layout.addWidget(self.table)
        layout.addLayout(nav)
        layout.addWidget(self.note_edit)
        layout.addLayout(status)
        layout.addWidget(self.advance)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.export_button)

    def _button(self, text: str, slot, tip: str) -> QPushButton:
        b = QPushButton(text)
        b.setToolTip(tip)
        b.clicked.connect(lambda _checked=False: slot())
        return b

    def _say(self, text: str, error: bool = False) -> None:
        try:
            self.message.setText(text)
            self.message.setStyleSheet("color: #e06c6c" if error else "")
        except RuntimeError:  # the widget was already destroyed (napari closing): nothing to show
            pass

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except MedsegError as e:
            self._say(f"error: {e}", error=True)
            return None

    # ---- folder and table ----------------------------------------------------------------------
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with the masks to review")
        if folder:
            self.open_folder(folder)

    def _reviewer_changed(self, text: str) -> None:
        if self.session is not None:
            self.session.reviewer = text.strip()

    def reviewer(self) -> str:
        return self.reviewer_edit.text().strip()

    def open_folder(self, folder: str | Path) -> ReviewSession | None:
        """Start reviewing ``folder``; an unusable folder shows its error in the widget."""
        self.leave_case()
        session = self._guard(ReviewSession, Path(folder), self.reviewer())
        if session is None:
            return None
        self.session = session
        self.current = None
        self.folder_edit.setText(str(folder))
        self.refresh_table()
        if any(c.uncertainty is not None for c in session.cases):  # most uncertain first
            self.table.sortByColumn(COLUMNS.index("uncertainty"), Qt.SortOrder.DescendingOrder)
        else:
            self.table.sortByColumn(COLUMNS.index("case"), Qt.SortOrder.AscendingOrder)
        problems = session.worklist.problems
        self._say(f"{len(session.cases)} cases ({session.worklist.layout} layout)"
                  + (f"; {len(problems)} problem(s), see the tooltip" if problems else ""))
        self.message.setToolTip("\n".join(f"{c}: {m}" for c, m in problems))
        return session

    def order(self) -> list[str]:
        """Case ids in the table's current (sorted) order."""
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())]

    def refresh_table(self) -> None:
        if self.session is None:
            return
        self.table.setSortingEnabled(False)
        rows = self.session.rows()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            u = row["uncertainty"]
            cells = (_Item(row["case"]), _Item(row["status"]), _Item("" if u is None else f"{u:.3f}", u),
                     _Item(row["reviewer"]), _Item(f"{row['minutes']:.1f}", row["minutes"]))
            for c, item in enumerate(cells):
                if row["note"]:
                    item.setToolTip(row["note"])
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self._select_current()

    def _select_current(self) -> None:
        if self.current in self.order():
            self.table.selectRow(self.order().index(self.current))

    # ---- cases -----------------------------------------------------------------------------------
    def next_case(self) -> None:
        self._step(+1)

    def previous_case(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        order = self.order()
        if not order:
            return
        base = self._requested or self.current
        i = order.index(base) + delta if base in order else (0 if delta > 0 else len(order) - 1)
        if 0 <= i < len(order):
            self.load_case(order[i])
        else:
            self._say("last case of the list" if delta > 0 else "first case of the list")

    def load_case(self, case: str) -> None:
        """Save and leave the current case, then read ``case`` in a worker thread."""
        from napari.qt.threading import thread_worker

        if self.session is None:
            return
        self.leave_case()
        self._requested = case
        self.progress.setRange(0, 2)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self._say(f"loading {case}…")
        worker = thread_worker(self.session.load_steps, progress={"total": 2, "desc": f"loading {case}"})(case)
        worker.yielded.connect(lambda _msg: self.progress.setValue(self.progress.value() + 1))
        worker.returned.connect(self._show)
        worker.errored.connect(lambda e, c=case: self._load_failed(c, e))
        worker.finished.connect(lambda: self.progress.setVisible(False))
        self.worker = worker
        worker.start()

    def _load_failed(self, case: str, error: Exception) -> None:
        if self._requested == case:
            self._requested = None
        self._say(f"error: {case}: {error}", error=True)

    def _show(self, loaded: LoadedCase) -> None:
        case = loaded.case.case
        if case != self._requested or self.session is None:
            return  # the user moved on while it was loading
        self._requested = None
        for layer in (self.image_layer, self.labels_layer):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image_layer = self.labels_layer = None
        if loaded.image is not None:
            data, kw, _ = image_layer_data(loaded.image, loaded.case.image, name=f"{case} image")
            self.image_layer = self.viewer.add_image(data, **kw)
        mask = Volume(loaded.labels, loaded.prediction.affine, loaded.prediction.meta)
        colors = table_colors(loaded.table) if loaded.table is not None else None
        data, kw, _ = labels_layer_data(mask, loaded.case.mask, name=f"{case} mask", names=loaded.classes,
                                        image_path=loaded.case.image, colors=colors)
        kw["metadata"]["review_case"] = case
        self.labels_layer = self.viewer.add_labels(data, **kw)
        self.loaded, self.current = loaded, case
        self._snapshot = np.array(loaded.labels, copy=True)
        for ev in (self.labels_layer.events.paint, self.labels_layer.events.data, self.labels_layer.events.set_data):
            ev.connect(self._schedule_save)
        if self._first_view:
            radiological_axial_view(self.viewer)
            self._first_view = False
        self.viewer.reset_view()
        self._centre_on_mask()
        self.viewer.layers.selection.active = self.labels_layer
        self._guard(self.session.open, case, self.reviewer())
        self._shown_at = time.monotonic()
        self.refresh_table()
        state = self.session.state(case)
        self._say(f"{case}: {state.status}" + (" (saved correction restored)" if loaded.restored else ""))

    def _centre_on_mask(self) -> None:
        """Show the slice through the centre of the mask's bounding box."""
        fg = self.loaded.labels > 0
        if not fg.any():
            return
        centre = []
        for axis in range(3):
            hit = np.flatnonzero(fg.any(axis=tuple(a for a in range(3) if a != axis)))
            centre.append((hit[0] + hit[-1]) / 2.0)
        go_to_world(self.viewer, self.loaded.prediction.geometry.index_to_world(centre))

    def _schedule_save(self, *_args) -> None:
        try:
            self._save_timer.start()
        except RuntimeError:  # napari is closing; close_session saves
            pass

    def save_now(self) -> Path | None:
        """Save the working mask now if it differs from what was saved (autosave calls this).
        Works also while napari closes, after the Qt widgets are gone: only plain Python here."""
        try:
            self._save_timer.stop()
        except RuntimeError:  # Qt object already deleted
            pass
        if self.session is None or self.current is None or self.labels_layer is None:
            return None
        data = np.asarray(self.labels_layer.data)
        if self._snapshot is not None and np.array_equal(data, self._snapshot):
            return None
        path = self._guard(self.session.save_correction, self.current, data)
        if path is not None:
            self._snapshot = np.array(data, copy=True)
            self._say(f"{self.current}: correction saved to {path.relative_to(self.session.folder)}")
            try:
                self.refresh_table()
            except RuntimeError:
                pass
        return path

    def _log_time(self) -> None:
        if self.session is not None and self.current is not None and self._shown_at is not None:
            now = time.monotonic()
            self.session.add_time(self.current, now - self._shown_at)
            self._shown_at = now

    def leave_case(self) -> None:
        """Save the current case's edits and time (before switching case or closing)."""
        if self.current is None:
            return
        self.save_now()
        self._log_time()
        if self.labels_layer is not None and self._shown_at is not None:
            for ev in (self.labels_layer.events.paint, self.labels_layer.events.data, self.labels_layer.events.set_data):
                ev.disconnect(self._schedule_save)
            self.labels_layer.editable = False  # edits now would not be saved: the next case is loading
        self._shown_at = None

    # ---- statuses ---------------------------------------------------------------------------------
    def _set(self, action, advance: bool) -> dict | None:
        if self.session is None or self.current is None:
            self._say("open a case first", error=True)
            return None
        self.save_now()
        self._log_time()
        record = self._guard(action, self.current, self.reviewer(), self.note_edit.text().strip())
        if record is not None:
            self._say(f"{record['case']}: {record['status']} (Dice {record['dice']:.3f} vs prediction, "
                      f"{record['voxels_changed']} voxels changed)")
            self.note_edit.clear()
        self.refresh_table()
        if record is not None and advance and self.advance.isChecked():
            self.next_case()
        return record

    def accept(self) -> dict | None:
        return self._set(self.session.accept if self.session else None, advance=True)

    def flag(self) -> dict | None:
        return self._set(self.session.flag if self.session else None, advance=True)

    def reopen(self) -> dict | None:
        return self._set(self.session.reopen if self.session else None, advance=False)

    # ---- export ----------------------------------------------------------------------------------
    def _export_dialog(self) -> None:
        if self.session is None:
            return
        default = str(self.session.review_dir / "Dataset900_Reviewed")
        out, _ = QFileDialog.getSaveFileName(self, "New nnU-Net dataset folder", default)
        if out:
            self.export_to(out)

    def export_to(self, out: str | Path):
        """Export approved and corrected cases (see :func:`medseg.review.export.export_nnunet`); the
        message names the label values the run did not know (declared as ``class_<v>``)."""
        if self.session is None:
            return None
        self.save_now()
        self._log_time()
        result = self._guard(self.session.export_nnunet, Path(out))
        if result is not None:
            self._say(result.summary())
        return result

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.close_session()
        super().closeEvent(event)

    def close_session(self) -> None:
        """Save everything and release the key bindings (when napari closes; safe to repeat)."""
        self.leave_case()
        if not self._closed:
            self._closed = True
            for key in KEYS:
                self.viewer.bind_key(key, None)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""
