"""npe2 reader: NIfTI, NRRD/MHA, DICOM (file or series folder) and DICOM SEG through
``medseg.read_volume``.

Images open as Image layers, label maps (integer voxels with a label-like name, a Slicer
``.seg.nrrd``, a DICOM SEG, a file inside ``labelsTr/`` or a ``medseg predict`` output folder;
see :func:`napari_medseg.layers.is_labels`) as Labels layers with class names and colours: the
folder's ``labels.json`` / ``dataset.json`` (a prediction folder's are the run's names), else the
file's own segments (SEG segment labels and colours, Slicer segments). A SEG read alone spans
the slices that hold its frames, placed by its plane positions on the source's world grid. Layers are placed in RAS+ mm with the volume's
full affine (see :mod:`napari_medseg.layers`).
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from medseg.io import is_dicom_file, split_suffix
from napari_medseg.layers import volume_layer_data


def _is_dicom_folder(path: Path) -> bool:
    files = (p for p in islice(path.rglob("*"), 500) if p.is_file() and not p.name.startswith("."))
    return any(p.suffix.lower() in (".dcm", ".ima") or is_dicom_file(p) for p in files)


def _can_read(path: Path) -> bool:
    if path.is_dir():
        return _is_dicom_folder(path)
    return bool(split_suffix(path)[1]) or path.suffix.lower() in (".dcm", ".ima") or is_dicom_file(path)


def get_reader(path: str | list[str]):
    """Return :func:`read_paths` when medseg can read ``path`` (or every path of a list), else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_can_read(Path(p)) for p in paths):
        return None
    return read_paths


def read_paths(path: str | list[str]) -> list[tuple]:
    """Layer data tuples, one per path (an image or a label map)."""
    from medseg.io import read_volume

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [volume_layer_data(read_volume(p), p) for p in paths]
