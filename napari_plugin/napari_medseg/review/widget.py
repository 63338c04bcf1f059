"""Review dock widget: a worklist table over a folder of masks, case navigation, statuses,
automatic saving of corrections (and of the time spent), the uncertainty overlay. All state is in
:class:`~napari_medseg.review.state.ReviewSession` (plain Python); the view logic is in
:mod:`napari_medseg.view` (no Qt); this module is the only Qt in the review.

Every case opens in the radiological axial view (patient's right on the screen's left,
anterior up, the slider over z), also when it is opened again; *Reset view* (Shift+R) brings
that view back. *3 views* (Shift+T) docks the coronal and sagittal views under it, linked to it
(:mod:`napari_medseg.triplanar_widget`). Cases that cannot be reviewed are greyed rows with the
reason. Scripts open a folder with :func:`napari_medseg.open_review` and a case with
:meth:`ReviewWidget.open_case`.

Keyboard (when the viewer has focus): Shift+N next case, Shift+P previous case,
Shift+A accept (approved / corrected), Shift+F flag, Shift+R reset the view, Shift+U the most
uncertain slice, Shift+T one view / three views (napari binds none of these by default).
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medseg.errors import MedsegError
from medseg.volume import Volume
from napari_medseg.layers import image_layer_data, labels_layer_data, table_colors, uncertainty_layer_data
from napari_medseg.review.state import LoadedCase, ReviewSession
from napari_medseg.triplanar_widget import TriPlanarWidget, open_views
from napari_medseg.view import (
    go_to_world,
    keep_radiological,
    most_uncertain_point,
    radiological_axial_view,
    show_radiological,
)

AUTOSAVE_MS = 1000
#: The time spent on the open case is also saved this often while nothing is edited.
TIME_SAVE_MS = 30000
COLUMNS = ("case", "status", "uncertainty", "reviewer", "minutes", "note")
#: Columns that take the width left by the others; their text is elided (full text as tooltip).
STRETCH_COLUMNS = ("case", "note")
PROBLEM_STATUS = "problem"
PROBLEM_COLOR = QColor(128, 128, 128)
KEYS = {"Shift-N": "next_case", "Shift-P": "previous_case", "Shift-A": "accept", "Shift-F": "flag",
        "Shift-R": "reset_view", "Shift-U": "go_to_most_uncertain", "Shift-T": "toggle_views"}
UNCERTAINTY_COLORMAPS = ("inferno", "magma", "viridis", "plasma")


class _Item(QTableWidgetItem):
    """A table cell that sorts by its number (uncertainty, minutes) when it has one."""

    def __init__(self, text: str, number: float | None = None, problem: bool = False):
        super().__init__(text)
        self.number = number
        self.problem = problem  # a case that cannot be reviewed: greyed, not selectable
        flags = self.flags() & ~Qt.ItemFlag.ItemIsEditable
        if problem:
            flags &= ~(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            self.setForeground(QBrush(PROBLEM_COLOR))
        self.setFlags(flags)

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
        self.uncertainty_layer = None
        self.views: TriPlanarWidget | None = None  # the coronal and sagittal views, when shown
        self._requested: str | None = None
        self._jump_after_load: str | None = None
        self._snapshot: np.ndarray | None = None
        self._shown_at: float | None = None
        self._closed = False
        self.worker = None
        self._save_timer = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self._save_timer.timeout.connect(self.save_now)
        self._time_timer = QTimer(self, interval=TIME_SAVE_MS)
        self._time_timer.timeout.connect(self._log_time)
        keep_radiological(self.viewer)  # scans opened beside the review get the same view
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
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # long DICOM ids keep both ends
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        for c, name in enumerate(COLUMNS):
            fit = QHeaderView.ResizeMode.Stretch if name in STRETCH_COLUMNS else QHeaderView.ResizeMode.ResizeToContents
            header.setSectionResizeMode(c, fit)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setSortingEnabled(True)
        self.table.cellDoubleClicked.connect(self._double_clicked)
        self.note_edit = QLineEdit(placeholderText="note (e.g. why it is flagged)")
        self.advance = QCheckBox("go to the next case after accept / flag", checked=True)
        self.progress = QProgressBar(visible=False)
        self.message = QLabel(wordWrap=True)
        self.export_button = QPushButton("Export accepted cases as nnU-Net dataset…")
        self.export_button.clicked.connect(self._export_dialog)
        self.reset_button = self._button("Reset view", self.reset_view,
                                         "Shift+R: radiological axial view (patient's right on the left, anterior up)")
        self.views_button = QPushButton("3 views", checkable=True)
        self.views_button.setToolTip("Shift+T: the axial view alone, or with the coronal and sagittal views "
                                     "(linked: a click or Shift+mouse move in one moves the others)")
        self.views_button.toggled.connect(self.show_views)
        self._build_uncertainty()

        top = QHBoxLayout()
        top.addWidget(self.folder_edit)
        top.addWidget(browse)
        who = QHBoxLayout()
        who.addWidget(QLabel("reviewer"))
        who.addWidget(self.reviewer_edit)
        nav = QHBoxLayout()
        for text, slot, tip in (("◀ Previous", self.previous_case, "Shift+P"), ("Next ▶", self.next_case, "Shift+N")):
            nav.addWidget(self._button(text, slot, tip))
        nav.addWidget(self.reset_button)
        nav.addWidget(self.views_button)
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
        layout.addWidget(self.uncertainty_box)
        layout.addWidget(self.note_edit)
        layout.addLayout(status)
        layout.addWidget(self.advance)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.export_button)

    def _build_uncertainty(self) -> None:
        """The uncertainty overlay's controls (shown when the folder has uncertainty maps)."""
        self.uncertainty_check = QCheckBox("show", checked=True)
        self.uncertainty_check.setToolTip("the per-voxel uncertainty (entropy) written by medseg predict --uncertainty")
        self.uncertainty_check.toggled.connect(self._style_uncertainty)
        self.uncertainty_cmap = QComboBox()
        self.uncertainty_cmap.addItems(UNCERTAINTY_COLORMAPS)
        self.uncertainty_cmap.currentTextChanged.connect(self._style_uncertainty)
        self.uncertainty_opacity = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=60)
        self.uncertainty_opacity.setToolTip("opacity of the overlay")
        self.uncertainty_opacity.valueChanged.connect(self._style_uncertainty)
        self.jump_button = self._button("Most uncertain slice", self.go_to_most_uncertain,
                                        "Shift+U: the axial slice of the selected case with the most uncertainty")
        self.uncertainty_box = QGroupBox("Uncertainty", visible=False)
        row = QHBoxLayout(self.uncertainty_box)
        for w in (self.uncertainty_check, self.uncertainty_cmap, self.uncertainty_opacity, self.jump_button):
            row.addWidget(w)

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
        self.uncertainty_box.setVisible(any(c.uncertainty_map is not None for c in session.cases))
        unusable = len(self._problem_rows())
        self._say(f"{len(session.cases)} cases ({session.worklist.layout} layout)"
                  + (f"; {unusable} cannot be reviewed (greyed rows)" if unusable else "")
                  + (f"; {len(problems) - self._n_row_problems()} other problem(s), see the tooltip"
                     if len(problems) > self._n_row_problems() else ""))
        self.message.setToolTip("\n".join(f"{c or 'folder'}: {m}" for c, m in problems))
        return session

    def _problems_by_case(self, reviewable: bool) -> dict[str, str]:
        """The worklist's problems joined per case (one line each): of cases that can still be
        reviewed (``reviewable``; e.g. a duplicate file) or of cases that cannot (greyed rows)."""
        if self.session is None:
            return {}
        ids = {c.case for c in self.session.cases}
        out: dict[str, list[str]] = {}
        for case, reason in self.session.worklist.problems:
            if case and (case in ids) == reviewable:
                out.setdefault(case, []).append(reason)
        return {case: "; ".join(reasons) for case, reasons in out.items()}

    def _problem_rows(self) -> dict[str, str]:
        """Cases of the folder that cannot be reviewed, with the reasons (one line each)."""
        return self._problems_by_case(reviewable=False)

    def _n_row_problems(self) -> int:
        rows = self._problem_rows()
        return sum(1 for case, _m in self.session.worklist.problems if case in rows) if self.session else 0

    def _warnings(self) -> dict[str, str]:
        """Problems reported for cases that can still be reviewed (e.g. a duplicate file)."""
        return self._problems_by_case(reviewable=True)

    def _row_case(self, row: int) -> str | None:
        """The case id of a table row (None for a problem row or no row)."""
        item = self.table.item(row, 0) if row >= 0 else None
        if item is None or getattr(item, "problem", False):
            return None
        return item.text()

    def _row_of(self, case: str | None) -> int | None:
        for r in range(self.table.rowCount()):
            if case is not None and self._row_case(r) == case:
                return r
        return None

    def order(self) -> list[str]:
        """Case ids that can be reviewed, in the table's current (sorted) order."""
        cases = (self._row_case(r) for r in range(self.table.rowCount()))
        return [c for c in cases if c is not None]

    def problem_rows(self) -> dict[str, tuple[str, str]]:
        """The greyed rows as shown: ``{case: (status cell, note cell)}``."""
        out = {}
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if getattr(item, "problem", False):
                out[item.text()] = (self.table.item(r, COLUMNS.index("status")).text(),
                                    self.table.item(r, COLUMNS.index("note")).text())
        return out

    def refresh_table(self) -> None:
        if self.session is None:
            return
        self.table.setSortingEnabled(False)
        rows = self.session.rows()
        problems = self._problem_rows()
        warnings = self._warnings()
        self.table.setRowCount(len(rows) + len(problems))
        for r, row in enumerate(rows):
            u = row["uncertainty"]
            note = "; ".join(t for t in (row["note"], warnings.get(row["case"], "")) if t)
            cells = (_Item(row["case"]), _Item(row["status"]), _Item("" if u is None else f"{u:.3f}", u),
                     _Item(row["reviewer"]), _Item(f"{row['minutes']:.1f}", row["minutes"]), _Item(note))
            for c, item in enumerate(cells):
                item.setToolTip("\n".join(t for t in (row["case"], note) if t))  # the full id, even when elided
                self.table.setItem(r, c, item)
        for r, (case, reason) in enumerate(sorted(problems.items()), start=len(rows)):
            cells = (case, PROBLEM_STATUS, "", "", "", reason)
            for c, text in enumerate(cells):
                item = _Item(text, problem=True)
                item.setToolTip(f"{case}: cannot be reviewed: {reason}")
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self._select_current()

    def _select_current(self) -> None:
        row = self._row_of(self.current)
        if row is not None:
            self.table.selectRow(row)

    def _double_clicked(self, row: int, _column: int) -> None:
        case = self._row_case(row)
        if case is not None:
            self.load_case(case)

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

    def open_case(self, case_id: str):
        """Show ``case_id`` now (read in this thread, for scripts and tests): the scan, the
        uncertainty overlay when there is one and the working mask, in the radiological axial
        view centred on the mask. Returns its Labels layer.

        Raises:
            MedsegError: no folder is open, the case is not in it, or it cannot be read.
        """
        if self.session is None:
            raise MedsegError("open a review folder first (open_review(folder))")
        self.session.case(case_id)  # InputError naming the folder for an unknown case
        self.leave_case()
        self._requested = case_id
        try:
            loaded = self.session.load(case_id)
        except Exception:
            self._requested = None
            raise
        self._show(loaded)
        return self.labels_layer

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
        if self._jump_after_load == case:
            self._jump_after_load = None
        self._say(f"error: {case}: {error}", error=True)

    def _show(self, loaded: LoadedCase) -> None:
        case = loaded.case.case
        if case != self._requested or self.session is None:
            return  # the user moved on while it was loading
        self._requested = None
        for layer in (self.image_layer, self.uncertainty_layer, self.labels_layer):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image_layer = self.labels_layer = self.uncertainty_layer = None
        if loaded.image is not None:
            data, kw, _ = image_layer_data(loaded.image, loaded.case.image, name=f"{case} image")
            self.image_layer = self.viewer.add_image(data, **kw)
        if loaded.uncertainty is not None:
            data, kw, _ = uncertainty_layer_data(loaded.uncertainty, loaded.case.uncertainty_map,
                                                 name=f"{case} uncertainty")
            self.uncertainty_layer = self.viewer.add_image(data, **kw)
            self._style_uncertainty()
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
        # napari forgot the view when the last case's layers were removed: set it for every case
        show_radiological(self.viewer)
        self._centre_on_mask()
        self.viewer.layers.selection.active = self.labels_layer
        self._guard(self.session.open, case, self.reviewer())
        self._shown_at = time.monotonic()
        self._time_timer.start()
        self.refresh_table()
        state = self.session.state(case)
        self.note_edit.setText(state.note)
        self._say(f"{case}: {state.status}" + (" (saved correction restored)" if loaded.restored else "")
                  + "".join(f"; {n}" for n in loaded.notes))
        if self._jump_after_load == case:
            self._jump_after_load = None
            self.go_to_most_uncertain(case)

    # ---- view and uncertainty ----------------------------------------------------------------------
    def reset_view(self) -> None:
        """The radiological axial view of the whole volume, through the centre of the mask."""
        show_radiological(self.viewer)
        if self.loaded is not None and self.labels_layer is not None and self.labels_layer in self.viewer.layers:
            self._centre_on_mask()

    def show_views(self, three: bool) -> None:
        """The layout: the axial view alone (``three`` False) or with the coronal and sagittal
        views docked under it, linked to it (see :mod:`napari_medseg.triplanar`)."""
        if three and self.views is None:
            self.views = open_views(self.viewer)
            self.views.closed.connect(self._views_closed)
        elif not three and self.views is not None:
            views, self.views = self.views, None
            views.close_views()
        self._check_views_button(three)

    def toggle_views(self) -> None:
        """One view <-> three views (Shift+T)."""
        self.show_views(self.views is None)

    def _views_closed(self) -> None:
        """The side views were closed (here, or with the dock's close button)."""
        self.views = None
        self._check_views_button(False)

    def _check_views_button(self, checked: bool) -> None:
        try:
            self.views_button.blockSignals(True)
            self.views_button.setChecked(checked)
            self.views_button.blockSignals(False)
        except RuntimeError:  # the widget was already destroyed (napari closing)
            pass

    def _style_uncertainty(self, *_args) -> None:
        """Apply the overlay controls (shown, colour map, opacity) to the uncertainty layer."""
        layer = self.uncertainty_layer
        if layer is None or layer not in self.viewer.layers:
            return
        layer.visible = self.uncertainty_check.isChecked()
        layer.colormap = self.uncertainty_cmap.currentText()
        layer.opacity = self.uncertainty_opacity.value() / 100.0

    def _selected_case(self) -> str | None:
        """The case of the worklist's selected row (None: no row, or a problem row)."""
        rows = self.table.selectionModel().selectedRows()
        return self._row_case(rows[0].row() if rows else self.table.currentRow())

    def go_to_most_uncertain(self, case: str | None = None):
        """Show the axial slice of ``case`` (default: the selected row, else the open case) with
        the largest summed uncertainty; a case that is not open is loaded first. Returns the
        world point (RAS+ mm) shown, or None (loading, or no uncertainty map)."""
        case = case or self._selected_case() or self.current
        if self.session is None or case is None:
            self._say("open a case first", error=True)
            return None
        if case != self.current or self.loaded is None:
            if self.session.case(case).uncertainty_map is None:
                self._say(f"{case}: no uncertainty map (medseg predict --uncertainty writes <case>_uncertainty.nii.gz)",
                          error=True)
                return None
            self._jump_after_load = case
            self.load_case(case)
            return None
        unc = self.loaded.uncertainty
        found = most_uncertain_point(unc.array, unc.affine) if unc is not None else None
        if found is None:
            self._say(f"{case}: no uncertainty map" if unc is None else f"{case}: the uncertainty map is all 0",
                      error=unc is None)
            return None
        xyz, k = found
        radiological_axial_view(self.viewer)  # the slider must step through z
        go_to_world(self.viewer, xyz)
        self._say(f"{case}: most uncertain axial slice ({k} of the map, z = {xyz[2]:.1f} mm)")
        return xyz

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
            self._log_time()  # the time spent is saved with every autosave (a crash loses at most the rest)
            self._say(f"{self.current}: correction saved to {path.relative_to(self.session.folder)}")
            try:
                self.refresh_table()
            except RuntimeError:
                pass
        return path

    def _log_time(self) -> None:
        """Add the time since the last call to the open case, and write it to state.json."""
        if self.session is not None and self.current is not None and self._shown_at is not None:
            now = time.monotonic()
            self._guard(self.session.add_time, self.current, now - self._shown_at)
            self._shown_at = now

    def leave_case(self) -> None:
        """Save the current case's edits and time (before switching case or closing)."""
        if self.current is None:
            return
        self.save_now()
        self._log_time()
        try:
            self._time_timer.stop()
        except RuntimeError:  # Qt object already deleted (napari closing)
            pass
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
            self.note_edit.setText(self.session.state(record["case"]).note)
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
        """Save everything, close the side views and release the key bindings (when napari
        closes; safe to repeat)."""
        self.leave_case()
        self.show_views(False)
        if not self._closed:
            self._closed = True
            for key in KEYS:
                self.viewer.bind_key(key, None)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""
