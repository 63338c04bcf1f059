"""Overlay pictures: radiological orientation whatever the storage, and the report command."""

import numpy as np

from medseg.report import axial, overlay_png, representative_slice, _ras
from medseg.volume import Volume


def test_axial_picture_is_radiological_for_ras_and_lps_storage():
    shape = (6, 5, 4)
    ras = np.zeros(shape, np.uint8)
    ras[5, 4, 2] = 1  # most Right (+x) and most Anterior (+y) voxel
    pic = axial(_ras(Volume(ras, np.eye(4)))[0], 2)
    assert pic.shape == (5, 6) and pic[0, 0] == 1  # patient's right on the left, anterior at the top
    lps = np.zeros(shape, np.uint8)
    lps[0, 0, 2] = 1  # in LPS storage index 0 is the most right / most anterior
    pic = axial(_ras(Volume(lps, np.diag([-1.0, -1.0, 1.0, 1.0])))[0], 2)
    assert pic[0, 0] == 1 and pic.sum() == 1


def test_representative_slice_and_png(tmp_path):
    mask = np.zeros((8, 8, 5), np.uint8)
    mask[2:6, 2:6, 3] = 1
    mask[3, 3, 1] = 2
    assert representative_slice(mask) == 3
    assert representative_slice(np.zeros((2, 2, 7))) == 3
    img = Volume(np.random.default_rng(0).normal(size=(8, 8, 5)).astype(np.float32), np.diag([0.8, 0.8, 2.5, 1]))
    out = overlay_png(img, img.with_array(mask), tmp_path / "o.png", reference=img.with_array(mask),
                      labels={"background": 0, "a": 1, "b": 2}, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_report_command_writes_overlays_metrics_and_curve(tmp_path, cli):
    import nibabel as nib

    from medseg.predict.manifest import Manifest

    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    img = np.random.default_rng(1).normal(size=(10, 9, 6)).astype(np.float32)
    ref = np.zeros((10, 9, 6), np.uint8)
    ref[2:7, 2:7, 2:4] = 1
    pred = ref.copy()
    pred[2:7, 2:4, 2:4] = 0  # Dice = 2*30 / (30 + 50) = 0.75
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    nib.save(nib.Nifti1Image(img, aff), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(pred, aff), tmp_path / "pred" / "c1.nii.gz")
    nib.save(nib.Nifti1Image(ref, aff), tmp_path / "ref" / "c1.nii.gz")
    m = Manifest(tmp_path / "pred" / "manifest.csv", ["organ"])
    m.set({"case": "c1", "input": str(tmp_path / "img.nii.gz"), "output": "c1.nii.gz", "status": "done", "volume_ml_organ": 0.06})
    m.save()
    r = cli("report", tmp_path / "pred", "--ref", tmp_path / "ref", "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    assert "0.750" in r.stdout
    assert (tmp_path / "rep" / "overlays" / "c1.png").is_file()
    assert (tmp_path / "rep" / "metrics" / "metrics.csv").is_file()
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "overlays/c1.png" in text and "0.750" in text
    r = cli("report", tmp_path / "pred", "--out", tmp_path / "rep")
    assert r.returncode == 2 and "--overwrite" in r.stderr
