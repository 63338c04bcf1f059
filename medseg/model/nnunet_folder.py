"""An nnU-Net v2 results folder, read without nnU-Net: what it holds and which folds to use.

::

    nnUNet_results/Dataset501_Liver/                          (a dataset folder; also accepted
        nnUNetTrainer__nnUNetPlans__3d_fullres/                when it holds one model folder)
            dataset.json          labels {name: value}, channel_names, file_ending
            plans.json            configurations, transpose, normalisation, image_reader_writer
            fold_0/checkpoint_final.pth   (network_weights, trainer_name, init_args, mirroring axes)
            fold_1/...            fold_all/... (trained on every case)

This module only reads JSON and lists files, so ``medseg predict`` recognises such a folder
(and says what is wrong with it) without the optional ``nnunetv2`` dependency; the predictor
(:mod:`medseg.nnunet.predictor`) needs it. See docs/guides/nnunet.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import InputError

#: nnUNetv2_predict's default checkpoint (``-chk``).
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
_MODEL_DIR = re.compile(r"^[^_].*__.+__.+$")  # TRAINER__PLANS__CONFIGURATION


def looks_like_model_folder(path: Path) -> bool:
    """True for a folder with ``dataset.json``, ``plans.json`` and at least one ``fold_*``."""
    path = Path(path)
    return ((path / "dataset.json").is_file() and (path / "plans.json").is_file()
            and any(p.is_dir() for p in path.glob("fold_*")))


def find_model_folder(path: str | Path) -> Path | None:
    """``path`` itself when it is an nnU-Net model folder; its only ``TRAINER__PLANS__CONFIG``
    subfolder when ``path`` is a dataset folder holding exactly one; else None. A dataset folder
    with several model folders raises InputError listing them."""
    path = Path(path)
    if looks_like_model_folder(path):
        return path
    if not path.is_dir():
        return None
    subs = sorted(p for p in path.iterdir() if p.is_dir() and _MODEL_DIR.match(p.name) and looks_like_model_folder(p))
    if len(subs) > 1:
        raise InputError(f"{path} holds {len(subs)} nnU-Net model folders ({', '.join(p.name for p in subs)}); "
                         "give one of them to --model")
    return subs[0] if subs else None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is unreadable ({e}); restore it from the nnU-Net results folder") from e
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a JSON object; restore it from the nnU-Net results folder")
    return data


def _fold_name(fold: str | int) -> str:
    f = str(fold).strip()
    if f != "all" and not f.isdigit():
        raise InputError(f"--folds {fold}: give fold numbers (0 1 2 3 4) or 'all'")
    return f"fold_{f}"


@dataclass(frozen=True)
class ModelFolder:
    """A checked nnU-Net model folder.

    Attributes:
        path: the ``TRAINER__PLANS__CONFIGURATION`` folder.
        dataset: its ``dataset.json``; plans: its ``plans.json``.
        folds: the fold names used (``"0"``, ``"1"``, ``"all"``), in order.
        checkpoints: ``fold_K/<checkpoint>`` of each used fold.
        labels: ``{class name: value}``, background included, nnU-Net's ``ignore`` label excluded.
        channels: ``{index: channel name}`` from ``channel_names`` (``modality`` in old files).
        configuration: the configuration name (last part of the folder name).
    """

    path: Path
    dataset: dict
    plans: dict
    folds: tuple[str, ...]
    checkpoints: tuple[Path, ...]
    labels: dict[str, int]
    channels: dict[str, str]
    configuration: str

    @property
    def model_id(self) -> str:
        """``<dataset folder>.<configuration>-f<folds>-<sha256 prefix of the checkpoints>``: the
        manifest records it; ``--resume`` only skips cases done with the same weights and folds."""
        h = hashlib.sha256()
        for ck in self.checkpoints:
            h.update(ck.parent.name.encode())
            with open(ck, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        return f"{self.path.resolve().parent.name}.{self.configuration}-f{','.join(self.folds)}-{h.hexdigest()[:12]}"


def _labels(dataset: dict, path: Path) -> dict[str, int]:
    raw = dataset.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: no 'labels' table; this is not an nnU-Net v2 dataset.json")
    if any(isinstance(v, (list, tuple)) for v in raw.values()):
        raise InputError(f"{path}: a region-based model (label values are lists of classes); medseg runs "
                         "label-based nnU-Net models only -- predict this one with nnUNetv2_predict")
    labels = {str(k): int(v) for k, v in raw.items() if str(k) != "ignore"}
    if sorted(labels.values()) != list(range(len(labels))):
        raise InputError(f"{path}: label values {sorted(labels.values())} are not 0..{len(labels) - 1}; "
                         "nnU-Net requires consecutive labels, so the file was edited -- restore it")
    return labels


def open_model_folder(path: str | Path, folds: list[str | int] | None = None,
                      checkpoint: str = DEFAULT_CHECKPOINT) -> ModelFolder:
    """Check and describe the model folder at ``path`` (see :func:`find_model_folder`).

    ``folds``: the folds to ensemble (default: every ``fold_<N>`` holding ``checkpoint``, as
    ``nnUNetv2_predict`` does; ``fold_all`` when it is the only one).
    Raises InputError for a folder that is not an nnU-Net model folder, a missing fold or
    checkpoint, or a dataset.json medseg cannot serve.
    """
    root = Path(path)
    folder = find_model_folder(root)
    if folder is None:
        raise InputError(f"{root} is neither a medseg run directory (no run.json) nor an nnU-Net results folder "
                         "(dataset.json, plans.json and fold_*/); give the --out folder of `medseg train` or a "
                         "TRAINER__PLANS__CONFIGURATION folder under nnUNet_results")
    dataset = _read_json(folder / "dataset.json")
    plans = _read_json(folder / "plans.json")
    configuration = folder.name.split("__")[-1]
    if configuration not in plans.get("configurations", {}):
        raise InputError(f"{folder}: plans.json has no configuration {configuration!r} (it has "
                         f"{', '.join(plans.get('configurations', {})) or 'none'}); the folder was renamed -- restore "
                         "its TRAINER__PLANS__CONFIGURATION name")
    if folds:
        names = [_fold_name(f) for f in folds]
        missing = [n for n in names if not (folder / n / checkpoint).is_file()]
        if missing:
            have = sorted(p.parent.name for p in folder.glob(f"fold_*/{checkpoint}"))
            raise InputError(f"{folder}: no {checkpoint} in {', '.join(missing)} (folds with one: "
                             f"{', '.join(have) or 'none'}); train those folds or choose others with --folds")
    else:
        numbered = sorted((p.parent.name for p in folder.glob(f"fold_*/{checkpoint}") if p.parent.name != "fold_all"),
                          key=lambda n: int(n[5:]) if n[5:].isdigit() else 1 << 30)
        names = numbered or (["fold_all"] if (folder / "fold_all" / checkpoint).is_file() else [])
        if not names:
            found = sorted({p.name for p in folder.glob("fold_*/checkpoint_*.pth")})
            hint = (f" (found {', '.join(found)}: training did not finish)" if found else "")
            raise InputError(f"{folder}: no fold holds {checkpoint}{hint}; finish training, or copy the fold folders "
                             "with their checkpoints")
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise InputError(f"{folder / 'dataset.json'}: no 'channel_names'; this is not an nnU-Net v2 dataset.json")
    return ModelFolder(folder, dataset, plans, tuple(n[5:] for n in names),
                       tuple(folder / n / checkpoint for n in names), _labels(dataset, folder / "dataset.json"),
                       {str(k): str(v) for k, v in channels.items()}, configuration)
