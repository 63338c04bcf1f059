"""Small review folders on disk, written with nibabel (independent of medseg's writers).

Each case is ``tests/dataset_factory.make_case``: an int16 CT-like image and a uint8 mask
(1 organ, 2 lesion) on a random, flipped, anisotropic grid.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.dataset_factory import LABELS, make_case

SHAPE = (24, 20, 12)


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def review_folder(root: Path, layout: str = "images/masks", n: int = 3, seed: int = 0,
                  uncertainty: list[float] | None = None, dataset_json: bool = True) -> Path:
    """Write ``n`` cases ``case_000``... in a review layout: ``"images/masks"`` (images with the
    nnU-Net ``_0000`` suffix), ``"manifest"`` (medseg predict output: ``OUT/<case>.nii.gz``
    + ``manifest.csv``, images in a sibling folder) or ``"nnunet"``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        case = f"case_{i:03d}"
        image, label, aff = make_case(rng, SHAPE)
        if layout == "images/masks":
            save_nifti(root / "images" / f"{case}_0000.nii.gz", image, aff)
            save_nifti(root / "masks" / f"{case}.nii.gz", label, aff)
        elif layout == "nnunet":
            save_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", image, aff)
            save_nifti(root / "labelsTr" / f"{case}.nii.gz", label, aff)
        elif layout == "manifest":
            img = save_nifti(root.parent / f"{root.name}_scans" / f"{case}.nii.gz", image, aff)
            save_nifti(root / f"{case}.nii.gz", label, aff)
            rows.append({"input": str(img), "output": f"{case}.nii.gz", "status": "ok", "error": "",
                         "seconds": "1.5", "device": "cpu", "model_id": "unet-test",
                         "uncertainty": "" if uncertainty is None else str(uncertainty[i])})
        else:
            raise ValueError(layout)
    if layout == "manifest":
        rows.append({"input": "missing_scan.nii.gz", "output": "", "status": "failed", "error": "unreadable",
                     "seconds": "0", "device": "cpu", "model_id": "unet-test", "uncertainty": ""})
        with open(root / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if dataset_json:
        meta = {"name": "tiny", "channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": n,
                "file_ending": ".nii.gz"}
        (root / "dataset.json").write_text(json.dumps(meta))
    return root
