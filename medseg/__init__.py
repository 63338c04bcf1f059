"""medseg: 3D medical image segmentation with geometry you can trust.

Public API (stable names; the heavy ones load torch only when first used)::

    import medseg

    ct = medseg.read_volume("data_samples/ct_chest/CTChest4.nrrd")   # Volume, RAS+ affine
    ct.geometry.orientation, ct.spacing                                # 'LPS', (3.05, 3.05, 10.0)
    medseg.write_mask_like(ct.array > 300, ct, "bone.nii.gz")          # exactly the CT grid

    plan = medseg.plan_dataset("phantoms/", spacing=(1.6, 1.6, 2.4))   # check + fingerprint + plan
    medseg.train("configs/unet_tumor_cpu.yaml", "phantoms/", "runs/demo", plan=plan)
    predictor = medseg.Predictor.from_run("runs/demo")                 # loads best.pt once
    mask = predictor(ct)                                               # Volume on the CT's grid
    medseg.predict_folder("runs/demo", ["study/"], "masks/")           # batch + manifest.csv
    medseg.evaluate_folders("masks/", "labels/")                       # Dice, HD95, NSD, lesions

The spatial convention (RAS+ mm world, ``[i, j, k]`` as stored) is defined in
:mod:`medseg.geometry`. The README's "Python API" section runs end to end (a test executes it).
"""

from medseg._lazy import lazy_exports
from medseg._version import __version__
from medseg.errors import Cancelled, GeometryError, InputError, MedsegError, MedsegWarning, OutputError
from medseg.geometry import Geometry
from medseg.io import read_volume, scan_dicom, write_mask_like, write_volume
from medseg.model.tasks import Task, register_task
from medseg.volume import Volume

#: name -> "module:attribute", imported on first use (keeps `import medseg` and the CLI fast).
_LAZY = {
    "load_dataset": "medseg.data.layout:load_dataset",
    "check_dataset": "medseg.data.validate:check_dataset",
    "plan_dataset": "medseg.data.plan:plan_dataset",
    "load_plan": "medseg.plans:load_plan",
    "write_phantom_dataset": "medseg.data.phantoms:write_phantom_dataset",
    "train": "medseg.train",  # the package is callable: medseg.train(config, dataset, out, ...)
    "Predictor": "medseg.predict.predictor:Predictor",
    "load_predictor": "medseg.predict.registry:load_predictor",
    "predict_folder": "medseg.predict.batch:predict_folder",
    "evaluate_case": "medseg.metrics:evaluate_case",
    "evaluate_folders": "medseg.metrics.folders:evaluate_folders",
}

__all__ = [
    "Volume",
    "Geometry",
    "read_volume",
    "write_volume",
    "write_mask_like",
    "scan_dicom",
    *_LAZY,
    "MedsegError",
    "InputError",
    "GeometryError",
    "OutputError",
    "Cancelled",
    "MedsegWarning",
    "__version__",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


# ---- the model kinds (medseg.model.tasks) -------------------------------------------------
# This facade is the one module above every layer, so it is where the trainers and predictors
# (medseg.train / medseg.predict for the U-Net, medseg.instance for the Mask R-CNN) are wired
# into the task table that medseg.train() and load_predictor() read; each import happens on
# first use. See docs/concepts/design.md ("Layers").

def _unet_trainer():
    from medseg.train.trainer import train

    return train


def _unet_predictor():
    from medseg.predict.predictor import Predictor

    return Predictor


def _instance_trainer():
    from medseg.instance.trainer import train_instance

    return train_instance


def _instance_predictor():
    from medseg.instance.predictor import InstancePredictor

    return InstancePredictor


def _nnunet_trainer():
    def refuse(*_args, **_kwargs):
        raise InputError("task nnunet: medseg predicts with nnU-Net model folders but does not train them; "
                         "train with nnUNetv2_train, or use a medseg config (task semantic or instance)")

    return refuse


def _nnunet_predictor():
    from medseg.nnunet.predictor import NnunetPredictor

    return NnunetPredictor


register_task(Task("semantic", trainer=_unet_trainer, predictor=_unet_predictor))
register_task(Task("instance", trainer=_instance_trainer, predictor=_instance_predictor, tables=("lesions",)))
register_task(Task("nnunet", trainer=_nnunet_trainer, predictor=_nnunet_predictor))
