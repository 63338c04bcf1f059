"""Viewer set-up shared by the widgets and the screenshot script (napari, no Qt imports).

napari's default 2D view shows the *last two* world axes, i.e. y (rows, anterior down) and
z (columns): a sagittal-like view with a slider over x. Clinicians expect the standard
radiological axial view: slider over z (inferior -> superior), patient's right on the
screen's left, anterior at the top. :func:`radiological_axial_view` sets that up.
"""

from __future__ import annotations

import numpy as np

#: Labels of napari's world axes (medseg's RAS+ mm): the direction each axis increases to.
WORLD_AXIS_LABELS = ("x: to Right (mm)", "y: to Anterior (mm)", "z: to Superior (mm)")


def radiological_axial_view(viewer) -> None:
    """Axial slices in radiological convention: rows = y with anterior up, columns = x with
    the patient's right on the screen's left; the slider steps through z."""
    if viewer.dims.ndim != 3:
        return
    viewer.dims.axis_labels = WORLD_AXIS_LABELS
    viewer.dims.order = (2, 1, 0)  # displayed (row, column) = (y, x)
    # y grows upwards, x grows to the left. The depth axis (z) points away from the viewer: with
    # the displayed order (z, y, x) -- an odd permutation of napari's default -- that keeps the
    # world right-handed, so the 3D view is not mirrored (it has no effect on 2D slices).
    camera(viewer).orientation = ("away", "up", "left")


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
