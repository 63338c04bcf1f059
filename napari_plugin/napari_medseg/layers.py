"""medseg `Volume` <-> napari layer data, without importing Qt or napari.

The placement rule, used by every part of the plugin:

* napari's world is medseg's world: RAS+ millimetres, axes ``(x, y, z)`` = (towards Right,
  towards Anterior, towards Superior).
* A layer's data axes are the stored array axes ``[i, j, k]`` (no transposition, no flip).
* The layer gets the volume's full 4x4 affine (``affine=volume.affine``, rotation and shear
  included), so ``layer.data_to_world((i, j, k)) == volume.geometry.index_to_world((i, j, k))``.

medseg's geometry also travels in ``layer.metadata`` so the writer can put a mask back on the
exact source grid (see :func:`grid_metadata`)::

    {"affine": 4x4 list (voxel -> RAS+ mm), "shape": [ni, nj, nk], "spacing": [mm, mm, mm],
     "orientation": "RAS", "source_path": "/abs/path", "format": "nifti",
     "kind": "image"|"labels"|"uncertainty",
     "classes": {value: name}  (labels only), "image_path": "/abs/path" (labels, when known)}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io import LabelTable, mask_label_table, split_suffix
from medseg.io import label_values as _label_values
from medseg.volume import Volume

#: Words in a file name that mark a label map (with an integer dtype).
LABEL_NAME_WORDS = ("seg", "label", "mask")
#: Folder names whose files are label maps (nnU-Net labelsTr/labelsTs, review folders).
LABEL_FOLDERS = ("labelstr", "labelsts", "labels", "masks", "segmentations", "corrected")

#: Default class colours (RGBA 0-1), cycled for class values without a colour of their own.
PALETTE = [
    (0.90, 0.10, 0.10), (0.10, 0.70, 0.20), (0.15, 0.45, 0.95), (1.00, 0.80, 0.00),
    (0.85, 0.20, 0.85), (0.00, 0.80, 0.85), (1.00, 0.50, 0.05), (0.55, 0.35, 0.95),
    (0.60, 0.85, 0.20), (0.95, 0.45, 0.60), (0.55, 0.30, 0.10), (0.40, 0.60, 0.70),
]
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)
#: Colour of label values that have none assigned (e.g. a new class painted by hand).
DEFAULT_LABEL_COLOR = (1.0, 1.0, 1.0, 1.0)


# ---- which files are label maps -------------------------------------------------------------
def looks_like_labels_path(path: str | Path) -> bool:
    """True when the *name* says label map: ``*.seg.nrrd``; ``seg``/``label``/``mask`` in the
    file name; a file inside ``labelsTr/``, ``masks/``, ``corrected/``...; or a prediction
    listed next to a ``manifest.csv`` (a ``medseg predict`` output folder)."""
    p = Path(path)
    stem, suffix = split_suffix(p)
    if suffix == ".seg.nrrd":
        return True
    low = stem.lower()
    if any(w in low for w in LABEL_NAME_WORDS):
        return True
    if p.parent.name.lower() in LABEL_FOLDERS:
        return True
    return (p.parent / "manifest.csv").is_file() and p.is_file()


def is_labels(volume: Volume, path: str | Path | None = None) -> bool:
    """A label map: integer (or bool) voxels and a label-like name or Slicer segments."""
    a = volume.array
    if a.dtype.kind not in "iub" or (a.dtype.kind == "i" and a.size and a.min() < 0):
        return False  # class ids are non-negative (a CT in HU is not a label map)
    if volume.meta.get("segments"):
        return True
    path = path or volume.meta.get("path")
    return bool(path) and looks_like_labels_path(path)


def label_values(a: np.ndarray) -> list[int]:
    """The values present in a label map (see :func:`medseg.io.labels.label_values`)."""
    return _label_values(a)


# ---- class names and colours ----------------------------------------------------------------
def slicer_colors(path: str | Path) -> dict[int, tuple[float, float, float]]:
    """Segment colours stored by 3D Slicer in a ``.seg.nrrd`` header ({} otherwise)."""
    if split_suffix(path)[1] != ".seg.nrrd":
        return {}
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    keys = set(reader.GetMetaDataKeys())
    out = {}
    for key in keys:
        m = re.match(r"^Segment(\d+)_Color$", key)
        value_key = f"Segment{m.group(1)}_LabelValue" if m else None
        if not m or value_key not in keys:
            continue
        try:
            rgb = tuple(float(v) for v in reader.GetMetaData(key).split())
            out[int(reader.GetMetaData(value_key))] = rgb[:3]
        except ValueError:
            continue
    return out


def class_table(volume: Volume, path: str | Path | None = None) -> LabelTable:
    """Names and colours of a mask's classes (:func:`medseg.io.labels.mask_label_table`): the
    labels.json / dataset.json of its folder (a ``medseg predict`` output folder, a dataset),
    else the segments stored in the file (DICOM SEG, Slicer), plus ``class_<v>`` for each
    other value present."""
    return mask_label_table(volume, path)


def class_names(volume: Volume, path: str | Path | None = None) -> dict[int, str]:
    """Class names by value (see :func:`class_table`). Background 0 is always ``background``."""
    names = dict(class_table(volume, path).names)
    names[0] = names.get(0) if names.get(0) not in (None, "", "class_0") else "background"
    return dict(sorted(names.items()))


def table_colors(table: LabelTable) -> dict[int, tuple[float, float, float]]:
    """``{value: RGB 0-1}`` of a label table's colours (stored as RGB 0-255)."""
    return {v: tuple(c / 255.0 for c in table.colors[n]) for n, v in table.labels.items() if n in table.colors}


