"""Slice-wise Mask R-CNN instance segmentation, linked across slices into 3D lesions.

Each lesion (a connected tumour, for example) becomes its own object with an id, a class, a
volume and a longest axial diameter. The pieces, one job per module:

    config.py      InstanceConfig: the validated YAML (``task: instance``)
    slices.py      source Volume <-> canonical RAS axial slices at the in-plane target spacing
    channels.py    three input channels per slice: CT windows or 2.5D neighbour slices
    extract.py     per-slice connected components of chosen classes -> boxes + masks (targets)
    dataset.py     training crops: cases in memory, lesion-centred / organ-box crops, seeded flips, batches
    model.py       torchvision MaskRCNN: ResNet-18/34/50 + GroupNorm + FPN (CPU) or maskrcnn_resnet50_fpn(_v2)
    linking.py     per-slice detections -> 3D lesions (overlap tracking)
    lesions.py     the lesion table (id, class, score, ml, slices, diameter, RAS centroid)
    inference.py   one volume -> instance map on the source grid + lesion rows
    validation.py  slice-level mask AP50 and 3D lesion F1 over score thresholds (the stored threshold)
    trainer.py     ``train_instance``: the run directory, checkpoints, resume, Ctrl-C
    predictor.py   ``InstancePredictor``: what ``medseg predict`` uses for an instance run

Train with ``medseg train --config configs/maskrcnn_lesions_cpu.yaml --dataset DIR --out RUN`` (or
``medseg.train(config, dataset, out)``); load a run with ``medseg.load_predictor(RUN)``.
"""

__all__ = ["InstanceConfig", "load_instance_config", "train_instance", "InstancePredictor"]


def __getattr__(name: str):  # lazy: keep `import medseg` free of torch
    if name in ("InstanceConfig", "load_instance_config"):
        from medseg.instance import config

        return getattr(config, name)
    if name == "train_instance":
        from medseg.instance.trainer import train_instance

        return train_instance
    if name == "InstancePredictor":
        from medseg.instance.predictor import InstancePredictor

        return InstancePredictor
    raise AttributeError(name)
