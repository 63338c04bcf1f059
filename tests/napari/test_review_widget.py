"""The review and correction widgets in a real napari viewer (Xvfb), and `medseg review`."""

from __future__ import annotations

import argparse
import sys
import time

import napari
import nibabel as nib
import numpy as np
import pytest
from qtpy.QtCore import Qt

from medseg import read_volume
from medseg.cli import review as review_cli
from medseg.errors import InputError, MedsegError
from napari_medseg.correction_widget import CorrectionWidget
from napari_medseg.review.widget import ReviewWidget
from tests.napari.factory import review_folder

WAIT_MS = 15000


def _open(widget, qtbot, case):
    widget.load_case(case)
    qtbot.waitUntil(lambda: widget.current == case and widget._requested is None, timeout=WAIT_MS)


def _file_equals(path, expected):
    return path.is_file() and np.array_equal(np.asarray(nib.load(str(path)).dataobj), expected)


def test_paint_is_autosaved_and_reloads_equal(tmp_path, make_napari_viewer, qtbot):
    root = review_folder(tmp_path / "r", "manifest", n=3, uncertainty=[0.1, 0.9, 0.5])
    viewer = make_napari_viewer()
    w = ReviewWidget(viewer, folder=root, reviewer="dr_q")
    viewer.window.add_dock_widget(w)
    assert w.order() == ["case_001", "case_002", "case_000"]        # most uncertain first
    w.next_case()
    qtbot.waitUntil(lambda: w.current == "case_001", timeout=WAIT_MS)
    lab = w.labels_layer
    assert isinstance(lab, napari.layers.Labels) and isinstance(w.image_layer, napari.layers.Image)
    assert w.session.state("case_001").status == "in progress"
    pred = np.asarray(nib.load(str(root / "case_001.nii.gz")).dataobj)
    np.testing.assert_array_equal(lab.data, pred)

    lab.brush_size = 1
    voxel = tuple(int(v) for v in np.argwhere(pred == 0)[0])
    lab.paint(voxel, 2)                                           # a brush stroke, data coordinates
    edited = np.array(lab.data)
    assert edited[voxel] == 2
    corrected = root / "review" / "corrected" / "case_001.nii.gz"
    qtbot.waitUntil(lambda: _file_equals(corrected, edited), timeout=WAIT_MS)
    np.testing.assert_array_equal(nib.load(str(corrected)).affine, nib.load(str(root / "case_001.nii.gz")).affine)

    lab.undo()                                                    # undo is saved too
    qtbot.waitUntil(lambda: _file_equals(corrected, pred), timeout=WAIT_MS)
    lab.paint(voxel, 2)
    qtbot.waitUntil(lambda: _file_equals(corrected, edited), timeout=WAIT_MS)

    w.next_case()                                                 # away and back: the correction reloads
    qtbot.waitUntil(lambda: w.current == "case_002", timeout=WAIT_MS)
    _open(w, qtbot, "case_001")
    np.testing.assert_array_equal(w.labels_layer.data, edited)

    record = w.accept()                                           # edited -> corrected, then next case
    assert record["status"] == "corrected" and record["voxels_changed"] == 1
    qtbot.waitUntil(lambda: w.current == "case_002", timeout=WAIT_MS)
    w.close_session()

    w2 = ReviewWidget(viewer, folder=root, reviewer="dr_q")      # a restart restores the statuses
    statuses = {w2.table.item(r, 0).text(): w2.table.item(r, 1).text() for r in range(w2.table.rowCount())}
    assert statuses == {"case_000": "not started", "case_001": "corrected", "case_002": "in progress",
                        "missing_scan": "problem"}                 # the failed prediction: a greyed row
    assert read_volume(corrected).array[voxel] == 2
    w2.close_session()


def test_keyboard_shortcuts_and_flag(tmp_path, make_napari_viewer, qtbot):
    root = review_folder(tmp_path / "r", "images/masks", n=2)
    viewer = make_napari_viewer(show=True)
    w = ReviewWidget(viewer, folder=root, reviewer="dr_k")
    viewer.window.add_dock_widget(w)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: w.current == "case_000", timeout=WAIT_MS)
    w.note_edit.setText("motion artefact")
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_F, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: w.current == "case_001", timeout=WAIT_MS)
    assert w.session.state("case_000").status == "flagged"
    assert w.session.state("case_000").note == "motion artefact"
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: w.session.state("case_001").status == "approved", timeout=WAIT_MS)
    result = w.export_to(tmp_path / "Dataset902_Reviewed")
    assert result.cases == ["case_001"]
    w.close_session()


