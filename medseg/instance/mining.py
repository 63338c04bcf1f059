"""Hard negatives: the model's own false positives on training slices, as centres of negative crops.

After each validation, :func:`mine_false_positives` runs the model (eval mode, whole slices, the
plain pass) on ``data.mining_slices`` training slices drawn from (seed, epoch) and keeps the
detections scoring at least ``data.mining_score`` of which less than half the mask lies on a
lesion class: each gives the centre of its mask, a row ``(case index, k, x, y)`` in model-space
pixels. The next epochs draw a share ``data.hard_negative_fraction`` of their negative crops
around these centres (:func:`medseg.instance.dataset.epoch_order`, same jitter as lesion crops),
so look-alike normal tissue (the renal medulla next to hypodense liver lesions) is seen as often
as the model mistakes it. The pool is replaced at each mining round and stored in ``last.pt``,
so ``--resume`` sees the crops the run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch

from medseg.instance.channels import slice_channels
from medseg.instance.config import InstanceDataConfig

#: Most rows kept per round (the highest-scoring false positives).
MAX_POOL = 1024


def mine_false_positives(model, cases: list, cfg: InstanceDataConfig, lesion_values: list[int], device,
                         seed: int, epoch: int, n_slices: int, min_score: float, batch_size: int = 8,
                         amp_dtype=None) -> list[tuple[int, int, int, int]]:
    """False-positive centres on ``n_slices`` training slices (rules in the module docstring).

    Args:
        cases: :class:`medseg.instance.dataset.SliceCase` list (model space, ``(X, Y, K)``).
        lesion_values: dataset label values of the lesion classes.

    Returns:
        rows ``(case index, k, x, y)`` (int, model-space pixels), highest score first, at most
        :data:`MAX_POOL`.
    """
    slots = [(ci, k) for ci, c in enumerate(cases) for k in range(c.image.shape[2])]
    if not slots or n_slices <= 0:
        return []
    rng = np.random.default_rng([seed, epoch, 23])
    picks = [slots[i] for i in np.sort(rng.choice(len(slots), min(n_slices, len(slots)), replace=False))]
    found: list[tuple[float, tuple[int, int, int, int]]] = []
    model.eval()
    for start in range(0, len(picks), batch_size):
        chunk = picks[start:start + batch_size]
        images = [torch.from_numpy(slice_channels(cases[ci].image, k, cfg, cases[ci].scale)).to(device)
                  for ci, k in chunk]
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            results = model(images)
        for (ci, k), r in zip(chunk, results):
            keep = r["scores"] >= min_score
            if not bool(keep.any()):
                continue
            lesion = torch.from_numpy(np.isin(cases[ci].label[:, :, k], lesion_values))
            masks = r["masks"][keep, 0].float().cpu() >= 0.5
            for score, m in zip(r["scores"][keep].float().cpu().tolist(), masks):
                area = int(m.sum())
                if area == 0 or int((m & lesion).sum()) * 2 >= area:
                    continue
                xs, ys = torch.nonzero(m, as_tuple=True)
                found.append((score, (ci, k, int(xs.float().mean().round()), int(ys.float().mean().round()))))
    found.sort(key=lambda t: -t[0])
    return [row for _, row in found[:MAX_POOL]]
