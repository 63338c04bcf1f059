"""Synthetic phantoms: determinism, geometry, anatomy in world space, the DICOM study tree.

References: nibabel (affines, orientation codes, voxel data of the written files), SimpleITK
for the DICOM series, scipy for connected components -- never the generator's own bookkeeping
when the files can tell.
"""

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from nibabel.orientations import aff2axcodes
from scipy import ndimage

from medseg import Geometry, read_volume
from medseg.data.phantoms import generate_case, write_phantom_dataset
from medseg.errors import InputError, OutputError
from tests.helpers import grid_points, read_series_sitk, sitk_array_ijk, sitk_world_ras

SEED, N_CASES = 9, 6  # seed 9: DICOM cases 0 and 3 are right- and left-handed, case 3 is oblique


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms") / "ds"
    write_phantom_dataset(out, N_CASES, SEED, "small", dicom_study=True)
    return out


def _load(path):
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img.affine


def _cases(dataset):
    for i in range(N_CASES):
        img, aff = _load(dataset / "imagesTr" / f"phantom_{i:03d}_0000.nii.gz")
        lab, laff = _load(dataset / "labelsTr" / f"phantom_{i:03d}.nii.gz")
        yield i, img, aff, lab, laff


def _world(aff, ijk):
    return np.asarray(ijk, float) @ aff[:3, :3].T + aff[:3, 3]


def _centroid(aff, mask):
    return _world(aff, np.argwhere(mask)).mean(axis=0)


# ---- determinism ------------------------------------------------------------------------
def test_same_seed_gives_bit_identical_cases():
    for index in (0, 4):
        a_img, a_lab, a_info = generate_case(SEED, "small", index)
        b_img, b_lab, b_info = generate_case(SEED, "small", index)
        assert a_img.array.dtype == np.int16 and a_lab.array.dtype == np.uint8
        np.testing.assert_array_equal(a_img.array, b_img.array)
        np.testing.assert_array_equal(a_lab.array, b_lab.array)
        assert np.array_equal(a_img.affine, b_img.affine) and np.array_equal(a_lab.affine, a_img.affine)
        assert a_info == b_info


def test_case_does_not_depend_on_the_number_of_cases(tmp_path):
    write_phantom_dataset(tmp_path / "two", 2, 4, "small")
    write_phantom_dataset(tmp_path / "five", 5, 4, "small")
    for i in range(2):
        for sub, name in (("imagesTr", f"phantom_{i:03d}_0000.nii.gz"), ("labelsTr", f"phantom_{i:03d}.nii.gz")):
            a, a_aff = _load(tmp_path / "two" / sub / name)
            b, b_aff = _load(tmp_path / "five" / sub / name)
            np.testing.assert_array_equal(a, b)
            assert np.array_equal(a_aff, b_aff)
    assert len(list((tmp_path / "five" / "imagesTr").iterdir())) == 5


def test_different_seeds_differ():
    a, _, _ = generate_case(0, "small", 0)
    b, _, _ = generate_case(1, "small", 0)
    assert a.shape != b.shape or not np.array_equal(a.array, b.array)
    assert not np.allclose(a.affine, b.affine)


def test_generated_case_equals_written_files(dataset):
    img, lab, info = generate_case(SEED, "small", 2)
    arr, aff = _load(dataset / "imagesTr" / "phantom_002_0000.nii.gz")
    np.testing.assert_array_equal(arr, img.array)
    assert np.array_equal(aff, img.affine)  # the generator's affine is float32-exact
    larr, _ = _load(dataset / "labelsTr" / "phantom_002.nii.gz")
    np.testing.assert_array_equal(larr, lab.array)
    assert info["shape"] == list(arr.shape)


# ---- geometry --------------------------------------------------------------------------
def test_label_grid_is_image_grid_and_labels_are_declared(dataset):
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "tumour": 4}
    assert meta["numTraining"] == N_CASES and meta["channel_names"] == {"0": "CT"}
    seen = set()
    for i, img, aff, lab, laff in _cases(dataset):
        assert img.dtype == np.int16 and lab.dtype == np.uint8
        assert img.shape == lab.shape and np.array_equal(aff, laff), f"case {i}"
        values = set(np.unique(lab).tolist())
        assert values <= {0, 1, 2, 3, 4}
        assert {0, 1, 2, 3} <= values, f"case {i} misses an organ: {values}"
        seen |= values
    assert seen == {0, 1, 2, 3, 4}


def test_orientations_spacings_and_obliquity_vary(dataset):
    codes, oblique = set(), 0
    for _, img, aff, _, _ in _cases(dataset):
        codes.add("".join(aff2axcodes(aff)))
        spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
        assert 0.6 - 1e-4 <= spacing[0] <= 1.0 + 1e-4 and 0.6 - 1e-4 <= spacing[1] <= 1.0 + 1e-4
        assert 1.5 - 1e-4 <= spacing[2] <= 5.0 + 1e-4
        cos = np.abs(aff[:3, :3] / spacing)
        oblique += bool(np.any((cos > 1e-4) & (cos < 1 - 1e-4)))
        # small: a miniature abdomen
        assert 60 <= img.shape[0] <= 150 and 45 <= img.shape[1] <= 120 and 10 <= img.shape[2] <= 60
    assert len(codes) >= 4, codes
    assert 1 <= oblique < N_CASES


