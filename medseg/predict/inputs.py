"""Find the cases to segment under the INPUT paths of ``medseg predict``, and name their outputs.

Rules (each case gets a ``key``, the output path relative to OUT_DIR without suffix):

* an image file ``X.nii.gz`` / ``X.nrrd`` / ``X.mha`` given directly -> key ``X``;
* a folder is searched recursively: image files -> their path relative to the folder
  (``sub/X``); every DICOM series -> its folder relative to the given folder (``a/b``), or
  the given folder's own name when the series sits directly in it; a folder holding several
  series appends the series number (``a/b_s3``);
* nnU-Net channel files ``case_0000.nii.gz`` (``_0001`` ...) form one case ``case`` with the
  channels in index order, as ``nnUNetv2_predict`` expects;
* Slicer segmentations (``.seg.nrrd``), hidden files and OUT_DIR itself are not inputs.

Output: ``OUT_DIR/<key>.nii.gz`` (``.nrrd`` with ``--format nrrd``) or, for ``dicom-seg``,
``OUT_DIR/<key>/seg.dcm``.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError
from medseg.io.atomic import safe_resolve
from medseg.io.formats import READ_SUFFIXES, split_suffix

FORMATS = {"nifti": ".nii.gz", "nrrd": ".nrrd", "dicom-seg": "/seg.dcm"}
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})$")


@dataclass
class CaseInput:
    """One case: ``sources`` are image files (one per channel) or a DICOM folder (+ ``series_uid``)."""

    key: str
    sources: list[Path]
    series_uid: str | None = None
    is_dicom: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def input_text(self) -> str:
        """The manifest's ``input`` column: the path (channels joined by ';'), absolute. Never
        raises (a path that cannot be resolved, e.g. a symlink loop, is given as is)."""
        text = ";".join(str(safe_resolve(p)) for p in self.sources)
        return text + (f"#{self.series_uid}" if self.series_uid and self.is_dicom else "")

    def output(self, out_dir: Path, fmt: str) -> Path:
        return out_dir / (self.key + FORMATS[fmt])

    def outputs(self, out_dir: Path, fmt: str, uncertainty: bool, tables: tuple[str, ...] = ()) -> list[Path]:
        """Every file this case may write under ``out_dir``: the mask and its companions
        (``<key>_uncertainty.nii.gz`` with ``uncertainty``; ``<key>_<table>.csv`` for each of the
        predictor's ``tables``, e.g. ``lesions`` for an instance run)."""
        base = out_dir / self.key
        out = [self.output(out_dir, fmt)]
        if uncertainty:
            out.append(base.parent / f"{base.name}_uncertainty.nii.gz")
        out += [base.parent / f"{base.name}_{t}.csv" for t in tables]
        return out


def _is_image(name: str) -> bool:
    _, suf = split_suffix(name, READ_SUFFIXES)
    return bool(suf) and suf != ".seg.nrrd"


def _group_channels(files: list[tuple[str, Path]], n_channels: int) -> list[CaseInput]:
    """(key, path) pairs -> cases, grouping ``<case>_NNNN`` channel files."""
    groups: dict[str, dict[int, Path]] = defaultdict(dict)
    plain: list[CaseInput] = []
    for key, path in files:
        m = _CHANNEL.match(key)
        if m:
            groups[m["case"]][int(m["ch"])] = path
        else:
            plain.append(CaseInput(key, [path]))
    out = list(plain)
    for case, chans in groups.items():
        idx = sorted(chans)
        if idx == list(range(n_channels)):
            out.append(CaseInput(case, [chans[i] for i in idx]))
        elif n_channels == 1:  # not nnU-Net channel files after all (e.g. scan_2019): keep the names
            out.extend(CaseInput(f"{case}_{i:04d}", [chans[i]]) for i in idx)
        else:
            out.append(CaseInput(case, [chans[i] for i in idx],
                                 notes=[f"has channel files {idx}; the model needs _0000 .. _{n_channels - 1:04d}"]))
    return out


def _walk(root: Path, skip: Path | None) -> tuple[list[tuple[str, Path]], bool]:
    """Image files under ``root`` as (key, path), and whether other (maybe DICOM) files exist."""
    images, others = [], False
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".")
                             and (skip is None or (d / n).resolve() != skip))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if _is_image(name):
                stem, _ = split_suffix(name, READ_SUFFIXES)
                images.append((str((d / stem).relative_to(root)), d / name))
            elif not name.lower().endswith((".csv", ".json", ".txt", ".md", ".seg.nrrd", ".png", ".jpg", ".pdf")):
                others = True
    return images, others


