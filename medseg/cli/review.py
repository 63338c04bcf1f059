"""``medseg review DIR [--reviewer NAME]``: review and correct masks in napari.

napari and the napari-medseg plugin are optional: they are imported only when the command
runs, so the core CLI never needs Qt.
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


def run(args: argparse.Namespace) -> int:
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
