"""Dataset validation before any training: every problem reported with its case id.

Checks, per training case: image and label files exist and are readable (voxel data are
read, so truncation is found now); all channels and the label share one grid (shape, and
voxel centres within 1e-3 mm); label values are declared in ``dataset.json``. Layout
problems found by :func:`medseg.data.layout.load_dataset` (paths leaving the folder,
``numTraining`` mismatch, undeclared channels) are included.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from medseg.data.layout import Case, DatasetSpec
from medseg.errors import MedsegError
from medseg.geometry import GRID_ATOL_MM
from medseg.io import read_volume


@dataclass
class Problem:
    case: str
    kind: str  # missing, unreadable, grid, labels, layout
    message: str


@dataclass
class DatasetReport:
    """Result of :func:`check_dataset`. ``ok`` when there is no problem."""

    spec: DatasetSpec
    problems: list[Problem] = field(default_factory=list)
    label_counts: dict[int, int] = field(default_factory=dict)  # value -> number of cases containing it

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"{p.case or '(dataset)'}: {p.kind}: {p.message}" for p in self.problems]
        return out


def _check_case(case: Case, spec: DatasetSpec, report: DatasetReport) -> None:
    def problem(kind: str, msg: str) -> None:
        report.problems.append(Problem(case.case_id, kind, msg))

    files = [*case.images, case.label]
    missing = [p for p in files if p is not None and not p.exists()]
    for p in missing:
        what = "label" if p == case.label else "image"
        problem("missing", f"{what} file {p.relative_to(spec.root) if p.is_relative_to(spec.root) else p} is missing")
    if missing:
        return
    vols = {}
    for p in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vols[p] = read_volume(p)
        except MedsegError as e:
            problem("unreadable", str(e))
    if len(vols) != len(files):
        return
    ref = vols[case.images[0]]
    for p in files[1:]:
        v = vols[p]
        if v.shape != ref.shape:
            problem("grid", f"{p.name} has shape {v.shape} but {case.images[0].name} has {ref.shape}")
        elif not v.same_grid(ref, GRID_ATOL_MM):
            dev = float(np.max(np.abs(v.geometry.corners() - ref.geometry.corners())))
            problem("grid", f"{p.name} is not on the grid of {case.images[0].name} (voxel centres differ by up to {dev:.3g} mm)")
    lab = vols[case.label].array
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.array_equal(lab, np.round(lab)):
            problem("labels", f"{case.label.name} holds non-integer values; labels must be class ids")
            return
    values = np.unique(lab).astype(np.int64)
    undeclared = sorted(set(values.tolist()) - set(spec.label_values))
    if undeclared:
        problem("labels", f"{case.label.name} holds label values {undeclared} not declared in dataset.json "
                f"(declared: {spec.label_values})")
    for v in values.tolist():
        report.label_counts[v] = report.label_counts.get(v, 0) + 1


def check_dataset(spec: DatasetSpec, progress: Callable[[str], None] | None = None) -> DatasetReport:
    """Validate every training case of ``spec``; ``progress(case_id)`` is called per case."""
    report = DatasetReport(spec)
    report.problems += [Problem(c, "layout", m) for c, m in spec.problems]
    for case in spec.cases:
        _check_case(case, spec, report)
        if progress:
            progress(case.case_id)
    return report
