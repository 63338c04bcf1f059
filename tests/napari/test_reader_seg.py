"""napari opens a DICOM SEG as a Labels layer on its true geometry with segment names and colours,
and a predicted mask with the names and colours of its prediction folder's labels.json (Xvfb).

References: the written mask placed by the source series' image layer (world positions of its
voxels), the segment labels/colours given to the writer, the labels.json written here."""

from __future__ import annotations

import warnings

import napari
import numpy as np

from medseg.errors import MedsegWarning
from medseg.io import read_volume, write_dicom_seg, write_mask_like
from medseg.io.labels import LabelTable, write_labels
from medseg.volume import Volume
from tests.helpers import write_dicom_series

PLUGIN = "napari-medseg"
TABLE = LabelTable({"background": 0, "liver": 1, "tumour": 3}, {"tumour": (255, 255, 0), "liver": (0, 0, 255)})


def test_seg_and_predicted_mask_open_with_names_colours_and_geometry(tmp_path, make_napari_viewer):
    pixels = (np.arange(12 * 10 * 6).reshape(12, 10, 6) % 97).astype(np.uint16)
    write_dicom_series(tmp_path / "series", pixels, orientation=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0), seed=2)  # rows flipped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        src = read_volume(tmp_path / "series")
        mask = np.zeros(src.shape, np.uint8)
        mask[2:6, 3:7, 1:3] = 1
        mask[7:9, 1:3, 2:5] = 3
        seg_path = write_dicom_seg(Volume(mask, src.affine), src, TABLE, tmp_path / "pred" / "c1" / "seg.dcm")
    write_mask_like(mask, src, tmp_path / "pred_nii" / "c1.nii.gz")
    (tmp_path / "pred_nii" / "manifest.csv").write_text("case,input,output,status\nc1,x,c1.nii.gz,done\n")
    write_labels(tmp_path / "pred_nii", TABLE)

    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        [image] = viewer.open(tmp_path / "series", plugin=PLUGIN)
    [seg] = viewer.open(seg_path, plugin=PLUGIN)
    [nii] = viewer.open(tmp_path / "pred_nii" / "c1.nii.gz", plugin=PLUGIN)
    for layer in (seg, nii):
        assert isinstance(layer, napari.layers.Labels), layer
        assert dict(zip(layer.features["index"], layer.features["name"])) == {0: "background", 1: "liver", 3: "tumour"}
        np.testing.assert_allclose(layer.colormap.map(3)[:3], [1, 1, 0], atol=1e-3)
        np.testing.assert_allclose(layer.colormap.map(1)[:3], [0, 0, 1], atol=1e-3)
    assert seg.name == "c1 seg"
    # every labelled voxel of the SEG layer sits where the image layer puts the written mask's voxel
    for value in (1, 3):
        seg_world = {tuple(np.round(seg.data_to_world(tuple(map(float, p))), 3)) for p in np.argwhere(seg.data == value)}
        ref_world = {tuple(np.round(image.data_to_world(tuple(map(float, p))), 3)) for p in np.argwhere(mask == value)}
        assert seg_world == ref_world and len(ref_world) == int((mask == value).sum())
