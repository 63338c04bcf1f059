"""Correction tools dock widget: CT windows, classes by name, editing rules, fill between
slices, island removal, volumes.

The work is done by the pure functions of :mod:`napari_medseg.correction`; this widget only
picks the layers and applies the result with undo history (``Labels.data_setitem`` inside
``block_history``), which also fires the layer's ``paint`` event (autosave in the review).

Editing rules (editable area, overwrite other classes, intensity range) apply to the chosen
Labels layer's brush, fill and polygon strokes and to fill between slices. napari paints the
stroke; when the stroke ends (the layer's ``paint`` event, whose value is the stroke's undo
item) the voxels the rules forbid get their old values back, and that restore is added to the
same undo item, so one undo takes back the whole (ruled) stroke.

Classes by name: the class to paint is picked from the names and colours of the layer
(``metadata["classes"]``, the run's labels.json when the reader or the review opened it); "Add
class" gives a new name the next free value and a colour, and records it in the layer (names,
colours, status bar) and, for a layer of a review, in ``<review folder>/review/labels.json``,
which the review export reads so the new class is declared by its name.
"""

from __future__ import annotations

import numpy as np
from pathlib import Path

from qtpy.QtCore import QTimer
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medseg.errors import MedsegError
from medseg.io import LabelTable, label_values, read_labels, write_labels
from napari_medseg.correction import (
    WINDOW_PRESETS,
    EditRules,
    add_class,
    class_volumes_ml,
    constrain_edit,
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


def layer_classes(layer) -> dict[int, str]:
    """``{value: name}`` of a Labels layer's named classes (``metadata["classes"]``), 0 excluded."""
    classes = (layer.metadata or {}).get("classes") or {}
    out = {}
    for v, n in classes.items():
        try:
            if int(v) > 0:
                out[int(v)] = str(n)
        except (TypeError, ValueError):
            continue
    return dict(sorted(out.items()))


def layer_rgb(layer, value: int) -> tuple[float, float, float]:
    """The colour (RGB 0-1) napari draws ``value`` with on this layer."""
    rgba = np.asarray(layer.colormap.map(int(value)), float).reshape(-1)
    return tuple(float(c) for c in rgba[:3])


def history_change(data, item) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """What one napari undo item changed: ``(bbox, before, after)``, ``before``/``after`` the
    labels inside the bounding box ``bbox`` of the item before and after it (``data`` is the
    layer's data after the item). The item's atoms are napari's mask-based paint atoms
    (``slice_key``, ``mask``, ``old_values``, ``new_value``) or ``(indices, old, new)`` tuples;
    ``before`` is rebuilt by undoing them, newest first, as napari's undo does."""
    shape = tuple(np.shape(data))
    boxes = []
    for atom in item:
        if hasattr(atom, "slice_key"):
            boxes.append([s.indices(n)[:2] for s, n in zip(atom.slice_key, shape)])
        elif len(atom[0]) and np.size(atom[0][0]):
            boxes.append([(int(np.min(ix)), int(np.max(ix)) + 1) for ix in atom[0]])
    if not boxes:
        empty = tuple(slice(0, 0) for _ in shape)
        return empty, np.asarray(data)[empty].copy(), np.asarray(data)[empty].copy()
    lo = [min(b[d][0] for b in boxes) for d in range(len(shape))]
    hi = [max(b[d][1] for b in boxes) for d in range(len(shape))]
    bbox = tuple(slice(a, b) for a, b in zip(lo, hi))
    after = np.array(data[bbox], copy=True)
    before = after.copy()
    for atom in reversed(list(item)):
        if hasattr(atom, "slice_key"):
            local = tuple(slice(s.indices(n)[0] - o, s.indices(n)[1] - o)
                          for s, n, o in zip(atom.slice_key, shape, lo))
            if atom.mask is None:
                before[local] = atom.old_values
            else:
                region = before[local]          # a view: writes go to ``before``
                region[np.asarray(atom.mask, bool)] = atom.old_values
        elif len(atom[0]) and np.size(atom[0][0]):
            before[tuple(np.asarray(ix) - o for ix, o in zip(atom[0], lo))] = atom[1]
    return bbox, before, after


def review_dir_of(layer) -> Path | None:
    """The ``review/`` folder of a review's Labels layer (None for other layers):
    ``metadata["review_folder"]`` when set, else the folder above the case's mask
    (``metadata["source_path"]``, up to four levels) that holds ``review/state.json``."""
    md = layer.metadata or {}
    if md.get("review_folder"):
        return Path(md["review_folder"]) / "review"
    if md.get("review_case") is None or not md.get("source_path"):
        return None
    for parent in list(Path(md["source_path"]).parents)[:4]:
        if (parent / "review" / "state.json").is_file():
            return parent / "review"
    return None


def _icon(rgb) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor.fromRgbF(*[min(1.0, max(0.0, float(c))) for c in rgb[:3]]))
    return QIcon(pix)


