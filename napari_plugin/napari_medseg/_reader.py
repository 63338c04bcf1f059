"""npe2 reader: NIfTI, NRRD/MHA, DICOM (file or series folder) and DICOM SEG through
``medseg.read_volume``.

Images open as Image layers, label maps (integer voxels with a label-like name, a Slicer
``.seg.nrrd``, a DICOM SEG, a file inside ``labelsTr/`` or a ``medseg predict`` output folder;
see :func:`napari_medseg.layers.is_labels`) as Labels layers with class names and colours: the
folder's ``labels.json`` / ``dataset.json`` (a prediction folder's are the run's names), else the
file's own segments (SEG segment labels and colours, Slicer segments). A SEG opens on its source
series' full grid when that series is in the SEG's folder or the one above; read alone it spans
the slices that hold its frames, placed by its plane positions on the source's world grid. Layers are placed in RAS+ mm with the volume's
full affine (see :mod:`napari_medseg.layers`). A label map saved by this plugin's writer opens as
labels whatever its file name (the writer marks the header).

Every scan or mask opened here is shown in the radiological axial view: the reader asks the
current viewer to keep that view whenever a medseg layer is added
(:func:`napari_medseg.view.keep_radiological`), since a reader itself only returns layer data.
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
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers = [_layer_data(p) for p in paths]
    _keep_view()
    return layers


def _layer_data(path) -> tuple:
    """The layer data tuple of one file: a DICOM SEG opens on its source series' full grid when
    that series is in the SEG's folder or the one above (:func:`_seg_on_source`); a label map
    this plugin's writer marked opens as labels whatever its name
    (:func:`napari_medseg._writer.written_as_labels`); everything else as
    :func:`volume_layer_data` decides."""
    from medseg.io import is_dicom_seg, read_volume
    from napari_medseg._writer import written_as_labels
    from napari_medseg.layers import is_labels, labels_layer_data

    if Path(path).is_file() and is_dicom_seg(path):
        placed = _seg_on_source(path)
        if placed is not None:
            seg, folder = placed
            data = labels_layer_data(seg, path, image_path=folder)
            data[1]["metadata"]["referenced_series_uid"] = seg.meta.get("referenced_series_uid")
            return data
    volume = read_volume(path)
    if volume.array.dtype.kind in "iub" and not is_labels(volume, path) and written_as_labels(path):
        return labels_layer_data(volume, path)
    return volume_layer_data(volume, path)


#: At most this many files are looked through for a SEG's source series in one folder.
SEG_SOURCE_MAX_FILES = 3000


def _seg_on_source(path):
    """``(the SEG read on its source series' grid, the series' folder)`` when the series the SEG
    references is under the SEG's folder or the folder above it (at most
    :data:`SEG_SOURCE_MAX_FILES` files each), else None (read alone, the SEG spans its frames only)."""
    import os
    import warnings

    import pydicom

    from medseg.errors import MedsegError, MedsegWarning
    from medseg.io import read_dicom_seg, read_volume

    seg_path = Path(path).resolve()
    try:
        ds = pydicom.dcmread(seg_path, stop_before_pixels=True, specific_tags=["ReferencedSeriesSequence"])
        ref = next((str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", []) or []
                    if "SeriesInstanceUID" in s), None)
    except Exception:  # noqa: BLE001 -- an unreadable reference: read the SEG alone
        return None
    if not ref:
        return None
    for folder in dict.fromkeys((seg_path.parent, seg_path.parent.parent)):
        n = 0
        for _dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            n += len(filenames)
            if n > SEG_SOURCE_MAX_FILES:
                break
        if n > SEG_SOURCE_MAX_FILES or n < 2:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MedsegWarning)   # the source's own warnings show when it is opened
                source = read_volume(folder, series_uid=ref)
                seg = read_dicom_seg(seg_path, source)[0]
        except MedsegError:
            continue
        parents = [str(Path(f).parent) for f in source.meta.get("files") or []]
        return seg, (Path(os.path.commonpath(parents)) if parents else folder)
    return None


def _keep_view() -> None:
    """The viewer that is opening these files shows them in the radiological axial view."""
    try:
        from napari import current_viewer

        from napari_medseg.view import keep_radiological

        viewer = current_viewer()
    except ImportError:  # read without napari (a script using read_paths): no view to set
        return
    if viewer is not None:
        keep_radiological(viewer)
