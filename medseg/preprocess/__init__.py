"""Preprocessing between a source `Volume` and model space; every step is recorded and
inverted in reverse order, so a prediction lands on exactly the source grid.

Order: reorient to the closest canonical RAS axes (no interpolation) -> resample to the
plan's target spacing -> normalise intensities. See :class:`Preprocessor`.
"""

__all__ = ["Preprocessor", "PreprocessRecord"]


def __getattr__(name: str):
    # Lazy: importing medseg.preprocess.orientation must not pull in torch (CLI start-up).
    if name in __all__:
        from medseg.preprocess import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
