"""The tri-planar review: coronal and sagittal views linked to the axial view.

Reference for the orientation: 3D Slicer's slice views (``vtkMRMLSliceNode``'s SliceToRAS: the
RAS direction of the screen's x (rightwards) and y (upwards)) and, for the test volumes, nibabel's
orientation codes of their affines. The GUI tests check rendered pixels: a mask with one blob
towards the patient's left (red), one anterior (green), one superior (blue) and one at the centre
(white), stored RAS, LPS and oblique, must show each blob on the expected side of the centre in
each view. The pure tests (no Qt) drive :class:`LinkedViews` on napari models.
"""

from __future__ import annotations

import json
import types

import nibabel as nib
import numpy as np
import pytest
from napari.components import ViewerModel
from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

from napari_medseg.triplanar import CROSSHAIR_NAME, LinkedViews, crosshair_vectors
from napari_medseg.view import AXIAL, CORONAL, SAGITTAL, camera, radiological_axial_view

#: 3D Slicer's SliceToRAS (first two columns): RAS of the screen's right and of the screen's top.
SLICER = {"axial": ((-1, 0, 0), (0, 1, 0)), "coronal": ((-1, 0, 0), (0, 0, 1)), "sagittal": ((0, -1, 0), (0, 0, 1))}

SHAPE = (44, 44, 26)
#: A slight obliquity, as scanners write: napari slices a rotated layer without resampling (it
#: drops the rotation between the slider's axis and the displayed ones), so a large one would
#: show other slices in every view, the axial one included (see docs/guides/review.md).
OBLIQUE_DEG = 3.0
SPACING = (1.5, 1.5, 2.0)
MARKERS = {"left": 1, "anterior": 2, "superior": 3, "centre": 4}
COLORS = {"left": (255, 0, 0), "anterior": (0, 255, 0), "superior": (0, 0, 255), "centre": (255, 255, 255)}


def _rotation_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def _affine(storage: str) -> np.ndarray:
    """A grid stored ``RAS``, ``LPS`` (x and y flipped) or ``oblique`` (LPS turned about z by
    :data:`OBLIQUE_DEG`)."""
    flips = {"RAS": (1, 1, 1), "LPS": (-1, -1, 1), "oblique": (-1, -1, 1)}[storage]
    rot = _rotation_z(OBLIQUE_DEG) if storage == "oblique" else np.eye(3)
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(np.multiply(flips, SPACING))
    aff[:3, 3] = (12.0, -30.0, 40.0)
    return aff


def _phantom(aff: np.ndarray) -> np.ndarray:
    """uint8 mask on ``aff``: blobs placed by world (RAS+ mm) position relative to the grid's centre."""
    idx = np.indices(SHAPE).reshape(3, -1).astype(float)
    xyz = (aff[:3, :3] @ idx + aff[:3, 3:4]).reshape(3, *SHAPE)
    x, y, z = (xyz[a] - _centre(aff)[a] for a in range(3))
    m = np.zeros(SHAPE, np.uint8)
    near = {"x": np.abs(x) < 7, "y": np.abs(y) < 7, "z": np.abs(z) < 7}
    m[(x < -10) & (x > -22) & near["y"] & near["z"]] = MARKERS["left"]       # the patient's left: -x
    m[(y > 10) & (y < 22) & near["x"] & near["z"]] = MARKERS["anterior"]     # +y
    m[(z > 10) & (z < 22) & near["x"] & near["y"]] = MARKERS["superior"]     # +z
    m[(np.abs(x) < 5) & (np.abs(y) < 5) & (np.abs(z) < 5)] = MARKERS["centre"]
    return m


