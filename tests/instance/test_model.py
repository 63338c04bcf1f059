"""The network: no downloads, local pretrained weights (torchvision COCO layout or a medseg
checkpoint) with predictor replacement for another class count, and a training step that
lowers the loss on a fixed batch."""

import numpy as np
import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNPredictor
from torchvision.ops.misc import FrozenBatchNorm2d

from medseg.errors import InputError
from medseg.instance.config import InstanceModelConfig
from medseg.instance.model import build_model
from medseg.instance.trainer import train_step

KEY_BACKBONE = "backbone.body.layer3.0.conv1.weight"
A5 = [4, 8, 16, 32, 64]  # anchors (mm) for torchvision's five FPN levels
KEY_RPN = "rpn.head.conv.0.0.weight"


@pytest.fixture(scope="module")
def coco_like(tmp_path_factory):
    """A state dict laid out like torchvision's COCO v1 file (frozen batch norm, 91 classes)."""
    torch.manual_seed(1)
    net = MaskRCNN(_resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), 3), num_classes=91)
    path = tmp_path_factory.mktemp("weights") / "maskrcnn_coco_like.pth"
    state = net.state_dict()
    torch.save(state, path)
    return path, state


def test_local_weights_with_another_class_count_replace_the_predictors(coco_like):
    path, state = coco_like
    cfg = InstanceModelConfig(name="maskrcnn_resnet50_fpn", anchor_sizes_mm=A5, pretrained_weights=str(path),
                              trainable_backbone_layers=3)
    model = build_model(cfg, num_classes=3)
    own = model.state_dict()
    assert torch.equal(own[KEY_BACKBONE], state[KEY_BACKBONE]) and torch.equal(own[KEY_RPN], state[KEY_RPN])
    rh = model.roi_heads
    assert isinstance(rh.box_predictor, FastRCNNPredictor) and isinstance(rh.mask_predictor, MaskRCNNPredictor)
    assert rh.box_predictor.cls_score.out_features == 3 and rh.box_predictor.bbox_pred.out_features == 12
    assert rh.mask_predictor.mask_fcn_logits.out_channels == 3 and rh.mask_predictor.conv5_mask.out_channels == 256
    assert isinstance(model.backbone.body.bn1, FrozenBatchNorm2d)        # as torchvision's pretrained v1
    trainable = {n.split(".")[2] for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.body")}
    assert trainable == {"layer2", "layer3", "layer4"}


def test_a_medseg_checkpoint_with_the_same_classes_loads_whole(coco_like, tmp_path):
    path, state = coco_like
    ck = tmp_path / "best.pt"
    torch.save({"medseg_checkpoint": 1, "model": state, "epoch": 3}, ck)
    model = build_model(InstanceModelConfig(name="maskrcnn_resnet50_fpn", anchor_sizes_mm=A5, pretrained_weights=str(ck)),
                        num_classes=91)
    own = model.state_dict()
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(own[key], state[key])   # predictors kept: same class count


def test_weights_errors_are_clear(coco_like, tmp_path):
    path, _ = coco_like
    with pytest.raises(InputError, match="does not exist; give a local"):
        build_model(InstanceModelConfig(pretrained_weights=str(tmp_path / "missing.pth")), 2)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a readable weights file"):
        build_model(InstanceModelConfig(pretrained_weights=str(junk)), 2)
    with pytest.raises(InputError, match=r"does not fit maskrcnn_resnet50_fpn_v2: .*set model.name"):
        build_model(InstanceModelConfig(name="maskrcnn_resnet50_fpn_v2", anchor_sizes_mm=A5, pretrained_weights=str(path)), 2)
    with pytest.raises(InputError, match=r"does not fit maskrcnn: .*set model.name"):   # the CPU model is not COCO's
        build_model(InstanceModelConfig(pretrained_weights=str(path)), 2)


def test_nothing_is_downloaded(monkeypatch):
    import torch.hub

    def refuse(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    m = build_model(InstanceModelConfig(name="maskrcnn_resnet50_fpn_v2", anchor_sizes_mm=A5), 2)
    assert m.roi_heads.box_predictor.cls_score.out_features == 2
    build_model(InstanceModelConfig(), 2)   # the CPU model (random weights) builds offline too


def test_cpu_model_parts_follow_the_config():
    """ResNet-18 + GroupNorm + 128-channel FPN over stages 1-3 (+ pool); anchors in mm -> pixels."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    cfg = InstanceModelConfig()
    m = build_model(cfg, 3, spacing_mm=(0.8, 0.8))
    assert isinstance(m, MaskRCNN) and isinstance(m.backbone, BackboneWithFPN)
    body = m.backbone.body
    assert isinstance(body.bn1, torch.nn.GroupNorm) and len(body.layer1) == 2 and "layer4" not in dict(body.named_children())
    assert m.backbone.out_channels == 128
    assert 5.0e6 < sum(p.numel() for p in m.parameters()) < 6.5e6
    # 4, 8, 16, 32 mm at 0.8 mm/px -> 5, 10, 20, 40 px, one size per level, 3 ratios
    assert [tuple(s) for s in m.rpn.anchor_generator.sizes] == [(5,), (10,), (20,), (40,)]
    assert m.rpn.fg_bg_sampler.positive_fraction == 0.5 and m.roi_heads.fg_bg_sampler.positive_fraction == 0.5
    feats = m.backbone(torch.zeros(1, 3, 128, 128))
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    r34 = build_model(InstanceModelConfig(backbone="resnet34", norm="batch", fpn_channels=64), 2, spacing_mm=(2.0, 2.0))
    assert isinstance(r34.backbone.body.bn1, torch.nn.BatchNorm2d) and len(r34.backbone.body.layer2) == 4
    assert [s[0] for s in r34.rpn.anchor_generator.sizes] == [2, 4, 8, 16]
    frozen = build_model(InstanceModelConfig(norm="frozen"), 2)
    assert isinstance(frozen.backbone.body.bn1, FrozenBatchNorm2d)
    assert m.roi_heads.box_roi_pool.sampling_ratio == 2 and m.roi_heads.mask_roi_pool.sampling_ratio == 2
    one = build_model(InstanceModelConfig(roi_sampling_ratio=1), 2)
    assert one.roi_heads.box_roi_pool.sampling_ratio == 1 and one.roi_heads.mask_roi_pool.sampling_ratio == 2


def test_box_context_pools_the_proposal_and_a_larger_box_around_it():
    """box_context_mm: the box head gets torchvision's 7 x 7 RoIAlign of each proposal and of a
    context box (2x its sides, at least box_context_mm), concatenated along channels."""
    from torchvision.ops import MultiScaleRoIAlign

    from medseg.config import ConfigError
    from medseg.instance.config import instance_config_from_dict
    from medseg.instance.model import ContextRoIPool

    m = build_model(InstanceModelConfig(box_context_mm=24.0, fpn_channels=32), 2, spacing_mm=(0.8, 0.8))
    pool = m.roi_heads.box_roi_pool
    assert isinstance(pool, ContextRoIPool) and m.roi_heads.box_head.fc6.in_features == 2 * 32 * 7 * 7
    # 24 mm at 0.8 mm/px = 30 px: a 4 x 10 px box gets a 30 x 30 context box on its centre; a
    # 20 x 40 px one twice its sides
    ctx = pool.context_boxes(torch.tensor([[10.0, 10.0, 14.0, 20.0], [0.0, 0.0, 20.0, 40.0]]))
    assert torch.allclose(ctx, torch.tensor([[-3.0, 0.0, 27.0, 30.0], [-10.0, -20.0, 30.0, 60.0]]))
    torch.manual_seed(0)
    feats = {"0": torch.randn(1, 32, 64, 64), "1": torch.randn(1, 32, 32, 32)}
    boxes = [torch.tensor([[20.0, 30.0, 40.0, 44.0]])]
    out = pool(feats, boxes, [(128, 128)])
    ref = MultiScaleRoIAlign(["0", "1"], 7, 2)
    assert out.shape == (1, 64, 7, 7)
    assert torch.allclose(out[:, :32], ref(feats, boxes, [(128, 128)]))
    assert torch.allclose(out[:, 32:], ref(feats, [pool.context_boxes(boxes[0])], [(128, 128)]))
    plain = build_model(InstanceModelConfig(fpn_channels=32), 2)
    assert isinstance(plain.roi_heads.box_roi_pool, MultiScaleRoIAlign)
    with pytest.raises(ConfigError, match="box_context_mm"):
        instance_config_from_dict({"model": {"name": "maskrcnn_resnet50_fpn", "box_context_mm": 20,
                                            "anchor_sizes_mm": [4, 8, 16, 32, 64]}})


def test_detect_with_a_threshold_keeps_what_filtering_afterwards_keeps():
    """``detect`` drops low scores inside the RoI heads (before the mask head): the detections it
    keeps at a threshold t are those it finds at 0.01 and then filters at t, masks included."""
    from medseg.instance.config import instance_config_from_dict
    from medseg.instance.inference import detect
    from tests.instance.conftest import TINY

    cfg = instance_config_from_dict(TINY)
    torch.manual_seed(0)
    model = build_model(cfg.model, 2, spacing_mm=cfg.data.spacing_mm)
    before = model.roi_heads.score_thresh
    vol = np.random.default_rng(0).normal(40, 60, (40, 36, 3)).astype(np.float32)
    low = detect(model, vol, cfg, torch.device("cpu"), 0.01)
    t = float(np.median(np.concatenate([d.scores for d in low])))  # keeps about half
    high = detect(model, vol, cfg, torch.device("cpu"), t)
    assert sum(len(d.scores) for d in low) > sum(len(d.scores) for d in high) > 0
    for lo, hi in zip(low, high):
        keep = lo.scores >= t
        assert np.array_equal(lo.scores[keep], hi.scores) and np.array_equal(lo.masks[keep], hi.masks)
    assert model.roi_heads.score_thresh == before  # the model's own setting is restored


def test_graded_masks_equal_the_masks_at_each_threshold():
    """``detect(mask_levels=...)`` runs the network once; each level equals a separate run with
    that mask threshold (same detections, same scores)."""
    from medseg.instance.config import instance_config_from_dict
    from medseg.instance.inference import at_mask_level, detect
    from tests.instance.conftest import TINY

    cfg = instance_config_from_dict(TINY)
    torch.manual_seed(0)
    model = build_model(cfg.model, 2, spacing_mm=cfg.data.spacing_mm)
    vol = np.random.default_rng(0).normal(40, 60, (40, 36, 3)).astype(np.float32)
    levels = [0.3, 0.5, 0.7]
    graded = detect(model, vol, cfg, torch.device("cpu"), 0.01, mask_levels=levels)
    assert graded[0].masks.dtype == np.uint8 and sum(len(d.scores) for d in graded) > 0
    for j, t in enumerate(levels):
        cfg.inference.mask_threshold = t
        plain = detect(model, vol, cfg, torch.device("cpu"), 0.01)
        for a, b in zip(at_mask_level(graded, j), plain):
            assert a.masks.dtype == bool and np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)
    sizes = [sum(int(d.masks.sum()) for d in at_mask_level(graded, j)) for j in range(3)]
    assert sizes[0] > sizes[1] > sizes[2] > 0  # a random network's masks are not all 0 or 1


def test_hard_negative_sampler_takes_the_first_negatives_and_random_others():
    """Proposals arrive in RPN objectness order, so the hard negatives are the first indices
    labelled 0; positives and the other negatives are random, counts as torchvision's sampler."""
    from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

    from medseg.instance.model import HardNegativeSampler

    labels = torch.tensor([0] * 10 + [-1] + [1] * 3)  # 10 negatives, 1 ignored, 3 positives
    torch.manual_seed(0)
    pos, neg = HardNegativeSampler(8, 0.25, 0.5)([labels])
    base_pos, base_neg = BalancedPositiveNegativeSampler(8, 0.25)([labels])
    assert int(pos[0].sum()) == int(base_pos[0].sum()) == 2 and int(neg[0].sum()) == int(base_neg[0].sum()) == 6
    assert neg[0][:3].tolist() == [1, 1, 1]                       # 6 x 0.5: the 3 highest-ranked
    assert int(neg[0][3:10].sum()) == 3 and int(neg[0][10:].sum()) == 0
    assert set(torch.where(pos[0] > 0)[0].tolist()) <= {11, 12, 13}
    all_hard = HardNegativeSampler(8, 0.25, 1.0)([labels])[1][0]
    assert all_hard[:6].tolist() == [1] * 6 and int(all_hard.sum()) == 6


def test_rpn_proposals_come_in_objectness_order():
    """What the hard-negative sampler relies on: torchvision's RPN returns each image's proposals
    sorted by objectness, highest first (checked on its own filter with random scores)."""
    from medseg.instance.config import instance_config_from_dict
    from tests.instance.conftest import TINY

    cfg = instance_config_from_dict({**TINY, "model": {**TINY["model"], "box_hard_negative_fraction": 0.5}})
    model = build_model(cfg.model, 2, spacing_mm=cfg.data.spacing_mm).train()
    assert type(model.roi_heads.fg_bg_sampler).__name__ == "HardNegativeSampler"
    g = torch.Generator().manual_seed(0)
    n = [300, 200]
    xy = torch.rand(2, sum(n), 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 4 + torch.rand(2, sum(n), 2, generator=g) * 10], dim=2)
    objectness = torch.randn(2 * sum(n), 1, generator=g)
    out, scores = model.rpn.filter_proposals(boxes, objectness, [(64, 64)] * 2, n)
    for b, s in zip(out, scores):
        assert len(s) > 10 and torch.all(s[:-1] >= s[1:])


def test_images_are_padded_with_air():
    """The transform pads to a multiple of 32 with raw value 0 (air in every CT window)."""
    m = build_model(InstanceModelConfig(), 2)
    batch, _ = m.transform([torch.zeros(3, 40, 50)])
    assert tuple(batch.tensors.shape) == (1, 3, 64, 64)
    assert torch.allclose(batch.tensors[0, :, 45, 60], batch.tensors[0, :, 5, 5])


def _batch():
    rng = np.random.default_rng(0)
    images, targets = [], []
    for r0, c0 in ((10, 12), (30, 20)):
        img = rng.normal(0.2, 0.02, (3, 64, 64)).astype(np.float32)
        mask = np.zeros((64, 64), np.uint8)
        mask[r0:r0 + 14, c0:c0 + 12] = 1
        img[:, mask.astype(bool)] += 0.6
        images.append(torch.from_numpy(img))
        targets.append({"boxes": torch.tensor([[c0, r0, c0 + 12, r0 + 14]], dtype=torch.float32),
                        "labels": torch.tensor([1]), "masks": torch.from_numpy(mask[None])})
    return images, targets


def _loss(model, images, targets):
    torch.manual_seed(0)  # the same proposal sampling for both evaluations
    with torch.no_grad():
        return float(sum(model(images, targets).values()))


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = InstanceModelConfig(rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50, box_batch_size_per_image=32,
                              fpn_channels=64)
    model = build_model(cfg, 2)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    images, targets = _batch()
    before = _loss(model, images, targets)
    losses = [train_step(model, images, targets, opt, scaler, params, 10.0) for _ in range(3)]
    after = _loss(model, images, targets)
    assert all(np.isfinite(losses)) and after < before


def test_cpu_bf16_only_when_asked_and_native(monkeypatch):
    """precision auto stays fp32 on a CPU; an explicit bf16 trains in bf16 only where the CPU has
    native bf16 (and only for callers that opt in: the instance trainer); a GPU is unchanged."""
    import medseg.model.device as device

    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_bf16_supported", lambda: True)
    assert device.autocast_dtype("bf16", cpu, cpu_bf16=True) == torch.bfloat16
    assert device.autocast_dtype("auto", cpu, cpu_bf16=True) is None
    assert device.autocast_dtype("bf16", cpu) is None and device.autocast_dtype("fp32", cpu, cpu_bf16=True) is None
    monkeypatch.setattr(device, "cpu_bf16_supported", lambda: False)
    assert device.autocast_dtype("bf16", cpu, cpu_bf16=True) is None
