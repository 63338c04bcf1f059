"""NRRD (``.nrrd``, ``.seg.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) through SimpleITK.

SimpleITK works in LPS+ with ``GetArrayFromImage`` indexed ``[k, j, i]``; this module is one
of the two places (with :mod:`medseg.io.dicom`) that converts to medseg's RAS+ ``[i, j, k]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import GeometryError, InputError
from medseg.geometry import affine_from_lps
from medseg.io.arrays import to_3d
from medseg.volume import Volume

_SEGMENT_KEY = re.compile(r"^Segment(\d+)_(Name|LabelValue|Layer)$")


class _ITKWarnings(sitk.LoggerBase):
    """ITK's own messages (written by its C++ code straight to stderr otherwise) as Python
    warnings, so the CLI prints them as one ``warning: ITK: ...`` line like every other warning."""

    def _emit(self, text: str) -> None:
        import warnings

        from medseg.errors import MedsegWarning

        msg = " ".join(str(text).split())
        # "WARNING: In /build/.../itkImageSeriesReader.hxx, line 502 ImageSeriesReader (0x55..): text" -> the text
        msg = re.sub(r"^(?:WARNING|ERROR)?:?\s*In \S+, line \d+\s*", "", msg)
        msg = re.sub(r"^(\w+) \(0x[0-9a-fA-F]+\):\s*", r"\1: ", msg)
        if msg:
            warnings.warn(f"ITK: {msg}", MedsegWarning, stacklevel=2)

    def DisplayText(self, t):  # noqa: N802 -- SimpleITK's names
        self._emit(t)

    def DisplayWarningText(self, t):  # noqa: N802
        self._emit(t)

    def DisplayErrorText(self, t):  # noqa: N802
        self._emit(t)

    def DisplayGenericOutputText(self, t):  # noqa: N802
        self._emit(t)

    def DisplayDebugText(self, t):  # noqa: N802 -- debug output stays silent
        pass


_ITK_LOGGER = _ITKWarnings()
_ITK_LOGGER.SetAsGlobalITKLogger()  # kept referenced for the life of the process


def _short(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # ITK messages end with the useful sentence; keep the last informative line.
    msg = next((ln for ln in reversed(lines) if not ln.startswith(("itk::", "In "))), lines[-1] if lines else "")
    return msg[:200] or type(e).__name__


def slicer_segments(reader_or_image) -> dict[int, str]:
    """Label value -> segment name from 3D Slicer ``.seg.nrrd`` metadata ({} if absent)."""
    seg: dict[str, dict[str, str]] = {}
    for key in reader_or_image.GetMetaDataKeys():
        m = _SEGMENT_KEY.match(key)
        if m:
            seg.setdefault(m.group(1), {})[m.group(2)] = reader_or_image.GetMetaData(key)
    out: dict[int, str] = {}
    for fields in seg.values():
        try:
            out[int(fields.get("LabelValue", ""))] = fields.get("Name", "")
        except ValueError:
            continue
    return dict(sorted(out.items()))


def _element_data_file(path: Path) -> str | None:
    """The data file named by a detached header, as written (None when absent): a MetaImage
    header's ``ElementDataFile`` (``.mhd``) or a detached NRRD header's ``data file`` /
    ``datafile`` field (``.nhdr``)."""
    try:
        with open(path, encoding="latin-1") as f:
            head = f.read(65536)
    except OSError:
        return None
    nrrd = str(path).lower().endswith(".nhdr")
    for line in head.splitlines():
        if nrrd:
            if not line.strip():
                break  # the end of an NRRD header
            key, sep, value = line.partition(":")
            if sep and not value.startswith("=") and key.strip().lower() in ("data file", "datafile"):
                return value.strip()
        else:
            key, sep, value = line.partition("=")
            if sep and key.strip() == "ElementDataFile":
                return value.strip()
    return None


def mhd_data_files(path: Path) -> list[Path]:
    """The data file a detached header ``path`` (``.mhd``: ``ElementDataFile``; ``.nhdr``:
    ``data file``) names, joined to the header's folder ([] for ``LOCAL``, no such line, or a
    ``LIST``/pattern form)."""
    value = _element_data_file(path)
    if not value or value.upper() == "LOCAL" or value.upper().startswith("LIST") or "%" in value:
        return []
    return [Path(path).parent / value]


def data_file_names(header: Path) -> list[Path]:
    """Companion data files SimpleITK writes next to an ``.mhd`` output (``X.raw``, ``X.zraw``);
    [] for other outputs (``.nhdr`` is read, not written)."""
    name = Path(header).name
    if name.lower().endswith(".mhd"):
        return [Path(header).parent / f"{name[:-4]}{s}" for s in (".raw", ".zraw")]
    return []


def _check_mhd_data_file(path: Path) -> None:
    """Refuse a detached header (``.mhd`` / ``.nhdr``) whose data file leaves its folder
    (``../../etc/passwd``, an absolute path, a symlink out): reading it would disclose an
    unrelated file as voxels. NRRD's ``LIST`` and pattern forms name several files: each is
    checked the same way."""
    value = _element_data_file(path)
    files = mhd_data_files(path)
    if value and str(path).lower().endswith(".nhdr") and not files:
        files, value = _nrrd_listed_files(Path(path), value)
    for data in files:
        folder = Path(path).parent.resolve()
        try:
            target = data.resolve()
        except (OSError, RuntimeError):
            target = data
        if Path(value).is_absolute() or ".." in Path(value).parts or not target.is_relative_to(folder):
            field = "data file" if str(path).lower().endswith(".nhdr") else "ElementDataFile"
            raise InputError(f"{path} names its voxel data {value!r} outside its own folder; medseg reads "
                             "data files of detached headers only from the header's folder -- move the data "
                             f"file next to the header and set {field} to its name")


def _nrrd_listed_files(path: Path, value: str) -> tuple[list[Path], str]:
    """The files of an NRRD ``data file: LIST`` (one name per line on the header's remaining
    lines) or of a pattern form (``%03d.raw 1 10 1``: only the pattern's
    folder part can leave the header's folder, so the pattern itself is checked)."""
    if value.upper().startswith("LIST"):
        with open(path, encoding="latin-1") as f:
            lines = f.read(65536).splitlines()
        idx = next((i for i, ln in enumerate(lines) if ln.partition(":")[0].strip().lower() in
                    ("data file", "datafile")), len(lines))
        names = [ln.strip() for ln in lines[idx + 1:] if ln.strip()]
        bad = next((n for n in names if Path(n).is_absolute() or ".." in Path(n).parts), names[0] if names else "")
        return [path.parent / n for n in names], bad
    pattern = value.split()[0]
    return [path.parent / pattern], pattern


def read_itk(path: Path, fmt: str) -> Volume:
    """Read an NRRD or MetaImage file; voxel data are loaded immediately.

    Returns:
        Volume whose array is the ``[i, j, k]`` view of the file's voxels and whose affine is
        the file's LPS geometry converted to RAS+.
    """
    if str(path).lower().endswith((".mhd", ".nhdr")):
        _check_mhd_data_file(Path(path))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(
            f"{path} could not be read as {fmt.upper()} ({_short(e)}); the file is damaged or "
            "is not an image -- re-export or copy it again"
        ) from e
    ncomp = reader.GetNumberOfComponents()
    size = reader.GetSize()
    if ncomp > 1 or reader.GetDimension() > 3:
        what = "layers (overlapping segments)" if str(path).lower().endswith(".seg.nrrd") else "components"
        shape = tuple(size) + ((ncomp,) if ncomp > 1 else ())
        raise GeometryError(
            f"{path} is 4D with shape {shape} ({ncomp if ncomp > 1 else size[-1]} {what}); "
            "medseg needs one 3D volume per file -- split it, or export a single label map "
            "(in 3D Slicer: Export to label map)"
        )
    try:
        img = reader.Execute()
    except RuntimeError as e:
        raise InputError(
            f"the voxel data of {path} could not be read ({_short(e)}); the file is truncated or "
            "corrupt -- re-export or copy it again"
        ) from e
    dim = img.GetDimension()
    spacing = list(img.GetSpacing()) + [1.0] * (3 - dim)
    origin = list(img.GetOrigin()) + [0.0] * (3 - dim)
    direction = np.eye(3)
    direction[:dim, :dim] = np.asarray(img.GetDirection(), float).reshape(dim, dim)
    # [k, j, i] -> [i, j, k]: a view, no copy.
    array = to_3d(sitk.GetArrayFromImage(img).T, path)
    meta: dict = {"path": str(path), "format": fmt}
    segments = slicer_segments(reader)
    if segments:
        meta["segments"] = segments
    if array.shape != tuple(size) + (1,) * (3 - dim):
        raise GeometryError(f"{path}: unexpected voxel layout {array.shape} for size {tuple(size)}")
    check_lps_geometry(path, spacing, origin, direction)
    return Volume(array, affine_from_lps(spacing, origin, direction), meta)


def check_lps_geometry(path, spacing, origin, direction) -> None:
    """Refuse a grid no affine can hold: spacing not finite and > 0 (mm), NaN/inf origin, or
    direction cosines that are not finite or are singular (two axes along one direction)."""
    sp = np.asarray(spacing, float)
    if not (np.all(np.isfinite(sp)) and np.all(sp > 0)):
        raise GeometryError(f"{path}: the voxel spacing {[float(v) for v in sp]} mm is not valid (must be finite "
                            "and > 0); fix the header or re-export the scan")
    if not np.all(np.isfinite(np.asarray(origin, float))):
        raise GeometryError(f"{path}: the origin {list(origin)} holds NaN or infinite values; fix the header or "
                            "re-export the scan")
    d = np.asarray(direction, float)
    if not np.all(np.isfinite(d)) or not abs(float(np.linalg.det(d.reshape(3, 3)))) > 1e-6:
        raise GeometryError(f"{path}: the direction cosines {np.round(d.reshape(-1), 4).tolist()} are not a valid "
                            "orientation (NaN, or two axes along one direction); fix the header or re-export")


def write_itk(volume: Volume, path: Path) -> None:
    """Write ``volume`` with SimpleITK (format from the suffix, compressed when it can be).

    The RAS+ affine becomes LPS spacing / origin / direction. A sheared affine (gantry tilt)
    is written with non-orthogonal direction columns, which NRRD and MetaImage can hold.
    """
    g = volume.geometry
    lps = g.affine_lps
    spacing = np.asarray(g.spacing)
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.T))
    img.SetSpacing(spacing.tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    img.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    sitk.WriteImage(img, str(path), useCompression=True)
