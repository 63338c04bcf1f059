"""``medseg predict``: segment image files, DICOM series and study folders with a trained run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.cli.common import int_at_least


def _overlap(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {v}")
    return v


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "predict",
        parents=parents,
        help="segment scans / DICOM series / study folders with a trained run (batch, resumable)",
        description="Segment every scan under INPUT (image files, DICOM series folders, or study folders "
        "searched recursively) with the run in --model. Masks land on exactly the input grid: X.nii.gz -> "
        "OUT/X.nii.gz, a DICOM series at INPUT/a/b/ -> OUT/a/b.nii.gz (OUT/a/b/seg.dcm with --format "
        "dicom-seg). OUT/manifest.csv has one row per case (status, error, seconds, volumes, model id). A "
        "failing case is recorded and the batch goes on; the exit code is 1 when any case failed. Ctrl-C "
        "leaves no half-written file; --resume continues.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, DICOM series folders or study folders")
    p.add_argument("--model", type=Path, required=True, metavar="RUN_DIR",
                   help="run directory written by `medseg train`, or an nnU-Net v2 results folder "
                        "(TRAINER__PLANS__CONFIGURATION; needs medseg[nnunet])")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="folder for masks and manifest.csv")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to compute (default auto)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="mirroring test-time augmentation (8 passes; slower, a bit better for models trained with "
                        "mirroring). Default: off for medseg runs, on for nnU-Net models (as nnUNetv2_predict)")
    p.add_argument("--overlap", type=_overlap, default=None, metavar="F",
                   help="sliding-window overlap in [0, 1) (default: the run's config, 0.5)")
    p.add_argument("--format", dest="fmt", default="nifti", choices=["nifti", "nrrd", "dicom-seg"],
                   help="mask format (default nifti; dicom-seg for DICOM inputs)")
    p.add_argument("--uncertainty", action="store_true",
                   help="also write OUT/<case>_uncertainty.nii.gz (entropy) and a per-case score in the manifest")
    p.add_argument("--resume", action="store_true", help="continue a batch in OUT_DIR: skip cases done with this model")
    p.add_argument("--overwrite", action="store_true",
                   help="redo every case of an existing OUT_DIR, and replace files there that no manifest row "
                        "accounts for (never an input; OUT_DIR inside an input folder is always refused)")
    p.add_argument("--organ-model", type=Path, metavar="RUN_DIR", help="stage-1 (organ) run of a cascade model")
    p.add_argument("--folds", nargs="+", metavar="F",
                   help="nnU-Net model folder: the folds to ensemble (e.g. 0 1 2, or all; default: every trained fold)")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="local (default) or a Ray cluster")
    p.add_argument("--address", help="Ray cluster address (e.g. 10.0.0.5:6379; default: start a local Ray)")
    p.add_argument("--workers", type=int_at_least(1), help="Ray workers (one model each; default: one per GPU, else 2)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from medseg.predict.batch import predict_folder

    if args.organ_model is not None:  # checked before any case starts: the one run-directory message
        from medseg.model.rundir import RunDir

        RunDir(args.organ_model, "--organ-model").checkpoint()

    s = predict_folder(args.model, args.inputs, args.out, device=args.device, tta=args.tta, overlap=args.overlap,
                       fmt=args.fmt, uncertainty=args.uncertainty, resume=args.resume, overwrite=args.overwrite,
                       engine=args.engine, address=args.address, workers=args.workers, organ_model=args.organ_model,
                       progress=not args.quiet, folds=args.folds)
    total = s.done + s.failed + s.skipped
    print(f"{s.done} done, {s.failed} failed, {s.skipped} skipped of {total} cases in {s.seconds:.1f} s; "
          f"manifest: {s.manifest}")
    for case, err in s.failed_cases:
        sys.stderr.write(f"failed: {case}: {err}\n")
    if s.failed:
        sys.stderr.write(f"error: {s.failed} case(s) failed (see {s.manifest}); fix them and rerun with --resume\n")
        return 1
    return 0
