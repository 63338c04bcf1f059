"""Viewer set-up shared by the widgets, the reader and the screenshot script (napari, no Qt
imports).

napari's default 2D view shows the *last two* world axes, i.e. y (rows, anterior down) and
z (columns): a sagittal-like view with a slider over x. Clinicians expect the standard
radiological axial view: slider over z (inferior -> superior), patient's right on the
screen's left, anterior at the top. :func:`radiological_axial_view` sets that up.

napari forgets the view whenever the viewer becomes empty (removing the last layer resets the
dims: order ``(0, 1, 2)``, axis labels ``-3 -2 -1``), so every case, scan or prediction a
medseg widget shows sets it again (:func:`show_radiological`), and :func:`keep_radiological`
makes a viewer set it whenever a layer placed by medseg (File > Open with the napari-medseg
reader) is added.

:func:`most_uncertain_point` picks the axial slice to show from an uncertainty map.
"""

from __future__ import annotations

import weakref

import numpy as np

#: Labels of napari's world axes (medseg's RAS+ mm): the direction each axis increases to.
WORLD_AXIS_LABELS = ("x: to Right (mm)", "y: to Anterior (mm)", "z: to Superior (mm)")
#: The dims order of the radiological axial view: displayed (row, column) = (y, x), slider z.
RADIOLOGICAL_ORDER = (2, 1, 0)
#: The camera orientation of the radiological axial view (depth, vertical, horizontal).
RADIOLOGICAL_ORIENTATION = ("away", "up", "left")


def radiological_axial_view(viewer) -> bool:
    """Axial slices in radiological convention: rows = y with anterior up, columns = x with
    the patient's right on the screen's left; the slider steps through z. Returns True when
    the view changed (False: it already was that view, or the viewer is not 3D)."""
    if viewer.dims.ndim != 3:
        return False
    if is_radiological_axial(viewer):
        return False
    viewer.dims.axis_labels = WORLD_AXIS_LABELS
    viewer.dims.order = RADIOLOGICAL_ORDER  # displayed (row, column) = (y, x)
    # y grows upwards, x grows to the left. The depth axis (z) points away from the viewer: with
    # the displayed order (z, y, x) -- an odd permutation of napari's default -- that keeps the
    # world right-handed, so the 3D view is not mirrored (it has no effect on 2D slices).
    camera(viewer).orientation = RADIOLOGICAL_ORIENTATION
    return True


def is_radiological_axial(viewer) -> bool:
    """Whether ``viewer`` shows the radiological axial view (order, axis labels, camera)."""
    dims = viewer.dims
    if dims.ndim != 3 or tuple(dims.order) != RADIOLOGICAL_ORDER:
        return False
    if tuple(dims.axis_labels) != WORLD_AXIS_LABELS:
        return False
    return tuple(str(o) for o in camera(viewer).orientation) == RADIOLOGICAL_ORIENTATION


def show_radiological(viewer, centre_world=None) -> None:
    """The view every medseg widget shows a case in: the radiological axial view, the camera
    reset to the whole volume, and (when given) the slice through ``centre_world`` (RAS+ mm)."""
    radiological_axial_view(viewer)
    viewer.reset_view()
    if centre_world is not None:
        go_to_world(viewer, centre_world)


def is_medseg_layer(layer) -> bool:
    """A 3D layer placed by napari-medseg (its metadata holds medseg's grid)."""
    md = getattr(layer, "metadata", None) or {}
    return md.get("kind") in ("image", "labels") and md.get("affine") is not None and getattr(layer, "ndim", 0) == 3


class _ViewKeeper:
    """``viewer.layers.events.inserted`` callback: a medseg layer was added -> radiological view
    (and, when the view had to change, the camera reset to the data)."""

    def __init__(self, viewer):
        try:
            self._viewer = weakref.ref(viewer)
        except TypeError:  # an object without weak references: keep it (a collectable cycle)
            self._viewer = lambda v=viewer: v

    def alive(self) -> bool:
        return self._viewer() is not None

    def __call__(self, event) -> None:
        viewer = self._viewer()
        if viewer is None or not is_medseg_layer(getattr(event, "value", None)):
            return
        if radiological_axial_view(viewer):
            viewer.reset_view()


def keep_radiological(viewer) -> None:
    """Make ``viewer`` show the radiological axial view whenever a medseg layer is added to it
    (File > Open, the sample data, a script's ``viewer.open``). Safe to call again."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # the viewer itself, not the proxy napari gives widgets
    emitter = viewer.layers.events.inserted
    if any(isinstance(cb, _ViewKeeper) and cb.alive() for cb in emitter.callbacks):
        return
    emitter.connect(_ViewKeeper(viewer), position="last")  # after napari has updated the dims


def camera(viewer):
    """The viewer's camera: ``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def layer_axes_mm(layer) -> np.ndarray:
    """(3, 3) world (RAS+ mm) vector of one voxel step along each data axis (columns)."""
    origin = np.asarray(layer.data_to_world((0, 0, 0)), float)
    return np.stack([np.asarray(layer.data_to_world(tuple(np.eye(3)[i])), float) - origin for i in range(3)], axis=1)


def layer_spacing(layer) -> tuple[float, float, float]:
    """mm per data axis: medseg's metadata when present, else napari's transform."""
    sp = (layer.metadata or {}).get("spacing")
    if sp is not None and len(sp) == 3:
        return tuple(float(s) for s in sp)
    return tuple(float(s) for s in np.linalg.norm(layer_axes_mm(layer), axis=0))


def go_to_world(viewer, xyz) -> None:
    """Move the sliders so the slice through the world point ``xyz`` (RAS+ mm) is shown."""
    for axis in viewer.dims.not_displayed:
        if axis < len(xyz):
            viewer.dims.set_point(axis, float(xyz[axis]))


def axial_array_axis(affine) -> int:
    """The array axis whose voxel step points most nearly along superior-inferior (world z)."""
    a = np.asarray(affine, float)[:3, :3]
    return int(np.argmax(np.abs(a[2]) / np.maximum(np.linalg.norm(a, axis=0), 1e-12)))


def most_uncertain_point(uncertainty: np.ndarray, affine) -> tuple[np.ndarray, int] | None:
    """Where to look first in an uncertainty map (e.g. the per-voxel entropy written by
    ``medseg predict --uncertainty``): the axial slice with the largest summed uncertainty.

    Args:
        uncertainty: ``(ni, nj, nk)`` float map on the grid ``affine``; NaN and negative values
            count as 0.
        affine: its 4x4 voxel -> RAS+ mm affine.

    Returns:
        ``(xyz, slice)``: the RAS+ mm point at the uncertainty-weighted centre of that slice, and
        the slice's index along :func:`axial_array_axis`; None when the map is all 0.
    """
    u = np.nan_to_num(np.asarray(uncertainty, float), nan=0.0, posinf=0.0, neginf=0.0)
    u = np.clip(u, 0.0, None)
    if u.ndim != 3 or not u.any():
        return None
    ax = axial_array_axis(affine)
    per_slice = u.sum(axis=tuple(a for a in range(3) if a != ax))
    k = int(np.argmax(per_slice))
    plane = np.take(u, k, axis=ax)
    others = [a for a in range(3) if a != ax]
    grids = np.indices(plane.shape, dtype=float)
    centre = np.zeros(3)
    centre[ax] = k
    for g, a in zip(grids, others):
        centre[a] = float((g * plane).sum() / plane.sum())
    xyz = (np.asarray(affine, float) @ np.append(centre, 1.0))[:3]
    return xyz, k
