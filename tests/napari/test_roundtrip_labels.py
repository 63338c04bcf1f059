"""Round trips through the plugin's writer and reader in a real napari viewer (Xvfb): a Labels
layer saved under any name reopens as labels; ``.seg.nrrd`` keeps 3D Slicer's segment names,
colours and tags; a DICOM SEG written by the plugin reopens with the same array and names.

References: the raw NRRD header read by SimpleITK (and slicerio when installed), nibabel's
header, 3D Slicer's own header of the sample segmentation, highdicom's lookup by source
instance, the arrays painted here."""

from __future__ import annotations

import warnings

import highdicom as hd
import napari
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medseg.errors import MedsegWarning
from medseg.io import read_volume, write_volume
from medseg.volume import Volume
from napari_medseg._reader import get_reader
from napari_medseg.layers import labels_layer_data
from tests.helpers import CT_SEG, write_dicom_series

PLUGIN = "napari-medseg"
pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning",
                                        "ignore::medseg.errors.MedsegWarning")
NAMES = {0: "background", 1: "liver", 2: "tumour", 5: "left kidney"}
COLORS = {1: (0.8, 0.4, 0.3), 2: (1.0, 1.0, 0.0), 5: (0.1, 0.2, 0.9)}


def _header(path) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}


def _segments(header: dict[str, str]) -> dict[int, dict[str, str]]:
    """Segment fields by label value, from the raw header keys ``Segment<n>_<Field>``."""
    by_n: dict[str, dict[str, str]] = {}
    for key, value in header.items():
        if key.startswith("Segment") and "_" in key and key[7:key.index("_")].isdigit():
            by_n.setdefault(key[7:key.index("_")], {})[key[key.index("_") + 1:]] = value
    return {int(f["LabelValue"]): f for f in by_n.values()}


def _labels_layer(viewer, shape=(14, 12, 8), affine=None):
    mask = np.zeros(shape, np.uint8)
    mask[2:6, 3:7, 1:4] = 1
    mask[8:11, 2:5, 4:7] = 2
    aff = np.diag([0.8, 0.9, 2.5, 1.0]) if affine is None else affine
    data, kw, _ = labels_layer_data(Volume(mask, aff), name="edited", names=NAMES, colors=COLORS)
    return viewer.add_labels(data, **kw)


def test_labels_saved_under_any_name_reopen_as_labels(tmp_path, make_napari_viewer):
    viewer = make_napari_viewer()
    layer = _labels_layer(viewer)
    layer.paint((12, 9, 6), 5)
    edited = np.array(layer.data)
    for name in ("foo.nrrd", "foo.mha", "foo.nii.gz", "foo.nii"):
        [written] = napari.save_layers(str(tmp_path / name), [layer], plugin=PLUGIN)
        [(data, kwargs, kind)] = get_reader(written)(written)
        assert kind == "labels", name
        np.testing.assert_array_equal(data, edited)
        np.testing.assert_allclose(kwargs["affine"], layer.metadata["affine"], atol=1e-5)
        [reopened] = viewer.open(written, plugin=PLUGIN)
        assert isinstance(reopened, napari.layers.Labels), name
        if name.endswith((".nrrd", ".mha")):        # the header holds the names too
            assert dict(zip(reopened.features["index"], reopened.features["name"])) == NAMES, name
    # the markers themselves (read with nibabel and SimpleITK, not the plugin)
    assert nib.load(str(tmp_path / "foo.nii.gz")).header.get_intent()[0] == "label"
    assert _header(tmp_path / "foo.nrrd")["medseg_kind"] == "labels"
    assert _header(tmp_path / "foo.mha")["medseg_kind"] == "labels"
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "foo.nii.gz")).dataobj), edited)
    # an unmarked integer scan with a plain name is still an image
    write_volume(Volume((np.arange(96).reshape(4, 4, 6) % 7).astype(np.uint16), np.eye(4)), tmp_path / "mr.nrrd")
    [(_d, _k, kind)] = get_reader(str(tmp_path / "mr.nrrd"))(str(tmp_path / "mr.nrrd"))
    assert kind == "image"


