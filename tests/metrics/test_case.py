"""evaluate_case: grids and resampling, label declarations, row layout."""

import json

import numpy as np
import pytest

from medseg import GeometryError, InputError, Volume
from medseg.metrics import METRIC_COLUMNS, evaluate_case, load_labels, resample_nearest
from tests.helpers import random_affine

REF_AFFINE = np.array([[0.8, 0, 0, -20.0], [0, 0.9, 0, 10.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])


def _labels(shape=(24, 20, 12)) -> np.ndarray:
    a = np.zeros(shape, np.uint8)
    a[4:12, 5:15, 2:8] = 1
    a[14:20, 3:9, 4:10] = 2
    return a


def test_row_layout():
    res = evaluate_case(_labels(), _labels(), spacing=(0.8, 0.9, 2.5), case="c7")
    assert [r["label"] for r in res.rows] == [1, 2]
    assert tuple(res.rows[0])[: len(METRIC_COLUMNS)] == METRIC_COLUMNS
    assert res.rows[0]["case"] == "c7" and res.rows[0]["dice"] == 1.0 and res.rows[0]["status"] == "ok"
    assert res.rows[0]["ref_ml"] == pytest.approx(8 * 10 * 6 * 0.8 * 0.9 * 2.5 / 1000)


def test_volumes_take_spacing_from_the_affine():
    ref = Volume(_labels(), REF_AFFINE)
    pred_arr = _labels()
    pred_arr[4:12, 5:15, 8] = 1  # one slice more: 2.5 mm
    rows = evaluate_case(Volume(pred_arr, REF_AFFINE), ref).rows
    assert rows[0]["hd95_mm"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(Volume(pred_arr, REF_AFFINE), ref, spacing=(1, 1, 1))


def test_different_grids_are_refused_unless_resampled():
    ref = Volume(_labels(), REF_AFFINE)
    # The same voxels stored with i and k reversed: a different grid, the same world.
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, ref.shape[0] - 1
    flip[2, 2], flip[2, 3] = -1, ref.shape[2] - 1
    pred = Volume(ref.array[::-1, :, ::-1].copy(), REF_AFFINE @ flip)
    with pytest.raises(GeometryError, match="--resample-pred"):
        evaluate_case(pred, ref)
    rows = evaluate_case(pred, ref, resample_pred=True).rows
    assert [r["dice"] for r in rows] == [1.0, 1.0]


def test_resample_nearest_from_a_coarser_grid():
    """A prediction on a 2x coarser grid (same field of view corner): each fine voxel takes the
    value of the coarse voxel whose centre is nearest (hand-built with np.repeat)."""
    coarse = np.random.default_rng(0).integers(0, 3, size=(6, 5, 4)).astype(np.uint8)
    coarse_affine = REF_AFFINE.copy()
    coarse_affine[:3, :3] *= 2
    # The coarse voxels cover the same field of view: fine voxel c sits at coarse index
    # (c - 0.5) / 2, so fine 0, 1 -> coarse 0 (at -0.25 and 0.25, inside voxel 0), 2, 3 -> 1, ...
    coarse_affine[:3, 3] += np.diag(REF_AFFINE)[:3] * 0.5
    fine = Volume(np.zeros((12, 10, 8), np.uint8), REF_AFFINE)
    out = resample_nearest(Volume(coarse, coarse_affine), fine.geometry)
    expect = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(out.array, expect)
    assert out.same_grid(fine)


def test_resample_onto_an_oblique_grid_keeps_labels_and_world_positions():
    rng = np.random.default_rng(3)
    aff = random_affine(rng, spacing=(1.0, 1.0, 1.0))
    ref = Volume(np.zeros((30, 30, 30), np.uint8), aff)
    pred_aff = aff.copy()
    pred_aff[:3, 3] += aff[:3, :3] @ [3, 0, 0]  # same axes, origin 3 voxels further along i
    src = np.zeros((30, 30, 30), np.uint8)
    src[5:10, 5:10, 5:10] = 4
    out = resample_nearest(Volume(src, pred_aff), ref.geometry)
    assert set(np.unique(out.array)) == {0, 4}
    assert np.argwhere(out.array == 4).min(0).tolist() == [8, 5, 5]


def test_labels_declared_and_undeclared(tmp_path):
    ds = tmp_path / "dataset.json"
    ds.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2, "cyst": 3}}))
    rows = evaluate_case(_labels(), _labels(), spacing=1.0, labels=ds).rows
    assert [(r["label"], r["name"]) for r in rows] == [(1, "liver"), (2, "tumour"), (3, "cyst")]
    assert rows[2]["empty"] == "both"
    bad = _labels()
    bad[0, 0, 0] = 5
    with pytest.raises(InputError, match=r"prediction holds label value\(s\) \[5\] not declared"):
        evaluate_case(bad, _labels(), spacing=1.0, labels=ds)
    with pytest.raises(InputError, match=r"reference holds label value\(s\) \[5\]"):
        evaluate_case(_labels(), bad, spacing=1.0, labels=load_labels(ds))
    rows = evaluate_case(_labels(), _labels(), spacing=1.0, labels={"background": 0, "liver": 1, "tumour": 2}).rows
    assert [(r["label"], r["name"]) for r in rows] == [(1, "liver"), (2, "tumour")]


def test_label_map_values_are_checked():
    floats = _labels().astype(np.float32)
    assert evaluate_case(floats, _labels(), spacing=1.0).rows[0]["dice"] == 1.0
    with pytest.raises(InputError, match="non-integer"):
        evaluate_case(floats + 0.5, _labels(), spacing=1.0)
    with pytest.raises(InputError, match="negative"):
        evaluate_case(_labels().astype(np.int16) - 1, _labels(), spacing=1.0)
    with pytest.raises(GeometryError, match="shape"):
        evaluate_case(_labels()[:-1], _labels(), spacing=1.0)


@pytest.mark.parametrize("style", ["nnunet", "msd"])
def test_load_labels_both_styles(tmp_path, style):
    labels = {"background": 0, "liver": 1, "tumour": 2}
    if style == "msd":
        labels = {str(v): k for k, v in labels.items()}
    p = tmp_path / "dataset.json"
    p.write_text(json.dumps({"name": "x", "labels": labels}))
    assert load_labels(p) == {0: "background", 1: "liver", 2: "tumour"}


@pytest.mark.parametrize("content,message", [
    ({"labels": {"background": 0, "organs": [1, 2]}}, "region"),
    ({"name": "no labels"}, "no 'labels'"),
    ({"labels": {"background": 0, "liver": 0}}, "declared twice"),
    ({"labels": {"background": 0, "liver": "one"}}, "neither"),
])
def test_load_labels_refuses(tmp_path, content, message):
    p = tmp_path / "dataset.json"
    p.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        load_labels(p)
    with pytest.raises(InputError, match="does not exist"):
        load_labels(tmp_path / "missing.json")
