"""napari-medseg: a thin napari layer over medseg's public API.

The manifest (``napari.yaml``) is the public surface: a reader (NIfTI, NRRD/MHA, DICOM, placed
in RAS+ mm with the full affine), a labels writer (on the exact source grid), the bundled
chest CT sample, and two dock widgets (review, correction tools).

Plain-Python modules (no Qt): ``layers``, ``correction``, ``review.cases``, ``review.state``,
``review.export``. Qt lives only in ``review.widget`` and ``correction_widget``; medseg
itself never imports Qt or napari.
"""

__version__ = "0.1.0"
