"""Editing rules and classes by name as pure functions (no Qt, no napari), on hand-made label
maps whose expected results are written out voxel block by voxel block."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import MedsegError
from napari_medseg.correction import (
    EditRules,
    add_class,
    constrain_edit,
    editable_mask,
    fill_between_slices,
    next_label_value,
)

LIVER, TUMOUR, KIDNEY = 1, 2, 3


def _organ_case():
    """A 'liver' block with a bite of background out of it and a 'kidney' block overlapping the
    tumour's path; the tumour drawn as the same 4x4 square on slices k=2 and k=7."""
    labels = np.zeros((20, 20, 10), np.uint8)
    labels[2:18, 2:18, :] = LIVER
    labels[5:7, 5:9, 4] = 0            # slice 4: the liver does not cover the square's first two rows
    labels[7:12, 7:12, 5] = KIDNEY     # slice 5: a kidney block over the square's corner (7:9, 7:9)
    labels[5:9, 5:9, 2] = TUMOUR
    labels[5:9, 5:9, 7] = TUMOUR
    return labels


def test_fill_between_slices_inside_the_liver_changes_exactly_the_liver_voxels_of_the_square():
    labels = _organ_case()
    before = labels.copy()
    out = fill_between_slices(labels, TUMOUR, axis=2, rules=EditRules("inside", LIVER, overwrite=False))
    np.testing.assert_array_equal(labels, before)                      # input unchanged
    expected = before.copy()
    # Two identical squares interpolate to the same square on slices 3..6 (equal distance maps);
    # inside the liver only: slice 4 loses the bitten rows 5:7, slice 5 the kidney corner 7:9 x 7:9.
    expected[5:9, 5:9, 3] = TUMOUR
    expected[7:9, 5:9, 4] = TUMOUR
    expected[5:9, 5:9, 5] = TUMOUR
    expected[7:9, 7:9, 5] = KIDNEY
    expected[5:9, 5:9, 6] = TUMOUR
    np.testing.assert_array_equal(out, expected)
    assert int((out != before).sum()) == 16 + 8 + 12 + 16               # and no other voxel changed


def test_fill_between_slices_inside_another_class_was_a_no_op_without_rules_and_keeps_old_behaviour():
    labels = _organ_case()
    # the old default (other classes kept, everywhere) cannot write into the liver: only the bite
    out = fill_between_slices(labels, TUMOUR, axis=2)
    changed = np.argwhere(out != labels)
    assert {tuple(p) for p in changed} == {(i, j, 4) for i in (5, 6) for j in range(5, 9)}
    # overwrite on: the whole square on every slice, the kidney corner included
    out = fill_between_slices(labels, TUMOUR, axis=2, overwrite_other=True)
    assert (out[5:9, 5:9, 2:8] == TUMOUR).all() and int((out != labels).sum()) == 4 * 16


def test_fill_between_slices_outside_all_classes_and_intensity_limited():
    labels = _organ_case()
    out = fill_between_slices(labels, TUMOUR, axis=2, rules=EditRules("outside"))
    expected = labels.copy()
    expected[5:7, 5:9, 4] = TUMOUR                                      # only the background bite
    np.testing.assert_array_equal(out, expected)

    image = np.full(labels.shape, 60.0)
    image[:, 5, :] = 300.0                                              # column j=5: bone, out of range
    rules = EditRules("inside", LIVER, overwrite=False, intensity=(-45.0, 105.0))
    out = fill_between_slices(labels, TUMOUR, axis=2, rules=rules, image=image)
    ref = fill_between_slices(labels, TUMOUR, axis=2, rules=EditRules("inside", LIVER, overwrite=False))
    expected = ref.copy()
    expected[:, 5, 3:7] = labels[:, 5, 3:7]                             # nothing changes where j = 5
    np.testing.assert_array_equal(out, expected)
    assert int((out != labels).sum()) == int((ref != labels).sum()) - (4 + 2 + 4 + 4)


