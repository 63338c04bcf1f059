"""What each class of a dataset is, derived from its training labels (never from its name).

Presets cannot know a dataset's label names, so the decisions that depend on them are made
here, from connected components of the reference labels, and recorded in the plan
(``plan.classes``) where a user can read and override them:

* **small structures** (lesion-like: tumours, nodules, metastases, also tiny organs) get extra
  patch sampling and cross-entropy weight (config ``class_weights: auto``). A class is one when
  any of these holds in the training labels:

  - it is *often absent*: present in fewer than ``PRESENT_FRACTION`` (90%) of the cases
    (organs are in nearly every scan; lesions are not);
  - it has *a varying number of components*: more than one component in the median case where
    it is present, and not the same number in every such case (a class "kidney" with both
    kidneys has two components everywhere; metastases vary);
  - it is *small next to the other classes*: its median component volume is below
    ``SMALL_FRACTION`` (1%) of the median per-case volume of the largest class.

* **single-component classes** (one organ, one connected piece in every training case: the
  largest component holds at least ``SINGLE_SHARE`` = 95% of the class in every case where it
  is present) that are not small structures and are present in at least 90% of the cases get
  keep-largest-component post-processing (config ``postprocess.keep_largest: auto``). This is
  nnU-Net's idea of deciding post-processing from data, taken from the training labels so that
  it needs no extra validation pass.

Components use 26-connectivity (as :mod:`medseg.predict.postprocess` and the lesion metrics);
volumes are in ml from the voxel size of each label file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

PRESENT_FRACTION = 0.9
SMALL_FRACTION = 0.01
SINGLE_SHARE = 0.95
SMALL_STRUCTURE_WEIGHT = 3.0
#: components holding less than this share of a case's class volume are specks: ignored when
#: counting components (a stray voxel must not make an organ look like many lesions)
SPECK_SHARE = 0.01

_FULL = np.ones((3, 3, 3), bool)


def case_components(label: np.ndarray, voxel_ml: float, values) -> dict[int, list[float]]:
    """Component volumes (ml, largest first) per class value in one label array.

    Args:
        label: integer label map (any shape order; connectivity is 26 in voxel space).
        voxel_ml: volume of one voxel in ml.
        values: foreground class values to measure (absent ones get an empty list).
    """
    out: dict[int, list[float]] = {}
    objects = ndimage.find_objects(label.astype(np.int64, copy=False)) if label.size else []
    for v in values:
        v = int(v)
        box = objects[v - 1] if 0 < v <= len(objects) else None
        if box is None:
            out[v] = []
            continue
        cc, n = ndimage.label(label[box] == v, structure=_FULL)
        sizes = np.bincount(cc.ravel(), minlength=n + 1)[1:]
        out[v] = sorted((float(s) * voxel_ml for s in sizes), reverse=True)
    return out


@dataclass
class ClassStats:
    """Per-class component statistics over the training cases (informative, kept in the plan)."""

    present_fraction: float
    median_components: float
    component_counts_vary: bool
    median_component_ml: float
    median_case_ml: float
    min_largest_share: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class ClassRoles:
    """The derived roles: names of small structures and of keep-largest classes."""

    small_structures: list[str] = field(default_factory=list)
    keep_largest: list[str] = field(default_factory=list)
    stats: dict[str, dict] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


def class_stats(components: dict[str, list[dict[int, list[float]]]] | dict, labels: dict[str, int],
                n_cases: int) -> dict[str, ClassStats]:
    """Summarise per-case component lists into :class:`ClassStats` per class name.

    Args:
        components: ``{class name: [component volumes (ml) of that class in case i, ...]}``,
            one list per training case (empty when absent).
        labels: name -> value (background skipped).
        n_cases: number of training cases.
    """
    out = {}
    for name, v in labels.items():
        if v == 0:
            continue
        per_case = [c for c in components.get(name, []) if c]
        present = len(per_case)
        counts = [sum(1 for s in c if s >= SPECK_SHARE * sum(c)) for c in per_case]
        all_comp = [s for c in per_case for s in c if s >= SPECK_SHARE * sum(c)]
        out[name] = ClassStats(
            present_fraction=present / max(n_cases, 1),
            median_components=float(np.median(counts)) if counts else 0.0,
            component_counts_vary=len(set(counts)) > 1,
            median_component_ml=float(np.median(all_comp)) if all_comp else 0.0,
            median_case_ml=float(np.median([sum(c) for c in per_case])) if per_case else 0.0,
            min_largest_share=float(min(c[0] / sum(c) for c in per_case)) if per_case else 0.0,
        )
    return out


def derive_roles(stats: dict[str, ClassStats]) -> ClassRoles:
    """Apply the rules of the module docstring to per-class statistics."""
    roles = ClassRoles(stats={n: s.to_dict() for n, s in stats.items()})
    biggest = max((s.median_case_ml for s in stats.values()), default=0.0)
    for name, s in stats.items():
        why = []
        if s.present_fraction == 0:
            roles.reasons[name] = "absent from every training case"
            continue
        if s.present_fraction < PRESENT_FRACTION:
            why.append(f"present in {s.present_fraction:.0%} of cases")
        if s.median_components > 1 and s.component_counts_vary:
            why.append(f"a varying number of components (median {s.median_components:g})")
        if len(stats) > 1 and biggest > 0 and s.median_component_ml < SMALL_FRACTION * biggest:
            why.append(f"median component {s.median_component_ml:.3g} ml, under {SMALL_FRACTION:.0%} of the "
                       f"largest class ({biggest:.4g} ml)")
        if why:
            roles.small_structures.append(name)
            roles.reasons[name] = "small structure: " + "; ".join(why)
        elif s.min_largest_share >= SINGLE_SHARE:
            roles.keep_largest.append(name)
            roles.reasons[name] = "one component in every training case: keep the largest"
        else:
            roles.reasons[name] = (f"several parts (largest holds {s.min_largest_share:.0%} in some case): "
                                   "no post-processing")
    return roles


def label_components(spec, progress=None) -> dict[str, list[list[float]]]:
    """Component volumes of every class in every training case of a `DatasetSpec` (reads labels only)."""
    from medseg.io import read_volume

    values = [v for v in spec.labels.values() if v != 0]
    names = {v: n for n, v in spec.labels.items()}
    out: dict[str, list[list[float]]] = {names[v]: [] for v in values}
    for case in spec.cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lab = read_volume(case.label)
        vml = float(abs(np.linalg.det(lab.affine[:3, :3]))) / 1000.0
        comps = case_components(np.asarray(lab.array), vml, values)
        for v, c in comps.items():
            out[names[v]].append(c)
        if progress:
            progress(case.case_id)
    return out


def dataset_class_roles(spec, progress=None) -> ClassRoles:
    """:class:`ClassRoles` of a dataset (a `medseg.data.layout.DatasetSpec`), from its labels."""
    comps = label_components(spec, progress)
    return derive_roles(class_stats(comps, spec.labels, len(spec.cases)))
