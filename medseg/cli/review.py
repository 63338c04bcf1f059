"""``medseg review DIR [--reviewer NAME]``: review and correct masks in napari;
``medseg review DIR --export OUT``: write the accepted cases as an nnU-Net dataset, no GUI.

medseg never imports napari or Qt. The GUI is the napari plugin's public entry point, found
through the one documented lookup :func:`review_app`: the entry-point group ``medseg.review_app``
(``napari_plugin/pyproject.toml`` declares ``napari = "napari_medseg:launch_review"``), which is
``napari_medseg.open_review(folder, reviewer=...)`` -- the call scripts use -- followed by napari's
event loop. Nothing else of the plugin is imported or called from here.
``--export`` needs neither napari nor the plugin (:mod:`medseg.review`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from medseg.errors import MedsegError

#: The entry-point group of the review GUI: one callable ``app(folder, *, reviewer=None) -> int``
#: that blocks until the window is closed, raises ImportError when napari or its Qt binding is
#: missing (before any window opens) and MedsegError for what the user can fix. The napari plugin
#: registers ``napari_medseg.launch_review``: its public ``open_review`` plus ``napari.run()``.
REVIEW_APP_GROUP = "medseg.review_app"

PLUGIN_HINT = ("the napari review app is not installed (no 'medseg.review_app' entry point); install the "
               "napari plugin: pip install -e napari_plugin")
INSTALL_HINT = ("napari is not installed; install the plugin: pip install -e napari_plugin[testing] "
                "(or napari[pyqt6])")


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "review",
        parents=parents,
        help="review and correct masks in napari (needs the napari-medseg plugin)",
        description="Open napari with the review widget on DIR: a worklist of cases, statuses "
        "(approved / corrected / flagged), corrections saved automatically to DIR/review/corrected/, "
        "an audit log DIR/review/audit.jsonl, and export of the accepted cases as an nnU-Net dataset. "
        "DIR is a 'medseg predict' output folder (manifest.csv + masks), a folder with images/ and "
        "masks/ (matched by case id), or an nnU-Net dataset (imagesTr/ + labelsTr/). "
        "The masks and images in DIR are never changed.",
    )
    p.add_argument("dir", type=Path, help="folder with the masks to review")
    p.add_argument("--reviewer", default=None, help="your name, recorded with each status change (default: login name)")
    p.add_argument("--export", type=Path, metavar="OUT_DATASET", default=None,
                   help="do not open napari: write the approved and corrected cases of DIR as an nnU-Net dataset "
                   "OUT_DATASET (dataset.json with the run's class names, imagesTr/, labelsTr/), ready for "
                   "`medseg check-dataset` and training; DIR is only read")
    p.add_argument("--statuses", default="approved,corrected", metavar="LIST",
                   help="with --export: the statuses to export, comma-separated (default approved,corrected)")


def review_app() -> Callable[..., int]:
    """The review GUI registered under the entry-point group ``medseg.review_app`` (the napari
    plugin's ``napari_medseg.launch_review``, i.e. ``napari_medseg.open_review`` run until the
    window closes); MedsegError saying how to install it when none is."""
    from importlib.metadata import entry_points

    found = sorted(entry_points(group=REVIEW_APP_GROUP), key=lambda ep: ep.name)
    if not found:
        raise MedsegError(PLUGIN_HINT)
    try:
        return found[0].load()
    except ImportError as e:  # the entry point is declared but its package is gone
        raise MedsegError(f"{PLUGIN_HINT} ({found[0].value} cannot be imported: {e})") from e


def export(args: argparse.Namespace) -> int:
    """``--export``: no napari, no Qt; the review folder is opened read-only."""
    from medseg.review.export import export_nnunet
    from medseg.review.state import STATUSES, ReviewSession

    statuses = tuple(s.strip() for s in str(args.statuses).split(",") if s.strip())
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown or not statuses:
        raise MedsegError(f"--statuses {args.statuses!r}: unknown status {', '.join(unknown) or '(none)'}; "
                          f"use some of {', '.join(STATUSES)}")
    session = ReviewSession(args.dir, readonly=True)
    result = export_nnunet(session, args.export, statuses=statuses,
                           progress=lambda case: sys.stderr.write(f"exporting {case}\n"))
    print(result.summary())
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "export", None) is not None:
        return export(args)
    app = review_app()
    try:
        return app(args.dir, reviewer=args.reviewer)
    except ImportError as e:  # napari, or its Qt binding, is missing
        raise MedsegError(INSTALL_HINT) from e
