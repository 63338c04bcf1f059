"""Per-slice instance extraction and the training slice order, on constructed label slices."""

import numpy as np
import pytest
import torch

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


def _case(with_instances=np.arange(10, 20), centres=np.zeros((0, 3), np.int64), box=(0, 4, 0, 4), shape=(4, 4, 100)):
    return SliceCase("a", np.zeros(shape, np.float32), np.zeros(shape, np.uint8), None, with_instances,
                     np.asarray(centres, np.int64).reshape(-1, 3), box)


def test_whole_slice_order_uses_every_lesion_slice_and_a_share_of_empty_ones():
    cases = [_case()]
    cfg = InstanceDataConfig(crop_px=0, empty_slice_rate=0.2)
    order = epoch_order(cases, cfg, seed=0, epoch=0, needed=10 ** 3)
    first = order[: len(set(order))]
    slices = {k for _, k, _, _ in first}
    assert set(range(10, 20)) <= slices
    assert 5 <= len(slices - set(range(10, 20))) <= 35  # about 0.2 x 90 empty slices
    assert order == epoch_order(cases, cfg, 0, 0, 10 ** 3)          # deterministic
    assert order != epoch_order(cases, cfg, 0, 1, 10 ** 3)          # another epoch, another order
    none = epoch_order(cases, InstanceDataConfig(crop_px=0, empty_slice_rate=0.0), 0, 0, 50)
    assert {k for _, k, _, _ in none} == set(range(10, 20))


def test_crops_centre_lesions_with_bounded_jitter_and_the_rest_fall_in_the_organ_box():
    """Lesion centres at (k=5, x=50, y=60) and (k=7, x=20, y=30); organ box x 10-90, y 20-80."""
    case = _case(np.array([5, 7]), [(5, 50, 60), (7, 20, 30)], box=(10, 90, 20, 80), shape=(100, 100, 12))
    cfg = InstanceDataConfig(crop_px=64, lesion_crop_fraction=0.7, crop_jitter=0.25)
    order = epoch_order([case], cfg, seed=3, epoch=0, needed=4000)
    centred, other = 0, 0
    for ci, k, x0, y0 in order:
        cx, cy = x0 + 32, y0 + 32  # crop centre (pixels)
        lesion = {5: (50, 60), 7: (20, 30)}.get(k)
        if lesion and abs(cx - lesion[0]) <= 16 + 1 and abs(cy - lesion[1]) <= 16 + 1:
            centred += 1
        else:
            other += 1
            assert 10 - 1 <= cx <= 90 + 1 and 20 - 1 <= cy <= 80 + 1, (k, cx, cy)
    # 70 % lesion crops, plus the random crops that happen to land on slice 5 or 7 near a lesion
    assert 0.68 <= centred / len(order) <= 0.78
    assert order == epoch_order([case], cfg, 3, 0, 4000)


def test_a_crop_is_padded_with_air_and_keeps_its_instance():
    from medseg.instance.dataset import make_sample

    shape = (40, 30, 3)
    image = np.full(shape, 60.0, np.float32)
    label = np.zeros(shape, np.uint8)
    label[2:6, 3:8, 1] = 4                       # a lesion near the corner of slice 1
    image[label == 4] = 100.0
    case = SliceCase("a", image, label, None, np.array([1]), np.array([[1, 4, 5]]), (0, 40, 0, 30))
    cfg = InstanceDataConfig(crop_px=32, windows=[(60.0, 160.0), (100.0, 300.0), (40.0, 400.0)])
    img, tgt = make_sample(case, (0, 1, -10, -12), cfg, {4: 1})
    assert img.shape == (3, 32, 32) and tgt["masks"].shape == (1, 32, 32)
    assert float(img[:, :10].abs().max()) == 0.0 and float(img[:, :, :12].abs().max()) == 0.0   # air outside
    # the lesion moves by the crop origin: rows 2-5 -> 12-15, cols 3-7 -> 15-19; box (x1, y1, x2, y2)
    assert tgt["boxes"].tolist() == [[15.0, 12.0, 20.0, 16.0]]
    assert abs(float(img[0, 12, 15]) - (100 - (60 - 80)) / 160) < 1e-6   # first window: (v - lo) / width



