"""Preprocessing between a source `Volume` and model space; every step is recorded and
inverted in reverse order, so a prediction lands on exactly the source grid.

Order: reorient to the closest canonical RAS axes (no interpolation) -> resample to the
plan's target spacing -> normalise intensities. See :class:`Preprocessor`.
"""

from medseg._lazy import lazy_exports

__all__ = ["Preprocessor", "PreprocessRecord", "canonical_transform"]

# lazy: importing medseg.preprocess.orientation must not pull in torch (resampling; CLI start-up)
__getattr__, __dir__ = lazy_exports(__name__, {
    "Preprocessor": "medseg.preprocess.pipeline:Preprocessor",
    "PreprocessRecord": "medseg.preprocess.pipeline:PreprocessRecord",
    "canonical_transform": "medseg.preprocess.orientation:canonical_transform",
})
