"""Two-stage cascade, stage 2: the dataset of crops around the organ (as KiTS/LiTS winners do).

Each training case is cropped to the bounding box of its organ labels plus ``margin_mm`` on
every side (the crop keeps its true geometry: the affine is shifted, not resampled). The
stage-2 model (e.g. organ + tumour) trains on these crops; at prediction time the stage-1
organ model's output gives the box (``run.json`` records the cascade settings).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from medseg.data.cache import cache_root
from medseg.data.layout import DatasetSpec, load_dataset
from medseg.data.nnunet_writer import dataset_meta, write_case, write_dataset_json
from medseg.errors import InputError, warn
from medseg.io import read_volume
from medseg.model.cascade import organ_box


def crop_dataset(spec: DatasetSpec, organ_labels: list[str], margin_mm: float, root: Path | None = None) -> DatasetSpec:
    """Write (once; reused while sources and settings are unchanged) the cropped dataset."""
    unknown = [n for n in organ_labels if n not in spec.labels]
    if unknown:
        raise InputError(f"cascade.organ_labels: {unknown} are not labels of {spec.root}; use some of {', '.join(spec.labels)}")
    values = [spec.labels[n] for n in organ_labels]
    sources = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for c in spec.cases for p in [*c.images, c.label]]
    key = hashlib.sha256(json.dumps([sources, values, margin_mm]).encode()).hexdigest()[:16]
    out = (root or cache_root()) / "cascade" / key
    if (out / "dataset.json").exists():
        return load_dataset(out)
    kept = 0
    for case in spec.cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            label = read_volume(case.label)
            images = [read_volume(p) for p in case.images]
        box = organ_box(label, values, margin_mm)
        if box is None:
            warn(f"cascade: case {case.case_id} has no {'/'.join(organ_labels)} voxels; left out of stage 2")
            continue
        write_case(out, case.case_id, [img.crop(*box) for img in images], label.crop(*box).array)
        kept += 1
    if kept == 0:
        raise InputError(f"cascade: no case of {spec.root} contains {organ_labels}; check cascade.organ_labels")
    meta = dataset_meta(f"{spec.name}_cascade", spec.channels, spec.labels, kept,
                        medseg_cascade={"source": str(spec.root.resolve()), "organ_labels": organ_labels,
                                        "margin_mm": margin_mm})
    write_dataset_json(out, meta)  # last: marks the crop dataset complete
    return load_dataset(out)
