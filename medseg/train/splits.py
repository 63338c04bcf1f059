"""Reproducible cross-validation folds stored with the dataset (``DATASET/splits.json``).

Format (nnU-Net's): a list of ``{"train": [case ids], "val": [case ids]}``, one per fold. The
file is created once (case ids sorted, shuffled with a fixed seed, dealt into
``min(5, n_cases)`` folds) and then only read, so every run and every machine uses the same
folds. A file that no longer matches the dataset's cases is reported, never rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medseg.errors import InputError, warn
from medseg.io.atomic import write_text_atomic

N_FOLDS = 5
SPLIT_SEED = 12345


def make_splits(case_ids: list[str], n_folds: int = N_FOLDS, seed: int = SPLIT_SEED) -> list[dict]:
    ids = sorted(case_ids)
    k = max(1, min(n_folds, len(ids)))
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = [sorted(ids[i] for i in order[f::k]) for f in range(k)]
    return [{"train": sorted(set(ids) - set(val)) or list(val), "val": val} for val in folds]


def load_or_create_splits(dataset_root: Path, case_ids: list[str]) -> list[dict]:
    """Read ``splits.json`` (creating it when absent) and check it against ``case_ids``."""
    path = Path(dataset_root) / "splits.json"
    if not path.exists():
        splits = make_splits(case_ids)
        try:
            write_text_atomic(path, json.dumps(splits, indent=1))
        except OSError:
            return splits  # read-only dataset folder: use the same deterministic folds in memory
        return splits
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}); fix or delete it (it is recreated)") from e
    _check_shape(splits, path)
    known = set(case_ids)
    listed = {c for f in splits for c in f.get("val", [])}
    unknown = sorted(listed - known)
    if unknown:
        raise InputError(f"{path} lists cases that are not in the dataset ({', '.join(unknown[:5])}); "
                         "delete splits.json to recreate the folds")
    unlisted = sorted(known - listed)
    if unlisted:
        warn(f"{len(unlisted)} case(s) of the dataset are in no fold of {path} ({', '.join(unlisted[:3])}"
             f"{', ...' if len(unlisted) > 3 else ''}): added after the folds were made, they are not used; "
             "delete splits.json to recreate the folds with them")
    return splits


def _check_shape(splits, path: Path) -> None:
    """splits.json must be a non-empty list of {"train": [ids], "val": [ids]} (nnU-Net's format)."""
    hint = 'a list of {"train": [case ids], "val": [case ids]}, one per fold; fix or delete it (it is recreated)'
    if not isinstance(splits, list) or not splits:
        raise InputError(f"{path} must hold {hint}")
    for i, f in enumerate(splits):
        ok = isinstance(f, dict) and all(isinstance(f.get(k), list) and all(isinstance(c, str) for c in f[k])
                                         for k in ("train", "val"))
        if not ok:
            raise InputError(f"{path}: fold {i} is {f!r:.60}; the file must hold {hint}")


def fold_cases(splits: list[dict], fold: int | str) -> tuple[list[str], list[str]]:
    """(train ids, val ids) of ``fold``; ``"all"`` trains on every case and validates on all."""
    if fold == "all":
        every = sorted({c for f in splits for c in f["train"] + f["val"]})
        return every, every
    if not 0 <= int(fold) < len(splits):
        raise InputError(f"--fold {fold}: this dataset has folds 0..{len(splits) - 1} (or 'all')")
    f = splits[int(fold)]
    return list(f["train"]), list(f["val"])
