"""Reader, writer and sample data in a real napari viewer (Xvfb).

References: nibabel's affine, SimpleITK's physical points (LPS -> RAS by a sign flip), the
3D Slicer segment names and colours in the .seg.nrrd header."""

from __future__ import annotations

import json
import warnings

import napari
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg import read_volume
from medseg.errors import MedsegWarning, OutputError
from napari_medseg._reader import get_reader
from tests.helpers import CT_NRRD, CT_SEG, MR_DICOM, grid_points, random_affine, read_series_sitk, sitk_world_ras
from tests.napari.factory import save_nifti

PLUGIN = "napari-medseg"
# napari draws 2D slices of an oblique volume without the out-of-plane rotation, and says so.
pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")


def _world(layer, pts):
    return np.array([layer.data_to_world(tuple(float(v) for v in p)) for p in pts])


def _oblique_pair(tmp_path, seed=0, shape=(14, 11, 9)):
    rng = np.random.default_rng(seed)
    aff = random_affine(rng)
    image = rng.integers(-1000, 1000, size=shape).astype(np.int16)
    mask = (image > 500).astype(np.uint8) + (image > 800)
    return (save_nifti(tmp_path / "scan.nii.gz", image, aff), save_nifti(tmp_path / "scan_mask.nii.gz", mask, aff),
            image, mask, aff)


def test_oblique_nifti_lands_where_nibabel_and_medseg_say(tmp_path, make_napari_viewer):
    img_path, mask_path, image, mask, aff = _oblique_pair(tmp_path)
    viewer = make_napari_viewer()
    [img_layer] = viewer.open(img_path, plugin=PLUGIN)
    [mask_layer] = viewer.open(mask_path, plugin=PLUGIN)
    assert isinstance(img_layer, napari.layers.Image) and isinstance(mask_layer, napari.layers.Labels)
    np.testing.assert_array_equal(img_layer.data, image)
    pts = grid_points(image.shape)
    nib_aff = nib.load(str(img_path)).affine
    expected = pts @ nib_aff[:3, :3].T + nib_aff[:3, 3]
    np.testing.assert_allclose(_world(img_layer, pts), expected, atol=1e-4)
    np.testing.assert_allclose(_world(mask_layer, pts), expected, atol=1e-4)
    np.testing.assert_allclose(read_volume(img_path).geometry.index_to_world(pts), expected, atol=1e-4)
    md = img_layer.metadata
    assert md["shape"] == list(image.shape) and md["format"] == "nifti" and md["kind"] == "image"
    assert md["source_path"] == str(img_path.resolve())
    np.testing.assert_allclose(md["affine"], nib_aff, atol=1e-6)
    assert mask_layer.metadata["kind"] == "labels"
    assert list(mask_layer.features["name"]) == ["background", "class_1", "class_2"]


def test_oblique_nrrd_lands_where_simpleitk_says(tmp_path, make_napari_viewer):
    rng = np.random.default_rng(5)
    aff = random_affine(rng)
    arr = rng.normal(size=(10, 8, 6)).astype(np.float32)
    img = sitk.GetImageFromArray(arr.T.copy())          # sitk's array is [k, j, i]
    lps = np.diag([-1.0, -1.0, 1.0]) @ aff[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    img.SetSpacing(spacing.tolist())
    img.SetDirection((lps / spacing).ravel().tolist())
    img.SetOrigin((np.array([-1.0, -1.0, 1.0]) * aff[:3, 3]).tolist())
    sitk.WriteImage(img, str(tmp_path / "oblique.nrrd"))
    viewer = make_napari_viewer()
    [layer] = viewer.open(tmp_path / "oblique.nrrd", plugin=PLUGIN)
    pts = grid_points(arr.shape)
    np.testing.assert_allclose(_world(layer, pts), sitk_world_ras(img, pts), atol=1e-4)


def test_dicom_folder_opens_in_world_mm(make_napari_viewer):
    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)   # the sample's slight uneven spacing
        [layer] = viewer.open(MR_DICOM, plugin=PLUGIN)
    assert layer.metadata["format"] == "dicom" and layer.metadata["modality"] == "MR"
    pts = grid_points(layer.data.shape, n_random=10)
    np.testing.assert_allclose(_world(layer, pts), sitk_world_ras(read_series_sitk(MR_DICOM), pts), atol=0.05)


