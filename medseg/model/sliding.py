"""Streaming sliding-window inference: Gaussian-blended windows, argmax emitted slab by slab.

Why not ``monai.inferers.sliding_window_inference``? It returns the blended logits of every
class for the whole volume (C x X x Y x Z float32), which for a 512 x 512 x 600 scan with 5
classes is 3 GB before the argmax. Here windows are visited in order of their last-axis start;
once every window touching a slab of the last axis has been added, that slab is final, so it
is turned into labels (and entropy) and its accumulator is recycled. The accumulator only ever
spans one patch depth: ``C x X x Y x patch_z`` (on the compute device). Window placement
(nnU-Net's evenly spaced steps) and the Gaussian importance map (MONAI's
``compute_importance_map``, sigma 0.125 of the patch) match MONAI's "gaussian" mode, so
results agree with MONAI at equal overlap up to window placement.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medseg.errors import Cancelled


@dataclass
class WindowResult:
    """``labels``: (X, Y, Z) uint8 argmax in model space; ``entropy``: (X, Y, Z) float32 in nats
    of the blended softmax, or None; ``windows``: windows evaluated (times TTA flips);
    ``probabilities``: (C, X, Y, Z) float16 blended softmax in model space, or None;
    ``logits``: (C, X, Y, Z) float16 blended logits (the Gaussian-weighted mean), or None."""

    labels: np.ndarray
    entropy: np.ndarray | None
    windows: int
    probabilities: np.ndarray | None = None
    logits: np.ndarray | None = None


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Evenly spaced starts covering ``size`` with step <= ``patch * (1 - overlap)``: nnU-Net's
    ``compute_steps_for_sliding_window`` (its step size is ``1 - overlap``)."""
    if size <= patch:
        return [0]
    step = max(1.0, patch * (1 - overlap))
    n = math.ceil((size - patch) / step) + 1
    actual = (size - patch) / (n - 1)
    return sorted({int(np.round(actual * i)) for i in range(n)})


def gaussian_map(patch, device, sigma_scale: float = 0.125) -> torch.Tensor:
    """MONAI's Gaussian importance map for ``patch`` (float32, min clamped > 0)."""
    from monai.data.utils import compute_importance_map

    return compute_importance_map(tuple(patch), mode="gaussian", sigma_scale=sigma_scale, device=device).float()


def tta_flips(enabled: bool | tuple[int, ...]) -> list[tuple[int, ...]]:
    """Mirroring TTA as flips of the (B, C, X, Y, Z) batch: every subset of the spatial axes
    (True: all three, 8 passes; a tuple: those spatial axes, 0 = X, as nnU-Net's
    ``inference_allowed_mirroring_axes``), or identity only (False / empty)."""
    if enabled is False or enabled is None:
        return [()]
    axes = (0, 1, 2) if enabled is True else tuple(enabled)
    dims = tuple(a + 2 for a in axes)
    return [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]