def _centre(aff: np.ndarray) -> np.ndarray:
    return aff[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + aff[:3, 3]


def test_test_grids_are_what_they_claim():
    assert nib.aff2axcodes(_affine("RAS")) == ("R", "A", "S")
    assert nib.aff2axcodes(_affine("LPS")) == ("L", "P", "S")
    assert nib.aff2axcodes(_affine("oblique")) == ("L", "P", "S")
    assert not np.allclose(np.abs(_affine("oblique")[:3, :3]), np.diag(SPACING))   # really turned


# ---- without Qt ---------------------------------------------------------------------------------
@pytest.mark.parametrize("plane", [AXIAL, CORONAL, SAGITTAL], ids=lambda p: p.name)
def test_planes_follow_slicer_in_napari_terms(plane):
    """napari shows dims.order[-2:] as (row, column); 'up' / 'right' mean the axis grows that way."""
    right, up = SLICER[plane.name]
    row, col = plane.order[1:]
    _depth, vertical, horizontal = plane.orientation
    screen_right = np.zeros(3)
    screen_right[col] = 1.0 if horizontal == "right" else -1.0
    screen_up = np.zeros(3)
    screen_up[row] = 1.0 if vertical == "up" else -1.0
    np.testing.assert_array_equal(screen_right, right)
    np.testing.assert_array_equal(screen_up, up)
    assert sorted(plane.order) == [0, 1, 2]


def _main_viewer(storage: str = "LPS"):
    viewer = ViewerModel()
    aff = _affine(storage)
    image = viewer.add_image(np.random.default_rng(0).random(SHAPE).astype(np.float32), affine=aff, name="scan")
    labels = viewer.add_labels(_phantom(aff), affine=aff, name="mask")
    radiological_axial_view(viewer)
    return viewer, image, labels


def test_side_views_show_their_planes_and_mirror_the_layers():
    viewer, image, labels = _main_viewer()
    links = LinkedViews(viewer)
    for name, plane in (("coronal", CORONAL), ("sagittal", SAGITTAL)):
        model = links.models[name]
        assert tuple(model.dims.order) == plane.order
        assert tuple(str(o) for o in camera(model).orientation) == plane.orientation
        assert [lay.name for lay in model.layers] == ["scan", "mask", CROSSHAIR_NAME]
        assert model.dims.range == viewer.dims.range                     # the crosshair changes no range
        mirrors = links.mirrors(labels)
        assert mirrors[name].data is labels.data                           # shared, not copied
        assert links.mirrors(image)[name].data is image.data
        assert not mirrors[name].editable
        np.testing.assert_allclose(mirrors[name].affine.affine_matrix, labels.affine.affine_matrix)
    image.contrast_limits = (0.2, 0.4)
    image.visible = False
    labels.opacity = 0.3
    for name in links.models:
        assert tuple(links.mirrors(image)[name].contrast_limits) == (0.2, 0.4)
        assert not links.mirrors(image)[name].visible
        assert links.mirrors(labels)[name].opacity == pytest.approx(0.3)
    links.close()


def test_the_point_is_one_in_all_views():
    viewer, _image, labels = _main_viewer()
    links = LinkedViews(viewer)
    cor, sag = links.models["coronal"], links.models["sagittal"]
    target = labels.data_to_world((10, 30, 8))
    viewer.dims.set_point(2, target[2])                                 # the axial slider
    assert cor.dims.point[2] == pytest.approx(target[2]) and sag.dims.point[2] == pytest.approx(target[2])
    links.set_point(target)                                             # e.g. a click in the axial view
    for model in (cor, sag):
        np.testing.assert_allclose(model.dims.point, target)
    cor.dims.set_point(1, target[1] + 6.0)                              # the coronal view's slider
    assert viewer.dims.point[1] == pytest.approx(target[1] + 6.0) == sag.dims.point[1]
    # the crosshair of the coronal view (displayed z, x) crosses at the point, in its slice
    cross = links.models["coronal"].layers[CROSSHAIR_NAME]
    starts = cross.data[:, 0] * cross.scale
    np.testing.assert_allclose(starts[:, 1], viewer.dims.point[1])
    links.close()


def test_crosshair_lines_span_the_extent_through_the_point():
    lines = crosshair_vectors((1.0, 2.0, 3.0), (-10, -20, -30), (10, 20, 30), (2, 0), (1.0, 2.0, 0.5))
    world = lines * np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(world[0], [[1, 2, -30], [0, 0, 60]])     # along z through (x, y)
    np.testing.assert_allclose(world[1], [[-10, 2, 3], [20, 0, 0]])     # along x through (y, z)


class _Event:
    """A mouse event as napari's canvas passes it: a drag generator keeps the press event, and
    napari points its ``__wrapped__`` at each later move and at the release."""

    def __init__(self, **fields):
        self.__wrapped__ = types.SimpleNamespace(**fields)

    def __getattr__(self, name):
        return getattr(self.__wrapped__, name)


def _mouse(kind: str, position, pos=(100, 100), modifiers=(), dragging=False):
    return _Event(type=kind, position=tuple(position), pos=np.array(pos, float), modifiers=modifiers,
                  is_dragging=dragging, handled=False)


def test_click_and_shift_move_set_the_point():
    viewer, _image, labels = _main_viewer()
    links = LinkedViews(viewer)
    cor, sag = links.models["coronal"], links.models["sagittal"]
    before = tuple(viewer.dims.point)
    target = np.array(labels.data_to_world((5, 9, 20)))
    where = (target[0], before[1], target[2])                           # a click in the coronal view
    mouse_press_callbacks(cor, _mouse("mouse_press", where))
    mouse_release_callbacks(cor, _mouse("mouse_release", where))
    np.testing.assert_allclose(viewer.dims.point, where)
    np.testing.assert_allclose(sag.dims.point, where)                   # the sagittal slice is at x now

    drag = (target[0] + 9, before[1], target[2] - 9)                    # a drag pans: the point stays
    mouse_press_callbacks(cor, _mouse("mouse_press", where))
    mouse_move_callbacks(cor, _mouse("mouse_move", drag, (160, 40), dragging=True))
    mouse_release_callbacks(cor, _mouse("mouse_release", drag, (160, 40)))
    np.testing.assert_allclose(viewer.dims.point, where)

    labels.mode = "paint"                                               # the main view paints: no move on click
    viewer.layers.selection.active = labels
    other = (target[0] - 5, target[1] + 5, where[2])
    mouse_press_callbacks(viewer, _mouse("mouse_press", other))
    mouse_release_callbacks(viewer, _mouse("mouse_release", other))
    np.testing.assert_allclose(viewer.dims.point, where)
    mouse_move_callbacks(viewer, _mouse("mouse_move", other, modifiers=("Shift",)))   # it follows the cursor
    np.testing.assert_allclose(viewer.dims.point, other)
    np.testing.assert_allclose(cor.dims.point, other)
    links.close()


def test_main_view_edits_show_in_the_side_views():
    """A mirror shares the array, so its values change with the main layer's; what must follow
    is its slice on the canvas: the mirror re-slices (``set_data``, the texture upload) after a
    paint stroke and after an undo."""
    viewer, _image, labels = _main_viewer()
    links = LinkedViews(viewer)
    voxel = (30, 6, 20)                                                 # background in the phantom
    assert labels.data[voxel] == 0
    links.set_point(labels.data_to_world(voxel))
    cor = links.mirrors(labels)["coronal"]
    resliced = []
    cor.events.set_data.connect(lambda _e: resliced.append(labels.data[voxel]))
    labels.brush_size = 1
    labels.paint(voxel, 3)                                              # a brush dab in the main view
    assert cor.data[voxel] == 3 and resliced and resliced[-1] == 3
    labels.undo()
    assert resliced[-1] == 0
    replaced = np.zeros_like(labels.data)
    labels.data = replaced                                              # a new array (e.g. a reload)
    assert cor.data is replaced
    links.close()


def _linked(emitter, links) -> list:
    """The callbacks of ``emitter`` that belong to ``links`` (bound methods, or partials of them)."""
    def owner(cb):
        if isinstance(cb, tuple):                                     # napari keeps (weakref, method name)
            return cb[0]()
        return getattr(getattr(cb, "func", cb), "__self__", None)
    return [cb for cb in emitter.callbacks if owner(cb) is links]


def test_layers_follow_the_main_viewer_and_close_disconnects_everything():
    viewer, image, labels = _main_viewer()
    emitters = (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.moved,
                viewer.dims.events.point, viewer.events.reset_view, viewer.canvas.events.size,
                labels.events.paint, labels.events.data, labels.events.set_data, labels.events.opacity,
                image.events.contrast_limits, image.events.visible)
    counts = [len(e.callbacks) for e in emitters]
    mouse = (len(viewer.mouse_drag_callbacks), len(viewer.mouse_move_callbacks))
    links = LinkedViews(viewer)
    cor = links.models["coronal"]
    viewer.layers.move(1, 0)                                            # mask under the scan
    assert [lay.name for lay in cor.layers] == ["mask", "scan", CROSSHAIR_NAME]
    viewer.layers.remove(labels)                                        # a case is left
    assert [lay.name for lay in cor.layers] == ["scan", CROSSHAIR_NAME]
    assert not any(_linked(e, links) for e in emitters[6:10])           # the removed layer is let go
    viewer.layers.clear()
    assert len(cor.layers) == 0
    aff = _affine("RAS")
    new = viewer.add_labels(_phantom(aff), affine=aff, name="next case")
    assert [lay.name for lay in cor.layers] == ["next case", CROSSHAIR_NAME]
    assert tuple(cor.dims.order) == CORONAL.order                       # napari had reset the emptied dims
    assert links.mirrors(new)["sagittal"].data is new.data
    links.close()
    assert [len(e.callbacks) for e in emitters[:6]] == counts[:6]
    assert not any(_linked(getattr(new.events, n), links) for n in ("paint", "data", "set_data", "opacity"))
    assert (len(viewer.mouse_drag_callbacks), len(viewer.mouse_move_callbacks)) == mouse
    assert links.models == {} and len(cor.layers) == 0
    new.opacity = 0.2                                                   # nothing is listening any more
    viewer.dims.set_point(2, float(viewer.dims.point[2]) + 2.0)
    links.close()                                                       # twice is fine


# ---- rendered, under Xvfb ---------------------------------------------------------------------------
def _phantom_folder(root, storage: str):
    from tests.napari.factory import save_nifti

    aff = _affine(storage)
    mask = _phantom(aff)
    save_nifti(root / "images" / "case_0_0000.nii.gz", mask.astype(np.int16) * 100 - 1000, aff)
    save_nifti(root / "masks" / "case_0.nii.gz", mask, aff)
    other = _affine("RAS")
    save_nifti(root / "images" / "case_1_0000.nii.gz", np.full(SHAPE, -1000, np.int16), other)
    save_nifti(root / "masks" / "case_1.nii.gz", (_phantom(other) == MARKERS["centre"]).astype(np.uint8) * 4, other)
    labels = {"labels": {"background": 0, **MARKERS},
              "colors": {name: list(rgb) for name, rgb in COLORS.items()}}
    (root / "labels.json").write_text(json.dumps(labels))
    return root


def _where(img, name):
    """(x, y) of the colour's centroid, as fractions of the image width and height, and its pixel count."""
    m = np.abs(img[..., :3].astype(int) - COLORS[name]).sum(-1) < 120
    ys, xs = np.nonzero(m)
    return (xs.mean() / img.shape[1], ys.mean() / img.shape[0], int(m.sum())) if m.any() else (None, None, 0)


#: Per view: (marker, "right"/"left"/"up" of the centre blob on the screen).
EXPECTED = {"axial": (("left", "right"), ("anterior", "up")),
            "coronal": (("left", "right"), ("superior", "up")),
            "sagittal": (("anterior", "left"), ("superior", "up"))}


def _assert_sides(img, view, what):
    cx, cy, n = _where(img, "centre")
    assert n > 0, (what, view, "no centre blob")
    for marker, side in EXPECTED[view]:
        x, y, n = _where(img, marker)
        assert n > 0, (what, view, marker, "not shown")
        if side == "up":
            assert y < cy - 0.05 and abs(x - cx) < 0.06, (what, view, marker, x, y, cx, cy)
        else:
            assert (x > cx + 0.05 if side == "right" else x < cx - 0.05) and abs(y - cy) < 0.06, \
                (what, view, marker, x, y, cx, cy)


def _open_three_views(tmp_path, make_napari_viewer, qtbot, storage):
    from napari_medseg.review.widget import ReviewWidget

    root = _phantom_folder(tmp_path / storage, storage)
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1300, 1100)
    w = ReviewWidget(viewer, folder=root, reviewer="dr_t")
    viewer.window.add_dock_widget(w)
    w.open_case("case_0")
    w.views_button.click()                                            # 1 view -> 3 views
    assert w.views is not None and w.views_button.isChecked()
    for layer in viewer.layers:                                        # the labels alone, opaque (mirrored)
        layer.visible = layer is w.labels_layer
    w.labels_layer.opacity = 1.0
    qtbot.wait(200)
    return viewer, w