def test_a_transposed_crop_swaps_x_and_y_of_image_and_target():
    """``transpose`` (data.rotate90) swaps the crop's axes: the hand-placed lesion's box
    (x1, y1, x2, y2) swaps its coordinates and the image is the transposed one."""
    from medseg.instance.dataset import make_batch, make_sample

    shape = (40, 30, 3)
    image = np.full(shape, 60.0, np.float32)
    label = np.zeros(shape, np.uint8)
    label[2:6, 3:8, 1] = 4
    image[label == 4] = 100.0
    image[0, 0, 1] = -50.0                       # marks the crop's corner (x 0, y 0)
    case = SliceCase("a", image, label, None, np.array([1]), np.array([[1, 4, 5]]), (0, 40, 0, 30))
    cfg = InstanceDataConfig(crop_px=32, windows=[(60.0, 160.0), (100.0, 300.0), (40.0, 400.0)])
    plain, t0 = make_sample(case, (0, 1, 0, 0), cfg, {4: 1})
    swapped, t1 = make_sample(case, (0, 1, 0, 0), cfg, {4: 1}, transpose=True)
    assert t0["boxes"].tolist() == [[3.0, 2.0, 8.0, 6.0]] and t1["boxes"].tolist() == [[2.0, 3.0, 6.0, 8.0]]
    assert torch.equal(swapped, plain.transpose(1, 2)) and torch.equal(t1["masks"], t0["masks"].transpose(1, 2))
    # with rotate90 about half of a batch is transposed; without it none is (flips off here)
    items = [(0, 1, 0, 0)] * 200
    on = make_batch([case], items, InstanceDataConfig(crop_px=32, windows=cfg.windows, flip=False, rotate90=True,
                                                      intensity_jitter=0.0), {4: 1}, 0, 0, 0)[1]
    off = make_batch([case], items, InstanceDataConfig(crop_px=32, windows=cfg.windows, flip=False,
                                                       intensity_jitter=0.0), {4: 1}, 0, 0, 0)[1]
    n_swapped = sum(t["boxes"].tolist() == [[2.0, 3.0, 6.0, 8.0]] for t in on)
    assert 70 <= n_swapped <= 130 and all(t["boxes"].tolist() == [[3.0, 2.0, 8.0, 6.0]] for t in off)

def test_config_validation_names_key_and_values(tmp_path):
    from medseg.config import ConfigError
    from medseg.instance.config import load_instance_config

    for text, match in [
        ("task: instance\ndata: {channels: slices}", r"data.channels: 'slices' is not allowed; choose one of 'windows', 'neighbours'"),
        ("task: instance\nmodel: {name: yolo}", r"model.name: 'yolo' is not allowed; choose one of 'maskrcnn', "),
        ("task: instance\nmodel: {backbone: vgg}", r"model.backbone: 'vgg' is not allowed; choose one of 'resnet18'"),
        ("task: instance\nmodel: {anchor_sizes_mm: [4, 8]}", r"model.anchor_sizes_mm: give one size per FPN level \(4"),
        ("task: instance\nmodle: {}", r"unknown key 'modle'; allowed keys: task, description, data, model"),
        ("task: instance\ndata: {windows: [[40, 400]]}", r"data.windows: channels 'windows' needs exactly 3"),
        ("task: instance\ninference: {score_threshold: 2}", r"inference.score_threshold: auto or a number in \[0, 1\]"),
        ("task: instance\ndata: {classes: []}", r"data.classes: name at least one class of the dataset, or use auto"),
    ]:
        p = tmp_path / "c.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_instance_config(p)
    for preset in ("configs/maskrcnn_lesions.yaml", "configs/maskrcnn_lesions_cpu.yaml"):
        cfg = load_instance_config(preset)
        assert cfg.data.classes == "auto" and cfg.inference.score_threshold == "auto"   # no dataset label names
    assert InstanceDataConfig().classes == "auto" and InstanceDataConfig().channels == "windows"


