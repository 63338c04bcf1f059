"""The one writer of nnU-Net v2 raw datasets (what :mod:`medseg.data.layout` reads).

    ROOT/imagesTr/<case>_<channel:04d>.nii.gz   one file per channel, the scan's own grid
    ROOT/labelsTr/<case>.nii.gz                  uint8 labels on exactly channel 0's grid
    ROOT/dataset.json                            channel_names, labels, numTraining, file_ending;
                                                 written last, so its presence marks a complete dataset

Used by the phantom generator (:mod:`medseg.data.phantoms.dataset`), the cascade's cropped
dataset (:mod:`medseg.train.cascade`) and the review export (:mod:`medseg.review.export`), so
the three write the same layout with the same file names, geometry and atomic writes
(:mod:`medseg.io.atomic`; files honour the umask).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medseg.errors import OutputError
from medseg.io import write_mask_like, write_volume
from medseg.io.atomic import write_text_atomic
from medseg.volume import Volume

__all__ = ["FILE_ENDING", "image_path", "label_path", "write_case", "dataset_meta", "write_dataset_json"]

FILE_ENDING = ".nii.gz"


def image_path(root: str | Path, case_id: str, channel: int = 0) -> Path:
    """``ROOT/imagesTr/<case>_<channel:04d>.nii.gz``."""
    return Path(root) / "imagesTr" / f"{case_id}_{channel:04d}{FILE_ENDING}"


def label_path(root: str | Path, case_id: str) -> Path:
    """``ROOT/labelsTr/<case>.nii.gz``."""
    return Path(root) / "labelsTr" / f"{case_id}{FILE_ENDING}"


def write_case(root: str | Path, case_id: str, images: Sequence[Volume], label: np.ndarray | Volume, *,
               overwrite: bool = True) -> None:
    """Write one training case: every channel of ``images`` and ``label`` on channel 0's grid.

    Args:
        root: the dataset folder.
        case_id: the nnU-Net case identifier (no channel suffix, no extension).
        images: the channels (Volumes on one grid), in channel order.
        label: integer label array ``[i, j, k]`` on ``images[0]``'s grid (or a Volume on it).
        overwrite: replace existing files (a rewritten case); False raises OutputError.
    """
    if not images:
        raise ValueError("write_case needs at least one image channel")
    arr = label.array if isinstance(label, Volume) else label
    for ch, img in enumerate(images):
        write_volume(img, image_path(root, case_id, ch), overwrite=overwrite)
    write_mask_like(arr, images[0], label_path(root, case_id), overwrite=overwrite)


def dataset_meta(name: str, channels: dict, labels: dict[str, int], n_training: int, **extra) -> dict:
    """The ``dataset.json`` content: ``name``, ``channel_names`` ({"0": "CT", ...}), ``labels``
    ({name: value}, background 0 included), ``numTraining``, ``file_ending``, then ``extra``
    keys (description, licence, medseg provenance...) in the order given."""
    meta = {"name": name, "channel_names": {str(k): str(v) for k, v in channels.items()},
            "labels": {str(k): int(v) for k, v in labels.items()}, "numTraining": int(n_training),
            "file_ending": FILE_ENDING}
    for key, value in extra.items():
        if value is not None:
            meta[key] = value
    if "description" in meta:  # nnU-Net's own order: name, description, then the rest
        meta = {"name": meta.pop("name"), "description": meta.pop("description"), **meta}
    return meta


def write_dataset_json(root: str | Path, meta: dict) -> Path:
    """Write ``ROOT/dataset.json`` atomically (call it last: it marks the dataset complete)."""
    path = Path(root) / "dataset.json"
    try:
        write_text_atomic(path, json.dumps(meta, indent=2) + "\n")
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e}); check the folder and free disk space") from e
    return path
