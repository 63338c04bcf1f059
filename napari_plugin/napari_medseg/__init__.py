"""napari-medseg: a thin napari layer over medseg's public API.

The manifest (``napari.yaml``) is the public surface: a reader (NIfTI, NRRD/MHA, DICOM, placed
in RAS+ mm with the full affine), a labels writer (on the exact source grid), the bundled
chest CT sample, and two dock widgets (review, correction tools).

Plain-Python modules (no Qt): ``layers``, ``correction``, ``view``, ``triplanar``,
``review.cases``, ``review.state``, ``review.export``. Qt lives only in ``review.widget``,
``correction_widget``, ``segment_widget``, ``triplanar_widget`` and ``app``; medseg itself
never imports Qt or napari.

The public entry point for scripts is ``open_review(folder, viewer=None, reviewer=None)``: it
docks the review worklist and the correction tools and returns the review widget, whose
``open_case(case_id)`` shows a case::

    import napari
    from napari_medseg import open_review

    widget = open_review("predictions/", reviewer="Dr A")
    widget.open_case("case_001")
    napari.run()

``launch_review(folder, reviewer=None)`` is ``open_review`` plus napari's event loop; it is what
``medseg review DIR`` runs: medseg finds it through the entry point ``medseg.review_app`` (see
``pyproject.toml``), never by importing this package. Importing the package stays light
(napari loads the manifest through it).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

__all__ = ["open_review", "launch_review", "__version__"]


def open_review(folder: str | Path, viewer=None, reviewer: str | None = None):
    """Dock the review worklist and the correction tools on ``folder`` in ``viewer`` (a new
    napari viewer when None) and return the review widget (``open_case(case_id)``).
    See :func:`napari_medseg.app.open_review`."""
    from napari_medseg.app import open_review as open_

    return open_(folder, viewer=viewer, reviewer=reviewer)


def launch_review(folder: str | Path, *, reviewer: str | None = None) -> int:
    """:func:`open_review` in a new napari window, blocking until it is closed; returns 0.
    See :func:`napari_medseg.app.launch_review` (ImportError: napari or Qt is missing)."""
    from napari_medseg.app import launch_review as launch

    return launch(folder, reviewer=reviewer)
