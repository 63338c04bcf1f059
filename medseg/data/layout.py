"""Dataset folders: nnU-Net v2 raw layout and Medical Segmentation Decathlon (MSD) layout.

Both become one `DatasetSpec`: label names and values, channel names, and the training cases
(each with one image path per channel and a label path). Only ``dataset.json`` and the
folder listing are read here; voxel data are checked by :mod:`medseg.data.validate`.

nnU-Net v2 (``dataset.json`` has ``channel_names``, ``labels``, ``numTraining``, ``file_ending``)::

    DIR/dataset.json
    DIR/imagesTr/CASE_0000.nii.gz   (CASE_0001... for more channels)
    DIR/labelsTr/CASE.nii.gz
    DIR/imagesTs/CASE_0000.nii.gz   (optional)

MSD (``dataset.json`` has a ``training`` list of ``{"image": ..., "label": ...}``, optional
``test`` list, ``modality`` and ``labels`` as ``{"0": "background", "1": "liver"}``).
Paths in ``dataset.json`` must stay inside DIR.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError
from medseg.io.formats import split_suffix


@dataclass
class Case:
    """One training (or test) case. ``images`` has one path per channel, in channel order."""

    case_id: str
    images: list[Path]
    label: Path | None = None


@dataclass
class DatasetSpec:
    """A dataset folder, parsed.

    Attributes:
        root: the dataset folder.
        layout: ``"nnunet"`` or ``"msd"``.
        labels: label name -> integer value, background 0 first, in value order.
        channels: channel index -> name (e.g. ``{0: "CT"}``).
        cases / test_cases: training cases (with labels) and test cases (images only).
        problems: layout problems found while parsing, as (case id or "", message).
    """

    root: Path
    layout: str
    name: str
    labels: dict[str, int]
    channels: dict[int, str]
    file_ending: str
    cases: list[Case] = field(default_factory=list)
    test_cases: list[Case] = field(default_factory=list)
    num_training_declared: int | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def label_values(self) -> list[int]:
        return sorted(self.labels.values())

    @property
    def label_names(self) -> dict[int, str]:
        return {v: k for k, v in self.labels.items()}

    @property
    def is_ct(self) -> bool:
        """True when the first channel is named CT (drives the normalisation in the plan)."""
        return self.channels.get(0, "").strip().upper() == "CT"


def _read_json(root: Path) -> dict:
    path = root / "dataset.json"
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give the dataset folder that holds dataset.json")
    if not path.is_file():
        raise InputError(
            f"{root} has no dataset.json; medseg reads nnU-Net v2 and Medical Segmentation "
            "Decathlon folders (see README: Dataset layouts)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}); fix the file") from e
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object")
    return data


def parse_labels(raw: dict, source: str = "labels") -> dict[int, str]:
    """``{value: name}`` from ``{name: value}`` (nnU-Net v2) or ``{"value": name}`` (Decathlon),
    sorted by value. The one parser of dataset.json labels (metrics use it too).

    Raises:
        InputError: region labels (lists), values that are not integers, duplicate values.
    """
    out: dict[int, str] = {}
    for key, value in raw.items():
        if isinstance(value, (list, tuple)):
            raise InputError(f"{source}: label {key!r} is a region (list {value}); medseg supports one integer per label")
        name, val = (str(value), key) if str(key).strip().lstrip("-").isdigit() else (str(key), value)
        try:
            val = int(val)
        except (TypeError, ValueError):
            raise InputError(f"{source}: label {key!r}: {value!r} is neither 'name': value nor 'value': 'name'") from None
        if val in out:
            raise InputError(f"{source}: label value {val} is declared twice ({out[val]!r} and {name!r}); fix it")
        out[val] = name
    return dict(sorted(out.items()))


def _labels(data: dict, path: Path) -> dict[str, int]:
    raw = data.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: 'labels' is missing or empty; declare e.g. {{\"background\": 0, \"liver\": 1}}")
    by_value = parse_labels(raw, str(path))
    if 0 not in by_value:
        raise InputError(f"{path}: no label has value 0; declare the background as 0")
    return {name: value for value, name in by_value.items()}


def _channels(data: dict, path: Path | None = None) -> dict[int, str]:
    """``channel_names`` (nnU-Net) / ``modality`` (Decathlon): ``{"0": "CT", "1": "T2"}`` with
    keys 0..n-1. Raises InputError for any other shape."""
    key = "channel_names" if data.get("channel_names") else "modality"
    raw = data.get(key) or {"0": "unknown"}
    where = f"{path}: '{key}'" if path is not None else f"'{key}'"
    if not isinstance(raw, dict):
        raise InputError(f"{where} must map channel numbers to names, e.g. {{\"0\": \"CT\"}}; got {raw!r:.80}")
    try:
        out = {int(str(k)): str(v) for k, v in raw.items()}
    except ValueError:
        raise InputError(f"{where}: keys must be channel numbers \"0\", \"1\", ...; got "
                         f"{', '.join(map(repr, list(raw)[:4]))}") from None
    if sorted(out) != list(range(len(out))) or any(isinstance(v, (dict, list)) for v in raw.values()):
        raise InputError(f"{where}: channels must be numbered 0..{len(out) - 1} with one name each; got {raw!r:.80}")
    return dict(sorted(out.items()))


def _num_training(data: dict, path: Path) -> int | None:
    if "numTraining" not in data:
        return None
    v = data["numTraining"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InputError(f"{path}: 'numTraining' must be a whole number >= 0 (the number of training cases); "
                         f"got {v!r:.40}")
    return v


def _inside(root: Path, rel: str, spec: DatasetSpec, case_id: str) -> Path | None:
    """Resolve a dataset.json path; refuse (record a problem) when it leaves the folder."""
    p = Path(rel)
    full = (root / p).resolve() if not p.is_absolute() else p.resolve()
    if not full.is_relative_to(root.resolve()):
        spec.problems.append((case_id, f"path {rel!r} in dataset.json leaves the dataset folder; refused"))
        return None
    return root / p if not p.is_absolute() else full


def _load_msd(root: Path, data: dict, spec: DatasetSpec) -> None:
    for i, entry in enumerate(data.get("training") or []):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            spec.problems.append((f"training[{i}]", "entry must be {\"image\": ..., \"label\": ...}"))
            continue
        case_id = split_suffix(Path(str(entry["image"])))[0]
        img = _inside(root, str(entry["image"]), spec, case_id)
        lab = _inside(root, str(entry["label"]), spec, case_id)
        if img is not None and lab is not None:
            spec.cases.append(Case(case_id, [img], lab))
    test = data.get("test") or []
    if not isinstance(test, list):
        spec.problems.append(("test", f"'test' must be a list of image paths; got {test!r:.60}"))
        test = []
    for i, rel in enumerate(test):
        if isinstance(rel, dict) and isinstance(rel.get("image"), str):
            rel = rel["image"]
        elif not isinstance(rel, str) or not rel:
            spec.problems.append((f"test[{i}]", f"entry must be an image path (or {{\"image\": path}}); got {rel!r:.60}"))
            continue
        case_id = split_suffix(Path(rel))[0]
        img = _inside(root, rel, spec, case_id)
        if img is not None:
            spec.test_cases.append(Case(case_id, [img]))


def _image_groups(folder: Path, ending: str) -> dict[str, dict[int, Path]]:
    groups: dict[str, dict[int, Path]] = {}
    if not folder.is_dir():
        return groups
    for p in sorted(folder.iterdir()):
        if not p.name.endswith(ending) or p.name.startswith("."):
            continue
        stem = p.name[: -len(ending)]
        case_id, _, ch = stem.rpartition("_")
        if case_id and ch.isdigit() and len(ch) == 4:
            groups.setdefault(case_id, {})[int(ch)] = p
    return groups


def _load_nnunet(root: Path, spec: DatasetSpec) -> None:
    ending = spec.file_ending
    images = _image_groups(root / "imagesTr", ending)
    labels_dir = root / "labelsTr"
    labels = {p.name[: -len(ending)]: p for p in sorted(labels_dir.glob(f"*{ending}"))
              if not p.name.startswith(".")} if labels_dir.is_dir() else {}
    for case_id in sorted(set(images) | set(labels)):
        chans = images.get(case_id, {})
        paths = [chans.get(c, root / "imagesTr" / f"{case_id}_{c:04d}{ending}") for c in spec.channels]
        extra = sorted(set(chans) - set(spec.channels))
        if extra:
            spec.problems.append((case_id, f"image channels {extra} are not declared in channel_names"))
        spec.cases.append(Case(case_id, paths, labels.get(case_id, labels_dir / f"{case_id}{ending}")))
    for case_id, chans in _image_groups(root / "imagesTs", ending).items():
        spec.test_cases.append(Case(case_id, [chans.get(c, root / "imagesTs" / f"{case_id}_{c:04d}{ending}") for c in spec.channels]))


def load_dataset(root: str | Path) -> DatasetSpec:
    """Parse a dataset folder (either layout). Problems that concern single cases are
    collected in ``spec.problems``; a folder that cannot be a dataset raises InputError."""
    root = Path(root)
    data = _read_json(root)
    json_path = root / "dataset.json"
    layout = "msd" if isinstance(data.get("training"), list) else "nnunet"
    ending = str(data.get("file_ending", ".nii.gz"))
    if layout == "nnunet" and "file_ending" not in data:
        raise InputError(f"{json_path}: neither a 'training' list (Decathlon) nor 'file_ending' (nnU-Net v2)")
    spec = DatasetSpec(
        root=root,
        layout=layout,
        name=str(data.get("name", root.name)),
        labels=_labels(data, json_path),
        channels=_channels(data, json_path),
        file_ending=ending,
        num_training_declared=_num_training(data, json_path),
    )
    if layout == "msd":
        _load_msd(root, data, spec)
    else:
        _load_nnunet(root, spec)
    n_decl = spec.num_training_declared
    if n_decl is not None and n_decl != len(spec.cases):
        spec.problems.append(("", f"numTraining is {n_decl} but {len(spec.cases)} training cases were found"))
    if not spec.cases:
        spec.problems.append(("", "no training cases found (imagesTr/labelsTr empty or 'training' list empty)"))
    return spec
