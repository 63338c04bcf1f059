"""The instance run's metrics.csv columns and its training curve (loss, AP50, lesion F1)."""

from __future__ import annotations

from pathlib import Path

from medseg.io.atomic import atomic_path


def metric_columns(class_names: list[str]) -> list[str]:
    return (["epoch", "lr", "train_loss", "seconds", "val_ap50", "val_lesion_f1", "val_lesion_precision",
             "val_lesion_recall", "val_score_threshold", "val_seconds"] + [f"val_lesion_f1_{n}" for n in class_names])


def metric_row(epoch: int, lr: float, loss: float, seconds: float, metrics: dict) -> dict:
    row = {"epoch": epoch, "lr": f"{lr:.6g}", "train_loss": f"{loss:.6f}", "seconds": f"{seconds:.2f}"}
    if metrics:
        for key in ("ap50", "lesion_f1", "lesion_precision", "lesion_recall", "score_threshold", "seconds"):
            if key in metrics:
                row[f"val_{key}"] = f"{metrics[key]:.6g}"
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


# --- `medseg report` on an instance model's prediction folder ---------------------------------

#: At most this many lesions get their own colour and legend entry in an overlay picture.
MAX_LEGEND = 12


def is_instance_output(pred_dir: Path, run_dir: Path | None = None) -> bool:
    """True when ``pred_dir`` holds an instance model's predictions: ``run_dir``'s run.json says
    ``"task": "instance"``, or the folder holds ``<case>_lesions.csv`` tables."""
    from medseg.errors import InputError
    from medseg.model.rundir import RunDir

    if run_dir is not None and RunDir(run_dir).info_path.is_file():
        try:
            return RunDir(run_dir).task == "instance"
        except InputError:  # unreadable run.json or an unknown task: decide by the tables
            pass
    return any(Path(pred_dir).glob("*_lesions.csv"))


def read_lesion_table(pred_dir: Path, case: str) -> list[dict]:
    """Rows of ``PRED_DIR/<case>_lesions.csv`` (written by ``medseg predict``), [] when absent."""
    import csv

    path = Path(pred_dir) / f"{case}_lesions.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r.get("id") not in (None, "")]


def lesion_table_markdown(rows: list[dict]) -> list[str]:
    """The lesion table as markdown lines: id, class, score, volume (ml), longest axial diameter
    (mm), slices (first-last, as stored) and the RAS centroid (mm)."""
    if not rows:
        return ["no lesions found", ""]
    out = ["| lesion | class | score | volume (ml) | longest axial diameter (mm) | slices | centroid R, A, S (mm) |",
           "|---:|---|---:|---:|---:|---|---|"]
    for r in rows:
        out.append(f"| {r['id']} | {r['class']} | {float(r['score']):.2f} | {float(r['volume_ml']):.3f} | "
                   f"{float(r['longest_axial_diameter_mm']):.1f} | {r['first_slice']}-{r['last_slice']} | "
                   f"{r['centroid_r_mm']}, {r['centroid_a_mm']}, {r['centroid_s_mm']} |")
    return out + [""]


def instance_overlay_png(image, instances, path: Path, *, reference=None, rows: list[dict] | None = None,
                         title: str = "", window: tuple[float, float] = (-160.0, 240.0)) -> Path:
    """image | reference (if any, its foreground in one colour) | instance map with one colour per
    lesion and a legend ``lesion <id>: <class>, <diameter> mm``, at the axial slice with the most
    lesion voxels (radiological view, as :func:`medseg.overlay.overlay_png`).

    Args:
        image, instances: Volumes on one grid (``instances``: 0 background, lesion ids 1..N).
        reference: optional label Volume on the same grid (non-zero = reference foreground).
        rows: the case's lesion table (for the legend's class and diameter).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    from medseg.overlay import COLOURS, _ras, _rgba, axial, representative_slice

    img, sp = _ras(image)
    ids, _ = _ras(instances)
    ref = _ras(reference)[0] if reference is not None else None
    k = representative_slice(ids if ids.any() or ref is None else ref)
    base = np.clip((axial(img, k) - window[0]) / (window[1] - window[0]), 0, 1)
    panels = [("image", None)] + ([("reference", (ref > 0).astype(np.uint8))] if ref is not None else []) + \
        [("lesions", ids)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.2), dpi=100)
    for ax, (name, lab) in zip(np.atleast_1d(axes), panels):
        ax.imshow(base, cmap="gray", aspect=sp[1] / sp[0], interpolation="nearest")
        if lab is not None:
            ax.imshow(_rgba(axial(lab, k)), aspect=sp[1] / sp[0], interpolation="nearest")
        ax.set_title(f"{name} (axial {k})", fontsize=9)
        ax.set_axis_off()
    by_id = {int(r["id"]): r for r in rows or []}
    present = [int(v) for v in np.unique(ids) if v]
    handles = []
    for v in present[:MAX_LEGEND]:
        r = by_id.get(v)
        what = f"{r['class']}, {float(r['longest_axial_diameter_mm']):.0f} mm" if r else "lesion"
        handles.append(Patch(color=COLOURS[(v - 1) % len(COLOURS)], label=f"lesion {v}: {what}"))
    if len(present) > MAX_LEGEND:
        handles.append(Patch(color="white", label=f"+{len(present) - MAX_LEGEND} more"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=7, frameon=False)
    fig.suptitle(title + "   (R on the left, anterior up)", fontsize=9)
    rows_legend = -(-len(handles) // 4)
    fig.tight_layout(rect=(0, 0.05 * rows_legend, 1, 0.95))
    path = Path(path)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


class InstanceReport:
    """What ``medseg report`` does differently for an instance prediction folder: the overlay
    (one colour per lesion, lesion legend) and the per-case lesion table.

    ``medseg report`` calls :func:`report_hooks` once; ``None`` means a U-Net folder.
    """

    def __init__(self, pred_dir: Path):
        self.pred_dir = Path(pred_dir)

    def overlay(self, image, prediction, path, *, reference=None, title: str = "", **ignored) -> Path:
        """Same call as :func:`medseg.overlay.overlay_png` (``labels``, ``colors`` unused: lesions are numbered)."""
        case = title
        return instance_overlay_png(image, prediction, path, reference=reference,
                                    rows=read_lesion_table(self.pred_dir, case), title=title)

    def case_lines(self, case: str) -> list[str]:
        """Markdown lines: the case's lesion table (``<case>_lesions.csv``)."""
        rows = read_lesion_table(self.pred_dir, case)
        return [f"lesions ({len(rows)}; table `{case}_lesions.csv` in the prediction folder):", "",
                *lesion_table_markdown(rows)]


def report_hooks(pred_dir: Path, run_dir: Path | None = None) -> InstanceReport | None:
    """An :class:`InstanceReport` for an instance prediction folder, else None."""
    return InstanceReport(pred_dir) if is_instance_output(pred_dir, run_dir) else None
