"""Options and argument types shared by several commands."""

from __future__ import annotations

import argparse

from medseg.io.dicom import DEFAULT_TOLERANCE


def add_read_options(p: argparse.ArgumentParser) -> None:
    """``--series`` and ``--allow-nonuniform`` (used by every command that reads a scan)."""
    p.add_argument(
        "--series",
        metavar="UID",
        help="DICOM folders with several series: the SeriesInstanceUID to read "
        "(default: the series with most slices; `medseg info FOLDER` lists them)",
    )
    p.add_argument(
        "--allow-nonuniform",
        action="store_true",
        help=f"read DICOM series whose slice steps deviate more than {100 * DEFAULT_TOLERANCE:g}%% "
        "from the mean (e.g. missing slices), using the mean step",
    )


def read_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments for :func:`medseg.io.read_volume` from parsed options."""
    return {"series_uid": args.series, "allow_nonuniform": args.allow_nonuniform}


def int_at_least(minimum: int):
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            bound = "0 or more" if minimum == 0 else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse
