"""Tri-planar review: coronal and sagittal views linked to napari's main (axial) view, as plain
napari models (no Qt; :mod:`napari_medseg.triplanar_widget` renders them beside the viewer).

Geometry. napari's world is medseg's RAS+ millimetres for every layer (each layer carries its
volume's affine, see :mod:`napari_medseg.layers`), so a view is a choice of world axes -- a
:class:`~napari_medseg.view.Plane` of :mod:`napari_medseg.view` (``CORONAL``: patient's left on
the screen's right, superior up; ``SAGITTAL``: anterior on the screen's left, superior up) --
whatever the storage orientation of the volumes (RAS, LPS...): napari applies each layer's
affine when it slices. napari does not resample a rotated layer: it drops the rotation between
the slider's axis and the displayed ones (and warns), which is right for a slightly oblique scan
but cuts a strongly oblique one, or one stored with permuted axes, along other slices -- in
every view, the axial one included.

:class:`LinkedViews` keeps, for one main viewer:

* one ``ViewerModel`` per side plane, shown in that plane;
* a mirror of each 3D Image and Labels layer of the main viewer in each side model: the *same*
  data array (no copy), in the same stacking order, with the display properties of
  :data:`MIRRORED_PROPERTIES` kept equal. An edit of a Labels layer in the main view (each dab
  of a paint stroke, fill, undo, a correction tool) re-slices its mirrors; a replaced data array
  is passed on. Mirrors cannot be edited: the labels are edited in the main view;
* one linked point (the crosshair, a world point in RAS+ mm, napari's ``dims.point``): each
  view slices through it. Moving it in any view moves it in the others: a slider, a click
  without dragging (while the active layer is in pan/zoom mode, i.e. not painting), or moving
  the mouse with Shift held (also while painting, as in 3D Slicer). Each side view draws the
  crosshair as two lines through the point (a Vectors layer of that side model only);
* the fit: the side views are fitted to the volume with the main view (its ``reset_view``, e.g.
  *Reset view*), and every view when its canvas is resized (the layout changed).

:meth:`LinkedViews.close` disconnects every callback it made and empties the side models.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import numpy as np
from napari.components import ViewerModel
from napari.layers import Image, Labels, Layer

from napari_medseg.view import CORONAL, SAGITTAL, Plane, show_plane

#: The side views, in display order.
SIDE_PLANES = (CORONAL, SAGITTAL)
#: Display properties of a main layer copied to its mirrors whenever they change (those the layer has).
MIRRORED_PROPERTIES = ("visible", "opacity", "blending", "colormap", "contrast_limits", "gamma",
                       "contour", "selected_label", "show_selected_label")
#: A press and release within this many canvas pixels is a click (more: a drag, which pans).
CLICK_TOLERANCE_PX = 3.0
CROSSHAIR_NAME = "crosshair"
CROSSHAIR_COLOR = "yellow"
#: Crosshair line width, as a fraction of the largest side of the mirrored volumes.
CROSSHAIR_WIDTH = 0.005


def is_mirrored(layer) -> bool:
    """The layers the side views show: 3D Image and Labels layers."""
    return isinstance(layer, (Image, Labels)) and layer.ndim == 3


def mirrored_properties(layer) -> tuple[str, ...]:
    """The names of :data:`MIRRORED_PROPERTIES` that ``layer`` has (with a change event)."""
    return tuple(name for name in MIRRORED_PROPERTIES if name in layer.events.emitters and hasattr(layer, name))


def mirror_layer(layer: Layer) -> Layer:
    """A read-only layer of the same type showing the same data array (not a copy) with the same
    affine, colour map, contrast, metadata... (``layer.as_layer_data_tuple()``)."""
    mirror = Layer.create(*layer.as_layer_data_tuple())
    mirror.editable = False
    return mirror


def crosshair_vectors(point, lower, upper, displayed, step) -> np.ndarray:
    """napari Vectors data of a 2D view's crosshair: for each displayed world axis, the line
    through ``point`` from ``lower`` to ``upper`` along that axis.

    Args:
        point: the linked world point (RAS+ mm), one value per world axis.
        lower, upper: the world extent to span (mm), one value per world axis.
        displayed: the displayed world axes of the view (``dims.displayed``).
        step: the Vectors layer's scale (mm per data unit, per world axis; see
            :func:`crosshair_scale`).

    Returns:
        ``(len(displayed), 2, ndim)``: per line, the start position and the projection, in data
        units (world mm / ``step``).
    """
    point, lower, upper, step = (np.asarray(v, float) for v in (point, lower, upper, step))
    lines = np.zeros((len(displayed), 2, point.size))
    for i, axis in enumerate(displayed):
        lines[i, 0] = point
        lines[i, 0, axis] = lower[axis]
        lines[i, 1, axis] = upper[axis] - lower[axis]
    return lines / step


def crosshair_scale(step, displayed) -> np.ndarray:
    """The crosshair layer's scale (mm per data unit, per world axis): the volumes' ``step`` on
    the slider's axis and the largest displayed step on both displayed axes. napari scales a
    line's width with its layer, so the two lines are equally wide on the screen; and napari's
    dims steps (the smallest of its layers') stay the volumes'."""
    scale = np.asarray(step, float).copy()
    scale[list(displayed)] = scale[list(displayed)].max()
    return scale


def _is_click(press_pos, release_pos) -> bool:
    return float(np.hypot(*(np.asarray(release_pos, float) - np.asarray(press_pos, float))[:2])) <= CLICK_TOLERANCE_PX


def _not_editing(viewer) -> bool:
    """No active layer, or one in pan/zoom mode (a click then paints nothing)."""
    layer = viewer.layers.selection.active
    return layer is None or str(getattr(layer, "mode", "pan_zoom")) == "pan_zoom"


class LinkedViews:
    """Side views (napari ``ViewerModel`` s, one per :class:`~napari_medseg.view.Plane`) of a
    main napari viewer, with mirrored layers and one linked point; see the module docstring.

    Args:
        viewer: the main viewer (a napari ``Viewer`` or ``ViewerModel``, 3D world in RAS+ mm).
        planes: the side views' planes (default coronal and sagittal).

    Attributes:
        models: ``{plane name: ViewerModel}``, in the order of ``planes``.
        planes: ``{plane name: Plane}``.
    """

    def __init__(self, viewer, planes: tuple[Plane, ...] = SIDE_PLANES):
        self.viewer = getattr(viewer, "__wrapped__", viewer)  # the viewer itself, not napari's proxy
        self.planes = {p.name: p for p in planes}
        self.models = {p.name: ViewerModel(title=f"{p.name} view") for p in planes}
        self._mirrors: dict[Layer, dict[str, Layer]] = {}
        self._crosshairs: dict[str, Layer] = {}
        self._links: list[tuple] = []                      # (emitter, callback) to disconnect on close
        self._layer_links: dict[Layer, list[tuple]] = {}
        self._mouse: list[tuple[list, object]] = []        # (a viewer's callback list, callback)
        self._pushing = False
        main = self.viewer
        self._connect(self._links, main.layers.events.inserted, self._inserted)
        self._connect(self._links, main.layers.events.removed, self._removed)
        self._connect(self._links, main.layers.events.moved, self._restack)
        self._connect(self._links, main.dims.events.point, self._push_point)
        self._connect(self._links, main.events.reset_view, self._reset_views)
        for name, model in self.models.items():
            self._connect(self._links, model.dims.events.point, partial(self._pull_point, name))
            self._connect(self._links, model.dims.events.order, partial(self._update_crosshair, name))
            self._connect(self._links, model.events.status, self._forward_status)
        for v in (main, *self.models.values()):
            self._connect(self._links, v.canvas.events.size, partial(self._fit, v))
            self._add_mouse(v.mouse_move_callbacks, self._shift_move)
            self._add_mouse(v.mouse_drag_callbacks, self._click)
        for layer in main.layers:
            if is_mirrored(layer):
                self._add(layer)

    # ---- bookkeeping ---------------------------------------------------------------------------
    @staticmethod
    def _connect(links: list, emitter, callback) -> None:
        emitter.connect(callback)
        links.append((emitter, callback))

    def _add_mouse(self, callbacks: list, callback) -> None:
        callbacks.append(callback)
        self._mouse.append((callbacks, callback))

    @property
    def closed(self) -> bool:
        return not self.models

    def mirrors(self, layer: Layer) -> dict[str, Layer]:
        """``{plane name: mirror}`` of a main layer ({} when it is not mirrored)."""
        return dict(self._mirrors.get(layer, {}))

    def close(self) -> None:
        """Disconnect every callback from the main viewer and the side models and empty the side
        models (safe to call again)."""
        for layer in list(self._mirrors):
            self._drop(layer)
        for emitter, callback in self._links:
            emitter.disconnect(callback)
        for callbacks, callback in self._mouse:
            if callback in callbacks:
                callbacks.remove(callback)
        for model in self.models.values():
            model.layers.clear()
        self._links, self._mouse = [], []
        self.models, self._crosshairs = {}, {}

    # ---- layers --------------------------------------------------------------------------------
    def _inserted(self, event) -> None:
        if is_mirrored(event.value):
            self._add(event.value)

    def _removed(self, event) -> None:
        if event.value in self._mirrors:
            self._drop(event.value)

    def _add(self, layer: Layer) -> None:
        first = not self._mirrors
        index = [lay for lay in self.viewer.layers if lay in self._mirrors or lay is layer].index(layer)
        with self._quiet():
            mirrors = {name: mirror_layer(layer) for name in self.models}
            for name, model in self.models.items():
                model.layers.insert(index, mirrors[name])
                show_plane(model, self.planes[name])  # napari resets the dims of an emptied viewer
                if first:
                    model.reset_view()
        self._mirrors[layer] = mirrors
        links = self._layer_links[layer] = []
        for prop in mirrored_properties(layer):
            self._connect(links, getattr(layer.events, prop), partial(self._sync_property, layer, prop))
        self._connect(links, layer.events.data, partial(self._sync_data, layer))
        if isinstance(layer, Labels):  # edits in place: each dab of a stroke (labels_update, after the
            # write), the end of a stroke, fill, data_setitem (paint), undo and redo (set_data)
            for emitter in (layer.events.labels_update, layer.events.paint, layer.events.set_data):
                self._connect(links, emitter, partial(self._refresh, layer))
        self._push_point()

    def _drop(self, layer: Layer) -> None:
        for emitter, callback in self._layer_links.pop(layer, []):
            emitter.disconnect(callback)
        with self._quiet():
            for name, mirror in self._mirrors.pop(layer).items():
                self.models[name].layers.remove(mirror)
            if not self._mirrors:
                for name, crosshair in self._crosshairs.items():
                    self.models[name].layers.remove(crosshair)
                self._crosshairs = {}
        self._update_crosshairs()

    def _restack(self, _event=None) -> None:
        """Stack the mirrors as their layers are stacked in the main viewer (crosshair on top)."""
        for name, model in self.models.items():
            wanted = [self._mirrors[lay][name] for lay in self.viewer.layers if lay in self._mirrors]
            wanted += [self._crosshairs[name]] if name in self._crosshairs else []
            for i, layer in enumerate(wanted):
                j = model.layers.index(layer)
                if j != i:
                    model.layers.move(j, i)

    def _sync_property(self, layer: Layer, prop: str, _event=None) -> None:
        value = getattr(layer, prop)
        for mirror in self._mirrors.get(layer, {}).values():
            setattr(mirror, prop, value)

    def _sync_data(self, layer: Layer, _event=None) -> None:
        for mirror in self._mirrors.get(layer, {}).values():
            if mirror.data is not layer.data:
                mirror.data = layer.data

    def _refresh(self, layer: Layer, _event=None) -> None:
        for mirror in self._mirrors.get(layer, {}).values():
            mirror.refresh()

    # ---- the linked point ----------------------------------------------------------------------
    def set_point(self, xyz) -> None:
        """Move the linked point (RAS+ mm, ``(x, y, z)``): every view slices through it. Ignored
        while the main viewer is not 3D."""
        if self.viewer.dims.ndim == len(xyz) == 3:
            self.viewer.dims.set_point(range(3), tuple(float(v) for v in xyz))

    @contextmanager
    def _quiet(self):
        """Changes of the side models' points inside are not moves to pass on to the main viewer
        (the point being pushed, mirrors coming and going)."""
        pushing, self._pushing = self._pushing, True
        try:
            yield
        finally:
            self._pushing = pushing

    def _push_point(self, _event=None) -> None:
        """Main viewer's point -> the side models (and their crosshairs)."""
        if self._pushing or self.viewer.dims.ndim != 3 or not self._mirrors:
            return
        with self._quiet():
            point = tuple(self.viewer.dims.point)
            for model in self.models.values():
                model.dims.set_point(range(3), point)
            self._update_crosshairs()

    def _pull_point(self, name: str, _event=None) -> None:
        """A side model's point moved (its slider, a click): move the main viewer's, hence all."""
        if self._pushing or not self._mirrors:
            return
        self.set_point(self.models[name].dims.point)
        self._update_crosshair(name)

    def _reset_views(self, _event=None) -> None:
        for model in self.models.values():
            model.reset_view()

    def _fit(self, viewer, _event=None) -> None:
        """A view's canvas was resized (the layout changed, a dock was resized): fit the volume."""
        if self._mirrors:
            viewer.reset_view()

    def _update_crosshairs(self) -> None:
        for name in self.models:
            self._update_crosshair(name)

    def _update_crosshair(self, name: str, _event=None) -> None:
        model = self.models.get(name)
        if model is None or not self._mirrors:
            return
        extent = model.layers.get_extent([m[name] for m in self._mirrors.values()])
        lower, upper = extent.world
        displayed = model.dims.displayed
        scale = crosshair_scale(extent.step, displayed)
        data = crosshair_vectors(model.dims.point, lower, upper, displayed, scale)
        width = CROSSHAIR_WIDTH * float(np.max(upper - lower)) / scale[displayed[0]]
        layer = self._crosshairs.get(name)
        with self._quiet():
            if layer is None:
                layer = model.add_vectors(data, ndim=3, scale=scale, name=CROSSHAIR_NAME, vector_style="line",
                                          edge_color=CROSSHAIR_COLOR, edge_width=width, opacity=0.8)
                self._crosshairs[name] = layer
                model.layers.selection.active = None  # nothing to edit in a side view
                return
            if not np.allclose(layer.scale, scale):  # another volume (case), or the view was rolled
                layer.scale = scale
                layer.edge_width = width
            layer.data = data

    # ---- mouse ---------------------------------------------------------------------------------
    def _shift_move(self, viewer, event) -> None:
        """Mouse move (no button) with Shift held: the point follows the cursor."""
        if "Shift" in event.modifiers and viewer.dims.ndim == 3:
            self.set_point(event.position)

    def _click(self, viewer, event):
        """A click without dragging (a drag pans) moves the point there, unless the view's active
        layer is being edited (paint, fill...: napari's own tools take the click)."""
        if viewer.dims.ndim != 3 or not _not_editing(viewer):
            return
        press = event.pos
        yield
        while event.type == "mouse_move":
            yield
        if _is_click(press, event.pos):
            self.set_point(event.position)

    def _forward_status(self, event) -> None:
        self.viewer.status = event.value
