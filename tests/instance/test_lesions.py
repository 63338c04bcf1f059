"""The lesion table on constructed instance maps: hand-computed volumes, slices, diameters,
centroids, on anisotropic, flipped, permuted and oblique grids."""

import math

import numpy as np
import pytest

from medseg.instance.lesions import COLUMNS, axial_axis, lesion_rows
from medseg.volume import Volume


def _rot_z(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    r = np.eye(4)
    r[:2, :2] = [[c, -s], [s, c]]
    return r


def _lps_grid():
    aff = np.diag([-0.8, -0.6, 2.5, 1.0])   # LPS storage: i -> left, j -> posterior, k -> superior
    aff[:3, 3] = (10.0, 20.0, -30.0)
    return aff


def _map():
    ids = np.zeros((12, 10, 12), np.uint16)
    ids[3:8, 2:5, 4:6] = 1                                        # 5 x 3 pixels on slices 4 and 5
    for i, j in [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0)]:         # an L on slice 9
        ids[i, j, 9] = 2
    return ids


def test_rows_match_hand_computed_values():
    rows = lesion_rows(Volume(_map(), _lps_grid()), {1: "tumour", 2: "cyst"}, {1: 0.9, 2: 0.55})
    assert list(rows[0]) == COLUMNS and [r["id"] for r in rows] == [1, 2]
    a, b = rows
    assert a["class"] == "tumour" and a["score"] == 0.9 and a["voxels"] == 30
    assert a["volume_ml"] == pytest.approx(30 * 0.8 * 0.6 * 2.5 / 1000)
    assert (a["first_slice"], a["last_slice"]) == (4, 5)
    # outer corners of a 5 x 3 pixel rectangle of 0.8 x 0.6 mm pixels
    assert a["longest_axial_diameter_mm"] == pytest.approx(math.hypot(5 * 0.8, 3 * 0.6), abs=0.01)
    # centroid: mean index (5, 3, 4.5) through the affine
    assert (a["centroid_r_mm"], a["centroid_a_mm"], a["centroid_s_mm"]) == pytest.approx((6.0, 18.2, -18.75))
    # the L: corners (-0.5, 2.5) and (2.5, -0.5) are 3 x 3 index steps apart
    assert b["longest_axial_diameter_mm"] == pytest.approx(math.hypot(3 * 0.8, 3 * 0.6), abs=0.01)
    assert (b["first_slice"], b["last_slice"], b["axial_diameter_slice"]) == (9, 9, 9) and b["class"] == "cyst"


def test_oblique_grid_measures_the_same_millimetres():
    rows = lesion_rows(Volume(_map(), _rot_z(12) @ _lps_grid()), {1: "t", 2: "t"})
    assert rows[0]["longest_axial_diameter_mm"] == pytest.approx(math.hypot(4.0, 1.8), abs=0.01)
    assert rows[0]["volume_ml"] == pytest.approx(0.036)
    assert math.isnan(rows[0]["score"])


def test_slice_axis_is_the_stored_axis_closest_to_superior():
    # Stored with the slice axis first: i -> S (3 mm), j -> R, k -> A.
    perm = np.transpose(_map(), (2, 0, 1))
    aff = np.zeros((4, 4))
    aff[2, 0], aff[0, 1], aff[1, 2], aff[3, 3] = 3.0, 0.7, 0.7, 1.0
    assert axial_axis(aff) == 0
    rows = lesion_rows(Volume(perm, aff), {1: "t", 2: "t"})
    assert (rows[0]["first_slice"], rows[0]["last_slice"]) == (4, 5)
    assert rows[0]["longest_axial_diameter_mm"] == pytest.approx(math.hypot(5 * 0.7, 3 * 0.7), abs=0.01)


def test_no_objects_no_rows_and_gaps_in_ids():
    assert lesion_rows(Volume(np.zeros((4, 4, 4), np.uint16), np.eye(4)), {}) == []
    ids = np.zeros((4, 4, 4), np.uint16)
    ids[1, 1, 1] = 3
    rows = lesion_rows(Volume(ids, np.eye(4)), {3: "t"})
    assert [r["id"] for r in rows] == [3] and rows[0]["longest_axial_diameter_mm"] == pytest.approx(math.sqrt(2), abs=0.01)