def _dicom_cases(root: Path, skip: Path | None) -> list[CaseInput]:
    from medseg.io import scan_dicom

    try:
        scan = scan_dicom(root)
    except InputError:
        return []
    by_folder: dict[Path, list] = defaultdict(list)
    notes: dict[str, list[str]] = {}
    for s in scan.series:
        if skip is not None and s.folder is not None and safe_resolve(s.folder).is_relative_to(skip):
            continue
        folder = s.folder
        if len(s.folders) > 1:
            where = ", ".join(str(f) for f in s.folders[:3]) + (" ..." if len(s.folders) > 3 else "")
            if s.duplicate_sops:  # the same images twice: which copy is meant cannot be known
                notes[s.uid] = [f"series {s.uid} is stored more than once ({s.duplicate_sops} repeated images, in "
                                f"{where}); two copies of one series -- keep one copy and rerun with --resume"]
            else:  # one series split over several folders: read it from their common folder
                folder = Path(os.path.commonpath([str(f) for f in s.folders]))
        by_folder[folder].append(s)
    cases = []
    for folder, series in sorted(by_folder.items(), key=lambda kv: str(kv[0])):
        rel = folder.relative_to(root) if folder != root else None
        base = str(rel) if rel is not None else root.resolve().name
        series = sorted(series, key=lambda s: (s.series_number or 0, s.uid))
        numbers = [s.series_number for s in series]
        if None in numbers or len(set(numbers)) < len(numbers):  # not usable as names: count instead
            numbers = list(range(1, len(series) + 1))
        for s, num in zip(series, numbers):
            key = base if len(series) == 1 else f"{base}_s{num}"
            cases.append(CaseInput(key, [folder], s.uid, True, notes=list(notes.get(s.uid, []))))
    return cases


def find_cases(inputs: list[str | Path], n_channels: int = 1, out_dir: str | Path | None = None) -> list[CaseInput]:
    """The cases under ``inputs`` (files and/or folders), in a stable order.

    Raises:
        InputError: a path that does not exist, nothing to segment, or two cases that would
        write the same output (the message names both).
    """
    skip = Path(out_dir).resolve() if out_dir is not None else None
    cases: list[CaseInput] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path} does not exist; give image files, DICOM series folders or study folders")
        if path.is_file():
            if _is_image(path.name):
                cases.extend(_group_channels([(split_suffix(path.name)[0], path)], n_channels))
            else:  # a single DICOM file: its series, from its folder
                from medseg.io import scan_dicom

                series = scan_dicom(path).series[0]
                cases.append(CaseInput(path.parent.resolve().name, [path.parent], series.uid, True))
            continue
        images, others = _walk(path, skip)
        cases.extend(_group_channels(images, n_channels))
        if others:
            cases.extend(_dicom_cases(path, skip))
    if not cases:
        raise InputError(f"no scans found in {', '.join(map(str, inputs))}; medseg segments .nii/.nii.gz, .nrrd, "
                         ".mha/.mhd files and DICOM series")
    seen: dict[str, CaseInput] = {}
    for c in cases:
        if c.key in seen:
            raise InputError(f"two inputs would write the same output {c.key!r}: {seen[c.key].input_text} and "
                             f"{c.input_text}; segment them in separate runs (different --out)")
        seen[c.key] = c
    return cases
