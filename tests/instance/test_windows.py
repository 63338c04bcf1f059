"""``windows: auto``: CT windows derived from the lesion class and the tissue around it, checked
on hand-built volumes whose intensities are known (soft-tissue lesions, lung nodules)."""

import numpy as np
import pytest

from medseg.instance.channels import lesion_windows, slice_channels
from medseg.instance.config import InstanceDataConfig
from medseg.errors import InputError


def _volume(host_hu: float, lesion_hu: float, outside_hu: float):
    """40 x 40 x 3 px: a host disc (radius 15 px) around a lesion disc (radius 4 px) on slice 1,
    ``outside_hu`` beyond the host. Label 1 host, 2 lesion."""
    x, y = np.mgrid[:40, :40]
    r = np.hypot(x - 20, y - 20)
    img = np.full((40, 40, 3), outside_hu, np.float32)
    lab = np.zeros((40, 40, 3), np.uint8)
    for k in range(3):
        img[:, :, k][r <= 15] = host_hu
        lab[:, :, k][r <= 15] = 1
    img[:, :, 1][r <= 4] = lesion_hu
    lab[:, :, 1][r <= 4] = 2
    return img, lab


def test_window_spans_lesion_and_host_in_soft_tissue():
    img, lab = _volume(host_hu=60, lesion_hu=120, outside_hu=-1000)
    (level, width), (l2, w2), (l3, w3) = lesion_windows([img], [lab], [2], (1.0, 1.0))
    # lesion 120 and host 60 (the ring of 4 mm lies inside the host): [60, 120], width 60 >= 50
    assert (level, width) == (90.0, 60.0)
    assert (l2, w2, l3, w3) == (90.0, 120.0, 90.0, 240.0)
    ch = slice_channels(img, 1, InstanceDataConfig(windows=[(level, width), (l2, w2), (l3, w3)]), None)
    assert ch[0][20, 20] == pytest.approx(1.0) and ch[0][20, 8] == pytest.approx(0.0)  # lesion vs host: full contrast


def test_lung_nodule_gets_a_lung_window():
    img, lab = _volume(host_hu=-850, lesion_hu=20, outside_hu=40)
    (level, width), *_ = lesion_windows([img], [lab], [2], (1.0, 1.0))
    assert (level, width) == (-415.0, 870.0)   # [-850, 20]: the abdominal presets' windows would show nothing


def test_uniform_lesion_in_uniform_host_keeps_a_minimum_width():
    img, lab = _volume(host_hu=50, lesion_hu=50, outside_hu=50)
    assert lesion_windows([img], [lab], [2], (1.0, 1.0))[0] == (50.0, 50.0)


def test_no_lesion_voxel_falls_back_to_soft_tissue():
    img, lab = _volume(60, 120, -1000)
    assert lesion_windows([img], [lab], [3], (1.0, 1.0))[0] == (40.0, 400.0)


def test_unresolved_auto_windows_are_refused_where_channels_are_made():
    img, _ = _volume(60, 120, -1000)
    with pytest.raises(InputError, match="windows: auto is resolved"):
        slice_channels(img, 1, InstanceDataConfig(windows="auto"), None)
