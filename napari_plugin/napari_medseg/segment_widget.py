"""Segment dock widget: run a trained medseg model (U-Net or Mask R-CNN run directory) on an
image layer opened by napari-medseg, in a worker thread with progress and Cancel.

The result is a Labels layer ``<image> prediction`` on the image's grid (same affine), with
class names and colours and the medseg metadata the writer needs to save it on the source
grid, shown in the radiological axial view. Running again on the same image with the same run
replaces that layer (same place in the layer list) instead of adding a duplicate; a result that
was edited since is kept, and the new one is added beside it.

A Mask R-CNN run adds a lesion table: click a row to go to the lesion's slice and select
it; accept or reject each lesion (reject removes its voxels, with undo).

All logic is in :mod:`napari_medseg.segment` (plain Python); this module is the only Qt.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
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
from napari_medseg.segment import (
    RESULT_DIGEST,
    RESULT_OF,
    REJECTED,
    LesionReview,
    Outcome,
    axial_axis,
    check_run_dir,
    data_digest,
    image_layers,
    is_instance,
    is_untouched,
    lesion_centre,
    lesion_rows,
    prediction_layer_data,
    preload_triton,
    previous_result,
    result_key,
    run_prediction,
    volume_from_layer,
)
from napari_medseg.view import go_to_world, keep_radiological, radiological_axial_view

DEVICES = ("auto", "cpu", "cuda")
LESION_COLUMNS = ("id", "class", "score", "volume (ml)", "slices", "decision", "")
ERROR_STYLE = "color: #e06c6c"


class _Progress(QObject):
    """Carries the predictor's ``progress(done, total)`` from the worker thread to the GUI."""

    changed = Signal(int, int)


def _load_predictor(run_dir, **options):
    from medseg.predict import load_predictor

    return load_predictor(run_dir, **options)


