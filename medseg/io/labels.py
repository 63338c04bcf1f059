"""Class names and colours that travel with every label map medseg writes.

One small JSON file, ``labels.json``, in the nnU-Net ``dataset.json`` spirit::

    {"labels": {"background": 0, "liver": 1, "tumour": 2},
     "colors": {"liver": [221, 130, 101], "tumour": [255, 255, 0]},
     "source": "runs/demo"}

It sits in every run directory (with ``channels`` added) and next to ``manifest.csv`` in every
prediction folder, so the napari reader, the review worklist and audit log, ``medseg report``
and the review export call classes by the run's names, not ``class_1..``. ``colors`` are RGB
0-255; classes without one get :func:`default_colors`. Values are label values in the masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

LABELS_FILE = "labels.json"

#: A fixed, well-separated palette (RGB 0-255) for classes 1, 2, ... that have no colour of
#: their own (3D Slicer's first generic anatomy colours, then a Tableau-like cycle).
_PALETTE = [
    (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (216, 101, 79),
    (221, 130, 101), (144, 238, 144), (192, 104, 88), (220, 245, 20), (78, 63, 0),
    (255, 250, 220), (230, 220, 70), (200, 200, 235), (250, 250, 210), (244, 214, 49),
    (0, 151, 206), (216, 191, 216), (183, 156, 220), (183, 214, 211), (152, 189, 207),
]


def default_colors(labels: dict[str, int]) -> dict[str, tuple[int, int, int]]:
    """A colour per foreground class (value v -> palette entry v-1, cycling)."""
    return {n: _PALETTE[(v - 1) % len(_PALETTE)] for n, v in labels.items() if v != 0}


@dataclass
class LabelTable:
    """``labels``: name -> value (background 0 included when known); ``colors``: name -> RGB."""

    labels: dict[str, int]
    colors: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        self.labels = {str(k): int(v) for k, v in self.labels.items()}
        full = default_colors(self.labels)
        full.update({str(k): tuple(int(c) for c in v)[:3] for k, v in (self.colors or {}).items() if str(k) in self.labels})
        self.colors = full

    @property
    def names(self) -> dict[int, str]:
        """value -> name."""
        return {v: n for n, v in self.labels.items()}

    def name_of(self, value: int) -> str:
        """The class name of ``value``; ``class_<value>`` when the table does not know it."""
        return self.names.get(int(value), "background" if int(value) == 0 else f"class_{int(value)}")

    def with_values(self, values) -> tuple["LabelTable", list[int]]:
        """This table extended by every value in ``values`` it lacks (named ``class_<v>``);
        also returns the values that were added, so callers can say so."""
        known = set(self.labels.values())
        added = sorted(int(v) for v in set(int(x) for x in values) - known)
        labels = dict(self.labels)
        if 0 not in known:
            labels = {"background": 0, **labels}
        for v in added:
            if v == 0:
                continue
            name = f"class_{v}"
            while name in labels:
                name += "_"
            labels[name] = v
        return LabelTable(dict(sorted(labels.items(), key=lambda kv: kv[1])), dict(self.colors), self.source), \
            [v for v in added if v != 0]

    def to_dict(self) -> dict:
        out: dict = {"labels": dict(sorted(self.labels.items(), key=lambda kv: kv[1])),
                     "colors": {n: list(c) for n, c in self.colors.items()}}
        if self.source:
            out["source"] = self.source
        return out


def write_labels(folder: str | Path, table: LabelTable | dict[str, int], extra: dict | None = None) -> Path:
    """Write ``FOLDER/labels.json`` atomically (``extra`` keys are added, e.g. ``channels``)."""
    from medseg.io.atomic import write_text_atomic

    if not isinstance(table, LabelTable):
        table = LabelTable(dict(table))
    data = table.to_dict()
    data.update(extra or {})
    return write_text_atomic(Path(folder) / LABELS_FILE, json.dumps(data, indent=1))


def read_labels(path: str | Path) -> LabelTable | None:
    """The label table of a run or prediction folder (or of a ``labels.json`` / nnU-Net
    ``dataset.json`` file). ``None`` when there is none; a malformed file raises InputError."""
    from medseg.errors import InputError

    path = Path(path)
    if path.is_dir():
        for name in (LABELS_FILE, "dataset.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            return None
    elif not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        labels = data["labels"]
        if not isinstance(labels, dict):
            raise TypeError("labels is not a mapping")
        # nnU-Net region labels ({"name": [1, 2]}) are not plain label maps: keep the first value
        labels = {str(k): int(v[0] if isinstance(v, (list, tuple)) else v) for k, v in labels.items()}
        colors = data.get("colors") or {}
        if not isinstance(colors, dict):
            colors = {}
        return LabelTable(labels, colors, data.get("source"))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise InputError(f"{path} is not a valid labels file ({e}); expected "
                         '{"labels": {"background": 0, "<name>": 1, ...}}') from None


# ---- the label table of one mask file -------------------------------------------------------
#: How many folders above a mask file are searched for its labels.json / dataset.json (a
#: ``medseg predict`` DICOM SEG output ``OUT/<study>/<series>/seg.dcm`` sits three below OUT).
SEARCH_DEPTH = 3


def label_values(array) -> list[int]:
    """The values present in a label map, ascending (a bincount for non-negative integers)."""
    import numpy as np

    a = np.asarray(array)
    if a.size == 0:
        return []
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    if a.dtype.kind not in "iu" or a.min() < 0 or a.max() > 65535:
        return [int(v) for v in np.unique(a)]
    return np.flatnonzero(np.bincount(a.ravel().astype(np.int64, copy=False))).tolist()


def find_labels(mask_path: str | Path) -> LabelTable | None:
    """The label table that goes with a mask file: ``labels.json`` (else ``dataset.json``) in
    its folder or up to :data:`SEARCH_DEPTH` folders above (the first found wins; the search
    stops at a folder holding ``manifest.csv``, the top of a prediction folder). A malformed
    file there is skipped (None)."""
    from medseg.errors import InputError

    folder = Path(mask_path).parent
    for _ in range(SEARCH_DEPTH + 1):
        try:
            table = read_labels(folder)
        except InputError:
            table = None
        if table is not None:
            return table
        if (folder / "manifest.csv").is_file() or folder.parent == folder:
            return None
        folder = folder.parent
    return None


def mask_label_table(volume, path: str | Path | None = None, table: LabelTable | None = None) -> LabelTable:
    """Names and colours of a mask's classes, for viewers, review and reports.

    Sources, first found wins: ``table`` (given by the caller, e.g. a run's labels.json); the
    labels.json / dataset.json next to the file (:func:`find_labels`); the segments stored in
    the file (DICOM SEG segment labels, Slicer ``.seg.nrrd`` segments: ``volume.meta["segments"]``
    {value: name}, colours ``volume.meta["colors"]`` {value: RGB 0-255}). Colours of the file's
    segments fill in where the table has none. Every value present in the mask that the table
    lacks is added as ``class_<v>``; background 0 is always there.
    """
    segments = {int(v): str(n) for v, n in ((volume.meta or {}).get("segments") or {}).items()}
    seg_colors = {int(v): c for v, c in ((volume.meta or {}).get("colors") or {}).items()}
    path = path or (volume.meta or {}).get("path")
    if table is None and path:
        table = find_labels(path)
    if table is None and segments:
        table = LabelTable({"background": 0, **{n: v for v, n in segments.items() if v != 0}},
                           {segments[v]: c for v, c in seg_colors.items() if v in segments})
    if table is None:
        table = LabelTable({"background": 0})
    elif seg_colors:
        explicit = dict(table.colors)
        for v, c in seg_colors.items():
            name = table.names.get(v)
            if name is not None and name == segments.get(v):
                explicit[name] = tuple(int(x) for x in c)[:3]
        table = LabelTable(table.labels, explicit, table.source)
    return table.with_values(label_values(volume.array))[0]
