"""Find the cases of a review folder (pure Python, no Qt).

Three layouts, tried in this order:

1. ``medseg predict`` output: ``DIR/manifest.csv`` with columns
   ``input,output,status,error,seconds,...,model_id`` and optionally ``uncertainty``;
   the masks are ``DIR/<case>.nii.gz`` or DICOM SEG ``DIR/<case>/seg.dcm`` (the ``output``
   column). The case id is the manifest's ``case`` key (``/`` flattened to ``__``), else the
   mask's file name without its suffix. A case's ``<case>_uncertainty.nii.gz`` map (written
   by ``medseg predict --uncertainty`` next to the mask, or next to the ``<case>/`` folder of
   a DICOM SEG) is found as :attr:`ReviewCase.uncertainty_map`.
2. Any folder of scans with masks: ``DIR/images/`` and ``DIR/masks/``, matched by case id
   (the file name without its suffix, e.g. ``case_01.nii.gz`` and ``case_01.seg.nrrd``; an
   nnU-Net channel suffix ``_0000`` on images is dropped). A DICOM series may be a folder
   ``images/<case>/``.
3. An nnU-Net dataset: ``DIR/imagesTr/<case>_0000.<ext>`` and ``DIR/labelsTr/<case>.<ext>``.

Class names and colours come from ``DIR/labels.json`` (written by ``medseg predict``, the run's
names) or ``DIR/dataset.json`` when there is one (:func:`medseg.io.labels.read_labels`).
"""

from __future__ import annotations

import re
from itertools import islice
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError
from medseg.io.formats import is_dicom_file, split_suffix
from medseg.io.labels import LabelTable, read_labels

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")
#: manifest ``status`` values meaning the prediction was written.
OK_STATUSES = {"", "ok", "done", "success", "skipped", "exists"}


@dataclass
class ReviewCase:
    """One case to review. ``mask`` is the prediction (never overwritten)."""

    case: str
    mask: Path
    image: Path | None
    uncertainty: float | None = None
    model_id: str | None = None
    series_uid: str | None = None  # which DICOM series of ``image`` (a folder), from the manifest
    uncertainty_map: Path | None = None  # per-voxel entropy map of `medseg predict --uncertainty`


@dataclass
class Worklist:
    """The cases found in a review folder, and what could not be used (case, reason)."""

    folder: Path
    layout: str  # "manifest", "images/masks", "nnunet"
    cases: list[ReviewCase] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)
    channel_names: dict[str, str] = field(default_factory=dict)
    table: "LabelTable | None" = None  # the folder's labels.json / dataset.json, with colours


def _is_scan(p: Path) -> bool:
    if p.name.startswith("."):
        return False
    if p.is_dir():
        files = (f for f in islice(p.rglob("*"), 200) if f.is_file())
        return any(f.suffix.lower() == ".dcm" or is_dicom_file(f) for f in files)
    return bool(split_suffix(p)[1]) or is_dicom_file(p)


def _case_id(p: Path, strip_channel: bool) -> tuple[str, int]:
    """(case id, channel) of a file or DICOM folder name."""
    stem = split_suffix(p)[0] if p.is_file() else p.name
    m = _CHANNEL.match(stem) if strip_channel else None
    return (m.group("case"), int(m.group("ch"))) if m else (stem, 0)


