"""Review a folder of masks: worklist, statuses, corrections, audit log, export.

``cases``, ``state`` and ``export`` are plain Python (no Qt); ``widget`` is the napari dock widget.
"""

from napari_medseg.review.cases import ReviewCase, Worklist, discover
from napari_medseg.review.export import ExportResult, export_nnunet
from napari_medseg.review.state import FINAL_STATUSES, STATUSES, CaseState, LoadedCase, ReviewSession

__all__ = [
    "ReviewCase",
    "Worklist",
    "discover",
    "ReviewSession",
    "CaseState",
    "LoadedCase",
    "STATUSES",
    "FINAL_STATUSES",
    "export_nnunet",
    "ExportResult",
]
