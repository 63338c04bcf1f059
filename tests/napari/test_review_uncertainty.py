"""The uncertainty map of `medseg predict --uncertainty` (``OUT/<case>_uncertainty.nii.gz``) in the
review: found next to each mask, shown as an overlay on the scan's geometry (toggle, colour map,
opacity), and the most uncertain axial slice one button away. References: maps written here with
nibabel, their affines, and slices chosen by hand."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.review import discover
from napari_medseg.view import most_uncertain_point
from tests.napari.factory import review_folder, save_nifti

WAIT_MS = 15000
HOT_SLICE = 7                                                        # along array axis k (z for these grids)


def _map(shape):
    """A map whose summed uncertainty peaks on slice k = HOT_SLICE: a faint whole slice at k = 3
    (sum 0.05 * 480 = 24) loses to a bright 8 x 8 block at k = 7 (sum 0.8 * 64 = 51.2)."""
    u = np.zeros(shape, np.float32)
    u[:, :, 3] = 0.05
    u[4:12, 6:14, HOT_SLICE] = 0.8
    return u


def _predict_folder(root):
    """A `medseg predict` output folder (manifest.csv + masks) where case_000 has an uncertainty map."""
    review_folder(root, "manifest", n=2, uncertainty=[0.3, 0.7])
    aff = nib.load(str(root / "case_000.nii.gz")).affine
    shape = nib.load(str(root / "case_000.nii.gz")).shape
    save_nifti(root / "case_000_uncertainty.nii.gz", _map(shape), aff)  # the name medseg predict writes
    return root, aff


def test_maps_are_found_next_to_the_masks(tmp_path):
    root, _aff = _predict_folder(tmp_path / "pred")
    wl = discover(root)
    found = {c.case: c.uncertainty_map for c in wl.cases}
    assert found == {"case_000": root / "case_000_uncertainty.nii.gz", "case_001": None}
    assert [c.case for c in wl.cases] == ["case_000", "case_001"]     # the map is no case of its own


def test_map_of_a_dicom_seg_output_is_found(tmp_path):
    """`medseg predict --format dicom-seg` writes OUT/<key>/seg.dcm and OUT/<key>_uncertainty.nii.gz."""
    from medseg.review.cases import uncertainty_map_path

    (tmp_path / "pat1").mkdir()
    (tmp_path / "pat1" / "seg.dcm").write_bytes(b"")
    (tmp_path / "pat1_uncertainty.nii.gz").write_bytes(b"")
    assert uncertainty_map_path(tmp_path / "pat1" / "seg.dcm") == tmp_path / "pat1_uncertainty.nii.gz"
    (tmp_path / "pat2.nii.gz").write_bytes(b"")
    assert uncertainty_map_path(tmp_path / "pat2.nii.gz") is None


def test_most_uncertain_point_on_an_oblique_free_permuted_grid():
    """Array axis 0 runs along z here (a scan stored sagittal-first): the slice is chosen along it."""
    aff = np.array([[0.0, 0.0, -2.0, 10.0], [0.0, 1.5, 0.0, -5.0], [3.0, 0.0, 0.0, 20.0], [0, 0, 0, 1]])
    u = np.zeros((10, 12, 14))
    u[2, :, :] = 0.01                                                # sum 1.68
    u[6, 3:5, 8:12] = 1.0                                            # sum 8: the slice i = 6
    xyz, k = most_uncertain_point(u, aff)
    assert k == 6
    np.testing.assert_allclose(xyz, (aff @ np.array([6, 3.5, 9.5, 1.0]))[:3])   # the block's centre on that slice
    assert most_uncertain_point(np.zeros((4, 4, 4)), aff) is None


@pytest.fixture
def review(tmp_path, make_napari_viewer):
    from napari_medseg import open_review

    root, aff = _predict_folder(tmp_path / "pred")
    viewer = make_napari_viewer()
    w = open_review(root, viewer=viewer, reviewer="dr_u")
    yield viewer, w, root, aff
    w.close_session()


def test_overlay_appears_on_the_scan_and_its_controls_work(review):
    import napari

    viewer, w, root, aff = review
    assert not w.uncertainty_box.isHidden()
    w.open_case("case_000")
    layer = w.uncertainty_layer
    assert isinstance(layer, napari.layers.Image) and layer in viewer.layers
    assert layer.name == "case_000 uncertainty"
    np.testing.assert_array_equal(layer.data, np.asarray(nib.load(str(root / "case_000_uncertainty.nii.gz")).dataobj))
    for v in [(0, 0, 0), (5, 7, HOT_SLICE), (23, 19, 11)]:           # placed in mm on the scan's grid
        np.testing.assert_allclose(layer.data_to_world(v), (aff @ np.array([*v, 1.0]))[:3], atol=1e-4)
        np.testing.assert_allclose(layer.data_to_world(v), w.image_layer.data_to_world(v), atol=1e-6)
    names = [lay.name for lay in viewer.layers]
    assert names.index("case_000 image") < names.index("case_000 uncertainty") < names.index("case_000 mask")
    assert layer.visible and layer.colormap.name == "inferno"

    w.uncertainty_check.setChecked(False)
    w.uncertainty_cmap.setCurrentText("viridis")
    w.uncertainty_opacity.setValue(25)
    assert not layer.visible and layer.colormap.name == "viridis" and layer.opacity == pytest.approx(0.25)

    w.open_case("case_001")                                          # no map: no overlay
    assert w.uncertainty_layer is None and not any(lay.name.endswith("uncertainty") for lay in viewer.layers)
    assert w.go_to_most_uncertain() is None and "no uncertainty map" in w.message.text()

    w.open_case("case_000")                                          # the overlay keeps the chosen look
    layer = w.uncertainty_layer
    assert not layer.visible and layer.colormap.name == "viridis" and layer.opacity == pytest.approx(0.25)


def test_jump_button_loads_the_case_and_shows_its_most_uncertain_slice(review, qtbot):
    from qtpy.QtCore import Qt

    viewer, w, _root, aff = review
    assert w.order() == ["case_001", "case_000"]                     # most uncertain (manifest score) first
    w.open_case("case_001")
    row = w._row_of("case_000")
    w.table.selectRow(row)                                           # the worklist row, not the open case
    qtbot.mouseClick(w.jump_button, Qt.MouseButton.LeftButton)
    expected_z = (aff @ np.array([0, 0, HOT_SLICE, 1.0]))[2]
    half = abs(aff[2, 2]) / 2
    qtbot.waitUntil(lambda: w.current == "case_000" and abs(viewer.dims.point[2] - expected_z) < half,
                    timeout=WAIT_MS)
    assert viewer.dims.not_displayed == (2,)                         # an axial slice
    k = w.image_layer.world_to_data(viewer.dims.point)[2]
    assert round(float(k)) == HOT_SLICE and "most uncertain axial slice" in w.message.text()

    viewer.dims.set_point(2, float(viewer.dims.range[2].start))      # elsewhere, then again on the open case
    xyz = w.go_to_most_uncertain()
    assert abs(xyz[2] - expected_z) < 1e-6 and abs(viewer.dims.point[2] - expected_z) < half
