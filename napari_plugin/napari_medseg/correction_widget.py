"""Correction tools dock widget: CT windows, fill between slices, island removal, volumes.

The work is done by the pure functions of :mod:`napari_medseg.correction`; this widget only
picks the layers and applies the result with undo history (``Labels.data_setitem`` inside
``block_history``), which also fires the layer's ``paint`` event (autosave in the review).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medseg.errors import MedsegError
from napari_medseg.correction import (
    WINDOW_PRESETS,
    class_volumes_ml,
    data_axis_for_world_axis,
    fill_between_slices,
    keep_largest_component,
    preset_limits,
    remove_islands,
)
from napari_medseg.view import layer_axes_mm, layer_spacing


def apply_with_history(layer, new: np.ndarray) -> int:
    """Write ``new`` into a Labels layer as one undoable step; returns the voxels changed."""
    data = np.asarray(layer.data)
    changed = np.nonzero(data != new)
    if changed[0].size == 0:
        return 0
    with layer.block_history():
        layer.data_setitem(changed, new[changed])
    return int(changed[0].size)


def class_name(layer, value: int) -> str:
    classes = (layer.metadata or {}).get("classes") or {}
    return str(classes.get(value) or classes.get(str(value)) or f"class_{value}")


class CorrectionWidget(QWidget):
    """Dock widget acting on a chosen Image layer (window) and Labels layer (edits)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._watched = None
        self._timer = QTimer(self, singleShot=True, interval=300)
        self._timer.timeout.connect(self.update_volumes)

        self.image_box = QComboBox()
        self.preset_box = QComboBox()
        self.preset_box.addItems([f"{n} (W{w:g} / L{c:g})" for n, (w, c) in WINDOW_PRESETS.items()])
        self.preset_box.activated.connect(lambda _i: self.apply_window())
        self.labels_box = QComboBox()
        self.labels_box.currentIndexChanged.connect(lambda _i: self._watch())
        self.label_spin = QSpinBox(minimum=1, maximum=65535)
        self.all_classes = QCheckBox("all classes")
        self.min_ml = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=1e6, value=0.1, suffix=" ml")
        self.message = QLabel(wordWrap=True)

        window = QGroupBox("CT window")
        wl = QFormLayout(window)
        wl.addRow("image", self.image_box)
        wl.addRow("preset", self.preset_box)
        edit = QGroupBox("Edit labels")
        el = QFormLayout(edit)
        el.addRow("labels", self.labels_box)
        row = QHBoxLayout()
        row.addWidget(self.label_spin)
        row.addWidget(self.all_classes)
        el.addRow("class", row)
        buttons = [("Fill between slices", self.fill_between), ("Remove islands smaller than", self.remove_islands),
                   ("Keep largest component", self.keep_largest)]
        for text, slot in buttons:
            b = QPushButton(text)
            b.clicked.connect(lambda _c=False, s=slot: self._run(s))
            if slot == self.remove_islands:
                r = QHBoxLayout()
                r.addWidget(b)
                r.addWidget(self.min_ml)
                el.addRow(r)
            else:
                el.addRow(b)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["value", "class", "volume (ml)"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)

        layout = QVBoxLayout(self)
        layout.addWidget(window)
        layout.addWidget(edit)
        layout.addWidget(QLabel("Volume per class (updates after edits)"))
        layout.addWidget(self.table)
        layout.addWidget(self.message)

        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_layers)
        self._refresh_layers()

    # ---- layer choice ------------------------------------------------------------------
    def _layers(self, kind: str) -> list:
        return [lay for lay in self.viewer.layers if type(lay).__name__.lower() == kind]

    def _refresh_layers(self, *_args) -> None:
        for box, kind in ((self.image_box, "image"), (self.labels_box, "labels")):
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems([lay.name for lay in self._layers(kind)])
            if current in [box.itemText(i) for i in range(box.count())]:
                box.setCurrentText(current)
            box.blockSignals(False)
        self._watch()

    def image_layer(self):
        return next((lay for lay in self._layers("image") if lay.name == self.image_box.currentText()), None)

    def labels_layer(self):
        return next((lay for lay in self._layers("labels") if lay.name == self.labels_box.currentText()), None)

    def _watch(self) -> None:
        """Follow edits of the chosen Labels layer to keep the volume table current."""
        layer = self.labels_layer()
        if layer is self._watched:
            return
        if self._watched is not None:
            for ev in (self._watched.events.paint, self._watched.events.data):
                ev.disconnect(self._schedule)
        self._watched = layer
        if layer is not None:
            for ev in (layer.events.paint, layer.events.data):
                ev.connect(self._schedule)
            self.label_spin.setValue(max(1, int(layer.selected_label)))
        self.update_volumes()

    def _schedule(self, *_args) -> None:
        self._timer.start()

    # ---- actions -----------------------------------------------------------------------------
    def _run(self, action) -> None:
        try:
            self.message.setText(action())
        except MedsegError as e:
            self.message.setText(f"error: {e}")

    def apply_window(self, name: str | None = None) -> str:
        """Set the chosen Image layer's contrast limits to a preset (by name or the combo's)."""
        name = name or list(WINDOW_PRESETS)[self.preset_box.currentIndex()]
        layer = self.image_layer()
        if layer is None:
            raise MedsegError("no image layer to window")
        lo, hi = preset_limits(name)
        layer.contrast_limits_range = (min(lo, layer.contrast_limits_range[0]), max(hi, layer.contrast_limits_range[1]))
        layer.contrast_limits = (lo, hi)
        return f"{layer.name}: {name} window ({lo:g} to {hi:g} HU)"

    def _target(self):
        layer = self.labels_layer()
        if layer is None:
            raise MedsegError("no labels layer to edit")
        return layer, (None if self.all_classes.isChecked() else int(self.label_spin.value()))

    def slice_axis(self, layer) -> int:
        """The data axis the 2D view steps through (the slider's world axis)."""
        if self.viewer.dims.ndisplay != 2:
            raise MedsegError("switch to the 2D view to fill between slices")
        if self.viewer.dims.ndim != 3:
            raise MedsegError("fill between slices needs a 3D viewer (x, y, z world axes)")
        return data_axis_for_world_axis(layer_axes_mm(layer), self.viewer.dims.not_displayed[0])

    def fill_between(self) -> str:
        layer, label = self._target()
        label = label or int(layer.selected_label)
        axis = self.slice_axis(layer)
        new = fill_between_slices(np.asarray(layer.data), label, axis, layer_spacing(layer))
        n = apply_with_history(layer, new)
        return f"{class_name(layer, label)}: filled between slices along axis {'ijk'[axis]} ({n} voxels changed)"

    def remove_islands(self) -> str:
        layer, label = self._target()
        min_ml = float(self.min_ml.value())
        new = remove_islands(np.asarray(layer.data), layer_spacing(layer), min_ml, label)
        n = apply_with_history(layer, new)
        return f"removed {n} voxels in islands under {min_ml:g} ml"

    def keep_largest(self) -> str:
        layer, label = self._target()
        n = apply_with_history(layer, keep_largest_component(np.asarray(layer.data), label))
        return f"kept the largest component per class ({n} voxels removed)"

    # ---- volumes -----------------------------------------------------------------------------
    def volumes(self) -> dict[int, float]:
        layer = self.labels_layer()
        return {} if layer is None else class_volumes_ml(np.asarray(layer.data), layer_spacing(layer))

    def update_volumes(self) -> None:
        layer = self.labels_layer()
        vols = self.volumes()
        self.table.setRowCount(len(vols))
        for r, (v, ml) in enumerate(vols.items()):
            for c, text in enumerate((str(v), class_name(layer, v), f"{ml:.2f}")):
                self.table.setItem(r, c, QTableWidgetItem(text))