def test_simpleitk_reads_the_same_grid(dataset):
    """nnU-Net reads NIfTI through SimpleITK: the (oblique, flipped) grids must survive that."""
    for i in range(N_CASES):
        cid = f"phantom_{i:03d}"
        for path in (dataset / "imagesTr" / f"{cid}_0000.nii.gz", dataset / "labelsTr" / f"{cid}.nii.gz"):
            data, aff = _load(path)
            img = sitk.ReadImage(str(path))
            pts = grid_points(data.shape)
            assert np.max(np.abs(sitk_world_ras(img, pts) - _world(aff, pts))) < 1e-3, path.name
            np.testing.assert_array_equal(sitk_array_ijk(img), data)


def test_tumour_counts(dataset):
    counts = []
    for i, _, _, lab, _ in _cases(dataset):
        _, n = ndimage.label(lab == 4, structure=np.ones((3, 3, 3)))
        counts.append(n)
        info = generate_case(SEED, "small", i)[2]
        assert 0 <= info["n_tumours"] <= 3 and len(info["tumours"]) <= 3
        assert (info["n_tumours"] > 0) == (n > 0)
    assert all(0 <= n <= 3 for n in counts) and max(counts) > 0, counts


# ---- anatomy in world space -----------------------------------------------------------------
def test_organs_lie_where_the_anatomy_says(dataset):
    for i, img, aff, lab, _ in _cases(dataset):
        liver, spleen = _centroid(aff, lab == 1), _centroid(aff, lab == 2)
        comps, n = ndimage.label(lab == 3)
        sizes = ndimage.sum(np.ones_like(comps), comps, index=range(1, n + 1))
        big = np.argsort(sizes)[::-1][:2] + 1
        assert n >= 2, f"case {i}: expected two kidneys, found {n} components"
        kid = sorted((_centroid(aff, comps == c) for c in big), key=lambda c: c[0])  # left (small x) first
        # RAS+: the patient's right (liver) has larger x than the left (spleen)
        assert liver[0] > spleen[0] + 10, f"case {i}"
        assert kid[1][0] > kid[0][0] + 10  # one kidney on each side
        assert kid[0][0] < liver[0] and kid[1][0] > spleen[0]
        for k in kid:  # kidneys are posterior to and below the liver centroid
            assert k[1] < liver[1] and k[2] < liver[2], f"case {i}"
        assert spleen[1] < liver[1] + 5  # spleen is posterolateral


def test_tumours_sit_in_liver_or_kidney(dataset):
    checked = 0
    for i, _, _, lab, _ in _cases(dataset):
        comps, n = ndimage.label(lab == 4, structure=np.ones((3, 3, 3)))
        for c in range(1, n + 1):
            comp = comps == c
            shell = ndimage.binary_dilation(comp, structure=np.ones((3, 3, 3))) & ~comp
            around = lab[shell]
            host = np.isin(around, [1, 3, 4]).mean()
            assert host >= 0.5, f"case {i}: tumour {c} is surrounded by {np.bincount(around)} (labels)"
            checked += 1
    assert checked > 0


def test_hu_values_are_ct_like(dataset):
    for i, img, aff, lab, _ in _cases(dataset):
        liver = ndimage.binary_erosion(lab == 1)
        assert 40 <= img[liver].mean() <= 130, f"case {i}"
        assert 25 <= img[ndimage.binary_erosion(lab == 3)].mean() <= 190
        ends = (slice(0, 4), slice(-4, None))
        corners = np.concatenate([img[a, b].ravel() for a in ends for b in ends])
        assert -1030 <= corners.mean() <= -950, f"case {i}: air corners {corners.mean()}"
        assert img.max() >= 300  # bone
        sd = img[liver].std()
        assert 5 <= sd <= 40  # noise 8-20 HU (+ tumours excluded, bias, partial volume)


# ---- DICOM study ---------------------------------------------------------------------------
def _series_folders(dataset):
    return sorted((dataset / "dicom_study").glob("PATIENT_*/STUDY_*/SERIES_*"))


