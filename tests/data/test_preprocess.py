"""Preprocessing: reorientation vs nibabel, resampling geometry, exact inversion onto the source grid."""

import nibabel as nib
import numpy as np
import pytest

from medseg import Volume, read_volume
from medseg.plans import DatasetInfo, Network, Normalization, Plan, Preprocessing, Training
from medseg.preprocess import Preprocessor
from medseg.preprocess.resample import resample_labels, resampled_affine
from tests.helpers import CT_NRRD, CT_SEG, random_affine


def _plan(spacing, scheme="ct", n_labels=8):
    norm = Normalization(0, scheme, (-100.0, 300.0), 50.0, 100.0) if scheme == "ct" else Normalization(0, scheme)
    labels = {"background": 0, **{f"c{i}": i for i in range(1, n_labels)}}
    return Plan(1, DatasetInfo("t", labels, {0: "CT"}),
                Preprocessing(tuple(spacing), [norm]), Network("DynUNet", [(3, 3, 3)], [(1, 1, 1)], [32]),
                Training((16, 16, 16), 2), 8.0, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_reorientation_matches_nibabel_closest_canonical(seed):
    rng = np.random.default_rng(seed)
    aff = random_affine(rng, max_deg=20)
    data = rng.integers(0, 100, size=(7, 8, 9)).astype(np.int16)
    vol = Volume(data, aff)
    pre = Preprocessor(_plan(vol.spacing, scheme="none"))  # target = own spacing: no resampling
    arr, rec = pre.image([vol])
    ref = nib.as_closest_canonical(nib.Nifti1Image(data, aff))
    np.testing.assert_array_equal(arr[0], np.asanyarray(ref.dataobj).astype(np.float32))
    np.testing.assert_allclose(rec.canonical_affine, ref.affine, atol=1e-6)
    np.testing.assert_allclose(rec.model_affine, ref.affine, atol=1e-6)
    assert "".join(nib.aff2axcodes(rec.model_affine)) == "RAS"


def test_resampled_grid_keeps_the_field_of_view():
    aff = np.diag([0.8, 0.8, 3.0, 1.0])
    new = resampled_affine(aff, (100, 100, 20), (80, 80, 60))
    sp = np.linalg.norm(new[:3, :3], axis=0)
    assert sp == pytest.approx((1.0, 1.0, 1.0))
    # outer edge of voxel 0 is unchanged: centre - half a voxel
    assert new[:3, 3] - sp / 2 == pytest.approx(aff[:3, 3] - np.array([0.4, 0.4, 1.5]))


def test_real_ct_to_model_space_and_back_lands_on_the_source_grid():
    ct, seg = read_volume(CT_NRRD), read_volume(CT_SEG)
    pre = Preprocessor(_plan((1.5, 1.5, 5.0)))
    img, rec = pre.image([ct])
    lab = pre.label(seg, rec)
    assert img.shape == (1, *rec.model_shape) and lab.shape == rec.model_shape
    assert rec.model_shape == (260, 260, 68)  # 128 * 3.047 / 1.5, 34 * 10 / 5
    assert img.dtype == np.float32 and -1.51 <= img.min() and img.max() <= 2.51  # clip then z-score
    back = pre.invert_labels(lab, rec)
    assert back.shape == seg.shape and np.array_equal(back.affine, seg.affine)
    dice = 2 * np.sum((back.array == 5) & (seg.array == 5)) / (np.sum(back.array == 5) + np.sum(seg.array == 5))
    assert dice > 0.97  # right lung survives up- then down-sampling
    # the lung centroid in world mm is where it was
    w = seg.geometry.index_to_world
    assert np.allclose(w(np.argwhere(back.array == 5).mean(0)), w(np.argwhere(seg.array == 5).mean(0)), atol=1.0)


def test_identity_spacing_inversion_is_exact_for_any_orientation():
    rng = np.random.default_rng(3)
    for _ in range(4):
        aff = random_affine(rng, max_deg=10)
        lab = rng.integers(0, 3, size=(6, 7, 8)).astype(np.uint8)
        vol = Volume(lab, aff)
        pre = Preprocessor(_plan(vol.spacing))
        _, rec = pre.image([vol.with_array(lab.astype(np.int16))])
        model = pre.label(vol, rec)
        np.testing.assert_array_equal(pre.invert_labels(model, rec).array, lab)


def test_label_resampling_votes_like_nnunet():
    lab = np.zeros((4, 4, 4), np.uint8)
    lab[:2] = 1
    up = resample_labels(lab, (8, 8, 8))
    assert set(np.unique(up)) == {0, 1} and up[:4].min() == 1 and up[4:].max() == 0


def test_label_must_share_the_image_grid():
    from medseg import GeometryError

    vol = Volume(np.zeros((4, 4, 4), np.int16), np.eye(4))
    pre = Preprocessor(_plan((1, 1, 1)))
    _, rec = pre.image([vol])
    shifted = np.eye(4)
    shifted[0, 3] = 1.0
    with pytest.raises(GeometryError, match="not on the image grid"):
        pre.label(Volume(np.zeros((4, 4, 4), np.uint8), shifted), rec)


def test_undeclared_label_values_are_refused_not_dropped():
    from medseg import InputError

    seg = read_volume(CT_SEG)  # values 0..7
    pre = Preprocessor(_plan((3.0, 3.0, 10.0), n_labels=3))
    _, rec = pre.image([seg.with_array(seg.array.astype(np.int16))])
    with pytest.raises(InputError, match=r"label values \[3, 4, 5, 6, 7\] are not declared"):
        pre.label(seg, rec)
