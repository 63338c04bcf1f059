"""Class labels: reading ``dataset.json``, validating label maps, choosing the classes to score.

A label map is an integer array (0 = background, one value per class) indexed ``[i, j, k]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.data.layout import parse_labels
from medseg.errors import InputError
from medseg.metrics.regions import Box


def load_labels(path: str | Path) -> dict[int, str]:
    """Read the ``labels`` of a dataset.json: ``{value: name}`` in value order (0 included).

    Both layouts are accepted: nnU-Net v2 ``{"background": 0, "liver": 1}`` and the Medical
    Segmentation Decathlon ``{"0": "background", "1": "liver"}``.

    Raises:
        InputError: missing or unreadable file, no ``labels``, nnU-Net region labels (lists),
            non-integer or duplicate values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file {path} does not exist; pass the dataset.json that declares the labels")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not a readable JSON file ({e}); fix it or pass another --labels file") from e
    raw = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path} has no 'labels' object; declare e.g. \"labels\": {{\"background\": 0, \"liver\": 1}}")
    return normalize_labels(raw, str(path))


#: The dataset.json label parser lives with the dataset layouts (one implementation).
normalize_labels = parse_labels


#: The largest class / instance id a label map may hold (uint16's range).
MAX_LABEL_VALUE = 65535


def as_label_map(array, what: str) -> np.ndarray:
    """Validate a label map and return it as a non-negative integer array.

    Integral floats (some tools save masks as float) are accepted and converted; bool
    becomes uint8. ``what`` names the array in the error (e.g. "prediction case_01.nii.gz").

    Raises:
        InputError: non-integer or negative values.
    """
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    a = np.asarray(array)
    if a.dtype == bool:
        return a.view(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise InputError(f"the {what} holds non-integer values; a label map must hold class ids (0, 1, 2, ...)")
        a = a.astype(np.int64 if a.size and a.max() > 2**31 - 1 else np.int32)
    elif a.dtype.kind not in "iu":
        raise InputError(f"the {what} has dtype {a.dtype}; a label map must hold integer class ids")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise InputError(f"the {what} holds negative values ({a.min()}); class ids must be 0 (background) or positive")
    if a.size and a.dtype.itemsize > 2 and int(a.max()) > MAX_LABEL_VALUE:
        # refused before anything is sized by the largest value (per-value tables would need GBs)
        raise InputError(f"the {what} holds label value {int(a.max())}; class and instance ids above "
                         f"{MAX_LABEL_VALUE} are not supported -- is this a label map (not an image)?")
    return a


def label_boxes(label_map: np.ndarray) -> dict[int, Box]:
    """``{value: bounding box}`` for every non-zero value present (one pass over the array)."""
    a = label_map.astype(np.int64) if label_map.dtype == np.uint64 else label_map
    if a.size == 0 or not a.any():
        return {}
    return {i + 1: box for i, box in enumerate(ndimage.find_objects(a)) if box is not None}


def classes_to_score(pred_values: set[int], ref_values: set[int], declared: dict[int, str] | None,
                     labels_path: str | Path | None = None) -> list[int]:
    """The class values to report for one case: declared classes, else the values found.

    Without ``declared`` this is the union of non-zero values in both masks. With it, every
    declared non-zero class is reported (absent ones as "both empty"), and a value found in a
    mask but not declared is an error.

    Raises:
        InputError: a mask holds a value that ``declared`` does not list.
    """
    found = (set(pred_values) | set(ref_values)) - {0}
    if declared is None:
        return sorted(found)
    src = f" in {labels_path}" if labels_path else ""
    for values, which in ((ref_values, "reference"), (pred_values, "prediction")):
        extra = sorted(set(values) - set(declared) - {0})
        if extra:
            raise InputError(
                f"the {which} holds label value(s) {extra} not declared{src} (declared: "
                f"{', '.join(f'{v}={n}' for v, n in declared.items())}); fix the mask or declare the label"
            )
    return sorted(set(declared) - {0})
