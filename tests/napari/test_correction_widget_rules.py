"""The Correction tools' editing rules and classes by name in a real napari viewer (Xvfb).

References: a twin Labels layer painted by napari with no rules (what the stroke alone does),
hand-written label blocks, the image's intensities, the LabelTable default colours, and the
review export's dataset.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.io import LabelTable, read_labels, write_labels
from medseg.review import ReviewSession
from medseg.volume import Volume
from napari_medseg.correction_widget import CorrectionWidget, history_change
from napari_medseg.layers import labels_layer_data
from tests.napari.factory import review_folder

LIVER, TUMOUR, KIDNEY = 1, 2, 3
SHAPE = (12, 16, 16)


def _labels():
    a = np.zeros(SHAPE, np.uint8)
    a[:, 2:10, 2:14] = LIVER
    a[:, 10:12, 4:12] = KIDNEY
    return a


def _setup(make_napari_viewer, image=None):
    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros(SHAPE, np.float32) if image is None else image, name="ct")
    data = _labels()
    lab = viewer.add_labels(data.copy(), name="mask",
                            metadata={"classes": {0: "background", LIVER: "liver", TUMOUR: "tumour", KIDNEY: "kidney"}})
    twin = viewer.add_labels(data.copy(), name="twin")       # not chosen in the widget: no rules
    w = CorrectionWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.image_box.setCurrentText("ct")
    w.labels_box.setCurrentText("mask")
    w.update_volumes()
    for layer in (lab, twin):
        layer.brush_size = 9
    return viewer, img, lab, twin, w


def _stroke(layer, label):
    """One brush stroke as napari's mouse binding makes it: several dabs in one undo step."""
    with layer.block_history():
        for coord in ((6, 5, 5), (6, 8, 8), (6, 11, 10)):
            layer.paint(coord, label, refresh=False)


def test_brush_with_overwrite_off_keeps_other_classes_in_one_undo_step(make_napari_viewer):
    _viewer, _img, lab, twin, w = _setup(make_napari_viewer)
    rules = w.set_rules(overwrite=False)
    assert not rules.overwrite and rules.area == "everywhere"
    before = lab.data.copy()
    _stroke(twin, TUMOUR)
    _stroke(lab, TUMOUR)
    free = twin.data != before
    assert (free & (before == LIVER)).sum() > 20 and (free & (before == KIDNEY)).sum() > 5   # the stroke crosses both
    expected = before.copy()
    expected[free & (before == 0)] = TUMOUR            # only background turns tumour; liver and kidney stay
    np.testing.assert_array_equal(lab.data, expected)
    assert "kept their class" in w.message.text()
    lab.undo()                                           # one undo takes back the whole ruled stroke
    np.testing.assert_array_equal(lab.data, before)
    lab.redo()
    np.testing.assert_array_equal(lab.data, expected)


def test_brush_inside_the_liver_and_the_intensity_range(make_napari_viewer):
    image = np.zeros(SHAPE, np.float32) + 60.0
    image[:, :, 9:] = 300.0                              # bone on the right: out of the liver window
    _viewer, _img, lab, twin, w = _setup(make_napari_viewer, image)
    w.apply_window("liver")                              # W150/L30: -45 to 105
    w.range_from_window()
    rules = w.set_rules("inside", LIVER, overwrite=False, intensity=(-45.0, 105.0))
    assert rules.describe({1: "liver"}) == "inside liver, other classes kept, intensity -45 to 105"
    before = lab.data.copy()
    _stroke(twin, TUMOUR)
    _stroke(lab, TUMOUR)
    free = twin.data != before
    assert (free & (image > 105)).sum() > 5 and (free & (before != LIVER)).sum() > 5
    expected = before.copy()
    expected[free & (before == LIVER) & (image <= 105)] = TUMOUR
    np.testing.assert_array_equal(lab.data, expected)
    assert (lab.data[:, :, 9:] == before[:, :, 9:]).all()   # nothing painted on bone


def test_fill_between_slices_inside_the_liver_in_the_viewer(make_napari_viewer):
    viewer, _img, lab, _twin, w = _setup(make_napari_viewer)
    data = _labels()
    data[3:7, 4:8, 2] = TUMOUR
    data[3:7, 4:8, 8] = TUMOUR
    data[3:5, 4:8, 5] = 0                                # a gap in the liver on slice 5
    data[3:7, 7, 6] = KIDNEY                             # a kidney column on slice 6
    lab.data = data.copy()
    viewer.dims.order = (2, 0, 1)                        # the slider steps through data axis k
    w.select_class(TUMOUR)
    assert lab.selected_label == TUMOUR and w.label_spin.value() == TUMOUR
    w.set_rules("inside", LIVER, overwrite=False)
    msg = w.fill_between()
    expected = data.copy()
    for k in (3, 4, 6, 7):
        expected[3:7, 4:8, k] = TUMOUR
    expected[3:5, 4:8, 5] = 0                            # not liver: kept
    expected[5:7, 4:8, 5] = TUMOUR
    expected[3:7, 7, 6] = KIDNEY                         # another class: kept
    np.testing.assert_array_equal(lab.data, expected)
    n = 16 * 3 + 12 + 8
    assert f"({n} voxels changed; inside liver, other classes kept)" in msg
    lab.undo()
    np.testing.assert_array_equal(lab.data, data)


