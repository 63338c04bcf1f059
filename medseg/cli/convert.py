"""``medseg convert INPUT OUTPUT``: any supported input to NIfTI / NRRD / MHA, by the output suffix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.cli.common import add_read_options, read_kwargs
from medseg.errors import OutputError
from medseg.io import read_volume, write_volume
from medseg.io.atomic import clean_stale_temps, safe_resolve
from medseg.io.formats import output_format
from medseg.io.itk import data_file_names, mhd_data_files


def add_parser(sub, parents) -> None:
    p = sub.add_parser(
        "convert",
        parents=parents,
        help="convert a scan or mask to .nii.gz / .nii / .nrrd / .mha / .mhd",
        description="Convert a scan or mask (NIfTI, NRRD/MHA, DICOM file/series/folder) to the "
        "format named by OUTPUT's suffix. Geometry and voxel values are preserved; the output is "
        "written atomically and never replaces the input.",
    )
    p.add_argument("input", type=Path, help="image file, DICOM file, or DICOM folder")
    p.add_argument("output", type=Path, help="output file: .nii.gz, .nii, .nrrd, .seg.nrrd, .mha or .mhd")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT (for .mhd also its .raw/.zraw data file) if it already exists; a file of "
                        "the INPUT is never replaced")
    add_read_options(p)


def run(args: argparse.Namespace) -> int:
    output_format(args.output)  # fail on a bad suffix before reading a large input
    if args.output.exists() and args.input.exists() and args.output.resolve() == args.input.resolve():
        raise OutputError(f"OUTPUT is the INPUT ({args.input}); refusing to overwrite it -- choose another path")
    if args.output.exists() and not args.overwrite:  # say so before reading a large input
        raise OutputError(f"{args.output} already exists; choose another path or allow overwriting (--overwrite)")
    _check_companions(args)
    vol = read_volume(args.input, **read_kwargs(args))
    clean_stale_temps(args.output.parent, final=args.output.name)  # left by a killed earlier convert
    out = write_volume(vol, args.output, overwrite=args.overwrite)
    sys.stderr.write(f"wrote {out} ({vol.geometry.describe()}, {vol.dtype})\n")
    return 0


def _input_files(path: Path) -> set[Path]:
    """Every file the input consists of, resolved: the file, an .mhd/.nhdr's data file, a folder's files."""
    if path.is_dir():
        return {safe_resolve(p) for p in path.rglob("*") if p.is_file()}
    files = {safe_resolve(path)}
    if path.name.lower().endswith((".mhd", ".nhdr")):
        files |= {safe_resolve(p) for p in mhd_data_files(path)}
    return files


def _check_companions(args: argparse.Namespace) -> None:
    """An ``.mhd`` output also writes ``X.raw``/``X.zraw``: those count as outputs. Never replace
    an input's file; replace another file of that name only with --overwrite."""
    out = args.output
    targets = [out] + data_file_names(out)
    inputs = _input_files(args.input) if args.input.exists() else set()
    for t in targets:
        if (t.exists() or t.is_symlink()) and safe_resolve(t) in inputs:
            raise OutputError(f"writing {out} would replace {t}, a file of the INPUT {args.input}; refusing -- "
                              "choose another output name or folder")
    for t in targets[1:]:
        if (t.exists() or t.is_symlink()) and not args.overwrite:
            raise OutputError(f"writing {out} would replace {t} (its data file), which exists and may belong to "
                              "another header; choose another name or allow overwriting (--overwrite)")
