"""Geometry: derived quantities against hand-computed cases, nibabel and SimpleITK."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg import Geometry, Volume
from medseg.geometry import affine_from_lps
from tests.helpers import random_affine, sitk_world_ras


@pytest.mark.parametrize(
    "diag, code",
    [((1, 1, 1), "RAS"), ((-1, -1, 1), "LPS"), ((-1, 1, 1), "LAS"), ((1, -1, -1), "RPI")],
)
def test_orientation_codes_hand_computed(diag, code):
    aff = np.diag([*diag, 1.0]) * np.array([2.0, 3.0, 4.0, 1.0])
    g = Geometry((4, 5, 6), aff)
    assert g.orientation == code
    assert g.spacing == pytest.approx((2.0, 3.0, 4.0))


def test_permuted_axes_orientation():
    # i runs along world z (S), j along world x (R), k along world -y (P): a sagittal-ish stack.
    aff = np.array([[0, 1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    assert Geometry((2, 2, 2), aff).orientation == "SRP"


@pytest.mark.parametrize("seed", range(6))
def test_derived_quantities_match_nibabel(seed):
    rng = np.random.default_rng(seed)
    aff = random_affine(rng)
    g = Geometry((7, 8, 9), aff)
    assert g.spacing == pytest.approx(tuple(nib.affines.voxel_sizes(aff)))
    assert g.origin == pytest.approx(tuple(aff[:3, 3]))
    assert g.orientation == "".join(nib.aff2axcodes(aff))
    ijk = rng.uniform(0, 8, size=(20, 3))
    assert np.allclose(g.index_to_world(ijk), nib.affines.apply_affine(aff, ijk))
    assert np.allclose(g.world_to_index(g.index_to_world(ijk)), ijk)


@pytest.mark.parametrize("seed", range(4))
def test_affine_from_lps_matches_simpleitk(seed):
    rng = np.random.default_rng(seed)
    ras = random_affine(rng)
    lps = np.diag([-1, -1, 1, 1.0]) @ ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    img = sitk.Image(5, 6, 7, sitk.sitkUInt8)
    img.SetSpacing(spacing.tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    img.SetDirection(direction.flatten().tolist())
    ours = Geometry((5, 6, 7), affine_from_lps(spacing, lps[:3, 3], direction))
    ijk = np.array([[0, 0, 0], [4, 5, 6], [1, 2, 3], [4, 0, 6]])
    assert np.allclose(ours.index_to_world(ijk), sitk_world_ras(img, ijk), atol=1e-6)


def test_same_grid_tolerance_and_shape():
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    g = Geometry((10, 10, 10), aff)
    shifted = aff.copy()
    shifted[0, 3] += 5e-4
    assert g.same_grid(Geometry((10, 10, 10), shifted))
    shifted[0, 3] += 2e-3
    assert not g.same_grid(Geometry((10, 10, 10), shifted))
    assert not g.same_grid(Geometry((10, 10, 9), aff))


def test_shear_and_oblique_flags():
    aff = np.eye(4)
    assert not Geometry((2, 2, 2), aff).is_oblique
    aff[1, 2] = 0.3  # k step leans towards y: gantry tilt
    g = Geometry((2, 2, 2), aff)
    assert g.is_sheared and g.is_oblique


def test_volume_refuses_4d_and_bad_affine():
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((2, 2, 2, 2)), np.eye(4))
    with pytest.raises(ValueError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.diag([1, 0, 1, 1.0]))
    v = Volume(np.zeros((2, 3, 4)), np.eye(4))
    with pytest.raises(ValueError, match="shape"):
        v.with_array(np.zeros((3, 3, 3)))
