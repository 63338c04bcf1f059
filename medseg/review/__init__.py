"""Review of a folder of masks without a GUI: worklist, statuses, corrections, audit log,
export as a trainable nnU-Net dataset (no Qt, no napari).

The napari review widget (``napari_medseg.review``) is a view on these modules; ``medseg
review DIR --export OUT`` uses them directly.
"""

from medseg.review.cases import OK_STATUSES, ReviewCase, Worklist, discover
from medseg.review.export import DEFAULT_STATUSES, ExportResult, export_nnunet
from medseg.review.state import FINAL_STATUSES, STATE_VERSION, STATUSES, CaseState, LoadedCase, ReviewSession, now_iso

__all__ = [
    "ReviewCase",
    "Worklist",
    "discover",
    "ReviewSession",
    "CaseState",
    "LoadedCase",
    "STATUSES",
    "FINAL_STATUSES",
    "STATE_VERSION",
    "OK_STATUSES",
    "now_iso",
    "export_nnunet",
    "ExportResult",
    "DEFAULT_STATUSES",
]