def _index(folder: Path, strip_channel: bool, wl: Worklist, what: str) -> dict[str, Path]:
    """case id -> path (channel 0 only) for the scans in ``folder``."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not _is_scan(p):
            continue
        case, ch = _case_id(p, strip_channel)
        if ch != 0:
            continue  # other channels are not displayed
        if case in out:
            wl.problems.append((case, f"two {what} files for this case ({out[case].name}, {p.name}); using the first"))
            continue
        out[case] = p
    return out


def _pair(wl: Worklist, images: dict[str, Path], masks: dict[str, Path]) -> None:
    for case in sorted(set(images) | set(masks)):
        if case not in masks:
            wl.problems.append((case, "image without a mask; nothing to review"))
        elif case not in images:
            wl.problems.append((case, f"mask {masks[case].name} has no image"))
        else:
            wl.cases.append(ReviewCase(case, masks[case], images[case]))


def _resolve(folder: Path, value: str) -> Path | None:
    """A manifest path: absolute, relative to the folder, or relative to the working folder."""
    if not value:
        return None
    p = Path(value)
    candidates = [p] if p.is_absolute() else [folder / p, Path.cwd() / p, folder / p.name]
    if p.is_absolute():
        candidates.append(folder / p.name)
    return next((c for c in candidates if c.exists()), None)


#: Name ending of the per-voxel uncertainty map ``medseg predict --uncertainty`` writes next to a mask.
UNCERTAINTY_SUFFIX = "_uncertainty.nii.gz"


def uncertainty_map_path(mask: Path) -> Path | None:
    """The uncertainty map written with the prediction ``mask``, when there is one:
    ``DIR/<key>_uncertainty.nii.gz`` for ``DIR/<key>.<ext>`` and for a DICOM SEG
    ``DIR/<key>/seg.dcm`` (``medseg.predict.case.write_outputs``)."""
    mask = Path(mask)
    base = mask.parent if mask.name.lower() == "seg.dcm" else mask.parent / split_suffix(mask)[0]
    path = base.parent / f"{base.name}{UNCERTAINTY_SUFFIX}"
    return path if path.is_file() and path != mask else None


def _from_manifest(wl: Worklist, manifest: Path) -> None:
    from medseg.predict.manifest import read_manifest

    seen: set[str] = set()
    for rec in read_manifest(manifest):
        # the manifest's case key ("a/b" for a series in a study tree) keeps nested outputs apart;
        # flattened ("a__b") because it also names files (corrected/, the nnU-Net export)
        first = str(rec.image) if rec.image is not None else ""
        case = rec.case.replace("/", "__") or split_suffix(rec.output or first.rstrip("/"))[0]
        mask = _resolve(wl.folder, rec.output or "")
        if rec.status not in OK_STATUSES and mask is None:
            wl.problems.append((case, f"prediction {rec.status}: {rec.error or 'no reason given'}"))
            continue
        if mask is None:
            wl.problems.append((case, f"mask {rec.output or '(none)'} listed in manifest.csv was not found"))
            continue
        image = _resolve(wl.folder, first)
        if image is None:
            wl.problems.append((case, f"image {rec.row.get('input')!r} listed in manifest.csv was not found"))
            continue
        if case in seen:
            wl.problems.append((case, "listed twice in manifest.csv; using the first row"))
            continue
        seen.add(case)
        wl.cases.append(ReviewCase(case, mask, image, rec.uncertainty, rec.model_id, rec.series_uid,
                                   uncertainty_map_path(mask)))


def _folder_labels(wl: Worklist) -> None:
    """Class names/colours from DIR/labels.json (else DIR/dataset.json); channel names from the
    same file (``channel_names``, ``modality`` or a run's ``channels``)."""
    import json

    try:
        table = read_labels(wl.folder)
    except Exception as e:  # a damaged labels file only costs the class names
        wl.problems.append(("", f"class names ignored: {e}"))
        return
    if table is None:
        return
    wl.table = table
    wl.labels = dict(sorted(table.names.items()))
    for name in ("labels.json", "dataset.json"):
        path = wl.folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            raw = data.get("channel_names") or data.get("modality") or data.get("channels") or {}
            if isinstance(raw, list):
                raw = dict(enumerate(raw))
            if raw and not wl.channel_names:
                wl.channel_names = {str(k): str(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError):
            continue


def discover(folder: str | Path) -> Worklist:
    """List the cases of a review folder (see the module docstring for the layouts).

    Raises:
        InputError: not a folder, or none of the layouts, or no case with both image and mask.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give the folder with the masks to review")
    if (folder / "manifest.csv").is_file():
        wl = Worklist(folder, "manifest")
        _from_manifest(wl, folder / "manifest.csv")
    elif (folder / "images").is_dir() and (folder / "masks").is_dir():
        wl = Worklist(folder, "images/masks")
        _pair(wl, _index(folder / "images", True, wl, "image"), _index(folder / "masks", False, wl, "mask"))
    elif (folder / "imagesTr").is_dir() and (folder / "labelsTr").is_dir():
        wl = Worklist(folder, "nnunet")
        _pair(wl, _index(folder / "imagesTr", True, wl, "image"), _index(folder / "labelsTr", False, wl, "label"))
    else:
        raise InputError(
            f"{folder} has neither manifest.csv (medseg predict output), nor images/ + masks/, "
            "nor imagesTr/ + labelsTr/ (nnU-Net); see 'medseg review --help'"
        )
    _folder_labels(wl)
    if not wl.cases:
        reasons = "; ".join(f"{c}: {m}" for c, m in wl.problems[:3])
        raise InputError(f"{folder}: no case with both an image and a mask" + (f" ({reasons})" if reasons else ""))
    return wl
