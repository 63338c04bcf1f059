"""Inference: a trained run directory -> masks on the exact source grid.

``Predictor.from_run(RUN_DIR)(volume) -> mask Volume`` is the Python API; ``load_predictor``
picks the predictor class from the run's ``run.json`` (``"task"``: ``semantic`` U-Net, or
``instance`` Mask R-CNN; an nnU-Net v2 results folder: ``nnunet``); ``describe_run`` reads a
run's classes, model id and channels without loading it; ``RunDir`` (:mod:`medseg.model.rundir`)
reads a run directory's files; :mod:`medseg.predict.batch` runs any of them over study folders.
Every predictor implements :class:`~medseg.predict.protocol.PredictorProtocol` and returns a
:class:`~medseg.predict.result.CasePrediction`.
"""

from medseg._lazy import lazy_exports

__all__ = ["Predictor", "PredictorProtocol", "CasePrediction", "load_predictor", "predict_folder", "run_task",
           "describe_run", "RunDir"]

# lazy: keep `import medseg` light (no torch at import time)
__getattr__, __dir__ = lazy_exports(__name__, {
    "Predictor": "medseg.predict.predictor:Predictor",
    "PredictorProtocol": "medseg.predict.protocol:PredictorProtocol",
    "CasePrediction": "medseg.predict.result:CasePrediction",
    "load_predictor": "medseg.predict.registry:load_predictor",
    "predict_folder": "medseg.predict.batch:predict_folder",
    "run_task": "medseg.predict.registry:run_task",
    "describe_run": "medseg.predict.registry:describe_run",
    "RunDir": "medseg.model.rundir:RunDir",
})
