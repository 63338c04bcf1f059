"""Model space of the slice-wise model and the way back: canonical RAS axes (checked against
nibabel's as_closest_canonical) and instance maps that land on exactly the source grid."""

import math

import nibabel as nib
import numpy as np

from medseg.instance.extract import slice_instances
from medseg.instance.linking import SliceDetections, link_slices
from medseg.instance.slices import image_to_model, instances_to_source, labels_to_model, slice_record
from medseg.volume import Volume


def _grid(spacing, flips=(-1, -1, 1), tilt_deg=7.0, shape=(40, 36, 14)):
    c, s = math.cos(math.radians(tilt_deg)), math.sin(math.radians(tilt_deg))
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])       # oblique: tilted about the A axis
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(np.asarray(flips) * np.asarray(spacing))
    aff[:3, 3] = (15.0, -7.0, 40.0)
    return aff, shape


def _spheres(aff, shape, centres_radii):
    """Label map (value 4) of balls defined in world mm, evaluated at voxel centres."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    lab = np.zeros(len(idx), np.uint8)
    for centre, r in centres_radii:
        lab[np.linalg.norm(world - centre, axis=1) <= r] = 4
    return lab.reshape(shape)


def _round_trip(label: Volume, spacing):
    rec = slice_record(label, spacing)
    lab = labels_to_model(label, rec, [0, 4])
    dets = []
    for k in range(lab.shape[2]):
        t = slice_instances(lab[:, :, k], {4: 1})
        dets.append(SliceDetections(t["masks"].astype(bool), t["labels"], np.ones(len(t["labels"]), np.float32)))
    ids, lesions = link_slices(dets)
    return instances_to_source(ids, rec), lesions


def test_image_to_model_is_nibabels_closest_canonical_when_spacing_matches():
    aff, shape = _grid((0.9, 0.7, 2.0))
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    rec = slice_record(Volume(arr, aff), (0.9, 0.7))
    ref = nib.as_closest_canonical(nib.Nifti1Image(arr, aff))
    np.testing.assert_array_equal(image_to_model(Volume(arr, aff), rec), np.asarray(ref.dataobj))
    np.testing.assert_allclose(rec.model_affine, ref.affine, atol=1e-9)
    assert rec.model_shape[2] == shape[2]  # slices are never resampled


def test_in_plane_resampling_keeps_slices_and_field_of_view():
    aff, shape = _grid((0.6, 0.6, 2.5))
    rec = slice_record(Volume(np.zeros(shape), aff), (1.2, 1.2))
    assert rec.model_shape == (20, 18, 14)
    # the outer edges of the field of view stay where they were
    lo = rec.model_affine @ np.array([-0.5, -0.5, -0.5, 1])
    assert np.allclose(lo, rec.canonical_affine @ np.array([-0.5, -0.5, -0.5, 1]))


def test_instances_land_exactly_on_a_flipped_oblique_source_grid():
    aff, shape = _grid((0.8, 0.8, 2.0))
    lab = _spheres(aff, shape, [(aff[:3, 3] + aff[:3, :3] @ np.array([10, 10, 6]), 4.5),
                                (aff[:3, 3] + aff[:3, :3] @ np.array([28, 24, 8]), 5.0)])
    src = Volume(lab, aff)
    ids, lesions = _round_trip(src, (0.8, 0.8))
    assert ids.shape == src.shape and np.array_equal(ids.affine, src.affine) and ids.dtype == np.uint16
    assert len(lesions) == 2
    np.testing.assert_array_equal(ids.array > 0, lab == 4)   # no resampling: exact
    from scipy import ndimage

    cc, n = ndimage.label(lab == 4, np.ones((3, 3, 3)))
    assert n == 2 and all(len(np.unique(ids.array[cc == i])) == 1 for i in (1, 2))


def test_resampled_round_trip_is_close_and_on_the_grid():
    aff, shape = _grid((0.6, 0.6, 2.0), flips=(1, -1, -1), shape=(50, 44, 12))
    centre = aff[:3, 3] + aff[:3, :3] @ np.array([25, 22, 6])
    lab = _spheres(aff, shape, [(centre, 6.0)])
    ids, lesions = _round_trip(Volume(lab, aff), (1.0, 1.0))
    assert ids.shape == shape and np.array_equal(ids.affine, aff) and len(lesions) == 1
    a, b = ids.array > 0, lab == 4
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.93