def label_colors(names: dict[int, str], known: dict[int, tuple] | None = None) -> dict[Any, tuple]:
    """napari ``colormap`` dict for a Labels layer: 0 transparent, each class its colour,
    ``None`` (values without a colour) white."""
    known = known or {}
    colors: dict[Any, tuple] = {0: TRANSPARENT, None: DEFAULT_LABEL_COLOR}
    for i, value in enumerate(v for v in names if v != 0):
        rgb = known.get(value, PALETTE[i % len(PALETTE)])
        colors[value] = (*[float(c) for c in rgb[:3]], 1.0)
    return colors


# ---- layer data ---------------------------------------------------------------------------
def grid_metadata(volume: Volume, kind: str, path: str | Path | None = None) -> dict:
    """medseg's geometry and provenance, JSON-serialisable, for ``layer.metadata``."""
    g = volume.geometry
    src = path or volume.meta.get("path")
    meta = {
        "affine": g.affine.tolist(),
        "shape": list(g.shape),
        "spacing": list(g.spacing),
        "orientation": g.orientation,
        "source_path": str(Path(src).resolve()) if src else None,
        "format": volume.meta.get("format"),
        "kind": kind,
    }
    for key in ("modality", "series_uid", "study_uid"):
        if volume.meta.get(key):
            meta[key] = volume.meta[key]
    return meta


def is_ct(volume: Volume) -> bool:
    """CT by the DICOM modality, else by the values (integer voxels down to -500 HU or below)."""
    modality = str(volume.meta.get("modality") or "").upper()
    if modality:
        return modality == "CT"
    a = volume.array
    return a.dtype.kind in "iu" and a.size > 0 and int(a.min()) <= -500


def default_contrast(volume: Volume) -> tuple[float, float]:
    """CT: the soft-tissue window (W400/L40); otherwise the 0.5-99.5 percentile range."""
    from napari_medseg.correction import window_limits

    if is_ct(volume):
        return window_limits(400.0, 40.0)
    a = volume.array
    sample = a[:: max(1, a.shape[0] // 64), :: max(1, a.shape[1] // 64), :]
    lo, hi = np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 1.0)
    return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


def layer_name(path: str | Path | None, fallback: str) -> str:
    """The file name without its suffix; a ``medseg predict`` SEG ``<case>/seg.dcm`` -> ``<case> seg``."""
    if not path:
        return fallback
    p = Path(path)
    if p.name.lower() == "seg.dcm" and p.parent.name:
        return f"{p.parent.name} seg"
    return split_suffix(p)[0]


def image_layer_data(volume: Volume, path: str | Path | None = None, name: str | None = None) -> tuple:
    """``(data, kwargs, "image")`` placing ``volume`` in RAS+ mm with its full affine."""
    path = path or volume.meta.get("path")
    kwargs = {
        "name": name or layer_name(path, "image"),
        "affine": np.asarray(volume.affine),
        "metadata": grid_metadata(volume, "image", path),
        "colormap": "gray",
        "contrast_limits": default_contrast(volume),
    }
    return volume.array, kwargs, "image"


def uncertainty_layer_data(volume: Volume, path: str | Path | None = None, name: str | None = None) -> tuple:
    """``(data, kwargs, "image")`` for an uncertainty map (the per-voxel entropy of ``medseg
    predict --uncertainty``) shown over its scan: placed in RAS+ mm with its own affine (the
    scan's grid), colour map ``inferno`` with additive blending (certain voxels, 0, add
    nothing), contrast 0 to the map's maximum. ``metadata["kind"]`` is ``"uncertainty"``, so the
    Segment widget never offers it as a scan."""
    path = path or volume.meta.get("path")
    data = np.asarray(volume.array, dtype=np.float32)
    finite = data[np.isfinite(data)]
    hi = float(finite.max()) if finite.size else 1.0
    kwargs = {
        "name": name or layer_name(path, "uncertainty"),
        "affine": np.asarray(volume.affine),
        "metadata": grid_metadata(volume, "uncertainty", path),
        "colormap": "inferno",
        "blending": "additive",
        "opacity": 0.6,
        "contrast_limits": (0.0, hi if hi > 0 else 1.0),
    }
    return data, kwargs, "image"


def labels_layer_data(volume: Volume, path: str | Path | None = None, name: str | None = None,
                      names: dict[int, str] | None = None, image_path: str | Path | None = None,
                      colors: dict[int, tuple] | None = None) -> tuple:
    """``(data, kwargs, "labels")``: an integer label map in RAS+ mm, with class names (shown
    in the status bar through ``features``) and one colour per class (``colors``: value ->
    RGB 0-1; default the colours of :func:`class_table`, Slicer's own colours first)."""
    path = path or volume.meta.get("path")
    if not names or colors is None:
        table = class_table(volume, path)
        names = dict(names) if names else class_names(volume, path)
        colors = {**table_colors(table), **(colors or {})}
    names = dict(names)
    data = volume.array.view(np.uint8) if volume.array.dtype == bool else volume.array
    meta = grid_metadata(volume, "labels", path)
    meta["classes"] = {int(k): v for k, v in names.items()}
    if image_path:
        meta["image_path"] = str(Path(image_path).resolve())
    kwargs = {
        "name": name or layer_name(path, "labels"),
        "affine": np.asarray(volume.affine),
        "metadata": meta,
        "opacity": 0.5,
        "colormap": label_colors(names, {**colors, **(slicer_colors(path) if path else {})}),
        "features": {"index": list(names), "name": list(names.values())},
    }
    return data, kwargs, "labels"


def volume_layer_data(volume: Volume, path: str | Path | None = None) -> tuple:
    """Labels layer data for label maps (see :func:`is_labels`), image layer data otherwise."""
    if is_labels(volume, path):
        return labels_layer_data(volume, path)
    return image_layer_data(volume, path)

