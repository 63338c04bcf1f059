"""The U-Net from config values and the plan (explicit registry, no subclasses).

Networks come from MONAI: ``DynUNet`` (nnU-Net-like, shaped by the plan's kernels/strides/
filters) and ``UNet`` (residual units). Input: float32 (B, C, X, Y, Z) in model space;
output: logits (B, n_classes, X, Y, Z). Training builds it to learn, prediction to load
``best.pt`` into it.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet, UNet

from medseg.model.config import TrainConfig
from medseg.plans import Plan


def _dynunet(plan: Plan, n_in: int, n_out: int, filters, deep_supervision: bool = False) -> torch.nn.Module:
    net = plan.network
    return DynUNet(
        spatial_dims=3, in_channels=n_in, out_channels=n_out,
        kernel_size=[list(k) for k in net.kernels], strides=[list(s) for s in net.strides],
        upsample_kernel_size=[list(s) for s in net.strides[1:]], filters=list(filters),
        norm_name=("instance", {"affine": True}), act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        res_block=False, deep_supervision=deep_supervision,
        deep_supr_num=len(net.strides) - 2,  # every decoder stage but the lowest (DynUNet has >= 3 stages)
    )


def _unet(plan: Plan, n_in: int, n_out: int, filters, deep_supervision: bool = False) -> torch.nn.Module:
    # deep_supervision: registry signature only; config validation refuses it for UNet
    strides = [tuple(s) for s in plan.network.strides[1:]]
    return UNet(spatial_dims=3, in_channels=n_in, out_channels=n_out, channels=list(filters),
                strides=strides, num_res_units=2, norm="instance")


#: Explicit name -> builder registry (docs/concepts/design.md convention 4).
NETWORKS = {"DynUNet": _dynunet, "UNet": _unet}


def build_network(cfg: TrainConfig, plan: Plan, n_in: int, n_out: int) -> torch.nn.Module:
    filters = cfg.model.filters or plan.network.filters
    if len(filters) != len(plan.network.strides):
        from medseg.config import ConfigError

        raise ConfigError(f"model.filters: need {len(plan.network.strides)} values (one per network stage), got {len(filters)}")
    return NETWORKS[cfg.model.name](plan, n_in, n_out, filters, cfg.model.deep_supervision)
