"""`Preprocessor`: source Volume(s) -> model-space arrays, and back onto the source grid.

Forward (plan order): reorient to closest canonical RAS -> resample to the plan's target
spacing -> normalise. The `PreprocessRecord` keeps the geometry of every stage; the inverse
undoes resampling then reorientation, and asserts the result lies on the source grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseg.errors import GeometryError, InputError
from medseg.geometry import GRID_ATOL_MM
from medseg.plans import Plan
from medseg.preprocess.normalize import normalize
from medseg.preprocess.orientation import canonical_transform, inverse_transform, reorient_array, reoriented_affine
from medseg.preprocess.resample import (resample_image, resample_labels, resample_scores_argmax, resampled_affine,
                                        resampled_shape)
from medseg.volume import Volume


@dataclass
class PreprocessRecord:
    """Geometry of each stage (shapes are 3D; affines 4x4 voxel -> RAS+ mm)."""

    source_shape: tuple[int, int, int]
    source_affine: np.ndarray
    orientation: np.ndarray  # nibabel (3, 2) transform source axes -> RAS
    canonical_shape: tuple[int, int, int]
    canonical_affine: np.ndarray
    model_shape: tuple[int, int, int]
    model_affine: np.ndarray

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessRecord":
        arr = {"source_affine", "orientation", "canonical_affine", "model_affine"}
        return cls(**{k: (np.asarray(v, float) if k in arr else tuple(int(x) for x in v)) for k, v in d.items()})


class Preprocessor:
    """Apply a plan's preprocessing. Stateless apart from the plan; thread/process safe."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.target = plan.preprocessing.target_spacing

    def record_for(self, volume: Volume) -> PreprocessRecord:
        """The geometry of every stage for a source grid (no voxel work)."""
        tr = canonical_transform(volume.affine)
        can_aff = reoriented_affine(volume.affine, tr, volume.shape)
        can_shape = tuple(int(volume.shape[int(a)]) for a in np.argsort(tr[:, 0]))
        spacing = np.linalg.norm(can_aff[:3, :3], axis=0)
        model_shape = resampled_shape(can_shape, spacing, self.target)
        return PreprocessRecord(
            volume.shape, volume.affine.copy(), tr, can_shape, can_aff, model_shape,
            resampled_affine(can_aff, can_shape, model_shape),
        )

    def image(self, channels: list[Volume]) -> tuple[np.ndarray, PreprocessRecord]:
        """Channels (one Volume each, same grid) -> float32 (C, X, Y, Z) in model space."""
        first = channels[0]
        for c in channels[1:]:
            if not c.same_grid(first):
                raise GeometryError("image channels are not on one grid; resample them onto the first channel")
        rec = self.record_for(first)
        out = []
        for ch, vol in enumerate(channels):
            arr = reorient_array(vol.array, rec.orientation)
            arr = resample_image(arr, rec.model_shape)
            norm = self.plan.preprocessing.normalization[ch]
            out.append(normalize(arr, norm.scheme, norm.clip, norm.mean, norm.std))
        return np.stack(out).astype(np.float32, copy=False), rec

    def label(self, label: Volume, rec: PreprocessRecord) -> np.ndarray:
        """Label Volume (on the image grid) -> uint8 (X, Y, Z) in model space."""
        if not label.same_grid(Volume(np.empty(rec.source_shape, np.uint8), rec.source_affine), GRID_ATOL_MM):
            raise GeometryError("the label is not on the image grid; resample it onto the image first")
        values = sorted(self.plan.dataset.labels.values())
        found = np.unique(label.array)
        undeclared = sorted(set(found.tolist()) - set(values))
        if undeclared:
            raise InputError(
                f"label values {undeclared} are not declared in the plan (labels {values}); "
                "fix the label file or the dataset.json labels and re-plan"
            )
        arr = reorient_array(label.array, rec.orientation)
        return resample_labels(arr.astype(np.uint8), rec.model_shape, found)

    def invert_labels(self, labels: np.ndarray, rec: PreprocessRecord) -> Volume:
        """Model-space label map (X, Y, Z) -> uint8 Volume on exactly the source grid."""
        if tuple(labels.shape) != tuple(rec.model_shape):
            raise GeometryError(f"label map shape {labels.shape} is not the model shape {rec.model_shape}")
        arr = resample_labels(np.asarray(labels, np.uint8), rec.canonical_shape)
        arr = reorient_array(arr, inverse_transform(rec.orientation))
        out = Volume(arr, rec.source_affine.copy())
        assert out.shape == tuple(rec.source_shape) and np.array_equal(out.affine, rec.source_affine)
        return out

    def invert_probabilities(self, probabilities: np.ndarray, rec: PreprocessRecord) -> Volume:
        """Model-space class probabilities (C, X, Y, Z), class index = label value, -> uint8 label
        Volume on exactly the source grid: each class's probability is resampled trilinearly to
        the canonical grid and the argmax taken there (nnU-Net's inversion), so organ boundaries
        are placed between model voxels rather than snapped to them."""
        if tuple(probabilities.shape[1:]) != tuple(rec.model_shape):
            raise GeometryError(f"probability shape {probabilities.shape[1:]} is not the model shape {rec.model_shape}")
        arr = resample_scores_argmax(probabilities, rec.canonical_shape)
        arr = reorient_array(arr, inverse_transform(rec.orientation))
        out = Volume(arr, rec.source_affine.copy())
        assert out.shape == tuple(rec.source_shape) and np.array_equal(out.affine, rec.source_affine)
        return out

    def invert_image(self, array: np.ndarray, rec: PreprocessRecord) -> np.ndarray:
        """Model-space float array (X, Y, Z) or (C, X, Y, Z) -> source-grid array (trilinear)."""
        arr = resample_image(array, rec.canonical_shape)
        inv = inverse_transform(rec.orientation)
        if arr.ndim == 4:
            return np.stack([reorient_array(a, inv) for a in arr])
        return reorient_array(arr, inv)
