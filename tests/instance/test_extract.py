"""Per-slice instance extraction and the training slice order, on constructed label slices."""

import numpy as np
import pytest

from medseg.instance.config import InstanceDataConfig
from medseg.instance.dataset import SliceCase, epoch_order
from medseg.instance.extract import slice_instances


def _slice():
    lab = np.zeros((10, 12), np.uint8)
    lab[1:4, 2:7] = 4        # tumour A: rows 1-3, cols 2-6
    lab[6, 9] = 4            # tumour B: one pixel at (6, 9)
    lab[7, 10] = 4           # diagonal neighbour of B: same component with 8-connectivity
    lab[5:9, 0:3] = 1        # an organ (not an instance class unless asked)
    return lab


def test_known_components_give_known_boxes_and_masks():
    lab = _slice()
    t = slice_instances(lab, {4: 1}, connectivity=8)
    assert t["labels"].tolist() == [1, 1]
    # (x1, y1, x2, y2) = (col_min, row_min, col_max + 1, row_max + 1)
    assert t["boxes"].tolist() == [[2, 1, 7, 4], [9, 6, 11, 8]]
    expect_a = np.zeros_like(lab, bool)
    expect_a[1:4, 2:7] = True
    np.testing.assert_array_equal(t["masks"][0].astype(bool), expect_a)
    assert t["masks"][1].sum() == 2 and t["masks"][1][6, 9] and t["masks"][1][7, 10]
    assert t["masks"].dtype == np.uint8 and t["boxes"].dtype == np.float32 and t["labels"].dtype == np.int64


def test_connectivity_min_pixels_and_several_classes():
    lab = _slice()
    four = slice_instances(lab, {4: 1}, connectivity=4)
    assert four["boxes"].tolist() == [[2, 1, 7, 4], [9, 6, 10, 7], [10, 7, 11, 8]]
    assert len(slice_instances(lab, {4: 1}, connectivity=4, min_pixels=2)["boxes"]) == 1
    both = slice_instances(lab, {4: 1, 1: 2})
    assert both["labels"].tolist() == [1, 1, 2] and both["boxes"][2].tolist() == [0, 5, 3, 9]


def test_empty_slice_gives_empty_targets():
    t = slice_instances(np.zeros((5, 6), np.uint8), {4: 1})
    assert t["boxes"].shape == (0, 4) and t["masks"].shape == (0, 5, 6) and t["labels"].shape == (0,)


def test_epoch_order_uses_every_lesion_slice_and_a_share_of_empty_ones():
    cases = [SliceCase("a", np.zeros((4, 4, 100), np.float32), np.zeros((4, 4, 100), np.uint8), None, np.arange(10, 20))]
    order = epoch_order(cases, rate=0.2, seed=0, epoch=0, needed=10 ** 3)
    first = order[: len(set(order))]
    slices = {k for _, k in first}
    assert set(range(10, 20)) <= slices
    assert 5 <= len(slices - set(range(10, 20))) <= 35  # about 0.2 x 90 empty slices
    assert order == epoch_order(cases, 0.2, 0, 0, 10 ** 3)          # deterministic
    assert order != epoch_order(cases, 0.2, 0, 1, 10 ** 3)          # another epoch, another order
    none = epoch_order(cases, 0.0, 0, 0, 50)
    assert {k for _, k in none} == set(range(10, 20))


def test_config_validation_names_key_and_values(tmp_path):
    from medseg.config import ConfigError
    from medseg.instance.config import load_instance_config

    for text, match in [
        ("task: instance\ndata: {channels: slices}", r"data.channels: 'slices' is not allowed; choose one of 'windows', 'neighbours'"),
        ("task: instance\nmodel: {name: yolo}", r"model.name: 'yolo' is not allowed; choose one of 'maskrcnn_resnet50_fpn'"),
        ("task: instance\nmodle: {}", r"unknown key 'modle'; allowed keys: task, description, data, model"),
        ("task: instance\ndata: {windows: [[40, 400]]}", r"data.windows: channels 'windows' needs exactly 3"),
        ("task: instance\ninference: {score_threshold: 2}", r"inference.score_threshold: must be in \[0, 1\]"),
    ]:
        p = tmp_path / "c.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_instance_config(p)
    assert load_instance_config("configs/maskrcnn_lesions.yaml").data.classes == ["tumour"]
    assert InstanceDataConfig().channels == "windows"
