"""Where a model runs and at which precision: the one choice training and prediction share."""

from __future__ import annotations

import torch


def resolve_device(name: str, dist=None) -> torch.device:
    """``auto``: CUDA when available (this rank's GPU under torchrun), else CPU.

    ``dist``: the process's :class:`medseg.train.distributed.Dist` (its ``local_rank`` picks the
    GPU); None for a single process.
    """
    from medseg.errors import InputError

    local_rank = dist.local_rank if dist is not None else 0
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU is available here; use --device cpu or auto")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise InputError(f"--device {name}: choose auto, cpu or cuda")
    return torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device, cpu_bf16: bool = False):
    """Autocast dtype for ``precision`` (auto | bf16 | fp16 | fp32): on a GPU bf16, or fp16
    where bf16 is missing (auto), or what was asked. On the CPU None (fp32); with ``cpu_bf16``
    (a caller that supports it), an explicit ``bf16`` is honoured where the CPU has native bf16
    arithmetic (:func:`cpu_bf16_supported`; emulated bf16 is many times slower)."""
    if device.type != "cuda":
        return torch.bfloat16 if cpu_bf16 and precision == "bf16" and cpu_bf16_supported() else None
    if precision == "fp32":
        return None
    if precision == "fp16" or (precision == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def cpu_bf16_supported() -> bool:
    """True on CPUs with native bfloat16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast
    makes 3D convolutions about 2.5x faster (measured: bench/vs_nnunet.py, BENCHMARKS.md)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe is not None and probe()) or (amx is not None and amx()))
