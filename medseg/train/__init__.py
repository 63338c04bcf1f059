"""Training: 3D U-Nets (MONAI DynUNet / UNet) and the slice-wise Mask R-CNN instance model.

    from medseg.train import train
    result = train("configs/unet_organs.yaml", "Dataset001_Phantoms", "runs/organs", epochs=50)
    result = train("configs/maskrcnn_lesions_cpu.yaml", "Dataset001_Phantoms", "runs/lesions")

:func:`train` dispatches on the config's ``task`` (:mod:`medseg.model.tasks`): ``task: instance``
goes to :func:`medseg.instance.trainer.train_instance`, everything else to
:func:`medseg.train.trainer.train`. ``medseg train`` (the CLI) calls the same function, and so
does ``medseg.train(...)``: the package is callable. See the README sections "Train on your
dataset" and "Lesion instances on a CPU".
"""

from medseg._lazy import callable_module, lazy_exports
from medseg.model.tasks import config_task, get_task

__all__ = ["train", "config_task", "TrainConfig", "load_config"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "TrainConfig": "medseg.model.config:TrainConfig",
    "load_config": "medseg.model.config:load_config",
})


def train(config=None, dataset=None, out=None, **kwargs):
    """Train the model a config describes; returns the trainer's result dict.

    ``task: instance`` configs: :func:`medseg.instance.trainer.train_instance` (keys ``best_f1``,
    ``best_epoch``, ``score_threshold``, ``run_dir``, ``task``...; U-Net-only options such as
    ``plan`` are ignored). Others: :func:`medseg.train.trainer.train` (``best_dice``...).
    Torch is imported lazily.
    """
    return get_task(config_task(config)).trainer()(config, dataset, out, **kwargs)


callable_module(__name__, train)  # medseg.train(...) == medseg.train.train(...)
