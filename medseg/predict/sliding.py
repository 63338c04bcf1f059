"""Moved to :mod:`medseg.model.sliding` (training validation runs the same windows); this alias
keeps ``from medseg.predict.sliding import sliding_window_labels`` working for scripts
(``bench/``). New code imports :mod:`medseg.model.sliding`."""

from medseg.model.sliding import WindowResult, gaussian_map, sliding_window_labels, tta_flips, window_starts  # noqa: F401