def test_seg_nrrd_keeps_names_and_colours(tmp_path, make_napari_viewer):
    viewer = make_napari_viewer()
    layer = _labels_layer(viewer)
    [written] = napari.save_layers(str(tmp_path / "case.seg.nrrd"), [layer], plugin=PLUGIN)
    segs = _segments(_header(written))
    assert {v: f["Name"] for v, f in segs.items()} == {v: n for v, n in NAMES.items() if v}
    for v, rgb in COLORS.items():
        np.testing.assert_allclose([float(c) for c in segs[v]["Color"].split()], rgb, atol=2e-3)
    assert segs[1]["Extent"] == "2 5 3 6 1 3" and segs[5]["Extent"] == "0 -1 0 -1 0 -1"   # value 5 is empty
    assert all(f["Layer"] == "0" for f in segs.values())
    try:
        import slicerio
    except ImportError:
        slicerio = None
    if slicerio is not None:                                    # 3D Slicer's own reader, when installed
        info = slicerio.read_segmentation(str(written), skip_voxels=True)
        assert {s["labelValue"]: s["name"] for s in info["segments"]} == {1: "liver", 2: "tumour", 5: "left kidney"}
    [reopened] = viewer.open(written, plugin=PLUGIN)
    assert isinstance(reopened, napari.layers.Labels)
    assert dict(zip(reopened.features["index"], reopened.features["name"])) == NAMES
    for v, rgb in COLORS.items():
        np.testing.assert_allclose(reopened.colormap.map(v)[:3], rgb, atol=2e-3)
    np.testing.assert_array_equal(reopened.data, layer.data)


def test_slicer_segmentation_saved_again_keeps_its_segments(tmp_path, make_napari_viewer):
    viewer = make_napari_viewer()
    [seg] = viewer.open(CT_SEG, plugin=PLUGIN)
    seg.paint((60, 60, 20), 7)
    [written] = napari.save_layers(str(tmp_path / "edited.seg.nrrd"), [seg], plugin=PLUGIN)
    original, saved = _segments(_header(CT_SEG)), _segments(_header(written))
    assert sorted(saved) == sorted(original) == list(range(1, 8))
    for v in original:
        assert saved[v]["Name"] == original[v]["Name"] and saved[v]["ID"] == original[v]["ID"]
        assert saved[v]["Tags"] == original[v]["Tags"]          # Slicer's terminology entries survive
        np.testing.assert_allclose([float(c) for c in saved[v]["Color"].split()],
                                   [float(c) for c in original[v]["Color"].split()], atol=2e-3)
    np.testing.assert_array_equal(read_volume(written).array, seg.data)


def test_dicom_seg_written_by_the_plugin_reopens_with_the_same_array_and_names(tmp_path, make_napari_viewer):
    pixels = (np.arange(16 * 14 * 9).reshape(16, 14, 9) % 251).astype(np.uint16)
    files = write_dicom_series(tmp_path / "series", pixels, seed=3)
    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        [image] = viewer.open(tmp_path / "series", plugin=PLUGIN)
    mask = np.zeros(image.data.shape, np.uint8)
    mask[3:8, 2:6, 1:3] = 1
    mask[9:12, 8:12, 6:8] = 2                  # frames on slices 1-2 and 6-7: a gap between them
    data, kw, _ = labels_layer_data(Volume(mask, np.asarray(image.metadata["affine"])), name="tumour mask",
                                    names=NAMES, colors=COLORS, image_path=tmp_path / "series")
    layer = viewer.add_labels(data, **kw)
    edited = np.array(layer.data)
    [written] = napari.save_layers(str(tmp_path / "tumour.dcm"), [layer], plugin=PLUGIN)

    [(arr, kwargs, kind)] = get_reader(written)(written)
    assert kind == "labels"
    np.testing.assert_array_equal(arr, edited)                             # the full source grid
    np.testing.assert_array_equal(kwargs["affine"], image.metadata["affine"])
    assert dict(zip(kwargs["features"]["index"], kwargs["features"]["name"])) == NAMES
    [reopened] = viewer.open(written, plugin=PLUGIN)
    assert isinstance(reopened, napari.layers.Labels)
    for v, rgb in COLORS.items():                                          # CIELab in the SEG: close, not exact
        np.testing.assert_allclose(reopened.colormap.map(v)[:3], rgb, atol=0.02)
    # independent of medseg's SEG reader: highdicom by source instance, slices ordered by their headers
    dss = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in files),
                 key=lambda ds: float(ds.ImagePositionPatient[2]))
    px = hd.seg.segread(written).get_pixels_by_source_instance(
        [str(ds.SOPInstanceUID) for ds in dss], combine_segments=True, relabel=True,
        assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(px, edited.transpose(2, 1, 0))          # segments 1, 2 = values 1, 2
    # the reopened SEG can be edited and saved as a SEG again
    reopened.paint((4, 4, 4), 5)
    again = np.array(reopened.data)
    [written2] = napari.save_layers(str(tmp_path / "tumour2.dcm"), [reopened], plugin=PLUGIN)
    [(arr2, _kw, _)] = get_reader(written2)(written2)
    np.testing.assert_array_equal(arr2, again)