def test_negative_crops_visit_every_structure_however_small():
    """A large organ (label 1: 60 x 60 px on 10 slices) and a small one (label 3: 4 x 4 px on 2
    slices) beside one lesion (label 4). With ``negative_crops: structures`` the negatives are
    centred on a voxel of organ 1, of organ 3, or in the labelled box, about a third each, so the
    small organ (0.2% of the labelled voxels) is seen as often as the large one."""
    from medseg.instance.dataset import structure_voxels

    shape = (100, 100, 12)
    label = np.zeros(shape, np.uint8)
    label[20:80, 20:80, 1:11] = 1
    label[90:94, 5:9, 5:7] = 3
    label[40:44, 40:44, 5] = 4
    structures = structure_voxels(label, [4], "case")
    assert sorted(structures) == [1, 3] and len(structures[3]) == 32 and len(structures[1]) == 4096
    k, x, y = structures[1].T
    assert (label[x, y, k] == 1).all()
    case = SliceCase("a", np.zeros(shape, np.float32), label, None, np.array([5]), np.array([[5, 42, 42]]),
                     (5, 94, 5, 80), structures)
    cfg = InstanceDataConfig(crop_px=32, lesion_crop_fraction=0.0)
    order = epoch_order([case], cfg, seed=0, epoch=0, needed=3000)
    centres = [(k, x0 + 16, y0 + 16) for _, k, x0, y0 in order]
    small = sum(label[x, y, k] == 3 for k, x, y in centres) / len(centres)
    large = sum(label[x, y, k] == 1 for k, x, y in centres) / len(centres)
    assert 0.28 <= small <= 0.39 and large >= 0.3  # the box third adds some organ-1 centres
    old = epoch_order([case], InstanceDataConfig(crop_px=32, lesion_crop_fraction=0.0, negative_crops="box"), 0, 0, 3000)
    assert sum(label[x0 + 16, y0 + 16, k] == 3 for _, k, x0, y0 in old) / 3000 < 0.01


def test_lesion_sampling_draws_3d_lesions_not_slices():
    """Two lesions: one on 1 slice, one on 9 (two per-slice pieces on slice 6 joined in 3D). With
    ``slices`` the small one gets 1 of 11 per-slice instances; with ``lesions`` half the crops."""
    from medseg.instance.dataset import instance_centres

    shape = (60, 60, 12)
    label = np.zeros(shape, np.uint8)
    label[10:14, 10:14, 11] = 4                  # small lesion: one slice
    label[30:40, 30:40, 1:10] = 4                # large lesion: nine slices ...
    label[34:36, :, 6] = 0                       # ... cut in two on slice 6 (two per-slice instances)
    centres, owner = instance_centres(label, [4])
    assert len(centres) == 11 and sorted(np.bincount(owner).tolist()) == [1, 10]
    small = int(owner[centres[:, 0].tolist().index(11)])
    assert [int(o) for (k, _, _), o in zip(centres.tolist(), owner) if k == 6] == [1 - small] * 2
    case = SliceCase("a", np.zeros(shape, np.float32), label, None, np.arange(1, 10), centres, (0, 60, 0, 60),
                     lesion_of=owner)
    for sampling, lo, hi in (("slices", 0.06, 0.12), ("lesions", 0.45, 0.55)):
        cfg = InstanceDataConfig(crop_px=32, lesion_crop_fraction=1.0, crop_jitter=0.0, lesion_sampling=sampling)
        order = epoch_order([case], cfg, seed=0, epoch=0, needed=3000)
        share = sum(k == 11 for _, k, _, _ in order) / len(order)
        assert lo <= share <= hi, (sampling, share)
