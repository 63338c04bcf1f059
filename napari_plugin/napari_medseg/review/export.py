"""Export reviewed cases as an nnU-Net dataset (pure Python, no Qt): moved to
:mod:`medseg.review.export` (shared with ``medseg review DIR --export OUT``), re-exported here."""

from medseg.review import DEFAULT_STATUSES, ExportResult, export_nnunet  # noqa: F401

__all__ = ["export_nnunet", "ExportResult", "DEFAULT_STATUSES"]
