"""Class roles from the training labels (medseg.data.classes) and CPU-sized plans: hand-made
component lists and label arrays, checked against scipy's own component count."""

import numpy as np
import pytest
from scipy import ndimage

from medseg.data.classes import case_components, class_stats, derive_roles
from medseg.data.plan import CPU_PATCH_VOXELS, make_plan

LABELS = {"background": 0, "lung": 1, "heart": 2, "nodule": 3, "adrenal": 4}


def roles_of(components, n):
    return derive_roles(class_stats(components, LABELS, n))


def test_case_components_match_scipy_and_voxel_volume():
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[2:12, 2:12, 2:12] = 1          # 1000 voxels
    lab[20:25, 20:25, 20:25] = 1       # 125 voxels, a second component
    lab[15, 15, 15] = 3                # one voxel
    lab[16, 16, 16] = 3                # diagonal neighbour: same component under 26-connectivity
    got = case_components(lab, 0.002, [1, 2, 3])
    assert got[1] == pytest.approx([2.0, 0.25]) and got[2] == [] and got[3] == pytest.approx([0.004])
    n_scipy = ndimage.label(lab == 1, structure=np.ones((3, 3, 3)))[1]
    assert len(got[1]) == n_scipy == 2


def test_roles_small_structures_and_keep_largest():
    n = 10
    comps = {
        "lung": [[1500.0, 1400.0]] * n,                       # two lungs everywhere: no keep-largest, not small
        "heart": [[600.0, 0.5]] * n,                           # one organ (a speck under 1% is ignored)
        "nodule": [[0.5, 0.3]] * 5 + [[0.4]] * 3 + [[]] * 2,   # often absent, count varies
        "adrenal": [[5.0]] * n,                                # always one piece, but tiny next to the lungs
    }
    roles = roles_of(comps, n)
    assert roles.small_structures == ["nodule", "adrenal"]
    assert roles.keep_largest == ["heart"]
    assert "present in 80%" in roles.reasons["nodule"] and "varying number" in roles.reasons["nodule"]
    assert "under 1%" in roles.reasons["adrenal"]
    assert roles.stats["lung"]["median_components"] == 2


def test_single_class_dataset_is_judged_by_presence_and_counts_only():
    labels = {"background": 0, "tumor": 1}
    always_one = derive_roles(class_stats({"tumor": [[12.0]] * 6}, labels, 6))
    assert always_one.small_structures == [] and always_one.keep_largest == ["tumor"]
    varying = derive_roles(class_stats({"tumor": [[3.0, 1.0], [2.0], [1.0, 1.0, 0.5], [4.0]]}, labels, 4))
    assert varying.small_structures == ["tumor"]


def _fingerprint(extent_mm, spacing, n=12, components=None):
    shape = [int(round(e / s)) for e, s in zip(extent_mm, spacing)]
    return {"name": "x", "labels": LABELS, "channels": {0: "CT"}, "spacings": [list(spacing)] * n,
            "shapes": [shape] * n, "class_fraction": {},
            "intensity": {"0": {"mean": 0.0, "std": 100.0, "median": 0.0, "p00_5": -1000.0, "p99_5": 400.0,
                                "min": -1024.0, "max": 2000.0}},
            "components": components or {}}


def test_cpu_plan_for_a_thorax_is_small_and_capped():
    """210 x 170 x 130 mm at 0.8 x 0.8 x 2.5 mm: hand-picked demo values gave a 128 x 104 x 52
    patch; the CPU plan caps the coarsening at 3x the finest spacing and the patch at CPU_PATCH_VOXELS (80k)."""
    fp = _fingerprint((210, 170, 130), (0.8, 0.8, 2.5))
    cpu = make_plan(fp, 8, device="cpu")
    assert cpu.device == "cpu" and cpu.network.filters[0] == 16 and cpu.training.batch_size == 2
    assert cpu.preprocessing.target_spacing == (2.4, 2.4, 2.5)
    assert np.prod(cpu.training.patch_size) <= CPU_PATCH_VOXELS
    assert "capped" in cpu.notes[1]
    gpu = make_plan(fp, 8, device="gpu")
    assert gpu.preprocessing.target_spacing == (0.8, 0.8, 2.5) and gpu.network.filters[0] == 32
    assert np.prod(gpu.training.patch_size) > 10 * CPU_PATCH_VOXELS


def test_cpu_plan_fits_the_median_case_in_one_patch_and_keeps_small_structures_resolved():
    small = _fingerprint((75, 57, 78), (0.75, 0.85, 2.0))
    plan = make_plan(small, 8, device="cpu")
    sp = np.asarray(plan.preprocessing.target_spacing)
    median_voxels = np.prod(np.array([75, 57, 78]) / sp)
    assert median_voxels == pytest.approx(CPU_PATCH_VOXELS, rel=0.02)  # coarsened just enough
    assert sp[2] == pytest.approx(2.0) and sp[0] == sp[1] > 0.85         # finest axes coarsened first
    # 0.05 ml nodules (4.6 mm across) cap the spacing at a third of that (before the 3x cap, 2.1 mm)
    comps = {"nodule": [[0.05]] * 6 + [[]] * 6}
    big = _fingerprint((400, 400, 300), (0.7, 0.7, 1.0), components=comps)
    capped = make_plan(big, 8, device="cpu")
    d = (6 * 50 / np.pi) ** (1 / 3)
    assert max(capped.preprocessing.target_spacing) == pytest.approx(d / 3, abs=1e-3)
    assert capped.classes.small_structures == ["nodule"]


def test_plan_rejects_class_roles_naming_unknown_labels(tmp_path):
    from medseg.config import ConfigError
    from medseg.plans import load_plan, save_plan

    plan = make_plan(_fingerprint((75, 57, 78), (0.75, 0.85, 2.0)), 8, device="cpu")
    plan.classes.small_structures = ["tumour"]
    save_plan(plan, tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match="classes.small_structures: 'tumour' is not a label"):
        load_plan(tmp_path / "p.yaml")
