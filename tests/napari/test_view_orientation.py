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
