"""The radiological view set by the plugin, checked on rendered pixels (Xvfb).

A phantom with one blob on each positive world axis: +x (patient's right) red, +y (anterior)
green, +z (superior) blue. Radiological axial 2D: right on the image's left, anterior at the
top. 3D seen from the front: right on the image's left (as when facing the patient), head up,
and the anterior blob in front of the centre one (no mirrored rendering)."""

from __future__ import annotations

import numpy as np

from napari_medseg.view import camera, radiological_axial_view

COLORS = {"right": (255, 0, 0), "anterior": (0, 255, 0), "superior": (0, 0, 255), "centre": (255, 255, 255)}


def _phantom(viewer):
    a = np.zeros((40, 40, 40), np.uint8)
    a[30:36, 17:23, 17:23] = 1   # +x
    a[17:23, 30:36, 17:23] = 2   # +y
    a[17:23, 17:23, 30:36] = 3   # +z
    a[17:23, 17:23, 17:23] = 4
    # an oblique-free grid offset in mm, as a scan would be
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    aff[:3, 3] = (-40, -40, -60)
    cmap = {0: (0, 0, 0, 0), 1: (1, 0, 0, 1), 2: (0, 1, 0, 1), 3: (0, 0, 1, 1), 4: (1, 1, 1, 1), None: (1, 1, 0, 1)}
    return viewer.add_labels(a, affine=aff, colormap=cmap, opacity=1.0)


def _where(img, name):
    m = np.abs(img[..., :3].astype(int) - COLORS[name]).sum(-1) < 120
    ys, xs = np.nonzero(m)
    return (xs.mean() / img.shape[1], ys.mean() / img.shape[0], int(m.sum())) if m.any() else (None, None, 0)


