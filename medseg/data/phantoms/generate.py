"""One synthetic CT case: anatomy in world space, a random grid, labels and CT-like HU.

Randomness: case ``index`` of seed ``seed`` uses ``np.random.SeedSequence(seed).spawn(n)[index]``
(for any n > index), split into three independent streams (anatomy, grid, image noise). So a
case is bit-identical for the same (seed, size, index), however many cases are generated.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.data.phantoms.anatomy import FAMILIES, FAMILY_LABELS, FAMILY_REMAP, LABELS, SIZES, sample_anatomy
from medseg.data.phantoms.grid import random_grid
from medseg.data.phantoms.render import count_part_voxels, render
from medseg.data.phantoms.shapes import field_value, smooth_field
from medseg.volume import Volume

#: Bumped whenever the generator changes what a (seed, size, index) produces.
PHANTOM_VERSION = 1

#: Gaussian blur (in voxels) of the noise-free image: partial volume / scanner resolution.
BLUR_SIGMA_VOXELS = 0.5
#: Ranges of the noise standard deviation and of the smooth bias amplitude (HU).
NOISE_SD_HU = (8.0, 20.0)
BIAS_HU = (5.0, 20.0)
#: Stored HU range (CT images are int16; -1024 is the usual air floor).
HU_RANGE = (-1024, 3071)


def case_seed_sequence(seed: int, index: int) -> np.random.SeedSequence:
    """``np.random.SeedSequence(seed).spawn(n)[index]`` without spawning the others."""
    return np.random.SeedSequence(seed, spawn_key=(index,))


def generate_case(seed: int = 0, size: str = "small", index: int = 0,
                  family: str = "abdomen") -> tuple[Volume, Volume, dict]:
    """Generate case ``index`` of the phantom dataset defined by ``seed`` and ``size``.

    Args:
        seed: non-negative integer.
        size: ``"small"`` (miniature abdomen, about 60-120 voxels in-plane) or ``"medium"``
            (adult size, about 300-650 voxels in-plane); see the package docstring.
        index: case number (0-based).
        family: ``"abdomen"`` (default: 0-3 liver / kidney tumours, labels ``LABELS``) or
            ``"metastases"`` (1-6 liver metastases; labels ``FAMILY_LABELS["metastases"]``:
            0 background, 1 metastasis, 2 liver, 3 spleen, 4 kidney). The same (seed, size,
            index) gives another case in each family (the random streams differ after the organs).

    Returns:
        image: Volume, int16 HU, array indexed [i, j, k], affine voxel -> RAS+ mm.
        label: Volume, uint8 class ids (``LABELS``: 0 background, 1 liver, 2 spleen,
            3 kidney, 4 tumour) on exactly the image grid (same affine object values).
        info: JSON-friendly summary (shape, spacing, orientation, obliquity, contrast phase,
            noise, tumours with host/kind/radius/HU/voxels, voxel count per label).
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    ss_anatomy, ss_grid, ss_image = case_seed_sequence(seed, index).spawn(3)
    anatomy = sample_anatomy(np.random.default_rng(ss_anatomy), size, family)
    geom, grid_info = random_grid(np.random.default_rng(ss_grid), anatomy)

    rng = np.random.default_rng(ss_image)
    noise_sd = float(rng.uniform(*NOISE_SD_HU))
    bias_amp = float(rng.uniform(*BIAS_HU))
    bias = smooth_field(rng, (2.0 * anatomy.body.a, 6.0 * anatomy.body.a), n=3)

    def bias_hu(x, y, z):
        return field_value(bias, x, y, z) * np.float32(bias_amp)

    labels, hu = render(anatomy, geom, bias_hu)
    hu = ndimage.gaussian_filter(hu, BLUR_SIGMA_VOXELS, truncate=3.0)
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_sd)
    np.clip(np.rint(hu, out=hu), *HU_RANGE, out=hu)
    tumour_voxels = [count_part_voxels(t.part, geom, anatomy, labels) for t in anatomy.tumours]
    if FAMILY_REMAP[family] is not None:
        labels = np.asarray(FAMILY_REMAP[family], np.uint8)[labels]
    names = FAMILY_LABELS[family]
    image = Volume(hu.astype(np.int16), geom.affine.copy(), {"format": "phantom"})
    label = Volume(labels, geom.affine.copy(), {"format": "phantom"})

    tumours = []
    for t, nvox in zip(anatomy.tumours, tumour_voxels):
        tumours.append({
            "host": t.host, "kind": t.kind, "radius_mm": round(t.radius_mm, 2), "hu": round(t.hu, 1),
            "centre_ras": [round(v, 2) for v in t.centre],
            "voxels": nvox,
        })
    counts = np.bincount(labels.ravel(), minlength=len(names))
    info = {
        "index": index, "seed": seed, "size": size, "version": PHANTOM_VERSION,
        "shape": list(geom.shape),
        "spacing": [round(v, 4) for v in geom.spacing],
        "orientation": geom.orientation,
        "oblique_deg": grid_info["oblique_deg"],
        "contrast": anatomy.contrast,
        "noise_sd_hu": round(noise_sd, 2),
        "bias_hu": round(bias_amp, 2),
        "tumours": tumours,
        "n_tumours": sum(1 for t in tumours if t["voxels"] > 0),
        "label_voxels": {name: int(counts[v]) for name, v in names.items()},
    }
    if family != "abdomen":
        info["family"] = family
    return image, label, info
