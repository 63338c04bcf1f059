"""npe2 writer: a Labels layer saved as NIfTI / NRRD / MetaImage on the exact grid of its source,
or as DICOM SEG (``.dcm``) when its source image is a DICOM series.

The grid comes from ``layer.metadata`` (``affine``, ``shape``; written by this plugin's
reader and review widget); a layer without it falls back to napari's own transform of the
layer (scale, translate, rotate, shear, affine). The file is written by
:func:`medseg.io.write_mask_like` (atomic; smallest integer dtype). The layer's source image
and source mask are never overwritten.

DICOM SEG: the source series is found from ``layer.metadata`` (``image_path``, else
``source_path`` when ``format`` is ``"dicom"``; ``series_uid`` picks the series), read again
with :func:`medseg.io.read_volume`, and the labels are written by
:func:`medseg.io.write_dicom_seg` with one segment per named class (``classes``; values
without a name become ``class_<value>``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import GeometryError, MedsegWarning, OutputError
from medseg.geometry import Geometry
from medseg.io import split_suffix


def _napari_affine(meta: dict) -> np.ndarray:
    """The layer's data -> world transform from napari's layer state."""
    from napari.utils.transforms import Affine, CompositeAffine

    comp = CompositeAffine(scale=meta.get("scale"), translate=meta.get("translate"), rotate=meta.get("rotate"),
                           shear=meta.get("shear"), ndim=3)
    return Affine(affine_matrix=np.asarray(meta.get("affine", np.eye(4)))).compose(comp).affine_matrix


def source_grid(data: Any, meta: dict) -> Geometry:
    """The grid to write on: layer.metadata's affine and shape, else napari's transform."""
    md = meta.get("metadata") or {}
    shape = tuple(np.shape(data))
    if len(shape) != 3:
        raise GeometryError(f"only 3D label layers can be saved by medseg; this one has shape {shape}")
    if md.get("affine") is not None and md.get("shape") is not None:
        if tuple(md["shape"]) != shape:
            raise GeometryError(f"the labels have shape {shape} but their source grid is {tuple(md['shape'])}")
        return Geometry(shape, np.asarray(md["affine"], float))
    warnings.warn("this Labels layer has no medseg geometry (it was not opened by napari-medseg); "
                  "using napari's layer transform as the voxel -> RAS+ mm affine", MedsegWarning, stacklevel=2)
    return Geometry(shape, _napari_affine(meta))


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer; returns the written path."""
    from medseg.io import write_mask_like

    out = Path(path)
    md = meta.get("metadata") or {}
    for key in ("source_path", "image_path"):
        src = md.get(key)
        if src and Path(src).resolve() == out.resolve():
            what = "image" if key == "image_path" else "file"
            raise OutputError(f"refusing to overwrite the source {what} {src}; save the labels under "
                              f"another name, e.g. {split_suffix(out)[0]}_corrected.nii.gz")
    grid = source_grid(data, meta)
    labels = np.asarray(data)
    if out.suffix.lower() in (".dcm", ".dicom"):
        return [str(_write_seg(out, labels, grid, md))]
    written = write_mask_like(labels, grid, out, overwrite=True)
    return [str(written)]


def _dicom_source(md: dict, out: Path):
    """The DICOM series the labels were drawn on, read again (a medseg Volume)."""
    from medseg.io import read_volume

    candidates = [md.get("image_path")]
    if md.get("format") == "dicom":
        candidates.append(md.get("source_path"))
    for cand in filter(None, candidates):
        if Path(cand).exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MedsegWarning)  # already shown when the scan was opened
                source = read_volume(cand, series_uid=md.get("series_uid"))
            if source.meta.get("format") == "dicom":
                return source
    raise OutputError(f"DICOM SEG needs the DICOM series these labels were drawn on, and this layer does not "
                      f"name one; save {out.name} as {out.stem}.nii.gz (or .nrrd) instead")


def _class_table(labels: np.ndarray, md: dict) -> dict[str, int]:
    """name -> value for every named foreground class and every value present."""
    from napari_medseg.layers import label_values

    classes = {int(v): str(n) for v, n in (md.get("classes") or {}).items() if int(v) > 0}
    for v in label_values(labels):
        if v > 0:
            classes.setdefault(v, f"class_{v}")
    table: dict[str, int] = {}
    for v, name in sorted(classes.items()):
        table[name if name not in table else f"{name}_{v}"] = v
    return table


def _write_seg(out: Path, labels: np.ndarray, grid: Geometry, md: dict) -> Path:
    from medseg.io import write_dicom_seg
    from medseg.volume import Volume

    source = _dicom_source(md, out)
    return write_dicom_seg(Volume(labels, grid.affine.copy()), source, _class_table(labels, md), out,
                           overwrite=True, model_id=md.get("model_id"))
