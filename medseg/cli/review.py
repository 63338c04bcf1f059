"""``medseg review DIR [--reviewer NAME]``: review and correct masks in napari;
``medseg review DIR --export OUT``: write the accepted cases as an nnU-Net dataset, no GUI.

napari and the napari-medseg plugin are optional: they are imported only when the GUI is
opened, so the core CLI never needs Qt; ``--export`` imports neither (:mod:`medseg.review`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medseg.errors import MedsegError

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


def _import_napari():
    try:
        import napari
        from napari_medseg.review.widget import ReviewWidget
    except ImportError as e:
        raise MedsegError(INSTALL_HINT) from e
    return napari, ReviewWidget


def _check_display() -> None:
    """Qt aborts the whole process without a display; say so first."""
    if sys.platform.startswith("linux") and not any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    ):
        raise MedsegError("no display to open napari on (DISPLAY is not set); run medseg review on a desktop "
                          "session, over ssh -X, or for a test under xvfb-run")


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
    napari, ReviewWidget = _import_napari()
    from napari_medseg.correction_widget import CorrectionWidget
    from napari_medseg.review.cases import discover

    discover(args.dir)  # a folder that cannot be reviewed fails here, with one line
    _check_display()
    try:
        viewer = napari.Viewer(title=f"medseg review: {args.dir}")
    except ImportError as e:  # napari without a Qt binding
        raise MedsegError(INSTALL_HINT) from e
    widget = ReviewWidget(viewer, folder=args.dir, reviewer=args.reviewer)
    viewer.window.add_dock_widget(widget, name="medseg review", area="right")
    viewer.window.add_dock_widget(CorrectionWidget(viewer), name="correction tools", area="right")
    try:
        napari.run()
    finally:
        widget.close_session()  # saves the open case's edits and time
    return 0
