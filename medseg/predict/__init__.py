"""Inference: a trained run directory -> masks on the exact source grid.

``Predictor.from_run(RUN_DIR)(volume) -> mask Volume`` is the Python API; ``load_predictor``
picks the predictor class from the run's ``run.json`` (``"task"``: ``semantic`` U-Net, or
``instance`` Mask R-CNN); :mod:`medseg.predict.batch` runs any of them over study folders.
"""

__all__ = ["Predictor", "CasePrediction", "load_predictor", "predict_folder"]


def __getattr__(name: str):  # lazy: keep `import medseg` light (no torch at import time)
    if name == "CasePrediction":
        from medseg.predict.result import CasePrediction

        return CasePrediction
    if name == "Predictor":
        from medseg.predict.predictor import Predictor

        return Predictor
    if name == "load_predictor":
        from medseg.predict.registry import load_predictor

        return load_predictor
    if name == "predict_folder":
        from medseg.predict.batch import predict_folder

        return predict_folder
    raise AttributeError(name)
