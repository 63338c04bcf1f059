"""Training data loading: random augmented patches from the preprocessed cache.

`PatchDataset` is map-style and *stateless*: item ``g`` (a global index, ``epoch * length +
i``) seeds its own generator with ``(seed, g)``, so every patch is reproducible whatever the
number of workers or their scheduling. Workers receive only file paths (the cache's
memory-mapped ``.npy`` files are opened lazily inside each worker), never whole volumes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from medseg.data.augment import AugmentConfig, draw_params, flip, intensity, source_extent, warp
from medseg.data.cache import CachedCase
from medseg.data.sampling import SamplingConfig, box, choose_patch, crop


class PatchDataset(Dataset):
    """Patches ``{"image": float32 (C, *patch), "label": int64 (*patch), "case": int}``."""

    def __init__(self, cases: list[CachedCase], sampling: SamplingConfig, augment: AugmentConfig | None,
                 seed: int = 0, length: int = 250):
        self.cases = list(cases)
        self.sampling, self.augment = sampling, augment
        self.seed, self.length = seed, length
        self._open: dict[int, tuple] = {}  # per-process memory maps, opened on first use

    def __len__(self) -> int:
        return self.length

    def _arrays(self, k: int):
        if k not in self._open:
            c = self.cases[k]
            image = c.image()
            self._open[k] = (image, c.label(), c.locations(), np.float32(image.min()))
        return self._open[k]

    def __getstate__(self):  # never ship open memory maps to workers
        state = self.__dict__.copy()
        state["_open"] = {}
        return state

    def sample(self, g: int) -> dict:
        rng = np.random.default_rng([self.seed, g])
        k = int(rng.integers(len(self.cases)))
        image, label, locs, pad = self._arrays(k)
        choice = choose_patch(label.shape, locs, self.sampling, rng)
        patch = np.asarray(self.sampling.patch_size)
        params = draw_params(rng, self.augment) if self.augment else None
        if params is not None and params.spatial:
            start, stop = box(choice.centre, source_extent(params, patch))
            img = crop(image, start, stop, pad)
            lab = crop(label, start, stop, np.uint8(0))
            img, lab = warp(img.astype(np.float32), lab, params, patch)
        else:
            start, stop = box(choice.centre, patch)
            img = crop(image, start, stop, pad).astype(np.float32)
            lab = crop(label, start, stop, np.uint8(0))
        if params is not None:
            img, lab = flip(img, lab, params.flips)
            img = intensity(img, params)
        return {"image": torch.from_numpy(np.ascontiguousarray(img)),
                "label": torch.from_numpy(np.ascontiguousarray(lab).astype(np.int64)),
                "case": k, "forced_class": -1 if choice.forced_class is None else choice.forced_class}

    def __getitem__(self, g: int) -> dict:
        return self.sample(int(g))


class EpochSampler(Sampler[int]):
    """Yields the global indices of one epoch: ``epoch * length + i`` for ``i >= start``;
    call ``set_epoch(epoch, start)`` (``start`` > 0 resumes inside an epoch)."""

    def __init__(self, length: int):
        self.length, self.epoch, self.start = length, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.length + self.start, (self.epoch + 1) * self.length))

    def __len__(self) -> int:
        return self.length - self.start


def make_loader(dataset: PatchDataset, batch_size: int, num_workers: int = 2, pin_memory: bool | None = None) -> DataLoader:
    """A DataLoader over ``dataset`` with an `EpochSampler` (``loader.sampler.set_epoch(e)``)."""
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    # Workers start from a clean forkserver process: forking a process that already runs
    # torch/Qt/Mesa threads (napari, a GPU, a previous loader) can deadlock the child.
    context = torch.multiprocessing.get_context("forkserver") if num_workers > 0 else None
    return DataLoader(
        dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset)), num_workers=num_workers,
        pin_memory=pin, persistent_workers=num_workers > 0, drop_last=True,
        prefetch_factor=4 if num_workers > 0 else None, multiprocessing_context=context,
    )
