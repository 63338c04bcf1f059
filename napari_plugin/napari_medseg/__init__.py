"""napari-medseg: a thin napari layer over medseg's public API (filled by the napari issue).

All Qt code lives in this package; medseg itself never imports Qt or napari.
"""

__version__ = "0.1.0"
