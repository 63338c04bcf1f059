"""Synthetic abdominal CT phantoms with known labels and deliberately varied geometry.

Each case is an abdomen-like body (skin, subcutaneous fat, muscle wall, bowel and visceral
fat, spine with discs, aorta and IVC) holding a liver (patient right), spleen (patient
left), two kidneys (posterior, beside the spine) and 0 to 3 tumours in the liver or a kidney,
hypo- or hyperdense. The anatomy is defined once in world space (RAS+ mm, see
:mod:`medseg.geometry`); a random grid is then drawn and every voxel centre is evaluated
through the grid's affine, so the labels agree with the geometry by construction whatever
the storage orientation.

Per case (all random, deterministic for (seed, size, index)):

* spacing: in-plane 0.6-1.0 mm (square pixels in 60% of cases), slices 1.5-5 mm;
* storage orientation: each axis independently flipped (RAS, LPS, LAS, RPI, ... all 8
  axial codes occur); half of the cases are oblique (3-10 degrees about a random axis);
* HU: air -1000, fat about -100, muscle 40-55, liver 52-66 (contrast phase 90-115),
  spleen 42-52 (100-125), kidney 28-38 (140-180, darker medulla), bone 300-700, tumours
  20-60 HU below or above their organ; Gaussian blur 0.5 voxel, noise SD 8-20 HU, smooth
  bias up to +-20 HU; stored as int16, clipped to [-1024, 3071].

Sizes (array shapes i x j x k measured over 2000 small and 300 medium grids, seed 0):

* ``small``: a miniature abdomen, body 58-68 mm wide, 64-84 mm scanned. Arrays
  67-148 x 52-120 x 14-56 voxels (median 95 x 74 x 24; 90% of cases within
  76-125 x 58-98 x 16-45), i.e. about 75-100 voxels in-plane at 0.8 mm. About 0.03 s per case.
* ``medium``: adult size, body 280-320 mm wide, 150-200 mm scanned. Arrays
  321-627 x 249-479 x 33-126 voxels (median 434 x 299 x 67). About 1-3.5 s per case
  (2-core VM), up to about 0.6 GB of memory.

Labels (uint8): 0 background, 1 liver, 2 spleen, 3 kidney (both), 4 tumour.

Families (``family=``): ``abdomen`` (the default, all of the above) and ``metastases``: the
same abdomen with 1-6 liver metastases (about 5-14 mm across in ``small``, 3-30 mm in
``medium``; hypodense 70%) instead of the tumours, labelled 0 background, 1 metastasis, 2 liver,
3 spleen, 4 kidney (``FAMILY_LABELS``).

Public API::

    image, label, info = generate_case(seed=0, size="small", index=0)   # Volumes + summary
    write_phantom_dataset("Dataset001_Phantoms", cases=10, seed=0)       # nnU-Net v2 layout
"""

from medseg.data.phantoms.anatomy import FAMILIES, FAMILY_LABELS, LABELS, SIZES
from medseg.data.phantoms.dataset import case_id, dataset_json, write_phantom_dataset
from medseg.data.phantoms.dicom_study import is_dicom_case
from medseg.data.phantoms.generate import PHANTOM_VERSION, generate_case

__all__ = [
    "LABELS",
    "FAMILIES",
    "FAMILY_LABELS",
    "SIZES",
    "PHANTOM_VERSION",
    "generate_case",
    "write_phantom_dataset",
    "dataset_json",
    "case_id",
    "is_dicom_case",
]
