"""Atomic file output: write to a temporary name in the target folder, then rename.

A crash or Ctrl-C during a write leaves either the old file or nothing -- never half a file
under the final name (docs/concepts/design.md convention 6).

Permissions: a finished output has the mode a plain ``open(path, "w")`` would give it,
``0o666 & ~umask`` for files and ``0o777 & ~umask`` for folders (``tempfile`` creates its files
0600 and folders 0700, which would make every output private on a shared machine).
Temporary names start with ``.<final name>.`` and contain ``.tmp``, so :func:`clean_stale_temps`
can remove what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def safe_resolve(p: Path) -> Path:
    """``p.resolve()``, or the absolute path when it cannot be resolved (a symlink loop, a
    permission problem): resolving a path must never stop a batch."""
    try:
        return Path(p).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(p))


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux; elsewhere
    the set-and-restore dance, which is not thread-safe but is the only portable way)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode bits of a new output file: ``0o666 & ~umask`` (0644 with umask 022)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode bits of a new output folder: ``0o777 & ~umask`` (0755 with umask 022)."""
    return 0o777 & ~current_umask()


def _chmod(path, mode: int) -> None:
    """chmod, best effort: a filesystem without POSIX modes (FAT, some network mounts) must not
    fail the write."""
    try:
        os.chmod(path, mode)
    except (NotImplementedError, PermissionError, OSError):
        pass


def fix_modes(path: Path) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the umask's default modes."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        _chmod(path, dir_mode())
        for root, dirs, files in os.walk(path):
            for d in dirs:
                _chmod(os.path.join(root, d), dir_mode())
            for f in files:
                _chmod(os.path.join(root, f), file_mode())
    else:
        _chmod(path, file_mode())


_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?:[A-Za-z0-9_]{8}\.(?:tmp.*|old)|tmp-\d+-\d+)$")


def is_temp_name(name: str, final: str | None = None) -> bool:
    """Whether ``name`` is a temporary name of medseg's atomic writers -- ``.x.nii.gz.k3j2_a9b.tmp.nii.gz``,
    ``.x.mhd.k3j2_a9b.tmpdir``, ``.last.pt.k3j2_a9b.tmp.pt``, ``.case.tmp-12-34`` -- (for the
    output ``final`` only, when given)."""
    m = _TEMP_NAME.match(name)
    return bool(m) and (final is None or m["final"] == final)


def clean_stale_temps(folder: Path, recursive: bool = False, final: str | None = None) -> list[Path]:
    """Remove what killed atomic writes left in ``folder``: files and folders named like
    :func:`is_temp_name` (of the output ``final`` only, when given). Returns what was removed;
    anything else is left alone."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    for p in sorted(candidates, key=lambda q: -len(q.parts)):
        if not is_temp_name(p.name, final) or any(p in r.parents for r in removed):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


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
        _chmod(tmp, file_mode())
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
            fix_modes(p)
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
