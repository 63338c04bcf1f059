"""npe2 writer: a Labels layer saved as NIfTI / NRRD / MetaImage on the exact grid of its source.

The grid comes from ``layer.metadata`` (``affine``, ``shape``; written by this plugin's
reader and review widget); a layer without it falls back to napari's own transform of the
layer (scale, translate, rotate, shear, affine). The file is written by
:func:`medseg.io.write_mask_like` (atomic; smallest integer dtype). The layer's source image
and source mask are never overwritten.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import GeometryError, MedsegWarning, OutputError
from medseg.geometry import Geometry
from medseg.io.formats import split_suffix


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
    if out.suffix.lower() in (".dcm", ".dicom"):
        raise OutputError(f"DICOM SEG output is not supported yet; save {out.name} as "
                          f"{out.stem}.nii.gz (or .nrrd) instead")
    md = meta.get("metadata") or {}
    for key in ("source_path", "image_path"):
        src = md.get(key)
        if src and Path(src).resolve() == out.resolve():
            what = "image" if key == "image_path" else "file"
            raise OutputError(f"refusing to overwrite the source {what} {src}; save the labels under "
                              f"another name, e.g. {split_suffix(out)[0]}_corrected.nii.gz")
    grid = source_grid(data, meta)
    labels = np.asarray(data)
    written = write_mask_like(labels, grid, out, overwrite=True)
    return [str(written)]
