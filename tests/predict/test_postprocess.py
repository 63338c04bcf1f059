"""Postprocessing on hand-built label maps with components of known sizes."""

import numpy as np

from medseg.predict.postprocess import class_volumes, clean_labels
from medseg.volume import Volume


def _mask():
    a = np.zeros((20, 20, 20), np.uint8)
    a[1:6, 1:6, 1:6] = 1      # class 1: 125 voxels
    a[10:12, 10:12, 10:12] = 1  # class 1: 8 voxels
    a[15, 15, 15] = 1          # class 1: 1 voxel
    a[1:4, 10:14, 1:3] = 2     # class 2: 24 voxels
    a[18, 1, 1] = 2            # class 2: 1 voxel
    a[17, 2, 2] = 2            # touches (18,1,1) diagonally: 26-connected -> one 2-voxel component
    return Volume(a, np.diag([2.0, 2.0, 2.5, 1.0]))  # voxel = 10 mm^3 = 0.01 ml


def test_keep_largest_and_min_size():
    m = _mask()
    out = clean_labels(m, keep_largest=[1], min_component_ml={2: 0.05})
    a = out.array
    assert (a == 1).sum() == 125 and a[1:6, 1:6, 1:6].min() == 1
    assert (a == 2).sum() == 24  # the 2-voxel (0.02 ml) component is dropped, the 0.24 ml one kept
    assert a[18, 1, 1] == 0 and a[17, 2, 2] == 0
    np.testing.assert_array_equal(out.affine, m.affine)
    assert m.array[15, 15, 15] == 1, "the input is not modified"


def test_min_size_counts_26_connectivity_and_volumes():
    m = _mask()
    out = clean_labels(m, keep_largest=[], min_component_ml={2: 0.02, 1: 0.05})
    assert (out.array == 2).sum() == 26  # diagonal neighbours form one 0.02 ml component: kept
    assert (out.array == 1).sum() == 133  # 125 + 8 voxels (0.08 ml) kept, the 0.01 ml voxel dropped
    vols = class_volumes(m, {"background": 0, "a": 1, "b": 2, "c": 3})
    assert vols == {"a": 1.34, "b": 0.26, "c": 0.0}