class SegmentWidget(QWidget):
    """Run a medseg model on an image layer of ``napari_viewer``.

    Attributes useful to scripts and tests: ``load_predictor`` (the loader, replaceable),
    ``result_layer`` (the last Labels layer added), ``lesions`` (:class:`LesionReview` of an
    instance result), ``busy``.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.load_predictor = _load_predictor
        self._run_task: str | None = None  # the kind of the last valid run directory
        self.worker = None
        self.result_layer = None
        self.lesions: LesionReview | None = None
        self._cancel: threading.Event | None = None
        self._cached: tuple | None = None  # (key, predictor): weights are loaded once per run/device/TTA
        self._choices: list = []
        self._progress = _Progress(self)
        self._progress.changed.connect(self._on_progress)
        self._build()
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                   self.viewer.layers.events.moved):
            ev.connect(self._refresh_layers)
        self._refresh_layers()
        self._validate_run()
        keep_radiological(self.viewer)
        preload_triton()  # before torch is imported in this (OpenGL-rendering) process; see its docstring

    # ---- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.image_box = QComboBox()
        self.image_box.setToolTip("image layers opened with the napari-medseg reader")
        self.run_edit = QLineEdit(placeholderText="run directory (the --out folder of `medseg train`)")
        self.run_edit.textChanged.connect(lambda _t: self._validate_run())
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.run_message = QLabel(wordWrap=True)
        self.device_box = QComboBox()
        self.device_box.addItems(DEVICES)
        self.tta = QCheckBox("test-time augmentation (mirroring; slower)")
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda _c=False: self.run())
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.cancel_button.clicked.connect(lambda _c=False: self.cancel())
        self.progress = QProgressBar(visible=False)
        self.message = QLabel(wordWrap=True)

        form = QFormLayout()
        form.addRow("image", self.image_box)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_edit)
        run_row.addWidget(browse)
        form.addRow("run", run_row)
        form.addRow("", self.run_message)
        form.addRow("device", self.device_box)
        form.addRow("", self.tta)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        self.table = QTableWidget(0, len(LESION_COLUMNS))
        self.table.setHorizontalHeaderLabels(LESION_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellClicked.connect(lambda row, _c: self.go_to_row(row))
        self.table.currentCellChanged.connect(lambda row, _c, prev, _p: row != prev and row >= 0 and self.go_to_row(row))
        self.lesion_box = QGroupBox("Lesions (click a row to go to it)", visible=False)
        QVBoxLayout(self.lesion_box).addWidget(self.table)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.lesion_box)
        layout.addStretch(1)

    def _say(self, text: str, error: bool = False) -> None:
        try:
            self.message.setText(text)
            self.message.setStyleSheet(ERROR_STYLE if error else "")
        except RuntimeError:  # widget already destroyed (napari closing)
            pass

    # ---- inputs ---------------------------------------------------------------------------------
    def _refresh_layers(self, *_args) -> None:
        current = self.image_layer()
        self._choices = image_layers(self.viewer.layers)
        self.image_box.blockSignals(True)
        self.image_box.clear()
        self.image_box.addItems([lay.name for lay in self._choices])
        if current in self._choices:
            self.image_box.setCurrentIndex(self._choices.index(current))
        self.image_box.blockSignals(False)

    def image_layer(self):
        """The chosen image layer (None when no layer was opened by napari-medseg)."""
        i = self.image_box.currentIndex() if hasattr(self, "image_box") else -1
        return self._choices[i] if 0 <= i < len(self._choices) else None

    def set_image_layer(self, layer) -> None:
        self._refresh_layers()
        self.image_box.setCurrentIndex(self._choices.index(layer))

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "medseg run directory", self.run_edit.text())
        if folder:
            self.run_edit.setText(folder)

    def _validate_run(self) -> str | None:
        """Check the run directory as it is typed; returns the task, or None (message shown)."""
        try:
            task, desc = check_run_dir(self.run_edit.text())
        except MedsegError as e:
            self.run_message.setText(str(e))
            self.run_message.setStyleSheet(ERROR_STYLE if self.run_edit.text().strip() else "")
            return None
        self.run_message.setText(desc)
        self.run_message.setStyleSheet("")
        self.tta.setEnabled(task != "instance")  # Mask R-CNN runs have no test-time augmentation
        if task != self._run_task:  # nnU-Net models mirror by default, as nnUNetv2_predict does
            self.tta.setChecked(task == "nnunet")
            self._run_task = task
        return task

    # ---- running ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._cancel is not None

    def run(self) -> bool:
        """Start the prediction on the chosen image in a worker thread; False (with a message)
        when the inputs are not usable."""
        from napari.qt.threading import create_worker

        if self.busy:
            self._say("a prediction is already running; cancel it first", error=True)
            return False
        layer = self.image_layer()
        if layer is None:
            self._say("open a scan with the napari-medseg reader first (File > Open, or `medseg review`)", error=True)
            return False
        if self._validate_run() is None:
            self._say(f"run directory: {self.run_message.text()}", error=True)
            return False
        try:
            volume = volume_from_layer(layer)
        except MedsegError as e:
            self._say(str(e), error=True)
            return False
        cancel = threading.Event()
        self._cancel = cancel
        run_dir = self.run_edit.text().strip()
        worker = create_worker(run_prediction, self.load_predictor, run_dir, self.device_box.currentText(),
                               self.tta.isChecked(), volume, cancel, self._progress.changed.emit, self._cached)
        worker.returned.connect(lambda outcome, lay=layer, ev=cancel: self._done(outcome, lay, ev))
        worker.errored.connect(lambda e, ev=cancel: self._done(Outcome("error", message=f"prediction failed ({e})"), None, ev))
        self.worker = worker
        self._set_busy(True)
        key = (str(Path(run_dir).expanduser().resolve()), self.device_box.currentText(), self.tta.isChecked())
        loading = self._cached is None or self._cached[0] != key
        self._say(f"segmenting {layer.name}…" + (" (loading the model)" if loading else ""))
        worker.start()
        return True

    def cancel(self) -> None:
        """Stop the running prediction (the worker stops at its next window batch)."""
        if self._cancel is not None:
            self._cancel.set()
            self.cancel_button.setEnabled(False)
            self._say("cancelling…")

    def _set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)
        self.progress.setRange(0, 0)  # busy indicator until the first progress report
        if not busy:
            self._cancel = None

    def _on_progress(self, done: int, total: int) -> None:
        if self.busy and total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))

    def _done(self, outcome: Outcome, layer, cancel: threading.Event) -> None:
        if cancel is not self._cancel:
            return  # a stale worker
        try:
            self._finish(outcome, layer, cancel)
        except RuntimeError:  # the widget was closed while the model ran: nothing to show
            self._cancel = None

    def _finish(self, outcome: Outcome, layer, cancel: threading.Event) -> None:
        cancelled = cancel.is_set()
        self._set_busy(False)
        self.worker = None
        if outcome.status == "ok":
            self._cached = (outcome.key, outcome.predictor)
        if cancelled or outcome.status == "cancelled":
            self._say("cancelled; nothing was added")
            return
        if outcome.status != "ok":
            self._say(f"error: {outcome.message.replace('--device', 'device')}", error=True)
            return
        try:
            self._show(outcome.result, layer, outcome.key[0] if outcome.key else self.run_edit.text().strip())
        except MedsegError as e:
            self._say(f"error: {e}", error=True)

    # ---- results --------------------------------------------------------------------------------
    def _show(self, res, image_layer, run_dir) -> None:
        data, kwargs, _ = prediction_layer_data(res, image_layer)
        key = result_key(image_layer, run_dir)
        kwargs["metadata"][RESULT_OF] = key
        kwargs["metadata"][RESULT_DIGEST] = data_digest(data)
        old = previous_result(self.viewer.layers, key)
        kept = ""
        if old is not None and not is_untouched(old):
            kept = f"; your edited {old.name!r} is kept"
            old = None
        index = self.viewer.layers.index(old) if old is not None else None
        if old is not None:
            self.viewer.layers.remove(old)  # same image, same run: the new result replaces it
        self.result_layer = self.viewer.add_labels(data, **kwargs)
        if index is not None:
            self.viewer.layers.move(self.viewer.layers.index(self.result_layer), index)
        if radiological_axial_view(self.viewer):
            self.viewer.reset_view()
        self.viewer.layers.selection.active = self.result_layer
        seconds = sum(res.timings.values()) if res.timings else None
        took = f" in {seconds:.1f} s" if seconds else ""
        if is_instance(res):
            self.lesions = LesionReview(lesion_rows(res))
            self._fill_table()
            self.lesion_box.setVisible(True)
            self._say(f"{self.result_layer.name}: {len(self.lesions.rows)} lesion(s){took}{kept}")
        else:
            self.lesions = None
            self.table.setRowCount(0)
            self.lesion_box.setVisible(False)
            vols = ", ".join(f"{n} {v:.1f} ml" for n, v in (res.volumes_ml or {}).items())
            self._say(f"{self.result_layer.name}{took}" + (f": {vols}" if vols else "") + kept)

    def _fill_table(self) -> None:
        rows = self.lesions.rows
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            score = "" if row["score"] is None else f"{row['score']:.3f}"
            first, last = row["first_slice"], row["last_slice"]
            slices = "" if first is None else (f"{first}" if first == last else f"{first}–{last}")
            cells = (str(row["id"]), row["class"], score, f"{row['volume_ml']:.2f}", slices,
                     self.lesions.decision(row["id"]))
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(r, c, item)
            self.table.setCellWidget(r, len(cells), self._decision_buttons(row["id"]))
        self.table.blockSignals(False)

    def _decision_buttons(self, lesion_id: int) -> QWidget:
        box = QWidget()
        lay = QHBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        for text, slot in (("Accept", self.accept_lesion), ("Reject", self.reject_lesion)):
            b = QPushButton(text)
            b.setObjectName(f"{text.lower()}_{lesion_id}")
            b.clicked.connect(lambda _c=False, s=slot, i=lesion_id: s(i))
            lay.addWidget(b)
        return box

    def _row_of(self, lesion_id: int) -> int:
        return next(r for r, row in enumerate(self.lesions.rows) if row["id"] == lesion_id)

    def go_to_row(self, row: int) -> None:
        """Show the slice through the centre of the lesion in table row ``row`` and select it."""
        if self.lesions is None or not 0 <= row < len(self.lesions.rows):
            return
        self.go_to_lesion(self.lesions.rows[row]["id"])

    def go_to_lesion(self, lesion_id: int) -> None:
        layer = self.result_layer
        if layer is None or layer not in self.viewer.layers:
            self._say("the lesion layer was removed", error=True)
            return
        layer.selected_label = int(lesion_id)
        self.viewer.layers.selection.active = layer
        ax = axial_axis(self._affine(layer))
        centre = lesion_centre(np.asarray(layer.data), lesion_id, ax)
        if centre is None:  # rejected (or painted away): the middle of its slices from the table
            row = self.lesions.rows[self._row_of(lesion_id)]
            if row["first_slice"] is None:
                return
            centre = [(n - 1) / 2 for n in np.shape(layer.data)]
            centre[ax] = (row["first_slice"] + row["last_slice"]) // 2
        self._slice_axis_to_slider(layer, ax)
        go_to_world(self.viewer, np.asarray(layer.data_to_world(centre), float))

    @staticmethod
    def _affine(layer) -> np.ndarray:
        md = layer.metadata or {}
        return np.asarray(md["affine"], float) if md.get("affine") is not None else np.asarray(layer.affine.affine_matrix)

    def _slice_axis_to_slider(self, layer, axis: int) -> None:
        """In 2D, make the world axis closest to the lesion slices' array axis the slider
        (z, in the radiological axial view, for any scan that is not strongly oblique)."""
        dims = self.viewer.dims
        if dims.ndim != 3 or dims.ndisplay != 2:
            return
        a = self._affine(layer)[:3, :3]
        world_axis = int(np.argmax(np.abs(a[:, axis]) / np.linalg.norm(a[:, axis])))
        if world_axis in dims.not_displayed:
            return
        if world_axis == 2:
            radiological_axial_view(self.viewer)
        else:
            dims.order = (world_axis, *[a for a in range(3) if a != world_axis])

    def _apply(self, where, value: int) -> int:
        if where[0].size:
            with self.result_layer.block_history():
                self.result_layer.data_setitem(where, value)
        return int(where[0].size)

    def reject_lesion(self, lesion_id: int) -> int:
        """Remove the lesion's voxels from the layer (undoable); returns the voxels removed."""
        if self.lesions is None or self.result_layer is None:
            return 0
        n = self._apply(self.lesions.reject(np.asarray(self.result_layer.data), lesion_id), 0)
        self._record(lesion_id, f"lesion {lesion_id} rejected ({n} voxels removed)")
        return n

    def accept_lesion(self, lesion_id: int) -> int:
        """Keep the lesion (a rejected one is put back); returns the voxels restored."""
        if self.lesions is None or self.result_layer is None:
            return 0
        n = self._apply(self.lesions.accept(np.asarray(self.result_layer.data), lesion_id), int(lesion_id))
        self._record(lesion_id, f"lesion {lesion_id} accepted" + (f" ({n} voxels restored)" if n else ""))
        return n

    def _record(self, lesion_id: int, text: str) -> None:
        row = self._row_of(int(lesion_id))
        decision = self.lesions.decision(lesion_id)
        item = self.table.item(row, LESION_COLUMNS.index("decision"))
        item.setText(decision)
        item.setForeground(Qt.GlobalColor.red if decision == REJECTED else Qt.GlobalColor.darkGreen)
        s = self.lesions.summary()
        self._say(f"{text}; {s['accepted']} accepted, {s['rejected']} rejected, {s['pending']} pending")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.cancel()
        super().closeEvent(event)
