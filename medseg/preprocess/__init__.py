"""Preprocessing between a source `Volume` and model space; every step is recorded and
inverted in reverse order, so a prediction lands on exactly the source grid.

Order: reorient to the closest canonical RAS axes (no interpolation) -> resample to the
plan's target spacing -> normalise intensities. See :class:`Preprocessor`.
"""

from medseg.preprocess.pipeline import Preprocessor, PreprocessRecord

__all__ = ["Preprocessor", "PreprocessRecord"]