def test_correction_widget_window_fill_and_volumes(tmp_path, make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((20, 20, 6), np.int16) - 1000, name="ct",
                             metadata={"spacing": [1.0, 1.0, 2.0]}, scale=(1.0, 1.0, 2.0))
    labels_data = np.zeros((20, 20, 6), np.uint8)
    labels_data[5:10, 5:10, 0] = 1
    labels_data[5:10, 5:10, 4] = 1
    lab = viewer.add_labels(labels_data, name="mask", metadata={"spacing": [1.0, 1.0, 2.0], "classes": {1: "liver"}},
                            scale=(1.0, 1.0, 2.0))
    w = CorrectionWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.image_box.setCurrentText("ct")
    w.labels_box.setCurrentText("mask")
    w.apply_window("lung")
    assert tuple(image.contrast_limits) == (-1350.0, 150.0)
    assert w.volumes() == pytest.approx({1: 50 * 2.0 / 1000})
    viewer.dims.order = (2, 0, 1)                 # the slider steps through world axis 2 = data axis k
    w.label_spin.setValue(1)
    msg = w.fill_between()
    assert "axis k" in msg
    assert (lab.data[5:10, 5:10, 0:5] == 1).all() and lab.data.sum() == 125
    lab.undo()                                     # one undo step restores the two slices
    np.testing.assert_array_equal(lab.data, labels_data)
    lab.redo()
    qtbot.waitUntil(lambda: w.table.rowCount() == 1 and w.table.item(0, 2).text() == "0.25", timeout=WAIT_MS)
    assert w.table.item(0, 1).text() == "liver"


def _args(tmp_path, folder):
    parser = argparse.ArgumentParser()
    review_cli.add_parser(parser.add_subparsers(dest="command"), [])
    return parser.parse_args(["review", str(folder), "--reviewer", "dr_cli"])


def test_cli_review_says_how_to_install_napari(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "napari", None)              # as if napari were not installed
    with pytest.raises(MedsegError) as err:
        review_cli.run(_args(tmp_path, tmp_path))
    assert str(err.value) == ("napari is not installed; install the plugin: pip install -e napari_plugin[testing] "
                              "(or napari[pyqt6])")


def test_cli_review_opens_the_widget_and_saves_on_close(tmp_path, monkeypatch, qapp):
    with pytest.raises(InputError, match="manifest.csv"):
        review_cli.run(_args(tmp_path, tmp_path))
    root = review_folder(tmp_path / "r", "nnunet", n=2)
    seen = {}

    def fake_run(**_kw):                     # napari.run(): the user opens a case, paints, quits at once
        viewer = napari.current_viewer()
        docks = viewer.window.dock_widgets
        w = docks["medseg review"]
        seen.update(docks=sorted(docks), cases=w.order(), reviewer=w.reviewer())
        w.next_case()
        deadline = time.monotonic() + WAIT_MS / 1000
        while w.current != "case_000" and time.monotonic() < deadline:
            qapp.processEvents()
        w.labels_layer.paint((1, 1, 1), 2)   # within the autosave delay: closing must save it
        seen["edited"] = np.array(w.labels_layer.data)
        viewer.close()

    monkeypatch.setattr(napari, "run", fake_run)
    assert review_cli.run(_args(tmp_path, root)) == 0
    assert seen["docks"] == ["correction tools", "medseg review"]
    assert seen["cases"] == ["case_000", "case_001"] and seen["reviewer"] == "dr_cli"
    assert _file_equals(root / "review" / "corrected" / "case_000.nii.gz", seen["edited"])


def test_manifest_widgets_open_from_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, review = viewer.window.add_plugin_dock_widget("napari-medseg", "Review masks")
    _dock, tools = viewer.window.add_plugin_dock_widget("napari-medseg", "Correction tools")
    assert isinstance(review, ReviewWidget) and isinstance(tools, CorrectionWidget)
    viewer.add_labels(np.zeros((4, 4, 4), np.uint8), name="m")    # napari passes a proxy of the viewer
    assert tools.labels_box.currentText() == "m"
    review.close_session()
