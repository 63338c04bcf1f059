"""Saving a Labels layer drawn over a DICOM series as DICOM SEG, in a real napari viewer (Xvfb).

References: the SEG read back with highdicom's lookup by source instance (slice order from
the source headers, read with pydicom), and the source series read by medseg."""

from __future__ import annotations

import warnings

import highdicom as hd
import napari
import numpy as np
import pydicom
import pytest

from medseg import read_volume
from medseg.errors import MedsegWarning
from medseg.io import read_dicom_seg
from medseg.volume import Volume
from napari_medseg.layers import labels_layer_data
from tests.helpers import MR_DICOM

PLUGIN = "napari-medseg"
pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning",
                                        "ignore::medseg.errors.MedsegWarning")


def test_labels_over_dicom_saved_as_seg_and_read_back(tmp_path, make_napari_viewer):
    viewer = make_napari_viewer()
    [image] = viewer.open(MR_DICOM, plugin=PLUGIN)
    mask = np.zeros(image.data.shape, np.uint8)
    mask[20:50, 100:140, 4:7] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        source = read_volume(MR_DICOM)
    data, kwargs, _ = labels_layer_data(Volume(mask, np.asarray(image.metadata["affine"])), name="tumour mask",
                                        names={0: "background", 1: "tumour", 2: "oedema"}, image_path=MR_DICOM)
    layer = viewer.add_labels(data, **kwargs)
    layer.paint((200, 30, 12), 2, refresh=True)               # data coordinates [i, j, k]: a painted disc
    edited = np.array(layer.data)
    assert (edited == 2).sum() > 0

    [written] = napari.save_layers(str(tmp_path / "tumour.dcm"), [layer], plugin=PLUGIN)
    vol, names = read_dicom_seg(written, source)
    assert names == {"tumour": 1, "oedema": 2}
    np.testing.assert_array_equal(vol.array, edited)
    np.testing.assert_array_equal(vol.affine, source.affine)

    # independent: highdicom per source instance, instances ordered by their own headers
    dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(MR_DICOM.glob("*.dcm"))]
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    seg = hd.seg.segread(written)
    px = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in dss], combine_segments=True,
                                           relabel=True, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(px, edited.transpose(2, 1, 0))
    # NIfTI saving of the same layer is unchanged
    [nii] = napari.save_layers(str(tmp_path / "tumour.nii.gz"), [layer], plugin=PLUGIN)
    np.testing.assert_array_equal(read_volume(nii).array, edited)
