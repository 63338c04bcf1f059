"""Test-time augmentation of the instance model: flipped passes over a slice, merged by consensus.

With ``inference.tta: flips`` every slice goes through the network three times: as it is,
flipped along x and flipped along y (model space, canonical RAS: left-right and
anterior-posterior; the flips training draws with ``data.flip``). Each pass's masks are flipped
back, then :func:`merge_passes` groups the detections of the passes that mark the same object:

* detections are taken in decreasing score (ties: pass order, then the network's order); each
  one not yet grouped starts a group and takes, from every other pass, the highest-scoring
  ungrouped detection of the same class whose mask (probability >= 0.5) has IoU >=
  :data:`MERGE_IOU` with its own;
* a group's mask probability and score are the **means over all passes**, a pass without a
  detection in the group counting 0.

So an object found in every pass keeps its score while one seen by a single pass drops to a
third of it: a consensus that removes unstable false positives, and averaged masks that spill
less past a small lesion's edge. Validation runs the same passes, so the thresholds it chooses
(score and mask) are those of the merged detections.
"""

from __future__ import annotations

import numpy as np
import torch

#: The passes of each ``inference.tta`` mode: tuples of flipped slice axes (0: x, 1: y).
TTA_PASSES: dict[str, list[tuple[int, ...]]] = {"none": [()], "flips": [(), (0,), (1,)]}

#: Mask IoU (masks at probability 0.5) at which detections of two passes are one object.
MERGE_IOU = 0.3


def flip_images(images: list[torch.Tensor], axes: tuple[int, ...]) -> list[torch.Tensor]:
    """Slices ``(C, X, Y)`` flipped along the slice ``axes`` (0: x, 1: y)."""
    return [im.flip([a + 1 for a in axes]) for im in images] if axes else images


def unflip_result(result: dict, axes: tuple[int, ...]) -> dict:
    """A torchvision result of a flipped slice (``masks`` ``(N, 1, X, Y)`` probabilities,
    ``labels``, ``scores``) with its masks flipped back; boxes are dropped (nothing downstream
    uses them)."""
    masks = result["masks"].flip([a + 2 for a in axes]) if axes else result["masks"]
    return {"masks": masks, "labels": result["labels"], "scores": result["scores"]}


def merge_passes(results: list[dict], iou: float = MERGE_IOU) -> dict:
    """One slice's detections from several passes merged by consensus (rules in the module
    docstring).

    Args:
        results: one dict per pass, already in the slice's own orientation: ``masks`` float
            ``(N, 1, X, Y)`` probabilities, ``labels`` int64 ``(N,)``, ``scores`` float ``(N,)``.

    Returns:
        ``{"masks": (M, 1, X, Y) float32, "labels": (M,) int64, "scores": (M,) float32}`` on the
        CPU, in the order groups were formed (decreasing score of their first detection).
    """
    n_pass = len(results)
    if n_pass == 1:
        return results[0]
    probs = torch.cat([r["masks"][:, 0].float().cpu() for r in results])
    labels = torch.cat([r["labels"].cpu() for r in results])
    scores = torch.cat([r["scores"].float().cpu() for r in results])
    owner = torch.cat([torch.full((len(r["scores"]),), p, dtype=torch.int64) for p, r in enumerate(results)])
    shape = probs.shape[1:]
    if len(scores) == 0:
        return {"masks": probs.new_zeros((0, 1, *shape)), "labels": labels, "scores": scores}
    ious = _mask_ious(probs >= 0.5)
    order = np.argsort(-scores.numpy(), kind="stable")
    owner_np, labels_np = owner.numpy(), labels.numpy()
    free = np.ones(len(order), bool)
    out_masks, out_labels, out_scores = [], [], []
    for i in order:
        if not free[i]:
            continue
        free[i] = False
        # candidates in score order: ungrouped, same class, another pass, overlapping enough
        cand = order[free[order] & (labels_np[order] == labels_np[i]) & (owner_np[order] != owner_np[i])
                     & (ious[i, order] >= iou)]
        _, first = np.unique(owner_np[cand], return_index=True)  # each pass's highest-scoring one
        group = [int(i), *(int(j) for j in cand[first])]
        free[group] = False
        out_masks.append(probs[group].sum(0) / n_pass)
        out_scores.append(scores[group].sum() / n_pass)
        out_labels.append(labels[i])
    return {"masks": torch.stack(out_masks)[:, None], "labels": torch.stack(out_labels),
            "scores": torch.stack(out_scores)}


def _mask_ious(binary: torch.Tensor) -> np.ndarray:
    """``(N, N)`` float64 IoU matrix of bool masks ``(N, X, Y)`` (0 where both are empty)."""
    flat = binary.flatten(1).float()
    inter = (flat @ flat.T).double().numpy()
    area = np.diag(inter)
    union = area[:, None] + area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
