"""The crop of a two-stage cascade: the box around the organ, grown by a margin in mm.

Training crops its stage-2 dataset with it (:mod:`medseg.train.cascade`); prediction crops the
scan around the stage-1 organ mask with the same box (:class:`medseg.predict.Predictor`).
"""

from __future__ import annotations

import numpy as np

from medseg.volume import Volume


def organ_box(label: Volume, values: list[int], margin_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Voxel box (start, stop) around ``values`` in ``label`` grown by ``margin_mm``; None if absent."""
    idx = np.argwhere(np.isin(label.array, values))
    if idx.size == 0:
        return None
    margin = np.ceil(margin_mm / np.asarray(label.spacing)).astype(int)
    return idx.min(0) - margin, idx.max(0) + 1 + margin
