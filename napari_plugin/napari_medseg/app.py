"""The review station as one call: :func:`open_review` (for scripts and ``medseg review``).

``open_review(folder, viewer=None, reviewer=None)`` docks the review worklist and the correction
tools in a napari viewer (a new one by default) and returns the review widget; its
:meth:`~napari_medseg.review.widget.ReviewWidget.open_case` shows a case. :func:`launch_review`
is ``open_review`` plus napari's event loop: it is what ``medseg review DIR`` runs, found through
the entry point ``medseg.review_app`` (declared in ``napari_plugin/pyproject.toml``), so medseg
itself never imports napari or Qt. This module imports napari only when a function runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from medseg.errors import MedsegError
from medseg.review import discover

#: Names of the dock widgets ``open_review`` adds.
REVIEW_DOCK, TOOLS_DOCK = "medseg review", "correction tools"


def _check_display() -> None:
    """Qt aborts the whole process without a display; say so first."""
    if sys.platform.startswith("linux") and not any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    ):
        raise MedsegError("no display to open napari on (DISPLAY is not set); run medseg review on a desktop "
                          "session, over ssh -X, or for a test under xvfb-run")


def open_review(folder: str | Path, viewer=None, reviewer: str | None = None):
    """Dock the review worklist (and the correction tools) on ``folder`` in ``viewer``.

    Args:
        folder: a ``medseg predict`` output folder, an images/ + masks/ folder, or an nnU-Net
            dataset (see :func:`medseg.review.discover`).
        viewer: the napari viewer to use; None opens a new one titled with the folder.
        reviewer: the name recorded with each status change (default: the login name).

    Returns:
        The :class:`~napari_medseg.review.widget.ReviewWidget` (``open_case(case_id)`` shows a
        case; ``close_session()`` saves the open case's edits and time). Does not block: run
        ``napari.run()`` (or use :func:`launch_review`) for an interactive session.

    Raises:
        ImportError: napari or its Qt binding cannot be imported (before any window opens).
        MedsegError: the folder cannot be reviewed, or there is no display.
    """
    folder = Path(folder)
    discover(folder)  # a folder that cannot be reviewed fails here, with one line
    if viewer is None:
        _check_display()
        import napari

        viewer = napari.Viewer(title=f"medseg review: {folder}")  # ImportError: napari without a Qt binding
    from napari_medseg.correction_widget import CorrectionWidget
    from napari_medseg.review.widget import ReviewWidget

    widget = ReviewWidget(viewer, folder=folder, reviewer=reviewer)
    viewer.window.add_dock_widget(widget, name=REVIEW_DOCK, area="right")
    viewer.window.add_dock_widget(CorrectionWidget(viewer), name=TOOLS_DOCK, area="right")
    return widget


def launch_review(folder: str | Path, *, reviewer: str | None = None) -> int:
    """:func:`open_review` in a new napari window; block until the window is closed, save the
    open case's edits and time, and return 0 (what ``medseg review DIR`` runs).

    Raises:
        ImportError: napari or its Qt binding cannot be imported (before any window opens);
            ``medseg review`` then says how to install them.
        MedsegError: the folder cannot be reviewed, or there is no display.
    """
    import napari

    widget = open_review(folder, reviewer=reviewer)
    try:
        napari.run()
    finally:
        widget.close_session()  # saves the open case's edits and time
    return 0
