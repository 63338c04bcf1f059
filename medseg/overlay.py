"""Visual report of a batch: overlay PNGs of representative slices (image | reference | prediction).

Slices are shown axially in the radiological convention used by PACS viewers: the patient's
right on the left of the picture, anterior at the top. Arrays are first reoriented to RAS
(no interpolation), so the picture does not depend on how the scan was stored. The pixel
aspect follows the in-plane spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.io.atomic import atomic_path
from medseg.preprocess.orientation import canonical_transform, reorient_array
from medseg.volume import Volume

#: Class colours (RGB 0-1) by label value, cycling after the last one.
COLOURS = [(0.89, 0.10, 0.11), (0.22, 0.49, 0.72), (0.30, 0.69, 0.29), (1.0, 0.50, 0.0), (0.60, 0.31, 0.64),
           (1.0, 1.0, 0.2), (0.65, 0.34, 0.16), (0.97, 0.51, 0.75)]


def _ras(vol: Volume) -> tuple[np.ndarray, tuple[float, float, float]]:
    tr = canonical_transform(vol.affine)
    arr = reorient_array(vol.array, tr)
    spacing = tuple(float(vol.spacing[int(a)]) for a in np.argsort(tr[:, 0]))
    return arr, spacing


def axial(arr: np.ndarray, k: int) -> np.ndarray:
    """RAS array -> radiological axial picture [row, col] of slice ``k``: patient's right on
    the left (column = reversed i), anterior at the top (row = reversed j)."""
    return arr[::-1, ::-1, k].T


def representative_slice(mask: np.ndarray) -> int:
    """Axial index (RAS k) with the most foreground voxels (the middle slice when empty)."""
    counts = (mask > 0).sum(axis=(0, 1))
    return int(counts.argmax()) if counts.any() else mask.shape[2] // 2


def colour_of(value: int, colors: dict[int, tuple] | None = None) -> tuple[float, float, float]:
    """RGB 0-1 of a label value: ``colors[value]`` (RGB 0-255, e.g. from a run's labels.json)
    when given, else :data:`COLOURS` by value."""
    if colors and int(value) in colors:
        return tuple(float(c) / 255.0 for c in colors[int(value)][:3])
    return COLOURS[(int(value) - 1) % len(COLOURS)]


def _rgba(labels2d: np.ndarray, alpha: float = 0.45, colors: dict[int, tuple] | None = None) -> np.ndarray:
    out = np.zeros((*labels2d.shape, 4), np.float32)
    for v in np.unique(labels2d):
        if v == 0:
            continue
        out[labels2d == v] = (*colour_of(v, colors), alpha)
    return out


def overlay_png(image: Volume, prediction: Volume, path: str | Path, *, reference: Volume | None = None,
                labels: dict[str, int] | None = None, title: str = "", window: tuple[float, float] = (-160.0, 240.0),
                colors: dict[int, tuple] | None = None) -> Path:
    """Write a PNG with image | reference (if any) | prediction at the slice with most reference
    (else predicted) foreground. ``window`` is the grey-level window (HU for CT); ``labels``
    class name -> value (the legend); ``colors`` value -> RGB 0-255 (default :data:`COLOURS`).
    Masks must be on the image's grid (shape ``image.shape``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    img, sp = _ras(image)
    pred, _ = _ras(prediction)
    ref = _ras(reference)[0] if reference is not None else None
    k = representative_slice(ref if ref is not None else pred)
    panels = [("image", None)] + ([("reference", ref)] if ref is not None else []) + [("prediction", pred)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.0), dpi=100)
    base = np.clip((axial(img, k) - window[0]) / (window[1] - window[0]), 0, 1)
    for ax, (name, lab) in zip(np.atleast_1d(axes), panels):
        ax.imshow(base, cmap="gray", aspect=sp[1] / sp[0], interpolation="nearest")
        if lab is not None:
            ax.imshow(_rgba(axial(lab, k), colors=colors), aspect=sp[1] / sp[0], interpolation="nearest")
        ax.set_title(f"{name} (axial {k})", fontsize=9)
        ax.set_axis_off()
    if labels:
        handles = [Patch(color=colour_of(v, colors), label=n) for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title + "   (R on the left, anterior up)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06 if labels else 0, 1, 0.95))
    path = Path(path)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
