"""The run directory: every file a training run writes (docs/concepts/design.md: a run is self-describing).

    RUN_DIR/config.yaml     the resolved training config
    RUN_DIR/plan.yaml       the dataset plan used (preprocessing + shapes)
    RUN_DIR/labels.json     {"labels": {name: value}, "colors": {name: [r, g, b]}, "channels": {index: name}} (medseg.io.labels)
    RUN_DIR/run.json        dataset path, fold, train/val case ids, seed, medseg version
    RUN_DIR/last.pt         state at the end of the last completed epoch (resume from here)
    RUN_DIR/best.pt         the checkpoint with the best mean foreground validation Dice
    RUN_DIR/metrics.csv     one row per epoch: epoch, lr, train_loss, seconds, val_dice_mean, val_dice_<name>...
    RUN_DIR/tensorboard/    TensorBoard event files
    RUN_DIR/curve.png       training loss and validation Dice per epoch
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from medseg.io.atomic import atomic_path, write_csv_atomic
from medseg.io.atomic import write_text_atomic as write_text


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=1))


def write_yaml(path: Path, data) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100))


def metric_columns(labels: dict[str, int]) -> list[str]:
    names = [n for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v != 0]
    return ["epoch", "lr", "train_loss", "seconds", "val_dice_mean"] + [f"val_dice_{n}" for n in names]


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_metrics(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Rewrite metrics.csv (atomically) with ``rows`` -- rows after a resume point are dropped."""
    write_csv_atomic(path, rows, columns)


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