def test_sample_ct_and_segmentation_open_with_class_names_and_colours(make_napari_viewer):
    viewer = make_napari_viewer()
    [ct] = viewer.open(CT_NRRD, plugin=PLUGIN)
    [seg] = viewer.open(CT_SEG, plugin=PLUGIN)
    assert isinstance(seg, napari.layers.Labels)
    assert list(seg.features["name"]) == ["background", "ribs", "cervical vertebral column", "thoracic vertebral column",
                                          "lumbar vertebral column", "right lung", "left lung", "tissue"]
    # colours are the ones 3D Slicer stored in the header
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(CT_SEG))
    reader.ReadImageInformation()
    for n in range(7):
        value = int(reader.GetMetaData(f"Segment{n}_LabelValue"))
        rgb = [float(v) for v in reader.GetMetaData(f"Segment{n}_Color").split()]
        np.testing.assert_allclose(seg.colormap.map(value)[:3], rgb, atol=1e-3)
    assert seg.colormap.map(0)[3] == 0                      # background transparent
    assert ct.contrast_limits == [-160.0, 240.0]             # CT opens in the soft-tissue window
    pts = grid_points(ct.data.shape, n_random=10)
    np.testing.assert_allclose(_world(ct, pts), sitk_world_ras(sitk.ReadImage(str(CT_NRRD)), pts), atol=1e-4)
    np.testing.assert_allclose(_world(seg, pts), _world(ct, pts), atol=1e-6)
    # the right lung (patient's right: larger RAS x) is right of the left lung
    right = np.argwhere(seg.data == 5).mean(axis=0)
    left = np.argwhere(seg.data == 6).mean(axis=0)
    assert seg.data_to_world(tuple(right))[0] > seg.data_to_world(tuple(left))[0]


def test_sample_data_contribution(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "ct_chest")
    assert [type(lay).__name__ for lay in layers] == ["Image", "Labels"]
    assert layers[1].metadata["image_path"] == str(CT_NRRD.resolve())


def test_reader_declines_what_medseg_cannot_read(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes")) is None
    assert get_reader(str(tmp_path / "notes" / "a.txt")) is None
    assert get_reader(str(MR_DICOM)) is not None


def test_labels_in_labelsTr_get_dataset_json_names(tmp_path, make_napari_viewer):
    ds = tmp_path / "Dataset001"
    save_nifti(ds / "labelsTr" / "c1.nii.gz", np.eye(6, dtype=np.uint8)[:, :, None].repeat(3, 2) * 2, np.eye(4))
    (ds / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2},
                                                 "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}))
    viewer = make_napari_viewer()
    [layer] = viewer.open(ds / "labelsTr" / "c1.nii.gz", plugin=PLUGIN)
    assert isinstance(layer, napari.layers.Labels)
    assert list(layer.features["name"]) == ["background", "liver", "tumour"]


def test_writer_round_trip_on_the_source_grid(tmp_path, make_napari_viewer):
    img_path, mask_path, image, mask, aff = _oblique_pair(tmp_path, seed=1)
    viewer = make_napari_viewer()
    [layer] = viewer.open(mask_path, plugin=PLUGIN)
    layer.paint((3, 4, 5), 2)                          # data coordinates
    edited = np.array(layer.data)
    for name in ("edited.nii.gz", "edited.nrrd"):
        [written] = napari.save_layers(str(tmp_path / name), [layer], plugin=PLUGIN)
        vol = read_volume(written)
        np.testing.assert_array_equal(vol.array, edited)
        np.testing.assert_allclose(vol.affine, nib.load(str(mask_path)).affine, atol=1e-5)
    nii = nib.load(str(tmp_path / "edited.nii.gz"))
    np.testing.assert_array_equal(nii.affine, nib.load(str(mask_path)).affine)   # bit for bit
    np.testing.assert_array_equal(np.asarray(nii.dataobj), edited)
    assert nii.get_data_dtype() == np.uint8
    before = mask_path.read_bytes()
    with pytest.raises(OutputError, match="refusing to overwrite the source"):
        napari.save_layers(str(mask_path), [layer], plugin=PLUGIN)
    assert mask_path.read_bytes() == before
    with pytest.raises(OutputError, match=r"DICOM SEG .* edited\.nii\.gz"):
        napari.save_layers(str(tmp_path / "edited.dcm"), [layer], plugin=PLUGIN)


def test_writer_without_medseg_metadata_uses_the_napari_transform(tmp_path, make_napari_viewer):
    aff = random_affine(np.random.default_rng(2))
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((6, 5, 4), np.uint8), affine=aff, name="new")
    layer.paint((2, 2, 2), 1)
    with pytest.warns(MedsegWarning, match="no medseg geometry"):
        [written] = napari.save_layers(str(tmp_path / "new.nii.gz"), [layer], plugin=PLUGIN)
    np.testing.assert_allclose(nib.load(written).affine, aff, atol=1e-5)


def test_manifest_contributions():
    from importlib.resources import files

    from npe2 import PluginManifest

    pm = PluginManifest.from_file(files("napari_medseg") / "napari.yaml")
    c = pm.contributions
    assert pm.name == "napari-medseg"
    assert {"*.nii.gz", "*.nrrd", "*.mha", "*.dcm"} <= set(c.readers[0].filename_patterns)
    assert c.readers[0].accepts_directories
    assert c.writers[0].layer_types == ["labels"]
    assert {".nii.gz", ".nrrd", ".dcm"} <= set(c.writers[0].filename_extensions)
    assert [s.key for s in c.sample_data] == ["ct_chest"]
    assert [w.display_name for w in c.widgets] == ["Review masks", "Correction tools", "Segment"]
    for cmd in c.commands:                      # every command resolves to a Python object
        assert cmd.python_name and pm.contributions.commands
        module, _, attr = cmd.python_name.partition(":")
        assert getattr(__import__(module, fromlist=[attr]), attr)
