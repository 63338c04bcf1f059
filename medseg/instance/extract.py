"""Training targets of one slice: connected components of the chosen classes -> boxes + masks.

Conventions (torchvision detection): a slice is ``[row, col]`` = model-space ``[x, y]``; a box
is ``(x1, y1, x2, y2)`` = ``(col_min, row_min, col_max + 1, row_max + 1)`` in pixel-edge
coordinates, so a single pixel at (row 3, col 5) has box (5, 3, 6, 4).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def slice_instances(label: np.ndarray, class_map: dict[int, int], connectivity: int = 8,
                    min_pixels: int = 1) -> dict[str, np.ndarray]:
    """Instances of one label slice.

    Args:
        label: ``(H, W)`` integer label slice (dataset values).
        class_map: dataset label value -> model class index (1..K) of the chosen classes.
        connectivity: 4 or 8 neighbours.
        min_pixels: components with fewer pixels are left out.

    Returns:
        ``boxes`` float32 ``(N, 4)``, ``labels`` int64 ``(N,)`` (model classes), ``masks`` uint8
        ``(N, H, W)``; ordered by class, then by component (scan order of the first pixel).
    """
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    boxes, labels, masks = [], [], []
    for value, cls in sorted(class_map.items(), key=lambda kv: kv[1]):
        cc, n = ndimage.label(label == value, structure=structure)
        for i, sl in enumerate(ndimage.find_objects(cc), start=1):
            m = cc == i
            if int(m[sl].sum()) < min_pixels:
                continue
            rows, cols = sl
            boxes.append((cols.start, rows.start, cols.stop, rows.stop))
            labels.append(cls)
            masks.append(m.astype(np.uint8))
    h, w = label.shape
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, np.int64),
        "masks": np.stack(masks) if masks else np.zeros((0, h, w), np.uint8),
    }
