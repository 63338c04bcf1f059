"""npe2 writer: a Labels layer saved as NIfTI / NRRD / MetaImage on the exact grid of its source,
or as DICOM SEG (``.dcm``) when its source image is a DICOM series.

The grid comes from ``layer.metadata`` (``affine``, ``shape``; written by this plugin's
reader and review widget); a layer without it falls back to napari's own transform of the
layer (scale, translate, rotate, shear, affine). The file is written by
:func:`medseg.io.write_mask_like` (atomic; smallest integer dtype). The layer's source image
and source mask are never overwritten.

DICOM SEG: the source series is found from ``layer.metadata`` (``image_path``, else
``source_path`` when ``format`` is ``"dicom"``; ``referenced_series_uid``, else ``series_uid``
of a layer that is not itself a SEG, picks the series), read again with
:func:`medseg.io.read_volume`, and the labels are written by :func:`medseg.io.write_dicom_seg`
with one segment per named class (``classes``; values without a name become
``class_<value>``) in the layer's colours.

Whatever the file name, a Labels layer is written as a label map that this plugin's reader
opens as labels again (:func:`written_as_labels`): NRRD and MetaImage headers get
``medseg_kind:=labels`` and one 3D Slicer segment per class (``Segment<n>_Name``, ``_Color``,
``_LabelValue``, ... : the names and colours of the layer; a ``.seg.nrrd`` opened from 3D
Slicer keeps its segments' IDs and terminology tags); NIfTI headers get the intent code
NIFTI_INTENT_LABEL (1002) and intent name ``medseg labels``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import GeometryError, MedsegWarning, OutputError
from medseg.geometry import Geometry
from medseg.io import atomic_path, split_suffix


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
        return [str(_write_seg(out, labels, grid, md, meta))]
    written = write_mask_like(labels, grid, out, overwrite=True)
    mark_as_labels(written, labels, md, meta)
    return [str(written)]


# ---- label maps that reopen as labels, with their names and colours ----------------------------
#: NRRD / MetaImage header key (and value) marking a label map written by this plugin.
LABELS_KEY, LABELS_VALUE = "medseg_kind", "labels"
#: NIfTI intent code of a label map (NIFTI_INTENT_LABEL) and the intent name written with it.
NIFTI_INTENT_LABEL, NIFTI_INTENT_NAME = 1002, "medseg labels"


def layer_colors(meta: dict, values) -> dict[int, tuple[float, float, float]]:
    """``{value: RGB 0-1}``: the colours napari draws the layer's classes with (``meta`` is
    napari's layer state; {} without a colormap)."""
    cmap = meta.get("colormap")
    out = {}
    if cmap is None or not hasattr(cmap, "map"):
        return out
    for v in values:
        try:
            rgba = np.asarray(cmap.map(int(v)), float).reshape(-1)
        except Exception:  # noqa: BLE001 -- an odd colormap only costs the colour
            continue
        if rgba.size >= 3:
            out[int(v)] = tuple(float(c) for c in rgba[:3])
    return out


def class_table(labels: np.ndarray, md: dict, meta: dict | None = None):
    """The layer's classes as a :class:`medseg.io.LabelTable` (names -> values, colours RGB
    0-255): every named foreground class and every value present (``class_<v>``)."""
    from medseg.io import LabelTable

    table = _class_table(labels, md)
    colors = layer_colors(meta or {}, table.values())
    by_value = {v: n for n, v in table.items()}
    return LabelTable(table, {by_value[v]: tuple(int(round(c * 255)) for c in rgb) for v, rgb in colors.items()
                              if v in by_value})


def _slicer_source_segments(md: dict) -> tuple[dict[int, dict[str, str]], dict[str, str]]:
    """Per label value, the Segment fields of the 3D Slicer ``.seg.nrrd`` the layer was opened
    from (ID, Tags, ...), and its ``Segmentation_*`` fields; ({}, {}) for other sources."""
    src = md.get("source_path")
    if not src or not str(src).lower().endswith(".seg.nrrd") or not Path(src).is_file():
        return {}, {}
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(src))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}, {}
    fields: dict[str, dict[str, str]] = {}
    general = {}
    for key in reader.GetMetaDataKeys():
        m = re.match(r"^Segment(\d+)_(\w+)$", key)
        if m:
            fields.setdefault(m.group(1), {})[m.group(2)] = reader.GetMetaData(key)
        elif key.startswith("Segmentation_"):
            general[key] = reader.GetMetaData(key)
    by_value = {}
    for f in fields.values():
        try:
            by_value[int(f.get("LabelValue", ""))] = f
        except ValueError:
            continue
    return by_value, general


def _header_text(value: str) -> str:
    return " ".join(str(value).split())  # one line: NRRD and MetaImage fields end at the line end


