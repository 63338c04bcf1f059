"""Preprocessed-case cache: each training case preprocessed once, reused across runs.

Layout: ``CACHE_ROOT/<dataset name>-<hash of the dataset path>/<hash of the plan's
preprocessing>/<case>/`` holding ``image.npy`` (float32, (C, X, Y, Z), model space),
``label.npy`` (uint8, (X, Y, Z)), ``locations.npz`` (foreground voxel indices per class, for
patch sampling) and ``meta.json`` (written last: the entry is valid only when it exists).

An entry is reused when its plan hash matches and every source file has the same size,
modification time, change time (ctime) and inode as when it was made; otherwise it is
recomputed. ``CACHE_ROOT`` is
``$MEDSEG_CACHE`` or ``~/.cache/medseg`` -- never the user's dataset folder (inputs stay
untouched). Arrays are opened with ``np.load(mmap_mode="r")`` so loader workers share the
OS page cache instead of pickling volumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.data.layout import Case, DatasetSpec
from medseg.plans import Plan
from medseg.io import read_volume
from medseg.preprocess import Preprocessor

#: Foreground voxel indices kept per class and case (nnU-Net keeps 10,000).
MAX_LOCATIONS = 10_000
CACHE_FORMAT = 1


def cache_root() -> Path:
    return Path(os.environ.get("MEDSEG_CACHE") or Path.home() / ".cache" / "medseg")


def plan_hash(plan: Plan) -> str:
    key = {"format": CACHE_FORMAT, **plan.preprocessing_key(), "labels": plan.dataset.labels}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _signature(case: Case) -> list:
    """[resolved path, size, mtime_ns, ctime_ns, inode] of every source file: any change makes the
    entry stale. The mtime alone misses a rewrite that restores it (``cp -p``, ``rsync -t``,
    ``touch -r``, a tool that keeps timestamps) and two writes within the clock's tick; the
    ctime is set by the kernel on every write or rename and cannot be set back by the user,
    and the inode changes when a file is replaced by another (atomic saves, ``mv``)."""
    out = []
    for p in [*case.images, case.label]:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return out


@dataclass
class CachedCase:
    """Paths of one cached case; arrays are opened lazily, memory-mapped."""

    case_id: str
    folder: Path
    shape: tuple[int, int, int]
    classes: list[int]  # foreground classes present

    @property
    def image_path(self) -> Path:
        return self.folder / "image.npy"

    @property
    def label_path(self) -> Path:
        return self.folder / "label.npy"

    def image(self) -> np.ndarray:
        """float32 (C, X, Y, Z), read-only memory map."""
        return np.load(self.image_path, mmap_mode="r")

    def label(self) -> np.ndarray:
        """uint8 (X, Y, Z), read-only memory map."""
        return np.load(self.label_path, mmap_mode="r")

    def locations(self) -> dict[int, np.ndarray]:
        """class value -> (n, 3) int32 voxel indices (a random subset of at most MAX_LOCATIONS)."""
        with np.load(self.folder / "locations.npz") as z:
            return {int(k[1:]): z[k] for k in z.files}

    def meta(self) -> dict:
        return json.loads((self.folder / "meta.json").read_text())


def _preprocess_case(case: Case, plan: Plan, folder: Path, key: str, signature: list, seed: int) -> dict:
    """Preprocess one case into ``folder`` (atomically: temp folder, then rename)."""
    pre = Preprocessor(plan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = [read_volume(p) for p in case.images]
        label = read_volume(case.label)
    img, rec = pre.image(images)
    lab = pre.label(label, rec)
    rng = np.random.default_rng(seed)
    locs = {}
    for v in np.unique(lab).tolist():
        if v == 0:
            continue
        idx = np.argwhere(lab == v).astype(np.int32)
        if len(idx) > MAX_LOCATIONS:
            idx = idx[np.sort(rng.choice(len(idx), MAX_LOCATIONS, replace=False))]
        locs[f"c{v}"] = idx
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "image.npy", img)
    np.save(tmp / "label.npy", lab)
    np.savez(tmp / "locations.npz", **locs)
    meta = {"case_id": case.case_id, "plan_hash": key, "sources": signature, "shape": list(lab.shape),
            "classes": sorted(int(k[1:]) for k in locs), "record": rec.to_dict()}
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return meta


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


class PreprocessedCache:
    """The cache of one dataset under one plan (see module docstring)."""

    def __init__(self, spec: DatasetSpec, plan: Plan, root: Path | None = None):
        self.spec, self.plan = spec, plan
        self.key = plan_hash(plan)
        ds_hash = hashlib.sha256(str(spec.root.resolve()).encode()).hexdigest()[:8]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.name)[:40] or "dataset"
        self.folder = (root or cache_root()) / f"{slug}-{ds_hash}" / self.key

    def _valid(self, case: Case) -> dict | None:
        meta_path = self.folder / case.case_id / "meta.json"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if meta.get("plan_hash") != self.key or meta.get("sources") != _signature(case):
            return None
        return meta

    def _clean_dead_temps(self) -> None:
        """Remove ``.<case>.tmp-<pid>-<thread>`` folders of killed runs (their pid is gone); a
        live process's temporary folder (another run filling the same cache) is left alone."""
        if not self.folder.is_dir():
            return
        for p in self.folder.glob(".*.tmp-*-*"):
            try:
                pid = int(p.name.rsplit(".tmp-", 1)[1].split("-")[0])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid() or _pid_alive(pid):
                continue
            shutil.rmtree(p, ignore_errors=True)

    def ensure(self, progress: Callable[[str], None] | None = None, workers: int = 1) -> dict:
        """Preprocess missing or stale cases. Returns ``{"computed": n, "reused": m}``."""
        self._clean_dead_temps()
        todo, reused = [], 0
        for case in self.spec.cases:
            if self._valid(case) is None:
                todo.append(case)
            else:
                reused += 1
                if progress:
                    progress(case.case_id)
        jobs = [(c, self.plan, self.folder / c.case_id, self.key, _signature(c), i) for i, c in enumerate(todo)]
        if workers > 1 and len(jobs) > 1:
            # Threads, not processes: forking a process that already runs torch threads can
            # deadlock, and the heavy parts (zlib, numpy, torch resampling) release the GIL.
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for meta in pool.map(_preprocess_case, *zip(*jobs)):
                    if progress:
                        progress(meta["case_id"])
        else:
            for job in jobs:
                meta = _preprocess_case(*job)
                if progress:
                    progress(meta["case_id"])
        return {"computed": len(todo), "reused": reused}

    def cases(self) -> list[CachedCase]:
        """All cached cases (call :meth:`ensure` first)."""
        out = []
        for case in self.spec.cases:
            meta = self._valid(case)
            if meta is None:
                raise RuntimeError(f"case {case.case_id} is not cached; call ensure() first")
            out.append(CachedCase(case.case_id, self.folder / case.case_id, tuple(meta["shape"]), meta["classes"]))
        return out
