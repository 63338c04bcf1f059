"""Viewer set-up shared by the widgets, the reader and the screenshot script (napari, no Qt
imports).

napari's default 2D view shows the *last two* world axes, i.e. y (rows, anterior down) and
z (columns): a sagittal-like view with a slider over x. Clinicians expect the standard
radiological axial view: slider over z (inferior -> superior), patient's right on the
screen's left, anterior at the top. :func:`radiological_axial_view` sets that up.

The three radiological planes (:data:`AXIAL`, :data:`CORONAL`, :data:`SAGITTAL`, as in 3D
Slicer's slice views) are :class:`Plane` values; :func:`show_plane` sets any of them (the
tri-planar review shows the other two beside the axial view, see :mod:`napari_medseg.triplanar`).

napari forgets the view whenever the viewer becomes empty (removing the last layer resets the
dims: order ``(0, 1, 2)``, axis labels ``-3 -2 -1``), so every case, scan or prediction a
medseg widget shows sets it again (:func:`show_radiological`), and :func:`keep_radiological`
makes a viewer set it whenever a layer placed by medseg (File > Open with the napari-medseg
reader) is added.

:func:`most_uncertain_point` picks the axial slice to show from an uncertainty map.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

#: Labels of napari's world axes (medseg's RAS+ mm): the direction each axis increases to.
WORLD_AXIS_LABELS = ("x: to Right (mm)", "y: to Anterior (mm)", "z: to Superior (mm)")


@dataclass(frozen=True)
class Plane:
    """A 2D slice view of napari's world (RAS+ mm, axes ``(x, y, z)``), given as 3D Slicer gives
    its slice views: the world direction that points to the screen's right and the one that
    points up, each a signed unit axis such as ``(-1, 0, 0)`` (towards the patient's left).

    The napari settings follow: the dims ``order`` ends with the displayed (row, column) =
    (``up`` axis, ``right`` axis), so the slider steps through the remaining (normal) axis, and
    the camera ``orientation`` (depth, vertical, horizontal) makes ``up`` grow upwards and
    ``right`` grow rightwards. The depth axis follows ``right x up`` (towards the viewer), so the
    world seen in 3D stays right-handed (not mirrored).
    """

    name: str
    right: tuple[int, int, int]
    up: tuple[int, int, int]

    @property
    def normal(self) -> tuple[int, int, int]:
        """``right x up``: the world direction pointing out of the screen, towards the viewer."""
        return tuple(int(v) for v in np.cross(self.right, self.up))

    @property
    def normal_axis(self) -> int:
        """The world axis the slider steps through (0 x, 1 y, 2 z)."""
        return _axis(self.normal)

    @property
    def order(self) -> tuple[int, int, int]:
        """napari ``dims.order``: (normal axis, up axis, right axis)."""
        return self.normal_axis, _axis(self.up), _axis(self.right)

    @property
    def orientation(self) -> tuple[str, str, str]:
        """napari camera ``orientation`` (depth, vertical, horizontal) of :attr:`order`."""
        return ("towards" if sum(self.normal) > 0 else "away", "up" if sum(self.up) > 0 else "down",
                "right" if sum(self.right) > 0 else "left")


def _axis(direction) -> int:
    """The world axis of a signed unit axis direction such as ``(0, -1, 0)``."""
    return int(np.flatnonzero(direction)[0])


#: Radiological axial: patient's left on the screen's right, anterior up (Slicer's red view).
AXIAL = Plane("axial", right=(-1, 0, 0), up=(0, 1, 0))
#: Radiological coronal: patient's left on the screen's right, superior up (Slicer's green view).
CORONAL = Plane("coronal", right=(-1, 0, 0), up=(0, 0, 1))
#: Sagittal: anterior on the screen's left (posterior to the right), superior up (Slicer's yellow view).
SAGITTAL = Plane("sagittal", right=(0, -1, 0), up=(0, 0, 1))


def show_plane(viewer, plane: Plane) -> bool:
    """Show ``plane`` in a 3D ``viewer``: world axis labels, dims order and camera orientation.
    Returns True when the view changed (False: it already was that view, or the viewer is not 3D)."""
    if viewer.dims.ndim != 3 or is_plane(viewer, plane):
        return False
    viewer.dims.axis_labels = WORLD_AXIS_LABELS
    viewer.dims.order = plane.order
    camera(viewer).orientation = plane.orientation
    return True


def is_plane(viewer, plane: Plane) -> bool:
    """Whether ``viewer`` shows ``plane`` (dims order, axis labels, camera orientation)."""
    dims = viewer.dims
    if dims.ndim != 3 or tuple(dims.order) != plane.order:
        return False
    if tuple(dims.axis_labels) != WORLD_AXIS_LABELS:
        return False
    return tuple(str(o) for o in camera(viewer).orientation) == plane.orientation


def radiological_axial_view(viewer) -> bool:
    """Axial slices in radiological convention (:data:`AXIAL`): rows = y with anterior up,
    columns = x with the patient's right on the screen's left; the slider steps through z.
    Returns True when the view changed (False: it already was that view, or the viewer is not
    3D)."""
    return show_plane(viewer, AXIAL)


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
    """Make the world point ``xyz`` (RAS+ mm) the dims point: the sliders move to the slice
    through it, and the linked side views of the tri-planar layout slice through it too."""
    n = min(viewer.dims.ndim, len(xyz))
    viewer.dims.set_point(range(n), tuple(float(v) for v in xyz[:n]))


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
