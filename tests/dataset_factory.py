"""Tiny labelled datasets on disk, in nnU-Net v2 or Decathlon layout, for dataset tests.

Each case: an int16 CT-like image (air -1000, body 40 HU, organ 60, lesion 150, noise) with
a label map (0 background, 1 organ, 2 lesion) on a random, possibly flipped and anisotropic,
grid. Written with nibabel directly (independent of medseg's writers).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

LABELS = {"background": 0, "organ": 1, "lesion": 2}


def make_case(rng: np.random.Generator, shape=(24, 20, 12)):
    """(image int16, label uint8, affine) with an organ sphere and a small lesion."""
    idx = np.indices(shape).astype(float)
    c = np.array(shape) / 2 + rng.uniform(-2, 2, size=3)
    r = np.sqrt(sum(((idx[a] - c[a]) / (shape[a] * 0.3)) ** 2 for a in range(3)))
    label = np.zeros(shape, np.uint8)
    label[r < 1] = 1
    lc = c + np.array([shape[0] * 0.12, 0, 0])
    lr = np.sqrt(sum((idx[a] - lc[a]) ** 2 for a in range(3)))
    label[lr < 2.2] = 2
    image = np.full(shape, -1000.0)
    image[r < 1.4] = 40
    image[label == 1] = 60
    image[label == 2] = 150
    image += rng.normal(0, 10, size=shape)
    flips = rng.choice([-1.0, 1.0], size=3)
    spacing = np.array([rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0), rng.uniform(1.5, 4.0)])
    aff = np.diag([*(flips * spacing), 1.0])
    aff[:3, 3] = rng.uniform(-50, 50, size=3)
    return image.astype(np.int16), label, aff


def _save(path: Path, data, aff):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    nib.save(img, str(path))


def write_dataset(root: Path, n: int = 4, seed: int = 0, layout: str = "nnunet", modality: str = "CT",
                  shape=(24, 20, 12)) -> Path:
    """Write ``n`` cases under ``root`` in the given layout; returns ``root``."""
    rng = np.random.default_rng(seed)
    ids = [f"case_{i:03d}" for i in range(n)]
    for cid in ids:
        image, label, aff = make_case(rng, shape)
        _save(root / "imagesTr" / f"{cid}_0000.nii.gz", image, aff)
        _save(root / "labelsTr" / f"{cid}.nii.gz", label, aff)
    if layout == "nnunet":
        meta = {"name": "tiny", "channel_names": {"0": modality}, "labels": LABELS,
                "numTraining": n, "file_ending": ".nii.gz"}
    else:
        # Decathlon: images are referenced without the channel suffix; point at the same files.
        meta = {"name": "tiny", "modality": {"0": modality},
                "labels": {str(v): k for k, v in LABELS.items()}, "numTraining": n,
                "training": [{"image": f"./imagesTr/{c}_0000.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ids],
                "test": []}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root
