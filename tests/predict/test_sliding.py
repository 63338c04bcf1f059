"""Streaming sliding windows against hand-computed references and MONAI."""

import threading

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from medseg.errors import Cancelled
from medseg.model.sliding import sliding_window_labels, window_starts


@pytest.mark.parametrize("size,patch,overlap,expected", [
    (10, 16, 0.5, [0]), (16, 16, 0.5, [0]), (32, 16, 0.5, [0, 8, 16]), (33, 16, 0.5, [0, 6, 11, 17]),
    (40, 16, 0.0, [0, 12, 24]), (20, 8, 0.75, [0, 2, 4, 6, 8, 10, 12]),
])
def test_window_starts_cover_the_axis_evenly(size, patch, overlap, expected):
    starts = window_starts(size, patch, overlap)
    assert starts[0] == 0 and starts[-1] == max(0, size - patch)
    assert max(np.diff(starts), default=0) <= max(1, int(patch * (1 - overlap)))
    assert starts == expected


@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize("patch,overlap", [((16, 16, 8), 0.5), ((16, 32, 64), 0.25), ((40, 40, 40), 0.0), ((8, 8, 8), 0.8)])
def test_pointwise_model_gives_its_own_argmax_and_entropy(patch, overlap, tta):
    """A 1x1x1 convolution does not depend on window placement: blending must reproduce it
    exactly, whatever the overlap, padding (patch larger than the image) or mirroring."""
    torch.manual_seed(0)
    net = torch.nn.Conv3d(2, 4, 1).eval()
    img = np.random.default_rng(0).normal(size=(2, 37, 29, 41)).astype(np.float32)
    res = sliding_window_labels(net, img, patch, 4, overlap=overlap, batch_size=3, entropy=True, tta=tta,
                                probabilities=True)
    with torch.no_grad():
        logits = net(torch.from_numpy(img)[None])[0]
    p = torch.softmax(logits, 0)
    np.testing.assert_array_equal(res.labels, logits.argmax(0).numpy())
    np.testing.assert_allclose(res.entropy, -(p * torch.log(p)).sum(0).numpy(), atol=2e-5)
    assert res.probabilities.dtype == np.float16 and res.probabilities.shape == (4, *img.shape[1:])
    np.testing.assert_allclose(res.probabilities.astype(np.float32), p.numpy(), atol=1e-3)  # float16
    assert res.labels.dtype == np.uint8 and res.labels.shape == img.shape[1:]


def test_agrees_with_monai_gaussian_sliding_window_at_equal_overlap():
    """Where MONAI and nnU-Net place windows alike (size = patch + k * step), the blended argmax
    of a small conv net is MONAI's (up to float rounding on near-ties)."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 3, 3, padding=1)).eval()
    x = np.random.default_rng(1).normal(size=(1, 48, 36, 48)).astype(np.float32)
    ours = sliding_window_labels(net, x, (24, 24, 24), 3, overlap=0.5).labels
    with torch.no_grad():
        ref = sliding_window_inference(torch.from_numpy(x)[None], (24, 24, 24), 4, net, overlap=0.5, mode="gaussian")
    agree = (ref.argmax(1)[0].numpy() == ours).mean()
    assert agree > 0.9999, agree


def test_progress_and_cancel():
    net = torch.nn.Conv3d(1, 2, 1).eval()
    img = np.zeros((1, 32, 32, 32), np.float32)
    seen = []
    sliding_window_labels(net, img, (16, 16, 16), 2, overlap=0.5, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (27, 27) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    ev = threading.Event()

    def cancel_after_first(d, t):
        ev.set()

    with pytest.raises(Cancelled):
        sliding_window_labels(net, img, (16, 16, 16), 2, progress=cancel_after_first, cancel=ev)


def test_read_only_input_is_predicted_without_a_warning():
    """Memory-mapped caches and napari layer data are read-only; prediction only reads them."""
    import warnings

    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 3, 1).eval()
    img = np.random.default_rng(1).normal(size=(1, 20, 18, 16)).astype(np.float32)
    frozen = img.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = sliding_window_labels(net, frozen, (16, 16, 16), 3, overlap=0.5, batch_size=2)
    ref = sliding_window_labels(net, img, (16, 16, 16), 3, overlap=0.5, batch_size=2)
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_array_equal(frozen, img)