def _screens(viewer, w):
    return {"axial": viewer.screenshot(canvas_only=True, flash=False),
            "coronal": w.views.screenshot("coronal"), "sagittal": w.views.screenshot("sagittal")}


@pytest.mark.gui
@pytest.mark.parametrize("storage", ["RAS", "LPS", "oblique"])
def test_each_view_shows_the_patient_radiologically(tmp_path, make_napari_viewer, qtbot, storage):
    viewer, w = _open_three_views(tmp_path, make_napari_viewer, qtbot, storage)
    w.views.links.set_point(_centre(_affine(storage)))
    for view, img in _screens(viewer, w).items():
        _assert_sides(img, view, storage)
    w.close_session()


def _click(qtbot, canvas, img, name):
    """A left click (press and release, no move) on the centre of a colour in a view."""
    from qtpy.QtCore import QPoint, Qt

    x, y, n = _where(img, name)
    assert n > 0, name
    native = canvas.native
    qtbot.mouseClick(native, Qt.MouseButton.LeftButton, pos=QPoint(int(x * native.width()), int(y * native.height())))


def _shift_move(canvas, img, name):
    """The mouse moved (no button) with Shift held onto the centre of a colour in a view."""
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    x, y, n = _where(img, name)
    assert n > 0, name
    native = canvas.native
    local = QPointF(x * native.width(), y * native.height())
    event = QMouseEvent(QEvent.Type.MouseMove, local, native.mapToGlobal(local), Qt.MouseButton.NoButton,
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.ShiftModifier)
    QApplication.sendEvent(native, event)


