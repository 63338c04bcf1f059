"""What training and prediction share, below both (so neither imports the other).

    config.py      the U-Net run configuration (``config.yaml``): ``TrainConfig``, ``load_config``
    network.py     ``build_network``: MONAI DynUNet / UNet from the config and the plan
    checkpoint.py  ``best.pt`` / ``last.pt``: save, load and check (``weights_only``)
    device.py      ``resolve_device`` (auto / cpu / cuda) and ``autocast_dtype`` (precision)
    sliding.py     streaming Gaussian sliding windows over a model-space image
    inversion.py   model-space prediction back onto exactly the source grid
    cascade.py     ``organ_box``: the crop of a two-stage cascade
    tasks.py       the model kinds (``semantic``, ``instance``): which trainer, which predictor
    rundir.py      ``RunDir``: a run directory read (task, labels, plan, weights, model id), its file
                   names and error messages in one place
    nnunet_folder.py  an nnU-Net v2 results folder served as a model (``dataset.json``, ``fold_*``)

Importing this package imports nothing heavy; torch and MONAI load with the modules that need
them.
"""
