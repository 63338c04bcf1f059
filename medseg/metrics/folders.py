"""Evaluate folders of predictions against folders of references, matched by case id.

The case id of a file is its name without the image suffix (``case_01.nii.gz`` ->
``case_01``; see :func:`medseg.io.formats.split_suffix`). Files without an image suffix
(``dataset.json``, ``plans.json``) and hidden files are ignored; sub-folders are not searched,
except for DICOM SEG files:

* a DICOM SEG ``X.dcm`` directly in the folder is case ``X``;
* ``medseg predict --format dicom-seg`` writes ``OUT/<case>/seg.dcm`` (``<case>`` may be
  nested, ``study/series``): case ``<case>`` (with ``/``).

In a prediction folder, ``<case>_uncertainty.nii.gz`` maps (written by ``medseg predict
--uncertainty``) are companions of a prediction, not predictions.

A SEG read without its source spans only the slices holding frames; it is placed on its
reference's grid (:func:`medseg.io.dicom_seg.place_on_grid`) before scoring, and its segments
get their class values as medseg recorded them (else by name from the prediction folder's
``labels.json``, else the segment numbers).

A case that cannot be scored (no prediction, an unreadable file, mismatched grids, an
undeclared label) is recorded with its reason and the others go on (docs/concepts/design.md convention 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError
from medseg.io import read_volume
from medseg.io.dicom_seg import is_dicom_seg, place_on_grid, read_dicom_seg
from medseg.io.formats import split_suffix
from medseg.metrics.case import ROW_COLUMNS, CaseResult, evaluate_case
from medseg.metrics.labels import load_labels


@dataclass
class CasePairs:
    """Case ids matched between PRED and REF.

    Attributes:
        pairs: ``(case, pred_path or None, ref_path)`` for every reference case, sorted by id.
        extra_pred: case ids with a prediction but no reference (reported, not scored).
        problems: ``{case: message}`` for cases that cannot be paired (e.g. two files, one id).
    """

    pairs: list[tuple[str, Path | None, Path]] = field(default_factory=list)
    extra_pred: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


@dataclass
class Evaluation:
    """The result of evaluating many cases (what ``medseg evaluate`` writes).

    Attributes:
        rows, lesions, instances: rows of metrics.csv, lesions.csv and instances.csv.
        failed: ``{case: reason}`` for cases that could not be scored (missing prediction,
            unreadable file, grid mismatch, undeclared label); they have a row with
            ``status`` "missing_pred" or "failed" and NaN metrics.
        extra_pred: predictions without a reference case.
        settings: the options used (written to summary.json).
    """

    rows: list[dict] = field(default_factory=list)
    lesions: list[dict] = field(default_factory=list)
    instances: list[dict] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    extra_pred: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def add(self, res: CaseResult) -> None:
        self.rows += res.rows
        self.lesions += res.lesions
        if res.instances is not None:
            self.instances.append(res.instances)

    def fail(self, case: str, status: str, message: str) -> None:
        self.failed[case] = message
        row = {k: float("nan") for k in ROW_COLUMNS}
        self.rows.append({**row, "case": case, "label": "", "name": "", "empty": "", "status": status,
                          "error": message})


#: Name ending of the uncertainty maps ``medseg predict --uncertainty`` writes next to a mask.
UNCERTAINTY_SUFFIX = "_uncertainty"
#: File name of a ``medseg predict --format dicom-seg`` output inside its case folder.
SEG_NAME = "seg.dcm"


def list_cases(folder: Path, predictions: bool = False) -> tuple[dict[str, Path], dict[str, str]]:
    """Label maps in ``folder`` by case id, and ``{case: problem}`` for duplicates: image files
    directly in it, DICOM SEG files ``X.dcm`` directly in it, and ``<case>/seg.dcm`` below it.
    ``predictions``: leave out ``*_uncertainty`` maps (companions of a prediction)."""
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        case, suffix = split_suffix(p)
        if not suffix and p.suffix.lower() == ".dcm" and is_dicom_seg(p):
            case, suffix = p.name[: -len(p.suffix)], ".dcm"
        if not suffix or (predictions and case.endswith(UNCERTAINTY_SUFFIX)):
            continue
        found.setdefault(case, []).append(p)
    for p in sorted(folder.rglob(SEG_NAME)):
        rel = p.parent.relative_to(folder)
        if p.parent == folder or any(part.startswith(".") for part in rel.parts) or not is_dicom_seg(p):
            continue
        found.setdefault(rel.as_posix(), []).append(p)
    cases = {c: ps[0] for c, ps in found.items() if len(ps) == 1}
    dupes = {c: f"{len(ps)} files for one case ({', '.join(str(p.relative_to(folder)) for p in ps)}); keep one"
             for c, ps in found.items() if len(ps) > 1}
    return cases, dupes


def match_cases(pred: str | Path, ref: str | Path) -> CasePairs:
    """Pair prediction and reference files: two files (one case, the reference's id), or two
    folders (matched by case id).

    Raises:
        InputError: a path is missing, one is a file and the other a folder, REF holds no
            label maps, or no case id is common to both folders.
    """
    pred, ref = Path(pred), Path(ref)
    for p, flag in ((pred, "--pred"), (ref, "--ref")):
        if not p.exists():
            raise InputError(f"{flag} {p} does not exist; check the path")
    if pred.is_file() and ref.is_file():
        return CasePairs(pairs=[(split_suffix(ref)[0], pred, ref)])
    if not (pred.is_dir() and ref.is_dir()):
        raise InputError(f"--pred {pred} and --ref {ref} must both be files or both be folders")
    preds, pred_dupes = list_cases(pred, predictions=True)
    refs, ref_dupes = list_cases(ref)
    if not refs and not ref_dupes:
        raise InputError(f"{ref} holds no label maps (.nii.gz, .nii, .nrrd, .mha, DICOM SEG ...); check --ref")
    if refs and not set(refs) & (set(preds) | set(pred_dupes)):
        raise InputError(
            f"no case id is common to {pred} and {ref} (e.g. reference {next(iter(refs))!r}); name each "
            "prediction like its reference case (case_01.nii.gz for case_01.nrrd)"
        )
    out = CasePairs(extra_pred=sorted(set(preds) - set(refs) - set(ref_dupes)))
    out.problems = {**{c: f"prediction: {m}" for c, m in pred_dupes.items() if c in refs},
                    **{c: f"reference: {m}" for c, m in ref_dupes.items()}}
    out.pairs = [(c, preds.get(c), refs[c]) for c in sorted(refs) if c not in out.problems]
    return out


def evaluate_folders(
    pred: str | Path,
    ref: str | Path,
    *,
    labels: dict[int, str] | str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    **options,
) -> Evaluation:
    """Evaluate every reference case against its prediction (files or folders).

    Args:
        pred, ref: two label-map files, or two folders matched by case id.
        labels: ``{value: name}`` or a dataset.json path (see :func:`evaluate_case`).
        progress: called with the case id after each case (e.g. to advance a progress bar).
        **options: passed to :func:`medseg.metrics.evaluate_case` (``tolerance_mm``,
            ``resample_pred``, ``lesions``, ``lesion_threshold``, ``connectivity``,
            ``instances``, ``iou_threshold``).

    Returns:
        :class:`Evaluation`; ``failed`` lists the cases that could not be scored.
    """
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    matched = match_cases(pred, ref)
    ev = Evaluation(extra_pred=matched.extra_pred, settings={"pred": str(pred), "ref": str(ref), **options})
    for case, message in matched.problems.items():
        ev.fail(case, "failed", message)
    for case, pred_path, ref_path in matched.pairs:
        if pred_path is None:
            ev.fail(case, "missing_pred", f"no prediction for reference case {case}")
        else:
            _evaluate_one(ev, case, pred_path, ref_path, labels, options)
        if progress is not None:
            progress(case)
    return ev


def read_label_map(path: Path, labels: dict[int, str] | None = None):
    """A label map for scoring: :func:`medseg.io.read_volume`, except that a DICOM SEG gets its
    class values as recorded by medseg, else by segment label from ``labels`` ({value: name}),
    else from the ``labels.json`` of its (prediction) folder."""
    if not is_dicom_seg(path):
        return read_volume(path)
    from medseg.io.labels import find_labels

    table = {n: v for v, n in labels.items()} if labels else find_labels(path)
    return read_dicom_seg(path, labels=table)[0]


def on_common_grid(pred_vol, ref_vol):
    """``(pred, ref)`` with a DICOM SEG (which spans only its frames) placed on the other's
    grid when it is a block of it; unchanged otherwise (the scorer then reports the mismatch)."""
    if pred_vol.same_grid(ref_vol.geometry):
        return pred_vol, ref_vol
    if pred_vol.meta.get("format") == "dicom-seg":
        placed = place_on_grid(pred_vol, ref_vol.geometry)
        if placed is not None:
            return placed, ref_vol
    if ref_vol.meta.get("format") == "dicom-seg":
        placed = place_on_grid(ref_vol, pred_vol.geometry)
        if placed is not None:
            return pred_vol, placed
    return pred_vol, ref_vol


def _evaluate_one(ev: Evaluation, case: str, pred_path: Path, ref_path: Path, labels, options: dict) -> None:
    """Read and score one case; any error is recorded for this case only."""
    try:
        ref_vol = read_label_map(ref_path, labels)
        pred_vol = read_label_map(pred_path, labels)
        pred_vol, ref_vol = on_common_grid(pred_vol, ref_vol)
        ev.add(evaluate_case(pred_vol, ref_vol, labels=labels, case=case, **options))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 -- one bad case never stops the others
        message = " ".join(str(e).split()) or type(e).__name__
        ev.fail(case, "failed", message if hasattr(e, "exit_code") else f"{type(e).__name__}: {message}")