@pytest.mark.gui
def test_a_click_in_one_view_moves_the_others(tmp_path, make_napari_viewer, qtbot):
    viewer, w = _open_three_views(tmp_path, make_napari_viewer, qtbot, "LPS")
    links = w.views.links
    centre = _centre(_affine("LPS"))
    links.set_point(centre)
    w.labels_layer.mode = "pan_zoom"                                  # not painting: a click points
    _click(qtbot, viewer.window._qt_viewer.canvas, _screens(viewer, w)["axial"], "left")
    x = viewer.dims.point[0]
    assert -22 < x - centre[0] < -10                                   # the left blob's x (RAS+ mm)
    assert links.models["sagittal"].dims.point[0] == pytest.approx(x)  # the sagittal slice moved there
    assert viewer.dims.point[2] == pytest.approx(centre[2], abs=1.0)   # the axial slice did not move
    sagittal = w.views.screenshot("sagittal")
    assert _where(sagittal, "left")[2] > 0 and _where(sagittal, "centre")[2] == 0  # through the left blob now

    links.set_point(centre)
    _click(qtbot, w.views.qt_viewers["coronal"].canvas, w.views.screenshot("coronal"), "superior")
    assert 10 < viewer.dims.point[2] - centre[2] < 22                  # the axial slice is the superior blob's
    assert links.models["coronal"].dims.point[1] == pytest.approx(centre[1])   # the coronal slice stays
    axial = viewer.screenshot(canvas_only=True, flash=False)
    assert _where(axial, "superior")[2] > 0 and _where(axial, "centre")[2] == 0

    links.set_point(centre)                                           # Shift + mouse move, while painting
    w.labels_layer.mode = "paint"
    _shift_move(viewer.window._qt_viewer.canvas, _screens(viewer, w)["axial"], "anterior")
    assert 10 < viewer.dims.point[1] - centre[1] < 22                  # the anterior blob's y
    assert links.models["coronal"].dims.point[1] == pytest.approx(viewer.dims.point[1])
    coronal = w.views.screenshot("coronal")
    assert _where(coronal, "anterior")[2] > 0 and _where(coronal, "centre")[2] == 0
    assert np.count_nonzero(w.labels_layer.data != w.loaded.labels) == 0  # moving painted nothing
    w.close_session()