def test_history_change_rebuilds_before_and_after(make_napari_viewer):
    viewer = make_napari_viewer()
    lab = viewer.add_labels(np.zeros((5, 6, 7), np.uint8))
    items = []
    lab.events.paint.connect(lambda e: items.append(e.value))
    lab.data_setitem((np.array([1, 2]), np.array([3, 3]), np.array([0, 6])), 4)
    lab.paint((2, 3, 3), 5)
    bbox, before, after = history_change(lab.data, items[-1])
    region = np.zeros((5, 6, 7), np.uint8)
    region[1, 3, 0] = region[2, 3, 6] = 4
    np.testing.assert_array_equal(before, region[bbox])
    np.testing.assert_array_equal(after, np.asarray(lab.data)[bbox])
    assert (after == 5).sum() > 1 and (before == 5).sum() == 0


def test_classes_by_name_pick_and_add(make_napari_viewer):
    _viewer, _img, lab, _twin, w = _setup(make_napari_viewer)
    twin_rgb = np.asarray(lab.colormap.map(LIVER))[:3].copy()
    names = [w.class_box.itemText(i) for i in range(w.class_box.count())]
    assert names == ["liver  (1)", "tumour  (2)", "kidney  (3)"]
    w.class_box.setCurrentIndex(2)
    w.class_box.activated.emit(2)
    assert lab.selected_label == KIDNEY
    w.new_class_edit.setText("cyst")
    w._run(w.add_class)
    assert w.message.text().startswith("added class cyst = 4")
    assert lab.selected_label == 4 and lab.metadata["classes"][4] == "cyst"
    rgb = np.array(LabelTable({"cyst": 4}).colors["cyst"]) / 255.0
    np.testing.assert_allclose(lab.colormap.map(4)[:3], rgb, atol=1e-3)
    np.testing.assert_allclose(lab.colormap.map(LIVER)[:3], twin_rgb, atol=1e-6)   # old classes keep their colour
    assert dict(zip(lab.features["index"], lab.features["name"]))[4] == "cyst"
    assert w.class_box.itemText(w.class_box.currentIndex()) == "cyst  (4)"
    assert w.area_box.findData("inside:4") >= 0
    assert w.add_class("liver").startswith("class liver = 1")          # a known name: no new class
    assert max(lab.metadata["classes"]) == 4


def test_added_class_is_recorded_for_the_review_export(tmp_path, make_napari_viewer):
    root = review_folder(tmp_path / "r", "manifest", n=1, dataset_json=False)
    write_labels(root, LabelTable({"background": 0, "liver": 1, "tumour": 2}))
    session = ReviewSession(root, reviewer="dr_a")
    loaded = session.load("case_000")
    session.open("case_000")                               # writes review/state.json
    viewer = make_napari_viewer()
    data, kw, _ = labels_layer_data(Volume(loaded.labels, loaded.prediction.affine), loaded.case.mask,
                                    name="case_000 mask", names=loaded.classes, image_path=loaded.case.image)
    kw["metadata"]["review_case"] = "case_000"             # as the review widget marks its layer
    lab = viewer.add_labels(data, **kw)
    w = CorrectionWidget(viewer)
    w.labels_box.setCurrentText("case_000 mask")
    msg = w.add_class("haemorrhage")
    assert "haemorrhage = 3" in msg and "review/labels.json" in msg
    table = read_labels(root / "review" / "labels.json")
    assert table.labels == {"background": 0, "haemorrhage": 3}
    lab.paint((3, 3, 3), 3)
    session.save_correction("case_000", np.asarray(lab.data))
    session.accept("case_000")
    result = session.export_nnunet(tmp_path / "Dataset903_Named")
    meta = json.loads((tmp_path / "Dataset903_Named" / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1, "tumour": 2, "haemorrhage": 3}
    assert meta["medseg_added_classes"] == {"3": "haemorrhage"}
    assert result.added == {3: "haemorrhage"} and "classes added in review: 3 = haemorrhage" in result.summary()
    assert "rename" not in result.summary()


@pytest.mark.parametrize("erase", [False, True])
def test_default_rules_leave_napari_painting_alone(make_napari_viewer, erase):
    _viewer, _img, lab, twin, w = _setup(make_napari_viewer)
    assert w.rules().free
    if erase:
        lab.selected_label = twin.selected_label = LIVER
    label = 0 if erase else TUMOUR
    _stroke(twin, label)
    _stroke(lab, label)
    np.testing.assert_array_equal(lab.data, twin.data)
    assert (lab.data != _labels()).sum() > 0
