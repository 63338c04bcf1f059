"""What a predictor returns for one case, whatever the model kind (U-Net or Mask R-CNN).

The batch engine (:mod:`medseg.predict.batch`), the napari segment widget and the Python API
all consume this one type, so a new model kind only has to produce it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medseg.volume import Volume


@dataclass
class CasePrediction:
    """One case's prediction, on exactly the source grid.

    Attributes:
        mask: label map Volume, same shape and affine as the (first) input channel. uint8
            class values for semantic models; uint16/uint32 instance ids for instance models.
        labels: ``{name: value}`` of the classes in ``mask`` (background 0 included). For an
            instance model this is the class map of the model (ids in ``mask`` are instances).
        volumes_ml: ``{class name: volume in ml}`` of every foreground class (0.0 if absent).
        uncertainty: optional float32 Volume on the source grid (per-voxel entropy, nats).
        uncertainty_score: optional per-case score (higher = less certain), for the manifest.
        tables: extra CSV outputs, ``{suffix: rows}``; the batch engine writes
            ``OUT/<case>_<suffix>.csv`` (e.g. ``{"lesions": [{"id": 1, ...}, ...]}``).
        timings: seconds per stage (``preprocess``, ``network``, ``postprocess``, ...).
        notes: what a reader of the manifest must know about this result although it is done
            (e.g. a cascade whose stage 2 was skipped); the batch engine writes them to the
            manifest's ``note`` column.
    """

    mask: Volume
    labels: dict[str, int]
    volumes_ml: dict[str, float] = field(default_factory=dict)
    uncertainty: Volume | None = None
    uncertainty_score: float | None = None
    tables: dict[str, list[dict]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
