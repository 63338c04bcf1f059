"""medseg: 3D medical image segmentation with geometry you can trust.

Public API (stable names)::

    from medseg import read_volume, write_volume, write_mask_like, Volume, Geometry

    ct = read_volume("data_samples/ct_chest/CTChest4.nrrd")   # Volume, RAS+ affine
    ct.geometry.orientation, ct.spacing                         # 'LPS', (3.05, 3.05, 10.0)
    write_mask_like(ct.array > 300, ct, "bone.nii.gz")          # exactly the CT grid

The spatial convention (RAS+ mm world, ``[i, j, k]`` as stored) is defined in
:mod:`medseg.geometry`.
"""

from medseg.errors import GeometryError, InputError, MedsegError, MedsegWarning, OutputError
from medseg.geometry import Geometry
from medseg.io import read_volume, scan_dicom, write_mask_like, write_volume
from medseg.volume import Volume

__version__ = "0.1.0"

__all__ = [
    "Volume",
    "Geometry",
    "read_volume",
    "write_volume",
    "write_mask_like",
    "scan_dicom",
    "MedsegError",
    "InputError",
    "GeometryError",
    "OutputError",
    "MedsegWarning",
    "__version__",
]
