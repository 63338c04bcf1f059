"""Review state of a folder of masks (pure Python, no Qt): moved to :mod:`medseg.review.state`
(so ``medseg review DIR --export OUT`` works without napari), re-exported here."""

from medseg.review import (  # noqa: F401
    FINAL_STATUSES,
    STATE_VERSION,
    STATUSES,
    CaseState,
    LoadedCase,
    ReviewSession,
    now_iso,
)

__all__ = ["ReviewSession", "CaseState", "LoadedCase", "STATUSES", "FINAL_STATUSES", "STATE_VERSION", "now_iso"]
