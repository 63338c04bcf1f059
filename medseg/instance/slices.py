"""Source Volume <-> model space for the slice-wise model: canonical RAS axes, in-plane resampling.

Model space is the source array reoriented to the closest canonical RAS axes (permutations and
flips only, :mod:`medseg.preprocess.orientation`) and resampled *in-plane* to the target
spacing; the slice axis (k, inferior -> superior) is never resampled, so model slice k is the
source's axial slice. An array in model space is indexed ``[x, y, k]``: x increases towards the
patient's right (R+), y towards anterior (A+), k towards superior (S+), up to the residual
rotation of an oblique scan that stays in the affine.
A slice image ``[x, y]`` is fed to torchvision as rows = x, columns = y.

The geometry of every stage is a :class:`medseg.preprocess.PreprocessRecord`, the same record
the U-Net preprocessing uses; the inverse lands on exactly the source grid (asserted).
"""

from __future__ import annotations

import numpy as np

from medseg.errors import GeometryError
from medseg.preprocess.orientation import canonical_transform, inverse_transform, reorient_array, reoriented_affine
from medseg.preprocess.pipeline import PreprocessRecord
from medseg.preprocess.resample import resample_image, resample_labels, resampled_affine, resampled_shape
from medseg.volume import Volume


def slice_record(volume: Volume, spacing_mm: tuple[float, float]) -> PreprocessRecord:
    """Geometry of the model space of ``volume`` for in-plane ``spacing_mm`` (no voxel work)."""
    tr = canonical_transform(volume.affine)
    can_aff = reoriented_affine(volume.affine, tr, volume.shape)
    can_shape = tuple(int(volume.shape[int(a)]) for a in np.argsort(tr[:, 0]))
    spacing = np.linalg.norm(can_aff[:3, :3], axis=0)
    target = (float(spacing_mm[0]), float(spacing_mm[1]), float(spacing[2]))
    model_shape = resampled_shape(can_shape, spacing, target)
    model_shape = (model_shape[0], model_shape[1], can_shape[2])  # the slice axis is never resampled
    return PreprocessRecord(volume.shape, volume.affine.copy(), tr, can_shape, can_aff, model_shape,
                            resampled_affine(can_aff, can_shape, model_shape))


def source_axial_axis(rec: PreprocessRecord) -> int:
    """The source array axis that becomes the model's slice axis k (closest to S-I)."""
    return int(np.flatnonzero(rec.orientation[:, 0] == 2)[0])


def image_to_model(volume: Volume, rec: PreprocessRecord) -> np.ndarray:
    """Source image -> float32 ``(X, Y, K)`` in model space (bilinear in-plane, values kept: HU)."""
    arr = reorient_array(np.asarray(volume.array, np.float32), rec.orientation)
    return resample_image(arr, rec.model_shape)


def labels_to_model(label: Volume, rec: PreprocessRecord, values) -> np.ndarray:
    """Label map (on the image grid) -> uint8 ``(X, Y, K)`` in model space (per-class linear + argmax)."""
    arr = reorient_array(np.asarray(label.array).astype(np.uint8), rec.orientation)
    return resample_labels(arr, rec.model_shape, values)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Dense ``(n_out, n_in)`` linear interpolation weights, the convention of
    ``torch.nn.functional.interpolate(mode="linear", align_corners=False)``."""
    w = np.zeros((n_out, n_in), np.float32)
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    np.add.at(w, (np.arange(n_out), lo), 1 - frac)
    np.add.at(w, (np.arange(n_out), hi), frac)
    return w


def instances_to_source(ids: np.ndarray, rec: PreprocessRecord) -> Volume:
    """Model-space instance map ``(X, Y, K)`` (0 background, 1..N objects) -> uint16 Volume on
    exactly the source grid.

    Each object's mask is resampled in-plane by linear interpolation, then every voxel takes the
    object (or background, whose weight is 1 - the objects' total) of largest weight: the
    per-class linear + argmax rule of the U-Net labels, done per object inside its bounding box.
    """
    if tuple(ids.shape) != tuple(rec.model_shape):
        raise GeometryError(f"instance map shape {ids.shape} is not the model shape {rec.model_shape}")
    cx, cy, ck = rec.canonical_shape
    if tuple(ids.shape[:2]) == (cx, cy):
        out = np.asarray(ids, np.uint16).copy()
    else:
        wx, wy = _interp_matrix(cx, ids.shape[0]), _interp_matrix(cy, ids.shape[1])
        best = np.zeros((cx, cy, ck), np.float32)
        total = np.zeros((cx, cy, ck), np.float32)
        out = np.zeros((cx, cy, ck), np.uint16)
        from scipy import ndimage

        for obj, box in enumerate(ndimage.find_objects(ids), start=1):
            if box is None:
                continue
            bx, by, bk = box
            rows = np.flatnonzero(wx[:, bx].sum(1) > 0)
            cols = np.flatnonzero(wy[:, by].sum(1) > 0)
            ax, ay = wx[rows][:, bx], wy[cols][:, by]
            m = (ids[box] == obj).astype(np.float32)
            w = np.einsum("ia,abk,jb->ijk", ax, m, ay)  # (rows, cols, slices)
            sel = np.ix_(rows, cols, np.arange(bk.start, bk.stop))
            total[sel] += w
            better = w > best[sel]
            best[sel] = np.where(better, w, best[sel])
            out[sel] = np.where(better, np.uint16(obj), out[sel])
        out[best <= 1 - total] = 0  # background wins ties
    arr = reorient_array(out, inverse_transform(rec.orientation))
    vol = Volume(arr, rec.source_affine.copy())
    assert vol.shape == tuple(rec.source_shape) and np.array_equal(vol.affine, rec.source_affine)
    return vol
