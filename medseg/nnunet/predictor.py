"""`NnunetPredictor`: an nnU-Net v2 model folder applied to scans with nnU-Net's semantics,
result on exactly the source grid (docs/guides/nnunet.md).

What comes from nnU-Net itself (the optional ``nnunetv2`` dependency, ``pip install
'medseg[nnunet]'``): reading the folder (:meth:`nnUNetPredictor.initialize_from_trained_model_folder`:
trainer class, network from the plans, fold weights, allowed mirroring axes), the preprocessing
(the configuration's preprocessor: transpose, crop to non-zero, normalisation, resampling to the
target spacing), the Gaussian importance map, the padding of small images, and the resampling
function of its export. What is medseg's: the sliding window (:mod:`medseg.model.sliding`: windows
batched, the folds evaluated per window, float32 accumulation), and the export, which resamples
the blended logits one class at a time keeping a running argmax, instead of all classes at
once (the same arithmetic per class, so the same labels, with one class of memory).

Arrays: a medseg Volume is indexed [i, j, k] in file order; nnU-Net's SimpleITK/nibabel readers
hand it (k, j, i) with spacing reversed, so the image goes in as ``array.transpose(2, 1, 0)`` and
the mask comes back the same way, on the input's own grid and affine.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time

import numpy as np
import torch

from medseg.errors import InputError
from medseg.model.device import cpu_bf16_supported, resolve_device
from medseg.model.sliding import sliding_window_labels
from medseg.model.nnunet_folder import DEFAULT_CHECKPOINT, ModelFolder, open_model_folder
from medseg.predict.postprocess import class_volumes
from medseg.predict.protocol import PredictorProtocol
from medseg.predict.result import CasePrediction
from medseg.volume import Volume

#: nnU-Net image readers whose array is the stored voxel order transposed (k, j, i).
SUPPORTED_READERS = ("SimpleITKIO", "NibabelIO")


def _import_nnunet():
    try:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    except ImportError as e:
        raise InputError("this is an nnU-Net model folder; running it needs nnU-Net v2: "
                         f"pip install 'medseg[nnunet]' ({e})") from None
    return nnUNetPredictor


def _autocast(precision: str, device: torch.device):
    """The autocast dtype of ``precision`` on ``device`` (None: fp32); see ``from_run``."""
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16  # nnU-Net's own autocast on a GPU
        return torch.bfloat16 if cpu_bf16_supported() else None
    if precision not in choices:
        raise InputError(f"--precision {precision}: choose auto, fp32, bf16 or fp16")
    return choices[precision]


class _Ensemble(torch.nn.Module):
    """The mean of the folds' logits for one batch of windows (nnU-Net averages the folds'
    blended logits; the blending is linear, so averaging per window is the same). For a 2D
    configuration the windows are (B, C, 1, Y, X) and each slice goes through the 2D network."""

    def __init__(self, networks: list[torch.nn.Module], two_d: bool):
        super().__init__()
        self.networks = torch.nn.ModuleList(networks)
        self.two_d = two_d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_d:
            x = x[:, :, 0]
        out = None
        for net in self.networks:
            o = net(x).float()
            out = o if out is None else out + o
        out = out / len(self.networks)
        return out[:, :, None] if self.two_d else out


class NnunetPredictor(PredictorProtocol):
    """A loaded nnU-Net model folder (implements :class:`~medseg.predict.protocol.PredictorProtocol`).

    Attributes: ``labels`` {name: value} from its dataset.json, ``model_id``, ``run_dir`` (the
    model folder), ``n_channels``, ``folds``, ``mirror_axes`` (None: no mirroring), ``overlap``.
    """

    def __init__(self, folder: ModelFolder, plans_manager, configuration, model: _Ensemble, device: torch.device,
                 mirror_axes, overlap: float, batch_size: int, autocast_dtype=None):
        self.folder, self.model, self.device = folder, model, device
        self.plans_manager, self.configuration = plans_manager, configuration
        self.run_dir = folder.path
        self.labels = dict(folder.labels)
        self.n_channels = len(folder.channels)
        self.folds = folder.folds
        self.mirror_axes, self.overlap, self.batch_size = mirror_axes, overlap, batch_size
        self.autocast_dtype = autocast_dtype
        self.model_id = folder.model_id
        self.patch = tuple(int(p) for p in self.configuration.patch_size)

    @classmethod
    def from_run(cls, run_dir, *, device: str = "auto", tta: bool | None = None, overlap: float | None = None,
                 organ_model=None, folds: list[str | int] | None = None, checkpoint: str = DEFAULT_CHECKPOINT,
                 batch_size: int | None = None, precision: str = "auto") -> "NnunetPredictor":
        """Load the model folder ``run_dir`` once.

        Args:
            tta: mirroring as nnU-Net: None or True mirrors along the axes the checkpoint allows
                (``nnUNetv2_predict``'s default), False does not (its ``--disable_tta``).
            overlap: window overlap; nnU-Net's step size is ``1 - overlap`` (default 0.5).
            folds: folds to ensemble (default: every trained fold, see
                :func:`~medseg.model.nnunet_folder.open_model_folder`).
            checkpoint: the file in each fold (``checkpoint_final.pth``, or ``checkpoint_best.pth``).
            batch_size: windows per forward pass (default 2).
            precision: ``auto`` (bf16 autocast on CPUs with native bf16, fp16 autocast on a GPU
                as nnU-Net, fp32 otherwise), ``fp32``, ``bf16`` or ``fp16``.
        Raises:
            InputError: not a model folder, missing folds, nnunetv2 missing, unsupported model.
        """
        if organ_model is not None:
            raise InputError("--organ-model is for medseg cascade runs; an nnU-Net model folder predicts alone")
        if overlap is not None and not 0 <= overlap < 1:
            raise InputError(f"--overlap {overlap}: must be in [0, 1)")
        folder = open_model_folder(run_dir, folds, checkpoint)
        reader = folder.plans.get("image_reader_writer", "SimpleITKIO")
        if reader not in SUPPORTED_READERS:
            raise InputError(f"{folder.path}: its plans read images with {reader}; medseg runs nnU-Net models "
                             f"planned with {' or '.join(SUPPORTED_READERS)} -- predict this one with nnUNetv2_predict")
        cfg = folder.plans["configurations"][folder.configuration]
        if cfg.get("previous_stage"):
            raise InputError(f"{folder.path}: a cascade stage ({folder.configuration} needs the "
                             f"{cfg['previous_stage']} prediction); run a 3d_fullres or 2d model folder")
        dev = resolve_device(device)
        amp = _autocast(precision, dev)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a note about CPU devices on every start
            nn = _import_nnunet()(tile_step_size=1 - (0.5 if overlap is None else overlap),
                                  use_mirroring=tta is not False, device=dev,
                                  perform_everything_on_device=dev.type == "cuda", verbose=False,
                                  verbose_preprocessing=False, allow_tqdm=False)
        try:
            nn.initialize_from_trained_model_folder(str(folder.path), list(folder.folds), checkpoint)
        except Exception as e:  # noqa: BLE001 -- a custom trainer or a corrupt checkpoint: say which
            raise InputError(f"{folder.path}: nnU-Net could not load it ({type(e).__name__}: {e}); check that the "
                             "trainer class is importable and the checkpoints are complete") from e
        if nn.label_manager.has_regions:
            raise InputError(f"{folder.path}: a region-based model; predict it with nnUNetv2_predict")
        networks = [nn.network]  # loaded with the first fold's weights
        for params in nn.list_of_parameters[1:]:
            networks.append(copy.deepcopy(nn.network))
            networks[-1].load_state_dict(params)
        networks = [net.to(dev).eval() for net in networks]
        two_d = len(nn.configuration_manager.patch_size) == 2
        axes = nn.allowed_mirroring_axes if tta is not False else None
        if axes is not None and two_d:
            axes = tuple(a + 1 for a in axes)  # 2D axes (y, x) are the windows' axes 1, 2
        return cls(folder, nn.plans_manager, nn.configuration_manager, _Ensemble(networks, two_d), dev,
                   None if axes is None else tuple(axes), 0.5 if overlap is None else overlap, batch_size or 2, amp)

    def __call__(self, volume: Volume | list[Volume]) -> Volume:
        """The mask Volume (class values) of one scan, on its exact grid."""
        return self.predict(volume).mask

    def predict(self, channels: Volume | list[Volume], *, progress=None, cancel=None,
                uncertainty: bool = False) -> CasePrediction:
        """Predict one case (one Volume per channel of dataset.json's ``channel_names``, one grid).

        ``progress(done, total)`` after each window batch; setting ``cancel`` raises
        :class:`medseg.errors.Cancelled`. With ``uncertainty`` the result holds the entropy (nats)
        of the blended softmax on the source grid (0 outside nnU-Net's non-zero crop) and
        ``uncertainty_score`` (mean entropy / ln(classes) over predicted foreground).
        """
        channels = [channels] if isinstance(channels, Volume) else list(channels)
        if len(channels) != self.n_channels:
            raise InputError(f"the model expects {self.n_channels} input channel(s) "
                             f"({', '.join(self.folder.channels.values())}); got {len(channels)}")
        ref = channels[0]
        t0 = time.perf_counter()
        data = np.stack([c.array.transpose(2, 1, 0) for c in channels]).astype(np.float32, copy=False)
        props = {"spacing": [float(s) for s in ref.spacing[::-1]]}
        pre = self.configuration.preprocessor_class(verbose=False)
        data, _, props = pre.run_case_npy(data, None, props, self.plans_manager, self.configuration,
                                          self.folder.dataset)
        t1 = time.perf_counter()
        res, model_shape = self._windows(data, progress, cancel, uncertainty)
        del data
        t2 = time.perf_counter()
        labels = self._export(res.logits, props, model_shape)
        res.logits = None
        mask = Volume(self._to_source(labels, props), ref.affine.copy(), {"model_id": self.model_id})
        unc, score = None, None
        if uncertainty:
            n = len(self.labels)
            ent = res.entropy / np.log(n)
            fg = res.labels > 0
            score = round(float(ent[fg].mean() if fg.any() else ent.mean()), 5)
            full = self._resample(res.entropy[None].astype(np.float32), props)[0]
            unc = Volume(self._to_source(full, props, np.float32), ref.affine.copy())
        t3 = time.perf_counter()
        return CasePrediction(mask, dict(self.labels), class_volumes(mask, self.labels), unc, score,
                              timings={"preprocess": t1 - t0, "network": t2 - t1, "postprocess": t3 - t2})

    def _windows(self, data: np.ndarray, progress, cancel, uncertainty: bool):
        """Blended logits (float16, C x model grid) of the preprocessed ``data`` (C, *model grid)."""
        from acvl_utils.cropping_and_padding.padding import pad_nd_image
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian

        two_d = len(self.patch) == 2
        if two_d:
            padded, revert = pad_nd_image(data, (data.shape[1], *self.patch), "constant", {"constant_values": 0}, True, None)
            patch = (1, *self.patch)
        else:
            padded, revert = pad_nd_image(data, self.patch, "constant", {"constant_values": 0}, True, None)
            patch = self.patch
        # nnU-Net's map, float16 as its predictor uses it
        gauss = compute_gaussian(tuple(self.patch), sigma_scale=1 / 8, value_scaling_factor=10,
                                 dtype=torch.float16, device=torch.device("cpu")).float()
        res = sliding_window_labels(self.model, padded, patch, len(self.labels), overlap=self.overlap,
                                    batch_size=self.batch_size, device=self.device, autocast_dtype=self.autocast_dtype,
                                    tta=self.mirror_axes if self.mirror_axes else False, logits=True,
                                    entropy=uncertainty, importance=gauss.reshape(patch), progress=progress,
                                    cancel=cancel)
        crop = tuple(revert[1:])
        res.logits = res.logits[(slice(None), *crop)]
        res.labels = res.labels[crop]
        if res.entropy is not None:
            res.entropy = res.entropy[crop]
        return res, data.shape[1:]

    def _resample(self, arr: np.ndarray, props: dict) -> np.ndarray:
        """``arr`` (C, *model grid) back to the cropped source shape with the configuration's
        probability resampling (nnU-Net's export: current spacing -> the scan's spacing)."""
        spacing = [props["spacing"][i] for i in self.plans_manager.transpose_forward]
        current = (self.configuration.spacing if len(self.configuration.spacing) == 3
                   else [spacing[0], *self.configuration.spacing])
        return self.configuration.resampling_fn_probabilities(arr, props["shape_after_cropping_and_before_resampling"],
                                                              current, spacing)

    def _export(self, logits: np.ndarray, props: dict, model_shape) -> np.ndarray:
        """Argmax of the resampled logits, one class at a time (the running maximum keeps the
        first class on ties, as ``argmax`` does). Returns uint8/uint16 labels on the cropped grid."""
        best = labels = None
        for c in range(logits.shape[0]):
            r = self._resample(logits[c:c + 1], props)[0]
            if best is None:
                best = r
                labels = np.zeros(r.shape, np.uint8 if len(self.labels) < 256 else np.uint16)
            else:
                better = r > best
                labels[better] = c
                np.maximum(best, r, out=best)
        return labels

    def _to_source(self, cropped: np.ndarray, props: dict, dtype=None) -> np.ndarray:
        """Paste ``cropped`` into the non-zero bounding box, undo the transpose and return the
        (i, j, k) array of the input Volume."""
        from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

        full = np.zeros(props["shape_before_cropping"], dtype or cropped.dtype)
        full = insert_crop_into_image(full, cropped, props["bbox_used_for_cropping"])
        full = full.transpose(self.plans_manager.transpose_backward)
        return np.ascontiguousarray(full.transpose(2, 1, 0))
