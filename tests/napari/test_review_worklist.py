"""The review worklist in a real napari viewer (Xvfb): columns that fit a narrow dock (long case
ids elided, the full id as tooltip), cases that cannot be reviewed as greyed rows with the
reason, the time spent written with each autosave, and the public entry point
``napari_medseg.open_review``. References: the folder written here, state.json read with json,
the masks read with nibabel, Qt's own geometry of the table."""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest
from qtpy.QtCore import Qt

from medseg.errors import InputError

from tests.dataset_factory import make_case
from tests.napari.factory import review_folder, save_nifti

WAIT_MS = 15000
LONG_ID = "1.2.826.0.1.3680043.8.498.10928374655647382910293847561029384756.20261202.1"


def _long_id_folder(root):
    """images/ + masks/ with one case named like a DICOM UID, one plain case, and a mask without
    an image (a problem case)."""
    rng = np.random.default_rng(3)
    for case in (LONG_ID, "case_b"):
        image, label, aff = make_case(rng, (20, 18, 10))
        save_nifti(root / "images" / f"{case}_0000.nii.gz", image, aff)
        save_nifti(root / "masks" / f"{case}.nii.gz", label, aff)
    save_nifti(root / "masks" / "orphan.nii.gz", label, aff)
    return root


def test_columns_fit_a_narrow_dock_with_long_case_ids(tmp_path, make_napari_viewer, qtbot):
    from napari_medseg.review.widget import COLUMNS, ReviewWidget

    viewer = make_napari_viewer()
    w = ReviewWidget(viewer, folder=_long_id_folder(tmp_path / "r"), reviewer="dr_w")
    qtbot.addWidget(w)
    w.setFixedWidth(460)
    w.show()
    qtbot.waitExposed(w)
    table, header = w.table, w.table.horizontalHeader()
    def width():
        return table.viewport().width() + 1                          # + 1: Qt's rounding of stretched sections

    qtbot.waitUntil(lambda: sum(header.sectionSize(c) for c in range(len(COLUMNS))) <= width(), timeout=WAIT_MS)
    width = width()
    for c in range(len(COLUMNS)):                                    # every column on screen
        assert header.sectionViewportPosition(c) + header.sectionSize(c) <= width, COLUMNS[c]
        assert header.sectionSize(c) > 0
    row = w._row_of(LONG_ID)
    item = table.item(row, 0)
    assert item.text() == LONG_ID and item.toolTip().splitlines()[0] == LONG_ID
    full_width = table.fontMetrics().horizontalAdvance(LONG_ID)
    assert header.sectionSize(0) < full_width                        # so it is shown elided
    assert table.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert LONG_ID in w.order()
    w.close_session()


def test_problem_cases_are_greyed_rows_with_the_reason(tmp_path, make_napari_viewer, qtbot):
    from napari_medseg.review.widget import COLUMNS, ReviewWidget

    viewer = make_napari_viewer()
    root = review_folder(tmp_path / "p", "manifest", n=2, uncertainty=[0.4, 0.2])  # + a failed prediction
    w = ReviewWidget(viewer, folder=root, reviewer="dr_w")
    rows = w.problem_rows()
    assert rows == {"missing_scan": ("problem", "prediction failed: unreadable")}
    r = next(r for r in range(w.table.rowCount()) if w.table.item(r, 0).text() == "missing_scan")
    for c in range(len(COLUMNS)):
        item = w.table.item(r, c)
        assert not item.flags() & Qt.ItemFlag.ItemIsEnabled          # greyed out by Qt, not selectable
        assert not item.flags() & Qt.ItemFlag.ItemIsSelectable
        assert item.foreground().color().getRgb()[:3] == (128, 128, 128)
        assert "prediction failed: unreadable" in item.toolTip()
    assert w.order() == ["case_000", "case_001"]                     # navigation skips it
    w.next_case()
    qtbot.waitUntil(lambda: w.current == "case_000", timeout=WAIT_MS)
    w.next_case()
    qtbot.waitUntil(lambda: w.current == "case_001", timeout=WAIT_MS)
    w.next_case()
    assert w.message.text() == "last case of the list" and w.current == "case_001"
    r = next(r for r in range(w.table.rowCount()) if w.table.item(r, 0).text() == "missing_scan")
    w._double_clicked(r, 0)                                          # a double click on it does nothing
    assert w._requested is None and w.current == "case_001"

    w2 = ReviewWidget(viewer, folder=_long_id_folder(tmp_path / "r"), reviewer="dr_w")
    assert w2.problem_rows() == {"orphan": ("problem", "mask orphan.nii.gz has no image")}
    w.close_session()
    w2.close_session()


def test_time_spent_is_saved_with_each_autosave(tmp_path, make_napari_viewer, qtbot):
    """No close, no status change (as if napari crashed after the autosave): state.json already
    holds the minutes spent."""
    from napari_medseg import open_review

    root = review_folder(tmp_path / "r", "images/masks", n=2)
    viewer = make_napari_viewer()
    w = open_review(root, viewer=viewer, reviewer="dr_t")
    w.open_case("case_001")
    w._shown_at = time.monotonic() - 90                              # the reviewer looked for 90 s
    lab = w.labels_layer
    lab.brush_size = 1
    pred = np.asarray(nib.load(str(root / "masks" / "case_001.nii.gz")).dataobj)
    lab.paint(tuple(int(v) for v in np.argwhere(pred == 0)[0]), 1)
    state_path = root / "review" / "state.json"

    def seconds():
        try:
            return json.loads(state_path.read_text())["cases"]["case_001"]["seconds"]
        except (OSError, ValueError, KeyError):
            return 0.0

    qtbot.waitUntil(lambda: (root / "review" / "corrected" / "case_001.nii.gz").is_file() and seconds() >= 90,
                    timeout=WAIT_MS)
    assert seconds() < 90 + 60
    w.close_session()


def test_open_review_is_the_public_entry_point(tmp_path, make_napari_viewer):
    import napari_medseg
    from napari_medseg.review.widget import ReviewWidget
    from napari_medseg.view import WORLD_AXIS_LABELS

    root = review_folder(tmp_path / "r", "nnunet", n=2)
    viewer = make_napari_viewer()
    w = napari_medseg.open_review(root, viewer=viewer, reviewer="dr_s")
    assert isinstance(w, ReviewWidget) and "open_review" in napari_medseg.__all__
    assert {"medseg review", "correction tools"} <= set(viewer.window.dock_widgets)
    assert w.reviewer() == "dr_s" and w.order() == ["case_000", "case_001"]
    layer = w.open_case("case_001")
    assert layer is w.labels_layer and w.current == "case_001"
    np.testing.assert_array_equal(layer.data, np.asarray(nib.load(str(root / "labelsTr" / "case_001.nii.gz")).dataobj))
    assert tuple(viewer.dims.axis_labels) == WORLD_AXIS_LABELS and viewer.dims.not_displayed == (2,)
    assert w.session.state("case_001").status == "in progress"
    with pytest.raises(InputError, match="no case 'nope'"):
        w.open_case("nope")
    assert w.current == "case_001"                                   # still on the last good case
    w.close_session()
