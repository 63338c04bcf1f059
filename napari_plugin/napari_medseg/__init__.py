"""napari-medseg: a thin napari layer over medseg's public API.

The manifest (``napari.yaml``) is the public surface: a reader (NIfTI, NRRD/MHA, DICOM, placed
in RAS+ mm with the full affine), a labels writer (on the exact source grid), the bundled
chest CT sample, and two dock widgets (review, correction tools).

Plain-Python modules (no Qt): ``layers``, ``correction``, ``review.cases``, ``review.state``,
``review.export``. Qt lives only in ``review.widget``, ``correction_widget`` and ``app``; medseg
itself never imports Qt or napari.

``launch_review(folder, reviewer=None)`` is what ``medseg review DIR`` runs: medseg finds it
through the entry point ``medseg.review_app`` (see ``pyproject.toml``), never by importing this
package. Importing the package stays light (napari loads the manifest through it).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

__all__ = ["launch_review", "__version__"]


def launch_review(folder: str | Path, *, reviewer: str | None = None) -> int:
    """Open napari with the review and correction widgets on ``folder``; return 0 when closed.
    See :func:`napari_medseg.app.launch_review` (ImportError: napari or Qt is missing)."""
    from napari_medseg.app import launch_review as launch

    return launch(folder, reviewer=reviewer)
