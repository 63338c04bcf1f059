"""One volume through the instance model: slices -> detections -> 3D lesions on the source grid.

:func:`detect` runs the network over the model-space slices in batches; :func:`assemble`
links the detections (:mod:`medseg.instance.linking`), puts the instance map back on exactly
the source grid (:func:`medseg.instance.slices.instances_to_source`), applies the size and
organ filters, numbers the lesions 1..N and makes the lesion table. The predictor and the
validation both use these two functions, so they cannot drift apart.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from medseg.errors import Cancelled, GeometryError
from medseg.instance.channels import intensity_range, slice_channels
from medseg.instance.config import InstanceConfig
from medseg.instance.lesions import lesion_rows
from medseg.instance.linking import SliceDetections, link_lesions
from medseg.instance.slices import instances_to_source
from medseg.instance.tta import TTA_PASSES, flip_images, merge_passes, unflip_result
from medseg.preprocess.pipeline import PreprocessRecord
from medseg.volume import Volume


@dataclass
class Assembled:
    """A case's instances on the source grid.

    Attributes:
        ids: uint16 instance map Volume on the source grid (0 background, lesions 1..N).
        classes: lesion id -> class name; scores: lesion id -> score.
        rows: the lesion table (see :mod:`medseg.instance.lesions`).
        volumes_ml: class name -> total lesion volume (ml), every class present (0.0 if none).
    """

    ids: Volume
    classes: dict[int, str]
    scores: dict[int, float]
    rows: list[dict]
    volumes_ml: dict[str, float] = field(default_factory=dict)


def detect(model, volume: np.ndarray, cfg: InstanceConfig, device: torch.device, score_threshold: float,
           amp_dtype=None, progress: Callable[[int, int], None] | None = None,
           cancel: threading.Event | None = None, mask_levels: list[float] | None = None) -> list[SliceDetections]:
    """Detections of every slice of a model-space volume ``(X, Y, K)`` (HU or raw intensities).

    Slices go through the network ``cfg.inference.batch_size`` at a time; ``progress(done,
    total)`` is called after each batch and ``cancel`` (when set) raises `Cancelled` before the
    next. Detections scoring below ``score_threshold`` are dropped; masks are bool, thresholded
    at the config's mask threshold (:func:`mask_threshold`). With ``inference.tta: flips`` each
    batch also runs flipped and the passes are merged (:mod:`medseg.instance.tta`) before the
    thresholds apply. With ``mask_levels`` (increasing
    probabilities) masks are instead uint8 levels: the number of ``mask_levels`` a pixel's
    probability reaches, so ``masks >= j + 1`` is the mask at ``mask_levels[j]``
    (:func:`at_mask_level`); same memory as bool masks.
    """
    levels = None if mask_levels is None else torch.tensor(sorted(float(t) for t in mask_levels))
    cut = mask_threshold(cfg)
    model.eval()
    n = volume.shape[2]
    scale = intensity_range(volume, cfg.data)
    bs = cfg.inference.batch_size
    passes = TTA_PASSES[cfg.inference.tta]
    # with several passes each keeps the low scores validation sees, so that a merged score
    # (a mean over the passes) is the same in validation and prediction
    pass_floor = score_threshold if len(passes) == 1 else min(score_threshold, cfg.inference.val_score_threshold)
    out: list[SliceDetections] = []
    with _roi_score_cut(model, pass_floor):
        for start in range(0, n, bs):
            if cancel is not None and cancel.is_set():
                raise Cancelled("prediction cancelled; nothing was written for this case")
            ks = range(start, min(start + bs, n))
            images = [torch.from_numpy(slice_channels(volume, k, cfg.data, scale)).to(device) for k in ks]
            per_pass = []
            for axes in passes:
                with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype,
                                                            enabled=amp_dtype is not None):
                    per_pass.append([unflip_result(r, axes) for r in model(flip_images(images, axes))])
            results = [merge_passes([pp[s] for pp in per_pass]) for s in range(len(images))]
            for r in results:
                keep = r["scores"] >= score_threshold
                prob = r["masks"][keep, 0].float().cpu()
                if levels is None:
                    masks = (prob >= cut).numpy()
                else:
                    masks = (prob[..., None] >= levels).sum(-1, dtype=torch.uint8).numpy()
                out.append(SliceDetections(masks, r["labels"][keep].cpu().numpy().astype(np.int64),
                                           r["scores"][keep].float().cpu().numpy()))
            if progress is not None:
                progress(len(out), n)
    return out


@contextlib.contextmanager
def _roi_score_cut(model, score_threshold: float):
    """Within the block, the RoI heads drop boxes below ``score_threshold`` before the mask head
    runs on them (greedy NMS keeps the same boxes above it: only a higher score can suppress a
    box). torchvision keeps scores > ``score_thresh``, compared in float32, hence the next float
    below. The model's own setting is restored afterwards."""
    heads = getattr(model, "roi_heads", None)
    if heads is None:
        yield
        return
    before = heads.score_thresh
    heads.score_thresh = float(np.nextafter(np.float32(score_threshold), np.float32(-np.inf)))
    try:
        yield
    finally:
        heads.score_thresh = before