@pytest.mark.gui
def test_paint_in_the_main_view_shows_in_the_side_views(tmp_path, make_napari_viewer, qtbot):
    viewer, w = _open_three_views(tmp_path, make_napari_viewer, qtbot, "LPS")
    aff = _affine("LPS")
    centre = _centre(aff)
    w.views.links.set_point(centre)
    assert _where(w.views.screenshot("coronal"), "anterior")[2] == 0  # no anterior blob in this coronal slice
    lab = w.labels_layer
    voxel = tuple(int(round(v)) for v in np.linalg.solve(aff[:3, :3], centre + (15.0, 0, 0) - aff[:3, 3]))
    lab.brush_size = 5
    lab.paint(voxel, MARKERS["anterior"])                              # painted towards the patient's right
    qtbot.wait(100)
    coronal = w.views.screenshot("coronal")
    gx, gy, n = _where(coronal, "anterior")
    cx, cy, _ = _where(coronal, "centre")
    assert n > 0 and gx < cx - 0.05 and abs(gy - cy) < 0.06            # shown, on the screen's left (patient's right)
    assert w.views.links.mirrors(lab)["coronal"].data is lab.data
    lab.undo()
    qtbot.wait(100)
    assert _where(w.views.screenshot("coronal"), "anterior")[2] == 0
    w.close_session()


