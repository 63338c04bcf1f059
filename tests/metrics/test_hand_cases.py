"""Metric values computed by hand on constructed masks (anisotropic grids, known offsets)."""

import math

import numpy as np
import pytest

from medseg.metrics import assd, dice, hausdorff95, iou, surface_dice, surface_distances, volume_ml
from tests.metrics.reference import box

SPACING = (0.7, 0.9, 2.5)


@pytest.mark.parametrize("method", ["edt", "kdtree"])
@pytest.mark.parametrize("gap", [0, 2, 5])
def test_two_boxes_stacked_along_k(gap, method):
    """Reference: a 10 x 8 x 3 voxel box at k = 0..2; prediction: the same box ``gap`` empty
    slices higher. Every surface voxel of one box is nearest to the facing face of the other,
    straight along k, so the distances are (gap+1), (gap+2), (gap+3) slices of 2.5 mm for the
    near face (80 voxels), the ring around the middle slice (32 voxels) and the far face (80).
    """
    shape = (14, 12, 3 + gap + 3 + 2)
    ref = box(shape, (2, 2, 0), (12, 10, 3))
    pred = box(shape, (2, 2, 3 + gap), (12, 10, 6 + gap))
    sz = SPACING[2]
    values = np.repeat([(gap + 1) * sz, (gap + 2) * sz, (gap + 3) * sz], [80, 32, 80])
    sd = surface_distances(pred, ref, SPACING, method=method)
    np.testing.assert_allclose(np.sort(sd.pred_to_ref), values)
    np.testing.assert_allclose(np.sort(sd.ref_to_pred), values)
    # 95th percentile (linear): index 0.95 * 191 = 181.45 lies in the top 80 values.
    assert hausdorff95(pred, ref, SPACING) == pytest.approx((gap + 3) * sz)
    assert assd(pred, ref, SPACING) == pytest.approx(((gap + 1) * 80 + (gap + 2) * 32 + (gap + 3) * 80) / 192 * sz)
    assert surface_dice(pred, ref, SPACING, tolerance_mm=(gap + 1) * sz) == pytest.approx(160 / 384)
    assert surface_dice(pred, ref, SPACING, tolerance_mm=(gap + 1) * sz - 0.01) == 0.0
    assert dice(pred, ref) == 0.0


def test_single_voxels_give_the_anisotropic_euclidean_distance():
    """Offsets along i, j, k are scaled by the spacing of i, j, k respectively."""
    ref = box((10, 10, 10), (1, 2, 3), (2, 3, 4))
    pred = box((10, 10, 10), (4, 7, 4), (5, 8, 5))
    d = math.sqrt((3 * 0.7) ** 2 + (5 * 0.9) ** 2 + (1 * 2.5) ** 2)
    assert hausdorff95(pred, ref, SPACING) == pytest.approx(d)
    assert assd(pred, ref, SPACING) == pytest.approx(d)


def test_assd_pools_all_surface_voxels_and_hd95_takes_the_larger_direction():
    """Reference: one voxel; prediction: 3 voxels along k starting on it (all are surface).
    d(P->R) = 0, 2.5, 5 mm and d(R->P) = 0: ASSD = 7.5 / 4 (not the mean of the two directed
    means, 1.25), HD95 = the 95th percentile of (0, 2.5, 5) = 4.75 (not 4.625 pooled)."""
    ref = box((5, 5, 6), (2, 2, 1), (3, 3, 2))
    pred = box((5, 5, 6), (2, 2, 1), (3, 3, 4))
    assert assd(pred, ref, SPACING) == pytest.approx(7.5 / 4)
    assert hausdorff95(pred, ref, SPACING) == pytest.approx(4.75)
    assert surface_dice(pred, ref, SPACING, tolerance_mm=2.5) == pytest.approx(3 / 4)
    assert hausdorff95(pred, ref, SPACING, percentile=100) == pytest.approx(5.0)


def test_identical_masks():
    m = box((12, 12, 12), (2, 3, 4), (9, 10, 8))
    assert dice(m, m) == iou(m, m) == surface_dice(m, m, SPACING) == 1.0
    assert hausdorff95(m, m, SPACING) == assd(m, m, SPACING) == 0.0


def test_masks_touching_the_array_border_have_surface_there():
    """Outside the array counts as background, so padding the arrays changes nothing."""
    ref = box((10, 10, 10), (0, 0, 0), (6, 10, 4))
    pred = box((10, 10, 10), (1, 0, 0), (8, 10, 6))
    a = surface_distances(pred, ref, SPACING)
    b = surface_distances(np.pad(pred, 3), np.pad(ref, 3), SPACING)
    np.testing.assert_allclose(np.sort(a.pred_to_ref), np.sort(b.pred_to_ref))
    np.testing.assert_allclose(np.sort(a.ref_to_pred), np.sort(b.ref_to_pred))


def test_overlap_and_volume_by_hand():
    ref = box((10, 10, 10), (0, 0, 0), (4, 5, 2))   # 40 voxels
    pred = box((10, 10, 10), (2, 0, 0), (6, 5, 2))  # 40 voxels, 20 shared
    assert dice(pred, ref) == pytest.approx(40 / 80)
    assert iou(pred, ref) == pytest.approx(20 / 60)
    assert volume_ml(ref, SPACING) == pytest.approx(40 * 0.7 * 0.9 * 2.5 / 1000)


def test_2d_masks_work_too():
    ref = box((20, 20), (5, 5), (10, 10))
    pred = box((20, 20), (5, 8), (10, 13))
    assert hausdorff95(pred, ref, (0.5, 2.0)) == pytest.approx(6.0)


def test_bad_arguments_are_refused():
    m = box((5, 5, 5), (1, 1, 1), (3, 3, 3))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(m, m, (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff95(m, m, None)
    with pytest.raises(ValueError, match="shapes differ"):
        dice(m, m[:4])
    with pytest.raises(ValueError, match="tolerance"):
        surface_dice(m, m, 1.0, tolerance_mm=-1)
