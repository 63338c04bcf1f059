"""Per-slice detections -> 3D lesions, by overlap tracking along the slice axis.

Rules (what :func:`link_slices` does):

1. **Within a slice**, overlapping masks are resolved by score: each pixel belongs to the
   highest-scoring detection covering it; detections left with fewer than ``min_pixels``
   pixels are dropped.
2. **Across slices**, each detection in slice k looks back at slices k-1, k-2, ...,
   k-1-``max_gap`` (nearest first). In the nearest slice holding a detection of the same class
   with ``overlap = |A n B| / min(|A|, |B|) >= link_overlap``, it joins the lesion of the one
   with the largest overlap. So:

   * a lesion that **splits** (one detection, then two below it) stays one lesion: both
     pieces link to the same predecessor;
   * two lesions that **touch** stay two lesions: each detection's best overlap is its own
     predecessor (touching masks share no pixels);
   * a lesion **missed in a slice** is bridged when the gap is at most ``max_gap`` slices.

3. A lesion's class is its detections' class; its score is its best detection's score (the
   usual lesion-level confidence). Lesion ids are 1..N in order of first appearance (lowest
   slice, then detection order).

:func:`link_lesions` adds the score thresholds (hysteresis): detections scoring at least the
*link* threshold are linked, and a lesion is kept when its best detection scores at least the
*lesion* threshold. So a lesion seen clearly in one slice keeps its fainter first and last
slices (which the 50%-coverage rule of lesion detection needs), while a faint detection alone
makes no lesion. Without a link threshold both are the same, i.e. each detection is thresholded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class SliceDetections:
    """Detections of one slice ``[x, y]`` (model space).

    Attributes:
        masks: bool ``(N, X, Y)``; labels: int64 ``(N,)`` model classes; scores: float ``(N,)``.
    """

    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> "SliceDetections":
        return cls(np.zeros((0, *shape), bool), np.zeros(0, np.int64), np.zeros(0, np.float32))


@dataclass
class Lesion:
    id: int
    label: int  # model class
    score: float
    pixels: int  # model-space pixels over all its slices


def _own(det: SliceDetections, min_pixels: int) -> tuple[np.ndarray, list[int]]:
    """Slice map ``(X, Y)`` int32 (0 none, i+1 detection i) after score-ordered painting, and the
    detections kept."""
    n = len(det.scores)
    smap = np.zeros(det.masks.shape[1:], np.int32)
    for i in np.argsort(det.scores, kind="stable"):  # lowest first: higher scores paint over
        smap[det.masks[i]] = i + 1
    area = np.bincount(smap.ravel(), minlength=n + 1)
    kept = [i for i in range(n) if area[i + 1] >= min_pixels]
    smap[~np.isin(smap, np.asarray(kept, np.int32) + 1)] = 0
    return smap, kept


def _find(parent: list[int], a: int) -> int:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def link_slices(slices: list[SliceDetections], link_overlap: float = 0.3, max_gap: int = 1,
                min_pixels: int = 1) -> tuple[np.ndarray, dict[int, Lesion]]:
    """Link detections into lesions (rules in the module docstring).

    Args:
        slices: one :class:`SliceDetections` per slice k, all of one in-plane shape ``(X, Y)``.

    Returns:
        ``(ids, lesions)``: uint32 instance map ``(X, Y, K)`` (0 background, lesion ids 1..N)
        and ``{id: Lesion}``.
    """
    if not slices:
        raise ValueError("no slices to link")
    shape = slices[0].masks.shape[1:]
    maps, nodes = [], []  # nodes[g] = (slice, detection index); slice maps hold node id + 1
    for k, det in enumerate(slices):
        smap, kept = _own(det, min_pixels)
        gmap = np.zeros(shape, np.int32)
        for i in kept:
            gmap[smap == i + 1] = len(nodes) + 1
            nodes.append((k, i))
        maps.append(gmap)
    parent = list(range(len(nodes)))
    label = [int(slices[k].labels[i]) for k, i in nodes]
    area = sum(np.bincount(m.ravel(), minlength=len(nodes) + 1) for m in maps)[1:] if nodes else []
    for k in range(1, len(slices)):
        cur = maps[k]
        if not cur.any():
            continue
        linked: set[int] = set()
        for g in range(1, max_gap + 2):
            if k - g < 0:
                break
            prev = maps[k - g]
            both = (cur > 0) & (prev > 0)
            if not both.any():
                continue
            pairs, counts = np.unique(np.stack([cur[both], prev[both]]), axis=1, return_counts=True)
            best: dict[int, tuple[float, int]] = {}
            for (a, b), c in zip(pairs.T.tolist(), counts.tolist()):
                a, b = a - 1, b - 1
                if a in linked or label[a] != label[b]:
                    continue
                ov = c / min(area[a], area[b])
                if ov >= link_overlap and ov > best.get(a, (-1.0, -1))[0]:
                    best[a] = (ov, b)
            for a, (_, b) in best.items():
                parent[_find(parent, a)] = _find(parent, b)
                linked.add(a)
    # lesion ids by first appearance
    lesion_of: dict[int, int] = {}
    node_lesion = np.zeros(len(nodes) + 1, np.uint32)
    peak: dict[int, float] = {}
    pix: dict[int, int] = {}
    for gid, (k, i) in enumerate(nodes):
        root = _find(parent, gid)
        lid = lesion_of.setdefault(root, len(lesion_of) + 1)
        node_lesion[gid + 1] = lid
        peak[lid] = max(peak.get(lid, 0.0), float(slices[k].scores[i]))
        pix[lid] = pix.get(lid, 0) + int(area[gid])
    ids = np.stack([node_lesion[m] for m in maps], axis=-1) if nodes else np.zeros((*shape, len(slices)), np.uint32)
    lesions = {lid: Lesion(lid, label[root], peak[lid], pix[lid]) for root, lid in lesion_of.items()}
    return ids.astype(np.uint32, copy=False), lesions


def above(det: SliceDetections, threshold: float) -> SliceDetections:
    """The detections of a slice scoring at least ``threshold``."""
    keep = det.scores >= threshold
    return SliceDetections(det.masks[keep], det.labels[keep], det.scores[keep])


def link_lesions(slices: list[SliceDetections], score_threshold: float, link_score_threshold: float | None = None,
                 link_overlap: float = 0.3, max_gap: int = 1, min_pixels: int = 1
                 ) -> tuple[np.ndarray, dict[int, Lesion]]:
    """3D lesions from detections with the score thresholds (hysteresis, module docstring).

    Args:
        slices: one :class:`SliceDetections` per slice (any scores; lower ones are dropped here).
        score_threshold: a lesion is kept when its best detection scores at least this.
        link_score_threshold: detections scoring at least ``min(this, score_threshold)`` are
            linked; ``None``: ``score_threshold`` (every detection thresholded on its own).

    Returns:
        ``(ids, lesions)`` as :func:`link_slices`, the lesions kept renumbered 1..N in order.
    """
    floor = score_threshold if link_score_threshold is None else min(link_score_threshold, score_threshold)
    ids, lesions = link_slices([above(d, floor) for d in slices], link_overlap, max_gap, min_pixels)
    kept = [lid for lid in sorted(lesions) if lesions[lid].score >= score_threshold]
    if len(kept) == len(lesions):
        return ids, lesions
    lut = np.zeros(len(lesions) + 1, np.uint32)
    lut[kept] = np.arange(1, len(kept) + 1, dtype=np.uint32)
    return lut[ids], {i + 1: replace(lesions[lid], id=i + 1) for i, lid in enumerate(kept)}