@torch.no_grad()
def sliding_window_labels(model: torch.nn.Module, image: np.ndarray, patch, n_classes: int, *, overlap: float = 0.5,
                          batch_size: int = 2, device: torch.device | str = "cpu", autocast_dtype=None,
                          tta: bool | tuple[int, ...] = False, entropy: bool = False, probabilities: bool = False,
                          logits: bool = False, importance: torch.Tensor | None = None, progress=None,
                          cancel=None) -> WindowResult:
    """Labels of ``image`` (C, X, Y, Z) float32 (model space) by Gaussian-blended windows.

    Args:
        model: maps (B, C, *patch) float32 to (B, n_classes, *patch) logits.
        patch: window size (px, py, pz); the image is padded (with its minimum) where smaller.
        overlap: fraction in [0, 1) of a window shared with its neighbour along each axis.
        tta: average the logits over the mirrored versions of each window (True: all 8; a
            tuple of spatial axes: the subsets of those, see :func:`tta_flips`).
        entropy: also return the per-voxel entropy (nats) of the softmax of the blended logits.
        probabilities: also return that softmax, float16 (C, X, Y, Z): 2 bytes x C per voxel,
            the only full-volume multi-class array this function ever holds.
        logits: also return the blended logits themselves, float16 (C, X, Y, Z) (what nnU-Net
            resamples before its argmax).
        importance: the window weight map, ``patch``-shaped (default: :func:`gaussian_map`).
        progress: ``progress(done, total)`` after each window batch; cancel: ``threading.Event``.
    Raises:
        Cancelled: when ``cancel`` is set (checked between window batches).
    """
    device = torch.device(device)
    c, *size = image.shape
    patch = [int(p) for p in patch]
    pads = [max(0, p - s) for p, s in zip(patch, size)]
    padded = [s + p for s, p in zip(size, pads)]
    arr = np.ascontiguousarray(image, dtype=np.float32)
    with warnings.catch_warnings():  # read-only input (a memory map, napari layer data): only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        src = torch.from_numpy(arr)
    if any(pads):
        src = F.pad(src[None], [0, pads[2], 0, pads[1], 0, pads[0]], value=float(src.min()))[0]
    sx, sy, sz = (window_starts(s, p, overlap) for s, p in zip(padded, patch))
    weight = gaussian_map(patch, device) if importance is None else importance.to(device, torch.float32)
    flips = tta_flips(tta)
    xy = [(x, y) for x in sx for y in sy]
    total = len(xy) * len(sz)
    X, Y, Z = padded
    acc = torch.zeros((n_classes, X, Y, patch[2]), device=device)
    soft = entropy or probabilities or logits
    wsum = torch.zeros((X, Y, patch[2]), device=device) if soft else None
    labels = np.zeros((X, Y, Z), np.uint8)
    ent = np.zeros((X, Y, Z), np.float32) if entropy else None
    probs = np.zeros((n_classes, X, Y, Z), np.float16) if probabilities else None
    blended = np.zeros((n_classes, X, Y, Z), np.float16) if logits else None
    done = 0
    for g, z in enumerate(sz):
        for b in range(0, len(xy), batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled("prediction cancelled")
            chunk = xy[b:b + batch_size]
            batch = torch.stack([src[:, x:x + patch[0], y:y + patch[1], z:z + patch[2]] for x, y in chunk]).to(device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                out = None
                for axes in flips:
                    o = model(torch.flip(batch, axes) if axes else batch)
                    o = (torch.flip(o, axes) if axes else o).float()
                    out = o if out is None else out + o
            out = out.float() * (weight / len(flips))
            for (x, y), o in zip(chunk, out):
                acc[:, x:x + patch[0], y:y + patch[1]] += o
                if wsum is not None:
                    wsum[x:x + patch[0], y:y + patch[1]] += weight
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        nxt = sz[g + 1] if g + 1 < len(sz) else Z
        n = nxt - z  # slabs z .. nxt-1 receive no later window: final
        final = acc[..., :n]
        labels[..., z:nxt] = final.argmax(0).to(torch.uint8).cpu().numpy()
        if soft:
            mean = final / wsum[..., :n].clamp_min(1e-8)
            if blended is not None:
                blended[..., z:nxt] = mean.to(torch.float16).cpu().numpy()
            p = torch.softmax(mean, 0) if ent is not None or probs is not None else None
            if ent is not None:
                ent[..., z:nxt] = (-(p * torch.log(p.clamp_min(1e-12))).sum(0)).cpu().numpy()
            if probs is not None:
                probs[..., z:nxt] = p.to(torch.float16).cpu().numpy()
            wsum = torch.cat([wsum[..., n:], torch.zeros((X, Y, n), device=device)], -1)
        acc = torch.cat([acc[..., n:], torch.zeros((n_classes, X, Y, n), device=device)], -1)
    crop = tuple(slice(0, s) for s in size)
    return WindowResult(labels[crop], None if ent is None else ent[crop], done * len(flips),
                        None if probs is None else probs[(slice(None), *crop)],
                        None if blended is None else blended[(slice(None), *crop)])
