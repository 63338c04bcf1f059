"""``medseg convert INPUT OUTPUT``: any supported input to NIfTI / NRRD / MHA, by the output suffix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.cli.common import add_read_options, read_kwargs
from medseg.errors import OutputError
from medseg.io import read_volume, write_volume
from medseg.io.formats import output_format


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
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it already exists")
    add_read_options(p)


def run(args: argparse.Namespace) -> int:
    output_format(args.output)  # fail on a bad suffix before reading a large input
    if args.output.exists() and args.input.exists() and args.output.resolve() == args.input.resolve():
        raise OutputError(f"OUTPUT is the INPUT ({args.input}); refusing to overwrite it -- choose another path")
    if args.output.exists() and not args.overwrite:  # say so before reading a large input
        raise OutputError(f"{args.output} already exists; choose another path or allow overwriting (--overwrite)")
    vol = read_volume(args.input, **read_kwargs(args))
    out = write_volume(vol, args.output, overwrite=args.overwrite)
    sys.stderr.write(f"wrote {out} ({vol.geometry.describe()}, {vol.dtype})\n")
    return 0
