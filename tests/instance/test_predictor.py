"""The predictor pipeline on constructed scans, with a stand-in network whose detections are
known (each bright blob of a slice), so every output can be checked by hand: the instance map
lies on exactly the source grid (flipped, oblique), lesions are numbered, the table holds the
right volumes / slices / centroids, progress and cancel work, and an organ mask filters."""

import math
import threading

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.errors import Cancelled
from medseg.instance.config import InstanceConfig
from medseg.instance.predictor import InstancePredictor
from medseg.predict.result import CasePrediction
from medseg.volume import Volume


class BlobNet:
    """Detects every 8-connected blob of channel 0 > 0.5 (HU > 40 in the first window)."""

    def eval(self):
        return self

    def __call__(self, images):
        out = []
        for img in images:
            cc, n = ndimage.label(img[0].numpy() > 0.5, np.ones((3, 3)))
            masks = np.stack([cc == i for i in range(1, n + 1)]) if n else np.zeros((0, *cc.shape), bool)
            out.append({"boxes": torch.zeros((n, 4)), "labels": torch.ones(n, dtype=torch.int64),
                        "scores": torch.full((n,), 0.9), "masks": torch.from_numpy(masks[:, None].astype(np.float32))})
        return out


def _scan(spacing=(0.7, 0.7, 2.0), shape=(60, 50, 16), tilt=8.0):
    c, s = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))
    aff = np.eye(4)
    aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([-spacing[0], spacing[1], -spacing[2]])
    aff[:3, 3] = (20.0, -10.0, 30.0)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    centres = [aff[:3, :3] @ np.array([15, 14, 5]) + aff[:3, 3], aff[:3, :3] @ np.array([42, 34, 10]) + aff[:3, 3]]
    radii = [5.0, 4.0]
    balls = [np.linalg.norm(world - c, axis=-1) <= r for c, r in zip(centres, radii)]
    hu = np.full(shape, -100, np.int16)
    for b in balls:
        hu[b] = 200
    return Volume(hu, aff), balls, centres


def _id_of(mask, ball):
    values, counts = np.unique(mask.array[ball], return_counts=True)
    return int(values[np.argmax(counts)])


def _predictor(tmp_path, spacing_mm, batch_size=4):
    (tmp_path / "best.pt").write_bytes(b"weights")  # model_id hashes the checkpoint file
    cfg = InstanceConfig()
    cfg.data.spacing_mm = spacing_mm
    cfg.inference.batch_size = batch_size
    return InstancePredictor(BlobNet(), cfg, {"background": 0, "tumour": 1}, tmp_path, torch.device("cpu"))


def test_lesions_on_exactly_the_source_grid_with_a_right_table(tmp_path):
    vol, balls, centres = _scan()
    pred = _predictor(tmp_path, (0.7, 0.7))
    calls = []
    res = pred.predict([vol], progress=lambda d, t: calls.append((d, t)))
    mask = res.mask
    assert mask.shape == vol.shape and np.array_equal(mask.affine, vol.affine) and mask.array.dtype == np.uint16
    assert calls == [(4, 16), (8, 16), (12, 16), (16, 16)]
    assert res.labels == {"background": 0, "tumour": 1} and pred.model_id.startswith(tmp_path.name + "-")
    ids = [_id_of(mask, ball) for ball in balls]
    assert ids == [2, 1]  # numbered inferior first: the second ball is lower (k axis stored S -> I)
    for lid, ball in zip(ids, balls):  # same spacing: no resampling, exact
        np.testing.assert_array_equal(mask.array == lid, ball)
    rows = {r["id"]: r for r in res.tables["lesions"]}
    voxel_ml = 0.7 * 0.7 * 2.0 / 1000
    assert sorted(rows) == [1, 2] and {r["class"] for r in rows.values()} == {"tumour"}
    for lid, ball, centre in zip(ids, balls, centres):
        r = rows[lid]
        ks = np.flatnonzero(ball.any(axis=(0, 1)))
        assert r["voxels"] == ball.sum() and r["volume_ml"] == pytest.approx(ball.sum() * voxel_ml, abs=1e-4)
        assert (r["first_slice"], r["last_slice"]) == (ks.min(), ks.max())
        c = np.array([r["centroid_r_mm"], r["centroid_a_mm"], r["centroid_s_mm"]])
        assert np.linalg.norm(c - centre) < 0.5
        assert r["score"] == pytest.approx(0.9)
    assert rows[ids[0]]["longest_axial_diameter_mm"] == pytest.approx(10.0, abs=1.0)   # ball of radius 5 mm
    assert res.volumes_ml["tumour"] == pytest.approx(sum(r["volume_ml"] for r in rows.values()))
    assert set(res.timings) == {"preprocess", "network", "postprocess"}
    np.testing.assert_array_equal(pred(vol).array, mask.array)


def test_resampled_prediction_is_still_on_the_source_grid(tmp_path):
    vol, balls, _ = _scan()
    res = _predictor(tmp_path, (1.1, 1.1)).predict([vol])
    assert res.mask.shape == vol.shape and np.array_equal(res.mask.affine, vol.affine)
    for ball in balls:
        m = res.mask.array == _id_of(res.mask, ball)
        assert 2 * (m & ball).sum() / (m.sum() + ball.sum()) > 0.9


def test_cancel_and_organ_mask(tmp_path):
    vol, balls, _ = _scan()
    pred = _predictor(tmp_path, (0.7, 0.7))
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        pred.predict([vol], cancel=ev)
    organ = vol.with_array(np.zeros(vol.shape, np.uint8))
    organ.array[ndimage.binary_dilation(balls[1], iterations=2)] = 1      # only the second ball is inside
    res = pred.predict([vol], organ_mask=organ)
    assert [r["id"] for r in res.tables["lesions"]] == [1]
    np.testing.assert_array_equal(res.mask.array == 1, balls[1])
    assert pred.predict([vol], organ_mask=organ.with_array(organ.array * 2)).tables["lesions"]
    pred.organ_mask_labels = [3]                                           # a label the organ mask lacks
    assert pred.predict([vol], organ_mask=organ).tables["lesions"] == []
    # An organ model (a U-Net predictor, as `medseg predict --organ-model` loads) makes the mask.
    pred.organ_mask_labels = None

    class OrganNet:
        def predict(self, channels, **kw):
            return CasePrediction(organ, {"background": 0, "liver": 1})

    pred.organ_predictor = OrganNet()
    res = pred.predict(vol, uncertainty=True)  # the batch engine's call: one Volume or a list, uncertainty flag
    assert len(res.tables["lesions"]) == 1 and res.uncertainty is None and res.mask.meta["model_id"] == pred.model_id