def test_dicom_study_tree(dataset):
    study = dataset / "dicom_study"
    patients = sorted(p.name for p in study.glob("PATIENT_*"))
    assert patients == ["PATIENT_phantom_000", "PATIENT_phantom_003"]
    assert [p.relative_to(study).as_posix() for p in _series_folders(dataset)] == [
        "PATIENT_phantom_000/STUDY_1/SERIES_1",
        "PATIENT_phantom_000/STUDY_1/SERIES_2",
        "PATIENT_phantom_003/STUDY_1/SERIES_1",
    ]
    assert sorted(p.name for p in (study.parent / "dicom_study_labels").iterdir()) == ["phantom_000.nii.gz", "phantom_003.nii.gz"]
    for folder in _series_folders(dataset):
        names = sorted(p.name for p in folder.iterdir())
        assert names[0] == "IM_0000.dcm" and all(n.startswith("IM_") and n.endswith(".dcm") for n in names)
    # multi-series study: SERIES_2 is shorter, so the study folder reads SERIES_1 by default
    s1 = read_volume(study / "PATIENT_phantom_000/STUDY_1/SERIES_1")
    s2 = read_volume(study / "PATIENT_phantom_000/STUDY_1/SERIES_2")
    assert s2.shape[2] < s1.shape[2] and s1.meta["study_uid"] == s2.meta["study_uid"]
    assert read_volume(study / "PATIENT_phantom_000").meta["series_uid"] == s1.meta["series_uid"]


def _match(src_aff, dst_aff, shape):
    """Integer indices into the dst grid of every src voxel (world positions via the affines)."""
    ijk = np.indices(shape).reshape(3, -1).T
    idx = _world(src_aff, ijk) @ np.linalg.inv(dst_aff)[:3, :3].T + np.linalg.inv(dst_aff)[:3, 3]
    r = np.rint(idx)
    assert np.max(np.abs(idx - r)) < 1e-3, "voxel centres do not coincide"
    return tuple(r.astype(int).T)


@pytest.mark.parametrize("index", [0, 3])
def test_dicom_series_matches_nifti_case(dataset, index):
    cid = f"phantom_{index:03d}"
    folder = dataset / "dicom_study" / f"PATIENT_{cid}" / "STUDY_1" / "SERIES_1"
    img, aff = _load(dataset / "imagesTr" / f"{cid}_0000.nii.gz")
    lab, _ = _load(dataset / "labelsTr" / f"{cid}.nii.gz")
    vol = read_volume(folder)
    handed = np.linalg.det(np.diag([-1.0, -1.0, 1.0]) @ aff[:3, :3])
    if handed > 0:  # same index order as the NIfTI
        assert vol.shape == img.shape
        assert vol.same_grid(Geometry(img.shape, aff), atol_mm=1e-3)
        np.testing.assert_array_equal(vol.array, img)
    # any storage: every DICOM voxel centre is a NIfTI voxel centre with the same HU
    idx = _match(vol.affine, aff, vol.shape)
    np.testing.assert_array_equal(vol.array.reshape(-1), img[idx])
    assert vol.array.size == img.size
    # SimpleITK/GDCM agrees on the world positions and the voxels
    sitk_img = read_series_sitk(folder)
    pts = grid_points(vol.shape)
    assert np.max(np.abs(sitk_world_ras(sitk_img, pts) - vol.geometry.index_to_world(pts))) < 1e-3
    np.testing.assert_array_equal(sitk_array_ijk(sitk_img), vol.array)
    # the DICOM label lies on exactly the grid medseg reads, with the NIfTI label's values
    dlab, dlab_aff = _load(dataset / "dicom_study_labels" / f"{cid}.nii.gz")
    assert dlab.shape == vol.shape
    assert np.max(np.abs(_world(dlab_aff, pts) - vol.geometry.index_to_world(pts))) < 1e-3
    np.testing.assert_array_equal(dlab.reshape(-1), lab[idx])


def test_dicom_study_covers_both_slice_orders(dataset):
    hands = []
    for index in (0, 3):
        _, aff = _load(dataset / "imagesTr" / f"phantom_{index:03d}_0000.nii.gz")
        hands.append(np.linalg.det(np.diag([-1.0, -1.0, 1.0]) @ aff[:3, :3]) > 0)
    assert sorted(hands) == [False, True]  # the k-reversed read path is exercised


# ---- dataset folder rules ---------------------------------------------------------------------
def test_resume_and_refusals(tmp_path):
    out = tmp_path / "ds"
    write_phantom_dataset(out, 2, 0, "small")
    image = out / "imagesTr" / "phantom_001_0000.nii.gz"
    stamp = image.stat().st_mtime_ns
    (out / "labelsTr" / "phantom_000.nii.gz").unlink()  # an interrupted/damaged case is redone
    write_phantom_dataset(out, 3, 0, "small")
    assert image.stat().st_mtime_ns == stamp
    assert (out / "labelsTr" / "phantom_000.nii.gz").is_file()
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 3
    with pytest.raises(OutputError, match="--seed 0 --size small"):
        write_phantom_dataset(out, 3, 1, "small")
    with pytest.raises(OutputError, match="at least --cases 3"):
        write_phantom_dataset(out, 2, 0, "small")
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a phantom dataset"):
        write_phantom_dataset(other, 2, 0, "small")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    for bad in ({"cases": 0}, {"seed": -1}, {"size": "huge"}):
        with pytest.raises(InputError):
            write_phantom_dataset(tmp_path / "bad", **{"cases": 1, "seed": 0, "size": "small", **bad})
    assert not (tmp_path / "bad").exists()
