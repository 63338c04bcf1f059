"""Atomic file output: write to a temporary name in the target folder, then rename.

A crash or Ctrl-C during a write leaves either the old file or nothing -- never half a file
under the final name (DESIGN.md convention 6).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: Path, suffix: str) -> Iterator[Path]:
    """Yield a temporary path next to ``final`` ending in ``suffix``; rename it on success.

    The suffix is kept so libraries that pick the format from the name (nibabel,
    SimpleITK) write the right thing. On any exception the temporary file is removed
    and ``final`` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; the suffix of ``path`` is kept."""
    path = Path(path)
    with atomic_path(path, path.suffix) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def atomic_dir_files(final: Path) -> Iterator[Path]:
    """For formats written as several files (``.mhd`` + ``.raw``): yield a temporary folder
    in which the writer creates files under their *final* names; on success each file is
    moved next to ``final`` (data files first, ``final`` itself last)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmpdir", dir=final.parent))
    try:
        yield tmpdir / final.name
        produced = sorted(tmpdir.iterdir(), key=lambda p: p.name == final.name)
        for p in produced:
            os.replace(p, final.parent / p.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def write_csv_atomic(path: Path, rows, columns: list[str]) -> Path:
    """Write ``rows`` (dicts) as CSV with a header of ``columns`` (missing or None values are
    empty cells, extra keys are ignored), atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return write_text_atomic(path, buf.getvalue())
