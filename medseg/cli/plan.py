"""``medseg plan DIR``: fingerprint a dataset and write the plan (YAML) training will use."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from medseg.cli.common import int_at_least
from medseg.errors import InputError, OutputError


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "plan",
        parents=parents,
        help="fingerprint a dataset and write its training plan (YAML)",
        description="Validate the dataset, compute its fingerprint (spacings, shapes, foreground "
        "intensities, class fractions) and write a plan: target spacing, normalisation, patch and "
        "batch size, network shape. The plan is YAML you can edit; `medseg train` reads it.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder (nnU-Net v2 or Decathlon layout)")
    p.add_argument("--out", type=Path, help="plan file to write (default: ./<dataset folder name>_plan.yaml)")
    p.add_argument("--gpu-memory", type=float, metavar="GB",
                   help="GPU memory budget in GB (default: the GPU's memory, or 8 without a GPU)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="target spacing in mm instead of the automatic one (coarser = faster, e.g. on a CPU)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="the device that will train: cuda sizes patch and batch for the GPU's memory; "
                        "cpu sizes spacing, network width and patch for CPU speed, from the dataset "
                        "(default auto: cuda when a GPU is there, else cpu)")
    p.add_argument("--base-filters", type=int_at_least(4), default=None, metavar="N",
                   help="feature maps of the first network stage, doubling per stage (default 32 for a "
                        "GPU, as nnU-Net; 16 for a CPU, which trains about 3x faster there)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing plan file")


def run(args: argparse.Namespace) -> int:
    from medseg.cli.progress import progress_bar
    from medseg.data.fingerprint import compute_fingerprint
    from medseg.data.layout import load_dataset
    from medseg.data.plan import default_gpu_memory, make_plan, plan_device, save_plan
    from medseg.data.validate import check_dataset

    if args.spacing is not None and not all(math.isfinite(v) and v > 0 for v in args.spacing):
        raise InputError(f"--spacing {' '.join(map(str, args.spacing))}: spacings must be finite numbers > 0 mm")
    if args.gpu_memory is not None and not (math.isfinite(args.gpu_memory) and args.gpu_memory > 1.0):
        raise InputError(f"--gpu-memory {args.gpu_memory} GB is too small; give the GPU's memory in GB (e.g. 8)")
    spec = load_dataset(args.dataset)
    out = args.out or Path(f"{spec.root.resolve().name}_plan.yaml")
    _refuse_dataset_file(out, spec.root)
    if out.exists() and not args.overwrite:
        raise OutputError(f"{out} already exists; choose another --out or pass --overwrite")
    with progress_bar("checking", len(spec.cases)) as advance:
        report = check_dataset(spec, progress=advance)
    if not report.ok:
        for line in report.lines()[:20]:
            sys.stderr.write(f"  {line}\n")
        raise InputError(f"{len(report.problems)} problem(s) in the dataset (listed above; "
                         f"see `medseg check-dataset {args.dataset}`); fix them before planning")
    with progress_bar("fingerprint", len(spec.cases)) as advance:
        fp = compute_fingerprint(spec, progress=advance)
    if args.spacing is not None:
        _refuse_huge_grid(fp, args.spacing)
    plan = make_plan(fp, args.gpu_memory or default_gpu_memory(), spacing=args.spacing, base_filters=args.base_filters,
                     device=plan_device(args.device))
    save_plan(plan, out)
    t, p = plan.preprocessing, plan.training
    print(f"wrote {out}")
    budget = "CPU plan" if plan.device == "cpu" else f"~{plan.estimated_memory_gb:g} GB of {plan.gpu_memory_gb:g} GB"
    print(f"  target spacing {list(t.target_spacing)} mm, patch {list(p.patch_size)}, batch {p.batch_size}, "
          f"{len(plan.network.strides)} stages, filters {plan.network.filters[0]}..{plan.network.filters[-1]}, {budget}")
    c = plan.classes
    print(f"  small structures (weighted with class_weights: auto): {', '.join(c.small_structures) or 'none'}; "
          f"keep largest component (keep_largest: auto): {', '.join(c.keep_largest) or 'none'}")
    print("  normalisation " + ", ".join(
        f"ch{n.channel} {n.scheme}" + (f" clip {[round(c, 1) for c in n.clip]}" if n.clip else "") for n in t.normalization))
    return 0


#: Voxels of one case resampled to the plan's spacing above which planning stops (4 GB as float32).
MAX_CASE_VOXELS = 1_000_000_000


def _refuse_dataset_file(out: Path, root: Path) -> None:
    """The plan must never replace a file of the dataset it describes (dataset.json, images, labels,
    splits.json), --overwrite or not."""
    if not out.exists():
        return
    try:
        inside = out.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        inside = False
    if inside:
        raise OutputError(f"--out {out} is a file of the dataset {root}; the plan never replaces dataset files, "
                          "even with --overwrite -- write it elsewhere (e.g. ./plan.yaml)")


def _refuse_huge_grid(fp: dict, spacing) -> None:
    """Estimate each case's voxels at ``spacing`` (mm) before anything is allocated; refuse when the
    largest would exceed :data:`MAX_CASE_VOXELS` (e.g. --spacing 0.01 0.01 0.01)."""
    import numpy as np

    shapes = np.asarray(fp["shapes"], float)
    spacings = np.asarray(fp["spacings"], float)
    voxels = np.prod(shapes * spacings / np.asarray(spacing, float), axis=1)
    worst = float(voxels.max()) if voxels.size else 0.0
    if not worst <= MAX_CASE_VOXELS:
        raise InputError(f"--spacing {' '.join(f'{v:g}' for v in spacing)} mm would resample the largest case to "
                         f"{worst:.3g} voxels (limit {MAX_CASE_VOXELS:.0e}); choose a coarser spacing "
                         "(the automatic plan uses the dataset's median spacing)")
