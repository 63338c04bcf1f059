"""nnU-Net v2 model folders through medseg, against nnU-Net's own ``nnUNetPredictor``.

The model folder is made by nnU-Net's planning and network code (tests/nnunet/factory.py) with
renamed classes; the reference masks come from nnU-Net reading the same files with its own
SimpleITK reader, so medseg's reader, orientation handling and export are all under test.
"""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import InputError
from medseg.io import read_volume

pytest.importorskip("nnunetv2", reason="the optional nnU-Net extra is not installed: pip install 'medseg[nnunet]'")

from tests.helpers import rotation  # noqa: E402
from tests.nnunet.factory import build_model_folder  # noqa: E402

RENAMED = {"liver": "hepar", "tumour": "lesion"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    return build_model_folder(root, labels=RENAMED)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Held-out phantoms (another seed; random storage orientations), one also as DICOM."""
    from medseg.data.phantoms import write_phantom_dataset

    out = write_phantom_dataset(tmp_path_factory.mktemp("heldout"), cases=2, seed=77, dicom_study=True)
    return out


def _nnunet_reference(folder, image_path, folds=(0,), mirroring=True):
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    ref = nnUNetPredictor(tile_step_size=0.5, use_mirroring=mirroring, device=torch.device("cpu"),
                          perform_everything_on_device=False, verbose=False, allow_tqdm=False)
    ref.initialize_from_trained_model_folder(str(folder), list(folds), "checkpoint_final.pth")
    img, props = SimpleITKIO().read_images([str(image_path)])
    return ref.predict_single_npy_array(img, props, None, None, False)  # (k, j, i) of the file


def _variants(src, out_dir):
    """The case as stored, re-stored LPS (array axes flipped, affine adjusted) and oblique
    (the same array under an affine rotated by up to 30 degrees)."""
    img = nib.load(src)
    arr, aff = np.asarray(img.dataobj), img.affine
    codes = nib.aff2axcodes(aff)
    flip = [ax for ax, c, want in zip(range(3), codes, "LPS") if c != want]
    lps = np.flip(arr, flip).copy()
    lps_aff = aff.copy()
    for ax in flip:
        lps_aff[:3, 3] += aff[:3, ax] * (arr.shape[ax] - 1)
        lps_aff[:3, ax] *= -1
    obl_aff = aff.copy()
    obl_aff[:3, :3] = rotation(np.random.default_rng(3)) @ aff[:3, :3]
    paths = {"stored": src}
    for name, (a, af) in {"lps": (lps, lps_aff), "oblique": (arr, obl_aff)}.items():
        p = out_dir / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(a, af), p)
        paths[name] = p
    assert "".join(nib.aff2axcodes(lps_aff)) == "LPS"
    return paths


@pytest.mark.slow
def test_masks_match_nnunet_on_stored_lps_and_oblique_inputs(model, cases, tmp_path):
    from medseg.nnunet.predictor import NnunetPredictor

    fp32 = NnunetPredictor.from_run(model, device="cpu", precision="fp32")
    fast = NnunetPredictor.from_run(model, device="cpu")  # bf16 where the CPU has it
    assert fp32.labels == {"background": 0, "hepar": 1, "spleen": 2, "kidney": 3, "lesion": 4}
    assert fp32.mirror_axes == (0, 1, 2)
    src = sorted((cases / "imagesTr").glob("*_0000.nii.gz"))[1]
    for name, path in _variants(src, tmp_path).items():
        ref = _nnunet_reference(model, path)
        vol = read_volume(path)
        assert (ref > 0).mean() > 0.02, "the reference found nothing: the test model did not learn"
        for pred in (fp32, fast):
            mask = pred(vol)
            assert mask.shape == vol.shape and np.array_equal(mask.affine, vol.affine)
            agree = (mask.array.transpose(2, 1, 0) == ref).mean()
            assert agree >= 0.999, f"{name}: {agree:.5f} of voxels agree with nnU-Net"
        assert (fp32(vol).array.transpose(2, 1, 0) == ref).mean() >= 0.9999, name


@pytest.mark.slow
def test_folds_are_ensembled_as_nnunet_does(model, cases, tmp_path):
    """A second fold with perturbed weights: medseg's ensemble of folds 0 and 1 equals nnU-Net's."""
    import torch

    from medseg.nnunet.predictor import NnunetPredictor

    folder = tmp_path / model.parent.name / model.name
    shutil.copytree(model, folder)
    ck = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    g = torch.Generator().manual_seed(0)
    ck["network_weights"] = {k: v + 0.3 * v.std() * torch.randn(v.shape, generator=g) if v.is_floating_point()
                             and v.numel() > 1 else v for k, v in ck["network_weights"].items()}
    (folder / "fold_1").mkdir()
    torch.save(ck, folder / "fold_1" / "checkpoint_final.pth")
    pred = NnunetPredictor.from_run(folder, device="cpu", precision="fp32", tta=False)
    assert pred.folds == ("0", "1") and pred.mirror_axes is None
    src = sorted((cases / "imagesTr").glob("*_0000.nii.gz"))[0]
    ref = _nnunet_reference(folder, src, folds=(0, 1), mirroring=False)
    single = _nnunet_reference(folder, src, folds=(1,), mirroring=False)
    ours = pred(read_volume(src)).array.transpose(2, 1, 0)
    assert (ours == ref).mean() >= 0.9999
    assert (ref != single).mean() > 0.001, "fold 1 alone gives the ensemble's mask: the ensemble is untested"
    one = NnunetPredictor.from_run(folder, device="cpu", precision="fp32", tta=False, folds=["1"])
    assert (one(read_volume(src)).array.transpose(2, 1, 0) == single).mean() >= 0.9999
    assert one.model_id != pred.model_id


@pytest.mark.slow
def test_cli_dicom_series_in_seg_out_with_the_model_class_names(model, cases, tmp_path, cli):
    import highdicom as hd

    from medseg.io.dicom_seg import read_dicom_seg

    series = next(p for p in (cases / "dicom_study").rglob("*") if p.is_dir() and any(p.glob("*.dcm")))
    nii = tmp_path / "case.nii.gz"
    r = cli("predict", series, "--model", model, "--out", tmp_path / "seg", "--format", "dicom-seg", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "seg" / "manifest.csv")))
    assert len(rows) == 1 and rows[0]["status"] == "done" and rows[0]["model_id"].startswith("Dataset987_Tiny.3d_fullres-f0-")
    seg_path = tmp_path / "seg" / rows[0]["output"]
    seg = hd.seg.segread(seg_path)
    names = [seg.get_segment_description(i).segment_label for i in seg.segment_numbers]
    assert names and set(names) <= {"hepar", "spleen", "kidney", "lesion"} and "hepar" in names
    labels = json.loads((tmp_path / "seg" / "labels.json").read_text())
    assert labels["labels"] == {"background": 0, "hepar": 1, "spleen": 2, "kidney": 3, "lesion": 4}
    # the SEG holds the same mask as nnU-Net's prediction of the series' voxels
    src = read_volume(series)
    mask, table = read_dicom_seg(seg_path, src, labels["labels"])
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(src.array.transpose(2, 1, 0))  # the series' voxels and spacing
    img.SetSpacing([float(v) for v in src.spacing])
    sitk.WriteImage(img, str(nii))
    ref = _nnunet_reference(model, nii)
    agree = (mask.array.transpose(2, 1, 0) == ref).mean()
    assert agree >= 0.999 and (ref > 0).any(), agree


def test_folders_that_are_not_models_get_one_clear_error(model, cases, tmp_path, cli):
    from medseg.predict.registry import load_predictor

    phantom_image = sorted((cases / "imagesTr").glob("*_0000.nii.gz"))[0]
    r = cli("predict", phantom_image, "--model", tmp_path, "--out", tmp_path / "o")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "neither a medseg run directory" in r.stderr and "nnU-Net results folder" in r.stderr
    r = cli("predict", phantom_image, "--model", model, "--out", tmp_path / "o2", "--folds", "3")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no checkpoint_final.pth in fold_3" in r.stderr and "fold_0" in r.stderr
    unfinished = tmp_path / "m" / model.name
    shutil.copytree(model, unfinished)
    (unfinished / "fold_0" / "checkpoint_final.pth").rename(unfinished / "fold_0" / "checkpoint_best.pth")
    with pytest.raises(InputError, match="training did not finish"):
        load_predictor(unfinished, device="cpu")
    # a dataset folder with one model folder is accepted and names it
    assert load_predictor(model.parent, device="cpu").run_dir == model


@pytest.mark.slow
def test_uncertainty_map_lies_on_the_source_grid_and_peaks_at_boundaries(model, cases):
    from scipy import ndimage

    from medseg.nnunet.predictor import NnunetPredictor
    from medseg.predict import describe_run

    pred = NnunetPredictor.from_run(model, device="cpu", tta=False)
    assert describe_run(model) == (pred.labels, pred.model_id, 1)
    vol = read_volume(sorted((cases / "imagesTr").glob("*_0000.nii.gz"))[0])
    seen = []
    res = pred.predict([vol], uncertainty=True, progress=lambda d, t: seen.append((d, t)))
    u = res.uncertainty
    assert u.shape == vol.shape and np.array_equal(u.affine, vol.affine)
    assert u.array.min() >= 0 and u.array.max() <= np.log(5) + 1e-3
    assert 0 <= res.uncertainty_score <= 1
    assert seen and seen[-1][0] == seen[-1][1]
    fg = res.mask.array > 0
    edge = fg & ~ndimage.binary_erosion(fg)
    inner = ndimage.binary_erosion(fg, iterations=3)
    assert inner.any() and u.array[edge].mean() > 1.3 * u.array[inner].mean()  # measured 1.6x