def test_radiological_axial_2d_and_unmirrored_3d(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    layer = _phantom(viewer)
    radiological_axial_view(viewer)
    viewer.reset_view()
    viewer.dims.set_point(2, layer.data_to_world((20, 20, 20))[2])     # axial slice through the centre
    img = viewer.screenshot(canvas_only=True, flash=False)
    right_x, right_y, _ = _where(img, "right")
    ant_x, ant_y, _ = _where(img, "anterior")
    assert right_x < 0.4 and abs(right_y - 0.5) < 0.1               # patient's right on the left
    assert ant_y < 0.4 and abs(ant_x - 0.5) < 0.1                   # anterior at the top

    viewer.dims.ndisplay = 3
    viewer.reset_view()
    displayed = list(viewer.dims.displayed)
    view, up = np.zeros(3), np.zeros(3)
    view[displayed.index(1)] = -1.0                                 # look from anterior to posterior
    up[displayed.index(2)] = 1.0                                    # head up
    camera(viewer).set_view_direction(tuple(view), tuple(up))
    img = viewer.screenshot(canvas_only=True, flash=False)
    right_x, _, _ = _where(img, "right")
    _, sup_y, _ = _where(img, "superior")
    _, _, n_anterior = _where(img, "anterior")
    _, _, n_centre = _where(img, "centre")
    assert right_x < 0.4                                            # facing the patient: right on the left
    assert sup_y < 0.4
    assert n_anterior > 0 and n_centre == 0                         # the anterior blob hides the centre one


# ---- every case, scan and re-opened case in the same view -------------------------------------
# Review folders whose masks hold a blob towards the patient's right (red), one towards anterior
# (green) and one in the middle (white), defined in world mm, so any grid shows the same picture.
PHANTOM_LABELS = {"labels": {"background": 0, "right": 1, "anterior": 2, "centre": 3},
                  "colors": {"right": [255, 0, 0], "anterior": [0, 255, 0], "centre": [255, 255, 255]}}
#: Three grids: RAS storage, LPS storage (x and y flipped, another spacing), all three flipped.
GRIDS = (np.diag([1.5, 1.5, 3.0, 1.0]), np.diag([-1.2, -1.25, 2.5, 1.0]), np.diag([1.4, -1.5, -2.0, 1.0]))
SHAPE = (36, 36, 16)


def _world_phantom(affine):
    """uint8 mask on ``affine``: the blobs by world position relative to the grid's centre."""
    idx = np.indices(SHAPE).reshape(3, -1).astype(float)
    xyz = (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape(3, *SHAPE)
    c = affine[:3, :3] @ ((np.array(SHAPE) - 1) / 2) + affine[:3, 3]
    x, y, z = (xyz[a] - c[a] for a in range(3))
    slab = np.abs(z) < 8                                            # every blob spans the same axial slices
    m = np.zeros(SHAPE, np.uint8)
    m[(x > 10) & (x < 18) & (np.abs(y) < 4) & slab] = 1             # towards the patient's right (+x)
    m[(y > 10) & (y < 18) & (np.abs(x) < 4) & slab] = 2             # towards anterior (+y)
    m[(np.abs(x) < 4) & (np.abs(y) < 4) & slab] = 3
    return m


def _phantom_folder(root):
    import json

    from tests.napari.factory import save_nifti

    for i, aff in enumerate(GRIDS):
        aff = aff.copy()
        aff[:3, 3] = (-20.0 + 7 * i, 15.0 - 5 * i, -40.0 + 11 * i)
        mask = _world_phantom(aff)
        save_nifti(root / "images" / f"case_{i}_0000.nii.gz", (mask.astype(np.int16) * 100 - 1000), aff)
        save_nifti(root / "masks" / f"case_{i}.nii.gz", mask, aff)
    (root / "labels.json").write_text(json.dumps(PHANTOM_LABELS))
    return root


def _assert_radiological_picture(viewer, labels_layer, what):
    """The rendered slice: right blob left of the centre one, anterior blob above it."""
    from napari_medseg.view import WORLD_AXIS_LABELS

    assert tuple(viewer.dims.axis_labels) == WORLD_AXIS_LABELS, what
    assert viewer.dims.not_displayed == (2,), what                  # the slider steps through z
    for layer in viewer.layers:                                     # the labels alone, opaque
        layer.visible = layer is labels_layer
    labels_layer.opacity = 1.0
    img = viewer.screenshot(canvas_only=True, flash=False)
    right_x, right_y, n_right = _where(img, "right")
    ant_x, ant_y, n_ant = _where(img, "anterior")
    c_x, c_y, n_c = _where(img, "centre")
    assert min(n_right, n_ant, n_c) > 0, (what, n_right, n_ant, n_c)
    assert right_x < c_x - 0.05 and abs(right_y - c_y) < 0.05, what  # patient's right on the screen's left
    assert ant_y < c_y - 0.05 and abs(ant_x - c_x) < 0.05, what      # anterior at the top


def test_review_cases_open_in_the_same_radiological_view(tmp_path, make_napari_viewer, qtbot):
    """Case 0, case 1 (another grid), case 0 again, case 2: the same radiological axial picture
    each time (napari forgets the view when a case's layers are replaced)."""
    from napari_medseg.review.widget import ReviewWidget

    root = _phantom_folder(tmp_path / "r")
    viewer = make_napari_viewer(show=True)
    w = ReviewWidget(viewer, folder=root, reviewer="dr_v")
    viewer.window.add_dock_widget(w)
    for case in ("case_0", "case_1", "case_0", "case_2"):
        w.load_case(case)                                           # as a double click in the worklist
        qtbot.waitUntil(lambda c=case: w.current == c and w._requested is None, timeout=15000)
        _assert_radiological_picture(viewer, w.labels_layer, case)
    w.close_session()


def test_reset_view_button_and_key(tmp_path, make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt

    from napari_medseg.review.widget import ReviewWidget

    root = _phantom_folder(tmp_path / "r")
    viewer = make_napari_viewer(show=True)
    w = ReviewWidget(viewer, folder=root, reviewer="dr_v")
    viewer.window.add_dock_widget(w)
    w.open_case("case_1")
    viewer.dims.order = (0, 1, 2)                                   # the user rolled to a sagittal view
    viewer.dims.axis_labels = ("a", "b", "c")
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    _assert_radiological_picture(viewer, w.labels_layer, "Shift+R")
    viewer.dims.order = (1, 0, 2)
    viewer.dims.set_point(2, float(viewer.dims.range[2].start))     # and moved off the mask
    qtbot.mouseClick(w.reset_button, Qt.MouseButton.LeftButton)
    _assert_radiological_picture(viewer, w.labels_layer, "Reset view button")
    w.close_session()


def test_review_keys_do_not_clash_with_napari():
    """napari's own shortcuts (its default table) keep working: the review binds none of the
    viewer's, the Labels layer's or the Image layer's; the view keys none at all."""
    from napari.utils.shortcuts import default_shortcuts

    from napari_medseg.review.widget import KEYS

    def keys(actions):
        return {str(kb).lower() for name, kbs in default_shortcuts.items() if name in actions for kb in kbs}

    other_layers = ("points", "shape", "activate_add_", "activate_direct", "activate_select_mode", "vertex",
                    "in_slice", "select_all_data", "vectors", "tracks", "surface")   # Points and Shapes layers
    review_layers = {n for n in default_shortcuts if not any(w in n for w in other_layers)}
    assert "napari:reset_view" in review_layers and "napari:activate_labels_paint_mode" in review_layers
    everything, shown = keys(set(default_shortcuts)), keys(review_layers)
    assert "r" in everything and "ctrl+r" in everything               # why reset view is Shift+R
    for key, action in KEYS.items():
        combo = key.replace("-", "+").lower()
        assert combo not in shown, key
        if action in ("reset_view", "go_to_most_uncertain"):
            assert combo not in everything, key


def test_file_open_shows_every_scan_radiologically(tmp_path, make_napari_viewer):
    """File > Open (the reader): a mask opened into an emptied viewer gets the view again."""
    root = _phantom_folder(tmp_path / "r")
    viewer = make_napari_viewer(show=True)
    for i in (0, 1, 2):
        viewer.layers.clear()                                       # napari resets the dims here
        [layer] = viewer.open(root / "masks" / f"case_{i}.nii.gz", plugin="napari-medseg")
        viewer.dims.set_point(2, float(np.mean([layer.data_to_world((0, 0, 0))[2],
                                                layer.data_to_world((0, 0, SHAPE[2] - 1))[2]])))
        _assert_radiological_picture(viewer, layer, f"File > Open case_{i}")
