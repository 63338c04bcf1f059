"""Find the cases of a review folder (pure Python, no Qt): moved to :mod:`medseg.review.cases`,
re-exported here for the plugin's callers."""

from medseg.review import OK_STATUSES, ReviewCase, Worklist, discover  # noqa: F401

__all__ = ["ReviewCase", "Worklist", "discover", "OK_STATUSES"]
