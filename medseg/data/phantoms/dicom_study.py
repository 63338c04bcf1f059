"""Some phantom cases as a DICOM study tree, for batch tools that walk patient/study/series folders.

Layout (one patient per DICOM case)::

    OUT_DIR/dicom_study/PATIENT_phantom_000/STUDY_1/SERIES_1/IM_0000.dcm ...   the CT
    OUT_DIR/dicom_study/PATIENT_phantom_000/STUDY_1/SERIES_2/IM_0000.dcm ...   first DICOM case
                                      only: a 2x thicker, 2x coarser reconstruction
    OUT_DIR/dicom_study_labels/phantom_000.nii.gz                              label on the grid
                                      medseg reads from SERIES_1 (outside the study tree, so
                                      batch tools walking dicom_study/ meet only DICOM)

The label is put on the grid that :func:`medseg.read_volume` returns for SERIES_1 (read back
after writing): for cases stored left-handed (e.g. ``LAS``) the reader's k axis is reversed
with respect to the NIfTI image, and the label follows it. UIDs are derived from (seed, size,
case), so the same options write the same UIDs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from medseg.geometry import GRID_ATOL_MM, Geometry
from medseg.io import read_volume, write_mask_like
from medseg.io.dicom_write import write_dicom_series
from medseg.volume import Volume

#: Every DICOM_EVERY-th case (0, 3, 6, ...) is also written as DICOM.
DICOM_EVERY = 3


def is_dicom_case(index: int) -> bool:
    """True for the cases that ``--dicom-study`` also writes as DICOM (always case 0)."""
    return index % DICOM_EVERY == 0


def dicom_label_path(root: Path, case_id: str) -> Path:
    """``OUT_DIR/dicom_study_labels/<case>.nii.gz`` for ``root`` = ``OUT_DIR/dicom_study``."""
    return root.parent / "dicom_study_labels" / f"{case_id}.nii.gz"


def on_grid(label: Volume, target: Geometry) -> np.ndarray:
    """``label``'s array re-indexed onto ``target``, a grid with the same voxel centres in
    another index order (axes permuted and/or reversed). Exact: no interpolation.

    Raises:
        ValueError: the grids do not share their voxel centres (within 1e-3 mm).
    """
    t = np.linalg.inv(label.affine) @ target.affine  # target index -> label index
    r = np.rint(t)
    perm = [int(np.argmax(np.abs(r[:3, a]))) for a in range(3)]
    ok = sorted(perm) == [0, 1, 2] and all(
        np.count_nonzero(r[:3, a]) == 1 and abs(r[perm[a], a]) == 1 for a in range(3))
    if not ok or np.max(np.abs(t - r)) * max(label.spacing) > GRID_ATOL_MM:
        raise ValueError("the target grid does not share the label's voxel centres")
    index = []
    for a in range(3):
        src = r[perm[a], a] * np.arange(target.shape[a]) + r[perm[a], 3]
        index.append(src.astype(int))
    moved = np.transpose(label.array, perm)
    for a in range(3):
        if index[a].min() < 0 or index[a].max() >= moved.shape[a]:
            raise ValueError("the target grid extends beyond the label grid")
    return moved[np.ix_(*index)]


def _coarse(image: Volume) -> Volume:
    """Every second voxel along each axis: a thicker, coarser reconstruction on the same
    voxel centres (no interpolation)."""
    aff = image.affine.copy()
    aff[:3, :3] *= 2.0
    return Volume(image.array[::2, ::2, ::2].copy(), aff, {})


def write_dicom_case(root: Path, case_id: str, key: list, image: Volume, label: Volume, *,
                     second_series: bool) -> Path:
    """Write one case under ``root`` (``OUT_DIR/dicom_study``); returns the label path.

    Args:
        key: values that identify the case (seed, size, version, index): the UIDs derive from them.
        second_series: also write SERIES_2 (a coarser reconstruction) in the same study.
    """
    entropy = ["medseg-phantoms", *map(str, key)]
    study_uid = generate_uid(entropy_srcs=[*entropy, "study"])
    study = root / f"PATIENT_{case_id}" / "STUDY_1"
    common = {"patient_id": case_id, "study_uid": study_uid, "overwrite": True}
    uid = {n: generate_uid(entropy_srcs=[*entropy, "series", str(n)]) for n in (1, 2)}
    write_dicom_series(image, study / "SERIES_1", series_uid=uid[1], series_number=1, description="phantom CT", **common)
    if second_series:
        write_dicom_series(_coarse(image), study / "SERIES_2", series_uid=uid[2], series_number=2,
                           description="phantom CT thick 2x", **common)
    read = read_volume(study / "SERIES_1")
    return write_mask_like(on_grid(label, read.geometry), read, dicom_label_path(root, case_id), overwrite=True)
