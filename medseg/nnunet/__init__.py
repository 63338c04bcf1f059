"""nnU-Net v2 model folders served by medseg (``medseg predict --model RESULTS_FOLDER``).

:mod:`medseg.model.nnunet_folder` recognises and checks a results folder without nnU-Net;
:class:`~medseg.nnunet.predictor.NnunetPredictor` runs it with nnU-Net's preprocessing and
medseg's streaming windows and class-wise export (needs ``pip install 'medseg[nnunet]'``).
``medseg.load_predictor(FOLDER)`` picks it for such folders (task ``nnunet`` in
:mod:`medseg.model.tasks`). Guide: docs/guides/nnunet.md.
"""
