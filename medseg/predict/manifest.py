"""``OUT_DIR/manifest.csv``: one row per case, rewritten atomically after every case.

Columns: ``case`` (output key), ``input`` (absolute path; DICOM series as ``folder#uid``),
``output`` (relative to OUT_DIR), ``status`` (done / failed / skipped), ``error``, ``seconds``,
``model_id``, ``uncertainty`` (per-case score, empty without ``--uncertainty``), the stage
timings ``read_s preprocess_s network_s postprocess_s write_s``, then ``volume_ml_<class>``
per class. ``skipped`` means done earlier with the same model (``--resume``); its volumes
are carried over.
"""

from __future__ import annotations

import csv
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
