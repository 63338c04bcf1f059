"""``OUT_DIR/manifest.csv``: one row per case, rewritten atomically after every case.

Columns: ``case`` (output key), ``input`` (absolute path; DICOM series as ``folder#uid``),
``output`` (relative to OUT_DIR), ``status`` (done / failed / skipped), ``error``, ``seconds``,
``model_id``, ``uncertainty`` (per-case score, empty without ``--uncertainty``), the stage
timings ``read_s preprocess_s network_s postprocess_s write_s``, then ``volume_ml_<class>``
per class. ``skipped`` means done earlier with the same model (``--resume``); its volumes
are carried over.

:class:`Manifest` is what the batch writes; :func:`read_manifest` is the one reader for
everything that consumes a finished batch (``medseg report``, the review worklist): typed
:class:`ManifestRecord` s, the ``input`` column parsed once (:func:`parse_input`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError
from medseg.io.atomic import write_csv_atomic

BASE_COLUMNS = ["case", "input", "output", "status", "error", "seconds", "model_id", "uncertainty",
                "read_s", "preprocess_s", "network_s", "postprocess_s", "write_s"]
DONE = ("done", "skipped")


class Manifest:
    """Rows keyed by case, in first-seen order. ``save()`` rewrites the file atomically."""

    def __init__(self, path: Path, class_names: list[str]):
        self.path = Path(path)
        self.columns = BASE_COLUMNS + [f"volume_ml_{n}" for n in class_names]
        self.rows: dict[str, dict] = {}

    @classmethod
    def load(cls, path: Path, class_names: list[str]) -> "Manifest":
        """The manifest at ``path`` (empty when absent). Unknown columns are kept."""
        m = cls(path, class_names)
        if not m.path.is_file():
            return m
        try:
            with open(m.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                extra = [c for c in (reader.fieldnames or []) if c not in m.columns]
        except (OSError, csv.Error, UnicodeDecodeError) as e:
            raise InputError(f"{m.path} cannot be read ({e}); move it away to start the batch afresh") from e
        m.columns += extra
        for r in rows:
            if r.get("case"):
                m.rows[r["case"]] = r
        return m

    def is_done(self, case: str, model_id: str, out_dir: Path) -> bool:
        """Done earlier with ``model_id`` and the output still exists inside ``out_dir`` (a row
        whose ``output`` is absolute or leaves ``out_dir`` -- an edited manifest -- is not trusted)."""
        r = self.rows.get(case)
        if not (r and r.get("status") in DONE and r.get("model_id") == model_id and r.get("output")):
            return False
        rel = Path(r["output"])
        if rel.is_absolute() or ".." in rel.parts:
            return False
        try:
            inside = (out_dir / rel).resolve().is_relative_to(Path(out_dir).resolve())
        except (OSError, RuntimeError):
            return False
        return inside and (out_dir / rel).is_file()

    def set(self, row: dict) -> None:
        for k in row:
            if k not in self.columns:
                self.columns.append(k)
        self.rows[row["case"]] = row

    def save(self) -> None:
        write_csv_atomic(self.path, self.rows.values(), self.columns)


def parse_input(text: str) -> tuple[list[Path], str | None]:
    """The manifest's ``input`` column -> (source paths, DICOM SeriesInstanceUID or None).

    The batch writes the channels of a case joined by ``;`` and a DICOM series as
    ``folder#SeriesInstanceUID`` (:attr:`medseg.predict.inputs.CaseInput.input_text`), so
    ``"/a/x_0000.nii.gz;/a/x_0001.nii.gz"`` gives two paths and no UID, ``"/s/ct#1.2.3"`` one
    path and ``"1.2.3"``; an empty column gives ``([], None)``.
    """
    text = (text or "").strip()
    if not text:
        return [], None
    head, _, uid = text.partition("#")
    return [Path(p) for p in head.split(";") if p], (uid.strip() or None)


@dataclass(frozen=True)
class ManifestRecord:
    """One row of ``manifest.csv``, typed.

    Attributes:
        case: the output key (``a/b`` for a series in a study tree).
        inputs: the source paths (one per channel, or the DICOM series folder), as written.
        series_uid: the DICOM SeriesInstanceUID of a series input, else None.
        output: the prediction, relative to the batch's output folder (None when not written).
        status: ``done`` / ``skipped`` / ``failed`` (lower case).
        error: the failure message ('' when none).
        seconds: wall time of the case (None when not recorded).
        model_id: the weights' id (:meth:`medseg.model.rundir.RunDir.model_id`), or None.
        uncertainty: the per-case uncertainty score, or None (no ``--uncertainty``; NaN too).
        volumes_ml: {class name: predicted volume in ml} from the ``volume_ml_<class>`` columns.
        row: the raw row (every column as text, unknown columns included).
    """

    case: str
    inputs: list[Path]
    series_uid: str | None
    output: str | None
    status: str
    error: str
    seconds: float | None
    model_id: str | None
    uncertainty: float | None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    row: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the case has a prediction (``done`` or ``skipped``) and it names an output."""
        return self.status in DONE and bool(self.output)

    @property
    def image(self) -> Path | None:
        """The first source (channel 0, or the DICOM folder), or None."""
        return self.inputs[0] if self.inputs else None


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is None or value == value else None  # NaN -> None


def read_manifest(path: str | Path) -> list[ManifestRecord]:
    """The rows of a batch's ``manifest.csv`` (``OUT_DIR/manifest.csv`` or the file itself), in
    file order, as :class:`ManifestRecord` s.

    Raises:
        InputError: the file is missing, unreadable (binary, damaged CSV), or lacks the
            ``input`` / ``output`` columns -- each with what to do.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise InputError(f"{path.parent} has no manifest.csv; give the --out folder of `medseg predict`")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:  # a binary or damaged file
        raise InputError(f"{path} is not a readable manifest ({type(e).__name__}: {e}); give the --out folder "
                         "of `medseg predict`, or move the damaged file away") from None
    if rows and not {"input", "output"} <= set(columns):
        raise InputError(f"{path} lacks the columns 'input' and 'output' (has {', '.join(columns)}); it is not "
                         "a `medseg predict` manifest")
    out = []
    for r in rows:
        inputs, uid = parse_input(r.get("input") or "")
        volumes = {k[len("volume_ml_"):]: v for k, v in ((k, _number(t)) for k, t in r.items()
                                                         if k and k.startswith("volume_ml_")) if v is not None}
        out.append(ManifestRecord(
            case=(r.get("case") or "").strip(), inputs=inputs, series_uid=uid,
            output=(r.get("output") or "").strip() or None, status=(r.get("status") or "").strip().lower(),
            error=r.get("error") or "", seconds=_number(r.get("seconds")), model_id=r.get("model_id") or None,
            uncertainty=_number(r.get("uncertainty")), volumes_ml=volumes, row=dict(r)))
    return out
