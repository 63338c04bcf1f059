"""Read-speed benchmark: medseg's readers vs the plain library calls they build on.

Each case is timed in this one process, repeated, and the median compared:

* chest CT (NRRD, 128x128x34):        medseg.read_volume  vs  SimpleITK.ReadImage + GetArrayFromImage
* the same CT as NIfTI (.nii.gz):     medseg.read_volume  vs  nibabel.load + np.asanyarray(dataobj)
* oblique MR DICOM series (20 files): medseg.read_volume  vs  SimpleITK ImageSeriesReader (GDCM)

ratio = medseg time / baseline time (below 1: medseg is faster). Run: ``make bench`` or
``.venv/bin/python bench/io.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg import read_volume, write_volume

ROOT = Path(__file__).resolve().parents[1]
CT = ROOT / "data_samples" / "ct_chest" / "CTChest4.nrrd"
MR = ROOT / "data_samples" / "mr_brain_dicom"


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up (file cache, imports)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _sitk_series(folder: Path) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    with tempfile.TemporaryDirectory() as tmp:
        nii = write_volume(read_volume(CT), Path(tmp) / "ct.nii.gz")
        cases = [
            ("CT NRRD 128x128x34", lambda: read_volume(CT), "SimpleITK.ReadImage",
             lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(CT)))),
            ("CT NIfTI 128x128x34", lambda: read_volume(nii), "nibabel.load",
             lambda: np.asanyarray(nib.load(str(nii)).dataobj)),
            ("MR DICOM 20 files 256x256", lambda: read_volume(MR), "SimpleITK ImageSeriesReader",
             lambda: _sitk_series(MR)),
        ]
        print(f"machine: {platform.node()} | {platform.processor() or platform.machine()} | "
              f"python {platform.python_version()} | SimpleITK {sitk.Version_VersionString()} | "
              f"nibabel {nib.__version__} | median of {args.repeat}")
        print(f"{'case':28} {'medseg s':>10} {'baseline':>28} {'baseline s':>11} {'ratio':>7}")
        for name, ours, base_name, base in cases:
            t_ours = _median_time(ours, args.repeat)
            t_base = _median_time(base, args.repeat)
            print(f"{name:28} {t_ours:10.4f} {base_name:>28} {t_base:11.4f} {t_ours / t_base:7.2f}")


if __name__ == "__main__":
    main()
