"""Training: 3D U-Nets (MONAI DynUNet / UNet) and the slice-wise Mask R-CNN instance model.

    from medseg.train import train
    result = train("configs/unet_organs.yaml", "Dataset001_Phantoms", "runs/organs", epochs=50)
    result = train("configs/maskrcnn_lesions_cpu.yaml", "Dataset001_Phantoms", "runs/lesions")

:func:`train` dispatches on the config's ``task``: ``task: instance`` goes to
:func:`medseg.instance.trainer.train_instance`, everything else to
:func:`medseg.train.trainer.train`. ``medseg train`` (the CLI) calls the same function.
See the README sections "Train on your dataset" and "Lesion instances on a CPU".
"""

from medseg.train.config import TrainConfig, load_config

__all__ = ["train", "config_task", "TrainConfig", "load_config"]


def config_task(config) -> str:
    """``"instance"`` for an instance config (a YAML path or dict with ``task: instance``, or an
    `InstanceConfig`), else ``"semantic"`` (the U-Net; None means its defaults)."""
    from medseg.instance.config import is_instance_config

    return "instance" if is_instance_config(config) else "semantic"


def train(config=None, dataset=None, out=None, **kwargs):
    """Train the model a config describes; returns the trainer's result dict.

    ``task: instance`` configs: :func:`medseg.instance.trainer.train_instance` (keys ``best_f1``,
    ``best_epoch``, ``score_threshold``, ``run_dir``, ``task``...; U-Net-only options such as
    ``plan`` are ignored). Others: :func:`medseg.train.trainer.train` (``best_dice``...).
    Torch is imported lazily.
    """
    if config_task(config) == "instance":
        from medseg.instance.trainer import train_instance

        return train_instance(config, dataset, out, **kwargs)
    from medseg.train.trainer import train as _train

    return _train(config, dataset, out, **kwargs)


class _CallableModule(__import__("types").ModuleType):
    """``medseg.train(...)`` works although ``medseg.train`` is this package: calling the
    package calls :func:`train`."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
