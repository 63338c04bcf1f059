"""The ``medseg`` command: argument parsing, warnings display and the error contract.

Contract: an error the user can cause prints exactly one line ``error: <what> ; <what to do>``
on stderr and exits with code 2, without a traceback (``--debug`` shows it). Ctrl-C exits
with 130 and SIGTERM with 143, both after the same clean-up (see :mod:`medseg.signals`). Warnings print
as ``warning: ...`` and notes as ``note: ...`` on stderr, so stdout stays clean for ``--json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings

from medseg._version import __version__
from medseg.cli import check_dataset, convert, evaluate, info, phantoms, plan, predict, report, review, train
from medseg.errors import MedsegError, MedsegWarning
from medseg.signals import Terminated, handle_sigterm
from medseg.threads import configure_threads

#: Commands: name -> module with ``add_parser(subparsers, parents)`` and ``run(args) -> int``.
COMMANDS = {
    "info": info,
    "convert": convert,
    "check-dataset": check_dataset,
    "plan": plan,
    "phantoms": phantoms,
    "evaluate": evaluate,
    "train": train,
    "predict": predict,
    "report": report,
    "review": review,
}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors follow the one-line ``error:`` contract (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="medseg",
        description="3D medical image segmentation toolkit: scan I/O, training, batch inference, metrics.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    # Also accepted after the command; SUPPRESS keeps a sub-command default from undoing it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS.values():
        module.add_parser(sub, [common])
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, MedsegWarning):
        sys.stderr.write(f"warning: {_one_line(str(message))}\n")
    else:  # third-party warnings: keep them short too
        sys.stderr.write(f"warning: {category.__name__}: {_one_line(str(message))}\n")


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        prefix = "note" if record.levelno < logging.WARNING else "warning"
        sys.stderr.write(f"{prefix}: {_one_line(record.getMessage())}\n")


class _LibraryHandler(logging.Handler):
    """Messages a library logs (nibabel: "pixdim[1,2,3] should be non-zero; setting 0 dims to 1")
    as ``warning: nibabel: ...`` lines, like every other warning."""

    def emit(self, record: logging.LogRecord) -> None:
        lib = record.name.split(".")[0]
        sys.stderr.write(f"warning: {lib}: {_one_line(record.getMessage())}\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _setup_output(debug: bool) -> None:
    warnings.simplefilter("always", MedsegWarning)
    if not debug:
        warnings.showwarning = _show_warning
    for name in ("nibabel", "nibabel.global"):  # nibabel prints through its own StreamHandler
        lib = logging.getLogger(name)
        lib.handlers[:] = [_LibraryHandler()]
        lib.propagate = False
    log = logging.getLogger("medseg")
    log.handlers[:] = [_NoteHandler()]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 user error, 1 internal error)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return int(e.code or 0)
    if not args.command:
        parser.print_help()
        return 2
    _setup_output(args.debug)
    configure_threads()  # before the command imports torch: thread count + passive OpenMP waiting
    try:
        with handle_sigterm():
            return int(COMMANDS[args.command].run(args) or 0)
    except MedsegError as e:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {_one_line(str(e))}\n")
        return e.exit_code
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (medseg.signals.Terminated)
        what, code = ("terminated (SIGTERM)", 143) if isinstance(e, Terminated) else ("interrupted", 130)
        sys.stderr.write(f"error: {what}; nothing half-written was left behind (rerun with --resume to continue)\n")
        return code
    except MemoryError:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write("error: out of memory; close other programs or use a machine with more RAM\n")
        return 2
    except Exception as e:  # a bug in medseg: still one line, unless --debug
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(
            f"error: internal error {type(e).__name__}: {_one_line(str(e))[:300]}; this is a medseg bug -- "
            "rerun with --debug and report the traceback\n"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
