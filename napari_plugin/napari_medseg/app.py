"""``medseg review DIR`` in napari: the review and correction widgets on a folder of masks.

:func:`launch_review` is the plugin's one entry point for medseg (entry-point group
``medseg.review_app``, declared in ``napari_plugin/pyproject.toml``): ``medseg review`` looks it
up by that name and calls it, so medseg itself never imports napari or Qt. This module imports
napari only when :func:`launch_review` runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from medseg.errors import MedsegError
from medseg.review import discover


def _check_display() -> None:
    """Qt aborts the whole process without a display; say so first."""
    if sys.platform.startswith("linux") and not any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    ):
        raise MedsegError("no display to open napari on (DISPLAY is not set); run medseg review on a desktop "
                          "session, over ssh -X, or for a test under xvfb-run")


def launch_review(folder: str | Path, *, reviewer: str | None = None) -> int:
    """Open napari with the review widget (and the correction tools) on ``folder``; block until
    the window is closed, save the open case's edits, and return 0.

    Args:
        folder: a ``medseg predict`` output folder, an images/ + masks/ folder, or an nnU-Net
            dataset (see :func:`medseg.review.discover`).
        reviewer: the name recorded with each status change (default: the login name).

    Raises:
        ImportError: napari or its Qt binding cannot be imported (before any window opens);
            ``medseg review`` then says how to install them.
        MedsegError: the folder cannot be reviewed, or there is no display.
    """
    import napari

    from napari_medseg.correction_widget import CorrectionWidget
    from napari_medseg.review.widget import ReviewWidget

    folder = Path(folder)
    discover(folder)  # a folder that cannot be reviewed fails here, with one line
    _check_display()
    viewer = napari.Viewer(title=f"medseg review: {folder}")  # ImportError: napari without a Qt binding
    widget = ReviewWidget(viewer, folder=folder, reviewer=reviewer)
    viewer.window.add_dock_widget(widget, name="medseg review", area="right")
    viewer.window.add_dock_widget(CorrectionWidget(viewer), name="correction tools", area="right")
    try:
        napari.run()
    finally:
        widget.close_session()  # saves the open case's edits and time
    return 0
