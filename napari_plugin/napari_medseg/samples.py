"""Where the bundled sample scans are, and the npe2 sample-data command.

The samples (``data_samples/`` in the medseg repository) ship with the source tree, not
with a wheel. They are looked for in ``$MEDSEG_DATA_SAMPLES`` and then next to the installed
``medseg`` package (an editable install from a git checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

from medseg.errors import InputError

CT_CHEST = ("ct_chest", "CTChest4.nrrd")
CT_CHEST_SEG = ("ct_chest", "Segmentation.seg.nrrd")


def samples_dir() -> Path:
    """The ``data_samples`` folder.

    Raises:
        InputError: not found; the message says how to get it.
    """
    import medseg

    candidates = []
    if os.environ.get("MEDSEG_DATA_SAMPLES"):
        candidates.append(Path(os.environ["MEDSEG_DATA_SAMPLES"]))
    candidates.append(Path(medseg.__file__).resolve().parents[1] / "data_samples")
    for c in candidates:
        if (c.joinpath(*CT_CHEST)).is_file():
            return c
    raise InputError(
        "the medseg sample scans (data_samples/ct_chest) were not found in "
        + ", ".join(str(c) for c in candidates)
        + "; they ship with the medseg source repository: install medseg from a git checkout "
        "(pip install -e .) or set MEDSEG_DATA_SAMPLES to the data_samples folder"
    )


def ct_chest() -> list[tuple]:
    """npe2 sample data: the real chest CT (128x128x34, 3.05x3.05x10 mm, from slicerio) and its
    7-label 3D Slicer segmentation, placed in RAS+ mm."""
    from medseg.io import read_volume
    from napari_medseg.layers import image_layer_data, labels_layer_data

    root = samples_dir()
    ct_path, seg_path = root.joinpath(*CT_CHEST), root.joinpath(*CT_CHEST_SEG)
    ct = read_volume(ct_path)
    image = image_layer_data(ct, ct_path, name="CT chest")
    labels = labels_layer_data(read_volume(seg_path), seg_path, name="segmentation", image_path=ct_path)
    return [image, labels]
