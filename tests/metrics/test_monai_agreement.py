"""medseg's metrics against MONAI 1.6's metric classes (the independent reference).

Tolerances are the acceptance criteria: Dice within 1e-4, distances within 1 %.
"""

import numpy as np
import pytest
from scipy import ndimage

from medseg import Volume, read_volume
from medseg.metrics import dice, evaluate_case, iou, surface_distances
from tests.helpers import CT_SEG
from tests.metrics.reference import blob, monai_scores, onehot

SPACINGS = [(1.0, 1.0, 1.0), (0.7, 1.3, 2.5), (3.05, 3.05, 10.0), (0.5, 2.0, 0.8)]


@pytest.mark.parametrize("method", ["auto", "edt", "kdtree"])
@pytest.mark.parametrize("seed", range(4))
def test_random_masks_match_monai(seed, method):
    spacing = SPACINGS[seed]
    pred = blob((40, 36, 32), seed)
    ref = blob((40, 36, 32), seed + 100)
    sd = surface_distances(pred, ref, spacing, method=method)
    ref_scores = monai_scores(pred[None], ref[None], spacing, tolerance_mm=1.5)
    assert dice(pred, ref) == pytest.approx(ref_scores["dice"][0], abs=1e-4)
    assert sd.hausdorff(95) == pytest.approx(ref_scores["hd95_mm"][0], rel=0.01)
    assert sd.assd() == pytest.approx(ref_scores["assd_mm"][0], rel=0.01)
    assert sd.surface_dice(1.5) == pytest.approx(ref_scores["nsd"][0], abs=1e-3)


def _ball(shape, centre, radius_vox) -> np.ndarray:
    g = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((x - c) ** 2 for x, c in zip(g, centre)) <= radius_vox**2


@pytest.mark.parametrize("method", ["edt", "kdtree"])
def test_asymmetric_surfaces_match_monai(method):
    """A large prediction around a small off-centre reference: the two directions differ a lot,
    so averaging the directed means (instead of all distances) or pooling the percentiles
    would miss MONAI by far more than 1 %."""
    spacing = (0.8, 1.1, 2.0)
    pred = _ball((44, 40, 30), (22, 20, 15), 14)
    ref = _ball((44, 40, 30), (26, 18, 14), 5)
    sd = surface_distances(pred, ref, spacing, method=method)
    expect = monai_scores(pred[None], ref[None], spacing, tolerance_mm=4.0)
    assert sd.hausdorff(95) == pytest.approx(expect["hd95_mm"][0], rel=0.01)
    assert sd.assd() == pytest.approx(expect["assd_mm"][0], rel=0.01)
    assert sd.surface_dice(4.0) == pytest.approx(expect["nsd"][0], abs=1e-3)
    mean_of_means = (sd.pred_to_ref.mean() + sd.ref_to_pred.mean()) / 2
    assert abs(mean_of_means - sd.assd()) > 0.05 * sd.assd()  # the test can tell the two apart


def test_iou_is_jaccard_of_monai_dice():
    pred, ref = blob((30, 30, 30), 1), blob((30, 30, 30), 2)
    d = monai_scores(pred[None], ref[None], (1, 1, 1))["dice"][0]
    assert iou(pred, ref) == pytest.approx(d / (2 - d), abs=1e-4)


def _perturbed(labels: np.ndarray) -> np.ndarray:
    """A plausible "prediction": some classes dilated, eroded or shifted by a voxel."""
    out = np.zeros_like(labels)
    for v in range(1, 8):
        m = labels == v
        if v % 3 == 0:
            m = ndimage.binary_dilation(m)
        elif v % 3 == 1:
            m = np.roll(m, 1, axis=v % 2)
        else:
            m = ndimage.binary_erosion(m) | np.roll(m, -1, axis=2) & m
        out[m & (out == 0)] = v
    return out


def test_ct_sample_labels_match_monai():
    ref = read_volume(CT_SEG)  # chest CT, 7 labels, 128x128x34 at 3.05x3.05x10 mm
    pred = Volume(_perturbed(ref.array), ref.affine)
    rows = evaluate_case(pred, ref, tolerance_mm=3.0).rows
    assert [r["label"] for r in rows] == list(range(1, 8))
    assert rows[0]["name"] == "ribs"  # segment names of the .seg.nrrd
    expect = monai_scores(onehot(pred.array, range(1, 8)), onehot(ref.array, range(1, 8)), ref.spacing, 3.0)
    got = {k: np.array([r[k] for r in rows]) for k in expect}
    np.testing.assert_allclose(got["dice"], expect["dice"], atol=1e-4)
    np.testing.assert_allclose(got["hd95_mm"], expect["hd95_mm"], rtol=0.01)
    np.testing.assert_allclose(got["assd_mm"], expect["assd_mm"], rtol=0.01)
    np.testing.assert_allclose(got["nsd"], expect["nsd"], atol=1e-3)
    assert np.all(got["dice"] < 1) and np.all(got["hd95_mm"] > 0)  # the perturbation did something


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    pred, ref = blob((24, 24, 24), 5), blob((24, 24, 24), 6)
    sd_np = surface_distances(pred, ref, (1.0, 2.0, 3.0))
    sd_t = surface_distances(torch.from_numpy(pred), torch.from_numpy(ref).to(torch.uint8), (1.0, 2.0, 3.0))
    assert sd_t.hausdorff() == sd_np.hausdorff() and sd_t.assd() == sd_np.assd()
    assert dice(torch.from_numpy(pred), torch.from_numpy(ref)) == dice(pred, ref)
