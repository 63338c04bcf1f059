"""Training 3D U-Nets (MONAI DynUNet / UNet) on nnU-Net / Decathlon datasets.

    from medseg.train import train
    result = train("configs/unet_organs.yaml", "Dataset001_Phantoms", "runs/organs", epochs=50)

See :func:`medseg.train.trainer.train` and the README section "Train on your dataset".
"""

from medseg.train.config import TrainConfig, load_config

__all__ = ["train", "TrainConfig", "load_config"]


def train(*args, **kwargs):
    """See :func:`medseg.train.trainer.train` (imported lazily: torch is heavy)."""
    from medseg.train.trainer import train as _train

    return _train(*args, **kwargs)


class _CallableModule(__import__("types").ModuleType):
    """``medseg.train(...)`` works although ``medseg.train`` is this package: calling the
    package calls :func:`medseg.train.trainer.train`."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