class CorrectionWidget(QWidget):
    """Dock widget acting on a chosen Image layer (window, intensities) and Labels layer (edits)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._watched = None
        self._applying = False          # True while this widget writes the labels itself
        self._present: list[int] = []   # label values found in the labels at the last volume update
        self._timer = QTimer(self, singleShot=True, interval=300)
        self._timer.timeout.connect(self.update_volumes)

        self.image_box = QComboBox()
        self.preset_box = QComboBox()
        self.preset_box.addItems([f"{n} (W{w:g} / L{c:g})" for n, (w, c) in WINDOW_PRESETS.items()])
        self.preset_box.activated.connect(lambda _i: self.apply_window())
        self.labels_box = QComboBox()
        self.labels_box.currentIndexChanged.connect(lambda _i: self._watch())
        self.class_box = QComboBox()
        self.class_box.setToolTip("the class to paint (sets the layer's label)")
        self.class_box.activated.connect(lambda _i: self._class_chosen())
        self.label_spin = QSpinBox(minimum=1, maximum=65535)
        self.label_spin.valueChanged.connect(lambda _v: self._sync_class_box())
        self.all_classes = QCheckBox("all classes")
        self.new_class_edit = QLineEdit(placeholderText="new class name")
        self.new_class_edit.returnPressed.connect(lambda: self._run(self.add_class))
        add_button = QPushButton("Add class")
        add_button.clicked.connect(lambda _c=False: self._run(self.add_class))
        self.area_box = QComboBox()
        self.area_box.setToolTip("where edits may change voxels")
        self.overwrite_box = QCheckBox("overwrite other classes", checked=True)
        self.overwrite_box.setToolTip("off: edits change only background, the painted class and the editable "
                                      "area's class")
        self.intensity_box = QCheckBox("limit to intensities (HU)")
        self.hu_min = QDoubleSpinBox(decimals=1, minimum=-1e6, maximum=1e6, value=-160.0)
        self.hu_max = QDoubleSpinBox(decimals=1, minimum=-1e6, maximum=1e6, value=240.0)
        window_button = QPushButton("= window")
        window_button.setToolTip("take the range from the image's current window (contrast limits)")
        window_button.clicked.connect(lambda _c=False: self._run(self.range_from_window))
        self.min_ml = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=1e6, value=0.1, suffix=" ml")
        self.message = QLabel(wordWrap=True)

        window = QGroupBox("CT window")
        wl = QFormLayout(window)
        wl.addRow("image", self.image_box)
        wl.addRow("preset", self.preset_box)
        edit = QGroupBox("Edit labels")
        el = QFormLayout(edit)
        el.addRow("labels", self.labels_box)
        el.addRow("paint", self.class_box)
        row = QHBoxLayout()
        row.addWidget(self.new_class_edit)
        row.addWidget(add_button)
        el.addRow("", row)
        row = QHBoxLayout()
        row.addWidget(self.label_spin)
        row.addWidget(self.all_classes)
        el.addRow("class", row)
        rules = QGroupBox("Editing rules (strokes and fill between slices)")
        rl = QFormLayout(rules)
        rl.addRow("editable area", self.area_box)
        rl.addRow("", self.overwrite_box)
        row = QHBoxLayout()
        row.addWidget(self.intensity_box)
        row.addWidget(window_button)
        rl.addRow(row)
        row = QHBoxLayout()
        row.addWidget(self.hu_min)
        row.addWidget(QLabel("to"))
        row.addWidget(self.hu_max)
        rl.addRow("", row)
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
        layout.addWidget(rules)
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
        """Follow edits of the chosen Labels layer: the editing rules, the volume table, the class list."""
        layer = self.labels_layer()
        if layer is self._watched:
            return
        if self._watched is not None:
            for ev in (self._watched.events.paint, self._watched.events.data):
                ev.disconnect(self._schedule)
            self._watched.events.paint.disconnect(self._enforce_rules)
            self._watched.events.selected_label.disconnect(self._layer_label_changed)
        self._watched = layer
        self._present = []
        if layer is not None:
            layer.events.paint.connect(self._enforce_rules)
            for ev in (layer.events.paint, layer.events.data):
                ev.connect(self._schedule)
            layer.events.selected_label.connect(self._layer_label_changed)
            self.label_spin.setValue(max(1, int(layer.selected_label)))
        self.update_volumes()

    def _schedule(self, *_args) -> None:
        self._timer.start()

    # ---- classes by name -----------------------------------------------------------------------
    def classes(self) -> dict[int, str]:
        """``{value: name}`` of the chosen layer's foreground classes: its named classes and
        every other value painted (``class_<v>``)."""
        layer = self.labels_layer()
        if layer is None:
            return {}
        names = layer_classes(layer)
        for v in self._present:
            if v > 0:
                names.setdefault(int(v), f"class_{v}")
        return dict(sorted(names.items()))

    def refresh_classes(self) -> None:
        """Rebuild the class list and the editable areas, keeping the choices."""
        layer = self.labels_layer()
        classes = self.classes()
        area = self.area_box.currentData()
        self.class_box.blockSignals(True)
        self.area_box.blockSignals(True)
        self.class_box.clear()
        self.area_box.clear()
        self.area_box.addItem("everywhere", "everywhere")
        for v, name in classes.items():
            icon = _icon(layer_rgb(layer, v))
            self.class_box.addItem(icon, f"{name}  ({v})", v)
            self.area_box.addItem(icon, f"inside {name}", f"inside:{v}")
        self.area_box.addItem("outside all classes", "outside")
        if area is not None:
            i = self.area_box.findData(area)
            self.area_box.setCurrentIndex(max(0, i))
        self.class_box.blockSignals(False)
        self.area_box.blockSignals(False)
        self._sync_class_box()

    def _sync_class_box(self) -> None:
        i = self.class_box.findData(int(self.label_spin.value()))
        self.class_box.blockSignals(True)
        self.class_box.setCurrentIndex(i)
        self.class_box.blockSignals(False)

    def _class_chosen(self) -> None:
        value = self.class_box.currentData()
        if value is None:
            return
        self.select_class(int(value))

    def select_class(self, value: int) -> None:
        """Paint with class ``value`` (the layer's selected label and the class of the tools)."""
        self.label_spin.setValue(int(value))
        layer = self.labels_layer()
        if layer is not None and int(layer.selected_label) != int(value):
            layer.selected_label = int(value)

    def _layer_label_changed(self, *_args) -> None:
        layer = self._watched
        if layer is not None and int(layer.selected_label) > 0:
            self.label_spin.setValue(int(layer.selected_label))

    def add_class(self, name: str | None = None) -> str:
        """Add a class called ``name`` (default: the text box) to the chosen Labels layer and
        paint with it: next free value, a colour, its name in the layer (metadata, status bar)
        and, for a layer of a review, in ``review/labels.json`` (see :func:`review_dir_of`)."""
        layer = self.labels_layer()
        if layer is None:
            raise MedsegError("no labels layer to add a class to")
        name = self.new_class_edit.text() if name is None else name
        review = review_dir_of(layer)
        folder_table = read_labels(review) if review is not None and (review / "labels.json").is_file() else None
        folder = dict(folder_table.labels) if folder_table is not None else {}
        classes = layer_classes(layer)
        present = set(label_values(np.asarray(layer.data)))
        value, table = add_class(classes, name, present | set(folder.values()))
        name = table[value]
        added = value not in classes
        known = folder.get(name)
        if added and known is not None and 0 < known <= 65535 and known not in classes and known not in present:
            value = int(known)                   # the review folder already named it: the same value
        if added:
            colors = folder_table.colors if known == value and name in folder_table.colors else \
                LabelTable({name: value}).colors
            rgb255 = tuple(int(c) for c in colors[name][:3])
            self._set_layer_class(layer, value, name, tuple(c / 255.0 for c in rgb255), present)
            if review is not None:
                self._record_in_review(review, folder_table, value, name, rgb255)
        self.new_class_edit.clear()
        self.refresh_classes()
        self.select_class(value)
        where = f"; recorded in {review / 'labels.json'}" if added and review is not None else ""
        return f"{'added class' if added else 'class'} {name} = {value}{where}; painting with it"

    @staticmethod
    def _set_layer_class(layer, value: int, name: str, rgb, present=()) -> None:
        md = dict(layer.metadata or {})        # a copy: napari's setter clears the old dict first
        classes = {int(k): str(v) for k, v in (md.get("classes") or {}).items()}
        classes.setdefault(0, "background")
        classes[int(value)] = name
        md["classes"] = dict(sorted(classes.items()))
        layer.metadata = md
        color_dict = getattr(layer.colormap, "color_dict", None)
        if color_dict:
            colors = {k: tuple(float(c) for c in np.asarray(v, float).reshape(-1)[:4]) for k, v in color_dict.items()}
        else:
            colors = {0: (0.0, 0.0, 0.0, 0.0), None: (1.0, 1.0, 1.0, 1.0)}
            for v in sorted(set(classes) | {int(p) for p in present}):   # keep the colours on screen
                if v != 0:
                    colors[v] = tuple(float(c) for c in np.asarray(layer.colormap.map(v), float).reshape(-1)[:4])
        colors[int(value)] = (*[float(c) for c in rgb[:3]], 1.0)
        layer.colormap = colors
        layer.features = {"index": list(md["classes"]), "name": list(md["classes"].values())}

    @staticmethod
    def _record_in_review(review: Path, folder_table, value: int, name: str, rgb255) -> None:
        """Add the class to ``review/labels.json`` (the names the review export declares)."""
        labels = dict(folder_table.labels) if folder_table is not None else {"background": 0}
        colors = dict(folder_table.colors) if folder_table is not None else {}
        labels[name] = int(value)
        colors[name] = tuple(int(c) for c in rgb255[:3])
        source = folder_table.source if folder_table is not None and folder_table.source else "medseg review"
        write_labels(review, LabelTable(labels, colors, source))

    # ---- editing rules ---------------------------------------------------------------------------
    def rules(self) -> EditRules:
        """The editing rules set in the widget."""
        area, _, value = str(self.area_box.currentData() or "everywhere").partition(":")
        value = int(value) if value else None
        intensity = None
        if self.intensity_box.isChecked():
            intensity = (float(self.hu_min.value()), float(self.hu_max.value()))
        return EditRules(area, value, self.overwrite_box.isChecked(), intensity)

    def set_rules(self, area: str = "everywhere", area_label: int | None = None, overwrite: bool = True,
                  intensity: tuple[float, float] | None = None) -> EditRules:
        """Set the rule controls (for scripts and tests); returns the rules now in force."""
        self.refresh_classes()
        i = self.area_box.findData(f"inside:{int(area_label)}" if area == "inside" else area)
        if i < 0:
            raise MedsegError(f"no editable area {area!r}{f' {area_label}' if area_label else ''} in the list")
        self.area_box.setCurrentIndex(i)
        self.overwrite_box.setChecked(bool(overwrite))
        self.intensity_box.setChecked(intensity is not None)
        if intensity is not None:
            self.hu_min.setValue(float(intensity[0]))
            self.hu_max.setValue(float(intensity[1]))
        return self.rules()

    def range_from_window(self) -> str:
        """Take the intensity range from the chosen image's contrast limits and switch it on."""
        layer = self.image_layer()
        if layer is None:
            raise MedsegError("no image layer to take the window from")
        lo, hi = (float(v) for v in layer.contrast_limits)
        self.hu_min.setValue(lo)
        self.hu_max.setValue(hi)
        self.intensity_box.setChecked(True)
        return f"edits change only voxels from {lo:g} to {hi:g} in {layer.name}"

    def _intensities(self, layer, bbox=None) -> np.ndarray:
        """The chosen image's voxels (inside ``bbox``) on the labels' grid."""
        image = self.image_layer()
        if image is None:
            raise MedsegError("the intensity range needs an image: choose the scan in 'image'")
        if tuple(np.shape(image.data)) != tuple(np.shape(layer.data)):
            raise MedsegError(f"the image {image.name} has shape {tuple(np.shape(image.data))}, the labels "
                              f"{tuple(np.shape(layer.data))}; the intensity range needs the scan of these labels")
        data = image.data if bbox is None else image.data[bbox]
        return np.asarray(data)

    def _enforce_rules(self, event) -> None:
        """After a stroke (the layer's ``paint`` event): give the voxels the rules forbid their old
        values back, inside the stroke's own undo item."""
        layer = self._watched
        item = getattr(event, "value", None)
        if self._applying or layer is None or not isinstance(item, list) or not item:
            return
        if not all(hasattr(atom, "slice_key") for atom in item):
            return  # not a brush/fill/polygon stroke (e.g. this widget's own edits)
        try:
            rules = self.rules()
        except MedsegError as e:
            self.message.setText(f"error: {e}")
            return
        if rules.free:
            return
        bbox, before, after = history_change(layer.data, item)
        label = next((int(a.new_value) for a in item if int(a.new_value) != 0), int(layer.selected_label))
        try:
            image = self._intensities(layer, bbox) if rules.intensity is not None else None
            allowed = constrain_edit(before, after, label, rules, image)
            why = ""
        except MedsegError as e:
            allowed, why = before, f" (error: {e})"     # rules that cannot be checked: undo the stroke
        bad = np.nonzero(allowed != after)
        if bad[0].size == 0:
            return
        index = tuple(ix + s.start for ix, s in zip(bad, bbox))
        painted, old = after[bad], allowed[bad]
        self._applying = True
        try:
            layer.data[index] = old
            item.append((index, painted, old))   # undone first, redone last: one undo step in all
            layer.refresh()
        finally:
            self._applying = False
        self.message.setText(f"editing rules ({rules.describe(self.classes())}): {bad[0].size} voxel(s) of the "
                             f"stroke kept their class{why}")

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

    def _apply(self, layer, new: np.ndarray) -> int:
        self._applying = True
        try:
            return apply_with_history(layer, new)
        finally:
            self._applying = False

    def fill_between(self) -> str:
        """Fill between the annotated slices of the class, under the editing rules."""
        layer, label = self._target()
        label = label or int(layer.selected_label)
        axis = self.slice_axis(layer)
        rules = self.rules()
        image = self._intensities(layer) if rules.intensity is not None else None
        new = fill_between_slices(np.asarray(layer.data), label, axis, layer_spacing(layer), rules=rules, image=image)
        n = self._apply(layer, new)
        return (f"{class_name(layer, label)}: filled between slices along axis {'ijk'[axis]} ({n} voxels changed; "
                f"{rules.describe(self.classes())})")

    def remove_islands(self) -> str:
        layer, label = self._target()
        min_ml = float(self.min_ml.value())
        new = remove_islands(np.asarray(layer.data), layer_spacing(layer), min_ml, label)
        n = self._apply(layer, new)
        return f"removed {n} voxels in islands under {min_ml:g} ml"

    def keep_largest(self) -> str:
        layer, label = self._target()
        n = self._apply(layer, keep_largest_component(np.asarray(layer.data), label))
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
        self._present = sorted(vols)
        self.refresh_classes()