def test_overwrite_off_keeps_other_classes_and_erasing_touches_only_the_class():
    before = np.zeros((6, 6, 1), np.uint8)
    before[0:3, :, 0] = LIVER
    before[3:4, :, 0] = KIDNEY
    after = np.full_like(before, TUMOUR)                                # a brush over everything
    kept = constrain_edit(before, after, TUMOUR, EditRules(overwrite=False))
    expected = before.copy()
    expected[before == 0] = TUMOUR
    np.testing.assert_array_equal(kept, expected)
    np.testing.assert_array_equal(constrain_edit(before, after, TUMOUR, EditRules()), after)   # defaults: free
    # inside the liver, overwrite off: the liver's voxels are the editable area, the kidney is kept
    inside = constrain_edit(before, after, TUMOUR, EditRules("inside", LIVER, overwrite=False))
    expected = before.copy()
    expected[0:3] = TUMOUR
    np.testing.assert_array_equal(inside, expected)
    # erasing the tumour with overwrite off erases only tumour voxels
    painted = expected.copy()
    erased = constrain_edit(painted, np.zeros_like(painted), TUMOUR, EditRules(overwrite=False))
    expected_erase = painted.copy()
    expected_erase[painted == TUMOUR] = 0
    np.testing.assert_array_equal(erased, expected_erase)
    assert (erased == KIDNEY).sum() == 6


def test_intensity_range_limits_the_edit_inclusively():
    before = np.zeros((5, 1, 1), np.uint8)
    after = np.full_like(before, TUMOUR)
    image = np.array([-100.0, -45.0, 30.0, 105.0, 106.0]).reshape(5, 1, 1)
    out = constrain_edit(before, after, TUMOUR, EditRules(intensity=(-45, 105)), image)
    assert out.ravel().tolist() == [0, TUMOUR, TUMOUR, TUMOUR, 0]
    mask = editable_mask(before, TUMOUR, EditRules(intensity=(-45, 105)), image)
    assert mask.ravel().tolist() == [False, True, True, True, False]
    with pytest.raises(MedsegError, match="needs the image"):
        constrain_edit(before, after, TUMOUR, EditRules(intensity=(0, 1)))
    with pytest.raises(MedsegError, match="labels' grid"):
        constrain_edit(before, after, TUMOUR, EditRules(intensity=(0, 1)), np.zeros((4, 1, 1)))
    with pytest.raises(MedsegError, match="empty"):
        EditRules(intensity=(5, 1))
    with pytest.raises(MedsegError, match="needs a class"):
        EditRules("inside")
    with pytest.raises(MedsegError, match="unknown editable area"):
        EditRules("near")


def test_rules_describe_themselves():
    assert EditRules().free and not EditRules(overwrite=False).free
    assert EditRules("inside", 1, False, (-45, 105)).describe({1: "liver"}) == \
        "inside liver, other classes kept, intensity -45 to 105"
    assert EditRules("outside").describe() == "outside all classes, other classes overwritten"


def test_add_class_takes_the_next_free_value_and_keeps_known_names():
    classes = {0: "background", 1: "liver", 2: "tumour"}
    value, table = add_class(classes, "  cyst ", values_in_use=[0, 1, 2, 7])
    assert value == 8 and table == {0: "background", 1: "liver", 2: "tumour", 8: "cyst"}
    assert classes == {0: "background", 1: "liver", 2: "tumour"}                   # input unchanged
    assert add_class(table, "liver") == (1, table)                                  # a known name keeps its value
    assert add_class({}, "lesion") == (1, {1: "lesion"})
    assert next_label_value([]) == 1 and next_label_value([3, 1]) == 4
    for bad in ("", "   ", "background"):
        with pytest.raises(MedsegError):
            add_class(classes, bad)


def test_review_export_declares_classes_added_by_name(tmp_path):
    import json

    from medseg.io import LabelTable, write_labels
    from medseg.review import ReviewSession
    from tests.napari.factory import review_folder

    root = review_folder(tmp_path / "r", "manifest", n=1, dataset_json=False)
    write_labels(root, LabelTable({"background": 0, "liver": 1, "tumour": 2}, source="runs/demo"))
    s = ReviewSession(root, reviewer="dr_a")
    corr = s.load("case_000").labels
    corr[2:5, 2:5, 2:4] = 5                       # named in review: cyst
    corr[8:10, 8:10, 5:7] = 7                     # painted, never named
    s.save_correction("case_000", corr)
    s.accept("case_000")
    # what the Correction tools write when a reviewer adds a class (plus one never painted: not declared)
    write_labels(root / "review", LabelTable({"background": 0, "cyst": 5, "liver": 9},
                                             {"cyst": (10, 20, 30)}, "medseg review"))
    result = s.export_nnunet(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1, "tumour": 2, "cyst": 5, "class_7": 7}
    assert meta["medseg_added_classes"] == {"5": "cyst", "7": "class_7"}
    assert json.loads((tmp_path / "out" / "labels.json").read_text())["colors"]["cyst"] == [10, 20, 30]
    text = result.summary()
    assert "classes added in review: 5 = cyst" in text and "declared as 7 = class_7 -- rename" in text
