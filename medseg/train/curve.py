"""The U-Net run's ``metrics.csv`` columns and its ``curve.png`` (training loss and validation
Dice per epoch). The run directory itself (files, reading, writing) is
:class:`medseg.model.rundir.RunDir`; the instance model's columns and curve are in
:mod:`medseg.instance.report`."""

from __future__ import annotations

from pathlib import Path

from medseg.io.atomic import atomic_path


def metric_columns(labels: dict[str, int]) -> list[str]:
    names = [n for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v != 0]
    return ["epoch", "lr", "train_loss", "seconds", "val_dice_mean"] + [f"val_dice_{n}" for n in names]


def plot_curve(path: Path, rows: list[dict]) -> None:
    """Training loss and mean validation Dice per epoch (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [int(r["epoch"]) for r in rows]
    loss = [float(r["train_loss"]) for r in rows]
    val = [(int(r["epoch"]), float(r["val_dice_mean"])) for r in rows if r.get("val_dice_mean") not in ("", None)]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(ep, loss, color="tab:blue", label="train loss (Dice + CE)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:blue")
    ax2 = ax.twinx()
    if val:
        ax2.plot(*zip(*val), "o-", color="tab:green", label="validation mean foreground Dice")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("Dice", color="tab:green")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
