"""NRRD / MetaImage reading: parity with SimpleITK, a hand-written RAS-space NRRD, Slicer segments."""

import numpy as np
import pytest
import SimpleITK as sitk

from medseg import GeometryError, read_volume
from tests.helpers import CT_NRRD, CT_SEG, grid_points, random_affine, sitk_array_ijk, sitk_world_ras


@pytest.mark.parametrize("path", [CT_NRRD, CT_SEG], ids=["ct", "seg"])
def test_real_samples_match_simpleitk(path):
    vol = read_volume(path)
    img = sitk.ReadImage(str(path))
    ijk = grid_points(vol.shape)
    assert np.max(np.abs(vol.geometry.index_to_world(ijk) - sitk_world_ras(img, ijk))) < 1e-3
    np.testing.assert_array_equal(vol.array, sitk_array_ijk(img))


def test_chest_ct_facts_from_env():
    vol = read_volume(CT_NRRD)
    assert vol.shape == (128, 128, 34)
    assert vol.spacing == pytest.approx((3.046875954, 3.046875954, 10.0), abs=1e-6)
    # LPS storage with direction diag(-1,-1,1): i runs towards patient Right in RAS terms.
    assert vol.orientation == "RAS"
    seg = read_volume(CT_SEG)
    assert seg.same_grid(vol)
    assert set(np.unique(seg.array)) == set(range(8))
    assert seg.meta["segments"][5] == "right lung" and seg.meta["segments"][6] == "left lung"


def test_seg_labels_lie_where_slicer_says():
    """Anatomy as the reference: 3D Slicer's 'right lung' must lie on the patient's right,
    i.e. at larger RAS+ x than the 'left lung' (RAS+ x increases towards the patient's Right)."""
    seg = read_volume(CT_SEG)
    world = seg.geometry.index_to_world
    centroid = {lab: world(np.argwhere(seg.array == lab).mean(axis=0)) for lab in (5, 6)}
    assert centroid[5][0] > centroid[6][0], "right lung must have larger RAS x (towards patient Right)"


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
@pytest.mark.parametrize("seed", range(3))
def test_synthetic_oblique_files_match_simpleitk(tmp_path, suffix, seed):
    rng = np.random.default_rng(seed)
    ras = random_affine(rng)
    lps = np.diag([-1, -1, 1, 1.0]) @ ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    arr_kji = rng.normal(size=(5, 6, 7)).astype(np.float32)
    img = sitk.GetImageFromArray(arr_kji)
    img.SetSpacing(spacing.tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    img.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(img, str(path))
    vol = read_volume(path)
    assert vol.shape == (7, 6, 5)
    ijk = grid_points(vol.shape)
    assert np.max(np.abs(vol.geometry.index_to_world(ijk) - sitk_world_ras(sitk.ReadImage(str(path)), ijk))) < 1e-3
    np.testing.assert_array_equal(vol.array, arr_kji.T)


def test_hand_written_ras_space_nrrd(tmp_path):
    """A NRRD in 'right-anterior-superior' space: the affine is the header, verbatim."""
    data = np.arange(2 * 3 * 4, dtype=np.int16)  # fastest axis first in NRRD = i
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: right-anterior-superior\nsizes: 2 3 4\n"
        "space directions: (0,1.5,0) (-2,0,0) (0,0,3)\nkinds: domain domain domain\n"
        "endian: little\nencoding: raw\nspace origin: (10,20,30)\n\n"
    )
    path = tmp_path / "ras.nrrd"
    path.write_bytes(header.encode() + data.tobytes())
    vol = read_volume(path)
    expected = np.array([[0, -2, 0, 10], [1.5, 0, 0, 20], [0, 0, 3, 30], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(vol.affine, expected, atol=1e-9)
    assert vol.shape == (2, 3, 4)
    np.testing.assert_array_equal(vol.array, data.reshape(4, 3, 2).T)


def test_multi_component_nrrd_is_4d_error(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)
    path = tmp_path / "layers.seg.nrrd"
    sitk.WriteImage(img, str(path))
    with pytest.raises(GeometryError, match="4D.*layers"):
        read_volume(path)


def test_truncated_nrrd_is_found_at_read_time(tmp_path):
    raw = CT_NRRD.read_bytes()
    cut = tmp_path / "cut.nrrd"
    cut.write_bytes(raw[: len(raw) // 2])
    from medseg import InputError

    with pytest.raises(InputError, match="truncated or corrupt"):
        read_volume(cut)


def test_itk_messages_become_medseg_warnings():
    """ITK's C++ output goes through medseg's global ITK logger: a `warning: ITK: ...` line in the
    CLI instead of raw text on stderr."""
    import warnings

    import SimpleITK as sitk

    import medseg.io.itk as itk_mod
    from medseg.errors import MedsegWarning

    assert itk_mod._ITK_LOGGER is not None
    logger = sitk.LoggerBase.GetGlobalITKLogger()  # ITK's global logger, which forwards to medseg's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.DisplayWarningText("WARNING: In /build/itkFoo.hxx, line 502\nFooReader (0x55d0c1): something   odd\n")
        logger.DisplayDebugText("debug chatter")
    assert [(w.category, str(w.message)) for w in caught] == [
        (MedsegWarning, "ITK: FooReader: something odd")]
