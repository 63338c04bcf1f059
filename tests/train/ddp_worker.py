"""Run under torchrun: trains the tiny config with DDP, then each rank saves its weights."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medseg.train.trainer import train  # noqa: E402
from tests.train.conftest import tiny_config  # noqa: E402


def main() -> None:
    ds, plan, out, dump = map(Path, sys.argv[1:5])
    result = train(tiny_config(epochs=2), ds, out, plan=plan, device="cpu", progress=False)
    rank = int(__import__("os").environ["RANK"])
    torch.save({k: v.detach().clone() for k, v in result["model"].state_dict().items()}, dump / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
