"""The instance run's metrics.csv columns and its training curve (loss, AP50, lesion F1)."""

from __future__ import annotations

from pathlib import Path

from medseg.io.atomic import atomic_path


def metric_columns(class_names: list[str]) -> list[str]:
    return (["epoch", "lr", "train_loss", "seconds", "val_ap50", "val_lesion_f1", "val_lesion_precision",
             "val_lesion_recall"] + [f"val_lesion_f1_{n}" for n in class_names])


def metric_row(epoch: int, lr: float, loss: float, seconds: float, metrics: dict) -> dict:
    row = {"epoch": epoch, "lr": f"{lr:.6g}", "train_loss": f"{loss:.6f}", "seconds": f"{seconds:.2f}"}
    if metrics:
        for key in ("ap50", "lesion_f1", "lesion_precision", "lesion_recall"):
            row[f"val_{key}"] = f"{metrics[key]:.6f}"
        row.update({f"val_lesion_f1_{n}": f"{v:.6f}" for n, v in metrics["f1"].items()})
    return row


def plot_curve(path: Path, rows: list[dict]) -> None:
    """Training loss, validation mask AP50 and lesion F1 per epoch (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([int(r["epoch"]) for r in rows], [float(r["train_loss"]) for r in rows], color="tab:blue",
            label="train loss (Mask R-CNN sum)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:blue")
    ax2 = ax.twinx()
    for key, colour, name in (("val_ap50", "tab:orange", "mask AP50 (slices)"),
                              ("val_lesion_f1", "tab:green", "3D lesion F1")):
        pts = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in ("", None)]
        if pts:
            ax2.plot(*zip(*pts), "o-", color=colour, label=name)
    ax2.set_ylim(0, 1)
    fig.legend(loc="upper center", ncol=3, fontsize=8)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
