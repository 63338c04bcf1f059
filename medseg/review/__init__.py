"""Review of a folder of masks without a GUI: worklist, statuses, corrections, audit log,
export as a trainable nnU-Net dataset (no Qt, no napari).

The napari review widget (``napari_medseg.review``) is a view on these modules; ``medseg
review DIR --export OUT`` uses them directly.
"""

from medseg.review.cases import ReviewCase, Worklist, discover
from medseg.review.export import ExportResult, export_nnunet
from medseg.review.state import FINAL_STATUSES, STATUSES, CaseState, LoadedCase, ReviewSession

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