def lesion_threshold(cfg: InstanceConfig) -> float:
    """The lesion score threshold of a config (0.5 while it is still ``auto``: a run that never
    validated)."""
    thr = cfg.inference.score_threshold
    return 0.5 if thr == "auto" else float(thr)


def mask_threshold(cfg: InstanceConfig) -> float:
    """The mask threshold of a config (0.5 while it is still ``auto``: a run that never validated)."""
    thr = cfg.inference.mask_threshold
    return 0.5 if thr == "auto" else float(thr)


def at_mask_level(detections: list[SliceDetections], level: int) -> list[SliceDetections]:
    """Bool-mask detections from :func:`detect`'s graded ones: the masks at ``mask_levels[level]``."""
    return [SliceDetections(d.masks > level, d.labels, d.scores) for d in detections]


def detection_floor(cfg: InstanceConfig) -> float:
    """The lowest detection score prediction needs: the link threshold when it is lower."""
    link = cfg.inference.link_score_threshold
    return lesion_threshold(cfg) if link is None else min(float(link), lesion_threshold(cfg))


def assemble(detections: list[SliceDetections], rec: PreprocessRecord, cfg: InstanceConfig,
             class_names: dict[int, str], organ_mask: Volume | None = None,
             organ_labels: list[int] | None = None) -> Assembled:
    """Link detections into lesions on the source grid, filter, number and tabulate them.

    Detections are linked and lesions kept with the score thresholds of ``cfg.inference``
    (:func:`medseg.instance.linking.link_lesions`), so ``detections`` may hold lower scores.

    Args:
        detections: one per model-space slice (from :func:`detect`).
        rec: the slice geometry of the source volume (:func:`medseg.instance.slices.slice_record`).
        class_names: model class index -> name (background excluded).
        organ_mask: optional label Volume on the source grid; only lesions with at least
            ``cfg.inference.organ_overlap`` of their voxels inside it are kept.
        organ_labels: organ mask values that count as inside (default: every non-zero value).
    """
    inf = cfg.inference
    ids_model, lesions = link_lesions(detections, lesion_threshold(cfg), inf.link_score_threshold, inf.link_overlap,
                                      inf.max_gap)
    if len(lesions) > np.iinfo(np.uint16).max:
        raise GeometryError(f"{len(lesions)} lesions do not fit a uint16 instance map; raise "
                            "inference.score_threshold")
    ids = instances_to_source(ids_model, rec)
    counts = np.bincount(ids.array.ravel(), minlength=len(lesions) + 1)
    keep = [lid for lid in sorted(lesions) if counts[lid] >= inf.min_lesion_voxels]
    if organ_mask is not None:
        if not organ_mask.same_grid(ids):
            raise GeometryError("the organ mask is not on the image grid; resample it onto the image first")
        org = np.asarray(organ_mask.array)
        inside = np.isin(org, organ_labels) if organ_labels else org > 0
        n_in = np.bincount(ids.array[inside].ravel(), minlength=len(lesions) + 1)
        keep = [lid for lid in keep if n_in[lid] >= inf.organ_overlap * counts[lid]]
    lut = np.zeros(len(lesions) + 1, np.uint16)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.uint16)
    ids = ids.with_array(lut[ids.array])
    classes = {i + 1: class_names[lesions[lid].label] for i, lid in enumerate(keep)}
    scores = {i + 1: lesions[lid].score for i, lid in enumerate(keep)}
    rows = lesion_rows(ids, classes, scores)
    volumes = {name: 0.0 for name in class_names.values()}
    for r in rows:
        volumes[r["class"]] += r["volume_ml"]
    return Assembled(ids, classes, scores, rows, volumes)
