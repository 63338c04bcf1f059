"""Errors and warnings a user can cause, with messages meant to be read by a person.

Every problem that comes from the user's input (a path, a file, a flag) is raised as a
:class:`MedsegError` subclass whose message says what was wrong *and* what to do. The CLI
prints it as one ``error: ...`` line and exits with code 2 (see :mod:`medseg.cli.main`);
library callers can catch :class:`MedsegError`.

Recoverable oddities (a qform/sform disagreement, slightly uneven DICOM slice spacing)
are :class:`MedsegWarning` warnings, printed by the CLI as ``warning: ...`` on stderr.
"""

from __future__ import annotations

import warnings


class MedsegError(Exception):
    """An error caused by the user's input. ``str(err)`` is the complete message."""

    exit_code = 2


class InputError(MedsegError):
    """A path or file that cannot be used (missing, empty, corrupt, wrong kind)."""


class GeometryError(MedsegError):
    """Inconsistent spatial information (uneven DICOM slices, mismatched grids, 4D data)."""


class OutputError(MedsegError):
    """An output that cannot or must not be written (would overwrite an input, exists)."""


class Cancelled(MedsegError):
    """Long work stopped on request (a Cancel button, a cancel event); nothing half-written is left."""

    exit_code = 130


class MedsegWarning(UserWarning):
    """Something the user should know about, but that does not stop the work."""


def short_reason(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


def warn(message: str) -> None:
    """Emit a :class:`MedsegWarning` attributed to the caller of the medseg function."""
    warnings.warn(message, MedsegWarning, stacklevel=3)