def slicer_header(labels: np.ndarray, table, md: dict | None = None,
                  rgb: dict[int, tuple[float, float, float]] | None = None) -> dict[str, str]:
    """3D Slicer segmentation fields for a label map (one layer, one segment per class of
    ``table``; a :class:`medseg.io.LabelTable`): ``Segment<n>_ID/_Name/_Color/_LabelValue/
    _Layer/_Extent/_Tags/...`` and ``Segmentation_*``, plus ``medseg_kind:=labels``. Colours:
    ``rgb`` ({value: RGB 0-1}, e.g. the layer's), else the table's."""
    from scipy import ndimage

    source, general = _slicer_source_segments(md or {})
    a = np.asarray(labels)
    boxes = ndimage.find_objects(a.astype(np.int64, copy=False)) if a.size and a.max() > 0 else []
    out = {LABELS_KEY: LABELS_VALUE}
    segments = sorted(((v, n) for n, v in table.labels.items() if v > 0))
    for n, (value, name) in enumerate(segments):
        old = source.get(value, {})
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        extent = " ".join(f"{s.start} {s.stop - 1}" for s in box) if box is not None else "0 -1 0 -1 0 -1"
        color = (rgb or {}).get(value) or tuple(c / 255.0 for c in table.colors.get(name, (128, 128, 128)))
        same_name = old.get("Name") == name
        out.update({
            f"Segment{n}_ID": _header_text(old.get("ID") or f"Segment_{value}"),
            f"Segment{n}_Name": _header_text(name),
            f"Segment{n}_NameAutoGenerated": old.get("NameAutoGenerated", "0") if same_name else "0",
            f"Segment{n}_Color": " ".join(f"{min(1.0, max(0.0, float(c))):.6g}" for c in color[:3]),
            f"Segment{n}_ColorAutoGenerated": "0",
            f"Segment{n}_LabelValue": str(int(value)),
            f"Segment{n}_Layer": "0",
            f"Segment{n}_Extent": extent,
            f"Segment{n}_Tags": _header_text(old.get("Tags") if same_name and old.get("Tags")
                                             else "Segmentation.Status:inprogress|"),
        })
    out.update({
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": general.get("Segmentation_ReferenceImageExtentOffset", "0 0 0"),
    })
    if general.get("Segmentation_ConversionParameters"):
        out["Segmentation_ConversionParameters"] = general["Segmentation_ConversionParameters"]
    return out


def mark_as_labels(path: str | Path, labels: np.ndarray, md: dict, meta: dict | None = None) -> None:
    """Mark a label map written by :func:`medseg.io.write_mask_like` so it reopens as labels,
    with the layer's class names and colours where the format holds them (see the module
    docstring). Voxels and geometry are not changed; ``.mhd`` (detached data) is left as is."""
    out = Path(path)
    _, suffix = split_suffix(out)
    if suffix in (".nii", ".nii.gz"):
        import nibabel as nib

        img = nib.load(str(out))
        img.header.set_intent(NIFTI_INTENT_LABEL, name=NIFTI_INTENT_NAME)
        with atomic_path(out, suffix) as tmp:
            nib.save(img, str(tmp))
    elif suffix in (".nrrd", ".seg.nrrd", ".mha"):
        import SimpleITK as sitk

        table = class_table(labels, md, meta)
        rgb = layer_colors(meta or {}, table.labels.values())
        image = sitk.ReadImage(str(out))
        for key, value in slicer_header(labels, table, md, rgb).items():
            image.SetMetaData(key, value)
        with atomic_path(out, suffix) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)


def written_as_labels(path: str | Path) -> bool:
    """True when ``path``'s header marks it as a label map written by :func:`write_labels`
    (NIfTI intent NIFTI_INTENT_LABEL; NRRD / MetaImage ``medseg_kind:=labels``). Reads the
    header only; False for other files."""
    p = Path(path)
    _, suffix = split_suffix(p)
    try:
        if suffix in (".nii", ".nii.gz"):
            import nibabel as nib

            return int(nib.load(str(p)).header["intent_code"]) == NIFTI_INTENT_LABEL
        if suffix in (".nrrd", ".seg.nrrd", ".mha", ".mhd"):
            import SimpleITK as sitk

            reader = sitk.ImageFileReader()
            reader.SetFileName(str(p))
            reader.ReadImageInformation()
            return reader.HasMetaDataKey(LABELS_KEY) and reader.GetMetaData(LABELS_KEY).strip() == LABELS_VALUE
    except Exception:  # noqa: BLE001 -- an unreadable header is not a marked label map
        return False
    return False


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
                source = read_volume(cand, series_uid=_source_series_uid(md))
            if source.meta.get("format") == "dicom":
                return source
    raise OutputError(f"DICOM SEG needs the DICOM series these labels were drawn on, and this layer does not "
                      f"name one; save {out.name} as {out.stem}.nii.gz (or .nrrd) instead")


def _source_series_uid(md: dict) -> str | None:
    """The series the labels were drawn on: ``referenced_series_uid`` (a SEG opened on its
    source), else ``series_uid`` unless the layer is itself a SEG (then that is the SEG's own)."""
    if md.get("referenced_series_uid"):
        return md["referenced_series_uid"]
    if md.get("format") == "dicom-seg" or str(md.get("modality") or "").upper() == "SEG":
        return None
    return md.get("series_uid")


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


def _write_seg(out: Path, labels: np.ndarray, grid: Geometry, md: dict, meta: dict | None = None) -> Path:
    from medseg.io import write_dicom_seg
    from medseg.volume import Volume

    source = _dicom_source(md, out)
    return write_dicom_seg(Volume(labels, grid.affine.copy()), source, class_table(labels, md, meta), out,
                           overwrite=True, model_id=md.get("model_id"))
