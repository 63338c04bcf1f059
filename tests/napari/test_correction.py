"""Correction helpers on hand-made cases (no Qt): windows, shape-based interpolation,
island removal by ml, per-class volumes."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.errors import MedsegError
from napari_medseg.correction import (
    WINDOW_PRESETS,
    class_volumes_ml,
    data_axis_for_world_axis,
    fill_between_slices,
    interpolate_slices,
    keep_largest_component,
    preset_limits,
    remove_islands,
    window_limits,
)
from tests.helpers import random_affine


def test_window_presets():
    assert WINDOW_PRESETS == {"soft tissue": (400, 40), "lung": (1500, -600), "bone": (1800, 400),
                              "liver": (150, 30), "brain": (80, 40)}
    assert preset_limits("soft tissue") == (-160, 240)
    assert preset_limits("lung") == (-1350, 150)
    assert preset_limits("bone") == (-500, 1300)
    assert preset_limits("liver") == (-45, 105)
    assert preset_limits("brain") == (0, 80)
    assert window_limits(10, 5) == (0, 10)
    with pytest.raises(MedsegError, match="unknown window preset"):
        preset_limits("abdomen")


def _disc(shape2d, centre, radius, spacing=(1.0, 1.0)):
    yy, xx = np.indices(shape2d).astype(float)
    return np.hypot((yy - centre[0]) * spacing[0], (xx - centre[1]) * spacing[1]) <= radius


def test_interpolation_between_two_discs():
    # Axis 2 is the slice axis. Slice 0: disc radius 4; slice 4: disc radius 12, same centre.
    # Shape-based interpolation blends the signed distances: slice k is a disc of radius
    # 4 + 2k (hand-computed), up to the voxelisation of the distance map (1 voxel).
    shape = (40, 40, 5)
    labels = np.zeros(shape, np.uint8)
    labels[..., 0][_disc(shape[:2], (20, 20), 4)] = 3
    labels[..., 4][_disc(shape[:2], (20, 20), 12)] = 3
    labels[0, 0, 2] = 1            # another class on an in-between slice: kept
    before = labels.copy()
    out = interpolate_slices(labels, 3, axis=2, start=0, stop=4)
    np.testing.assert_array_equal(labels, before)      # input unchanged
    for k, r in ((1, 6), (2, 8), (3, 10)):
        area = int((out[..., k] == 3).sum())
        assert abs(area - np.pi * r * r) < 2 * np.pi * r, (k, area, np.pi * r * r)
        assert (out[..., k] == 3)[_disc(shape[:2], (20, 20), r - 1)].all()
        assert not (out[..., k] == 3)[~_disc(shape[:2], (20, 20), r + 1)].any()
    assert out[0, 0, 2] == 1
    np.testing.assert_array_equal(out[..., 0], labels[..., 0])
    np.testing.assert_array_equal(out[..., 4], labels[..., 4])


def test_fill_between_slices_all_gaps_and_anisotropic_spacing():
    # Slice axis 0; in-plane spacing 0.5 x 2 mm: a disc in mm is an ellipse in voxels.
    shape = (7, 41, 11)
    labels = np.zeros(shape, np.uint8)
    for k in (0, 3, 6):
        labels[k][_disc(shape[1:], (20, 5), 6.0, spacing=(0.5, 2.0))] = 1
    out = fill_between_slices(labels, 1, axis=0, spacing=(3.0, 0.5, 2.0))
    for k in range(7):
        np.testing.assert_array_equal(out[k] == 1, labels[0] == 1)   # same ellipse on every slice
    with pytest.raises(MedsegError, match="at least two slices"):
        fill_between_slices(labels, 2, axis=0)


def test_remove_islands_uses_ml_not_voxels():
    labels = np.zeros((30, 30, 10), np.uint8)
    labels[2:12, 2:12, 2:7] = 1            # 500 voxels
    labels[20:22, 20:22, 2:4] = 1          # island of 8 voxels
    labels[25:27, 2:4, 5:6] = 2            # class 2: 4 voxels
    # at 1 x 1 x 2 mm a voxel is 0.002 ml: the island is 0.016 ml, the block 1.0 ml
    out = remove_islands(labels, (1.0, 1.0, 2.0), min_ml=0.02)
    assert (out == 1).sum() == 500 and (out == 2).sum() == 0
    # with 3 mm voxels the same island is 0.216 ml: kept at the same threshold
    out = remove_islands(labels, (3.0, 3.0, 3.0), min_ml=0.02)
    np.testing.assert_array_equal(out, labels)
    # one class only
    out = remove_islands(labels, (1.0, 1.0, 2.0), min_ml=0.02, label=2)
    assert (out == 1).sum() == 508 and (out == 2).sum() == 0


def test_keep_largest_component_per_class():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[1:6, 1:6, 1:6] = 1
    labels[10:12, 10:12, 10:12] = 1
    labels[15:17, 1:3, 1:3] = 2
    labels[15, 15, 15] = 2
    out = keep_largest_component(labels)
    assert (out == 1).sum() == 125 and (out == 2).sum() == 8


def test_class_volumes_ml():
    labels = np.zeros((10, 10, 10), np.uint16)
    labels[:2] = 1
    labels[5, 5, 5] = 7
    vols = class_volumes_ml(labels, (0.5, 0.5, 4.0))
    assert vols == pytest.approx({1: 200 * 1.0 / 1000, 7: 1.0 / 1000})


def test_slice_axis_follows_the_affine():
    # data axis 0 -> world z (5 mm), axis 1 -> world x, axis 2 -> world -y, tilted by up to 10 degrees
    tilt = random_affine(np.random.default_rng(3), flips=[1, 1, 1], spacing=[1, 1, 1], max_deg=10)[:3, :3]
    aff = np.eye(4)
    aff[:3, :3] = tilt @ np.array([[0, 0.8, 0], [0, 0, -0.8], [5.0, 0, 0]])
    assert [data_axis_for_world_axis(aff, w) for w in range(3)] == [1, 2, 0]
    assert data_axis_for_world_axis(np.eye(4), 2) == 2
