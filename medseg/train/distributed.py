"""DDP under ``torchrun``: the same ``medseg train`` command, one process per GPU (or CPU
processes with the gloo backend). Rank 0 validates, writes checkpoints and logs. The device of
a rank is :func:`medseg.model.device.resolve_device` (``resolve_device(name, dist)``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj):
        """Send a picklable object from rank 0 to every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device_type: str) -> Dist:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