def _callbacks(viewer, labels):
    emitters = (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.dims.events.point,
                viewer.events.reset_view, labels.events.paint, labels.events.set_data)
    return [len(e.callbacks) for e in emitters] + [len(viewer.mouse_drag_callbacks), len(viewer.mouse_move_callbacks)]


@pytest.mark.gui
def test_layout_toggle_case_switch_and_close(tmp_path, make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget

    from napari_medseg.review.widget import ReviewWidget

    root = _phantom_folder(tmp_path / "r", "LPS")
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1300, 1100)
    w = ReviewWidget(viewer, folder=root, reviewer="dr_t")
    viewer.window.add_dock_widget(w)
    w.open_case("case_0")
    before = _callbacks(viewer, w.labels_layer)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_T, Qt.KeyboardModifier.ShiftModifier)   # 1 -> 3 views
    assert w.views is not None and w.views_button.isChecked()
    qtbot.waitUntil(w.views.isVisible, timeout=5000)                  # docked under the axial view
    links = w.views.links

    w.load_case("case_1")                                             # the worklist moves on
    qtbot.waitUntil(lambda: w.current == "case_1" and w._requested is None, timeout=15000)
    cor = links.models["coronal"]
    assert [lay.name for lay in cor.layers] == ["case_1 image", "case_1 mask", CROSSHAIR_NAME]
    assert links.mirrors(w.labels_layer)["coronal"].data is w.labels_layer.data
    w.image_layer.visible = False
    w.labels_layer.opacity = 1.0
    qtbot.wait(100)
    coronal = w.views.screenshot("coronal")
    assert _where(coronal, "centre")[2] > 0 and _where(coronal, "left")[2] == 0   # case 1's mask only

    qtbot.keyClick(canvas, Qt.Key.Key_T, Qt.KeyboardModifier.ShiftModifier)   # 3 -> 1 view
    assert w.views is None and not w.views_button.isChecked() and links.closed
    assert _callbacks(viewer, w.labels_layer) == before                # every link let go (same wiring per case)

    w.views_button.click()                                            # again, closed by the dock's own button
    dock = w.views.parent()
    while not isinstance(dock, QDockWidget):
        dock = dock.parent()
    assert dock.title.float_button.isHidden()                          # a floating canvas would lose its GL context
    links = w.views.links
    dock.title.close_button.click()
    assert w.views is None and not w.views_button.isChecked() and links.closed

    w.views_button.click()                                            # open when napari closes
    links = w.views.links
    viewer.close()
    w.close_session()
    assert links.closed and w.views is None
