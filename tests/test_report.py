"""Overlay pictures: radiological orientation whatever the storage, and the report command."""

from pathlib import Path

import numpy as np

from medseg.overlay import axial, overlay_png, representative_slice, _ras
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


def test_build_report_library_call_matches_the_reference_dice(tmp_path):
    """medseg.report.build_report is the library function behind `medseg report`: same folder,
    the metrics table (Dice 0.75 by hand: 2*30 / (30 + 50)), progress through the callback."""
    from contextlib import contextmanager

    import nibabel as nib

    from medseg.predict.manifest import Manifest
    from medseg.report import build_report

    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    img = np.random.default_rng(2).normal(size=(10, 9, 6)).astype(np.float32)
    ref = np.zeros((10, 9, 6), np.uint8)
    ref[2:7, 2:7, 2:4] = 1
    pred = ref.copy()
    pred[2:7, 2:4, 2:4] = 0
    for d in ("pred", "ref"):
        (tmp_path / d).mkdir()
    nib.save(nib.Nifti1Image(img, aff), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(pred, aff), tmp_path / "pred" / "c1.nii.gz")
    nib.save(nib.Nifti1Image(ref, aff), tmp_path / "ref" / "c1.nii.gz")
    m = Manifest(tmp_path / "pred" / "manifest.csv", ["organ"])
    m.set({"case": "c1", "input": str(tmp_path / "img.nii.gz"), "output": "c1.nii.gz", "status": "done",
           "volume_ml_organ": 0.06})
    m.set({"case": "c2", "input": str(tmp_path / "missing.nii.gz"), "output": "", "status": "failed",
           "error": "unreadable"})
    m.save()
    seen = []

    @contextmanager
    def progress(what, total):
        seen.append((what, total))
        yield seen.append

    rep = build_report(tmp_path / "pred", tmp_path / "rep", ref=tmp_path / "ref", progress=progress)
    assert rep.path == tmp_path / "rep" / "report.md" and rep.path.is_file()
    assert rep.cases == 1 and rep.cases_drawn == 1  # the failed case is not drawn
    assert seen == [("overlays", 1), "c1"]
    assert any("0.750" in line for line in rep.metrics_table)
    assert "organ 0.1 ml" in rep.path.read_text()


def test_read_manifest_typed_records(tmp_path):
    """The one manifest reader: the input column parsed once (channels ';', DICOM '#uid'),
    numbers typed, NaN and empty as None; a damaged file is one InputError."""
    import pytest

    from medseg.errors import InputError
    from medseg.predict.manifest import Manifest, parse_input, read_manifest

    assert parse_input("/a/x_0000.nii.gz;/a/x_0001.nii.gz") == ([Path("/a/x_0000.nii.gz"), Path("/a/x_0001.nii.gz")], None)
    assert parse_input("/s/ct#1.2.840.1") == ([Path("/s/ct")], "1.2.840.1")
    assert parse_input("") == ([], None)
    m = Manifest(tmp_path / "manifest.csv", ["liver", "tumour"])
    m.set({"case": "a/b", "input": "/s/ct#1.2.3", "output": "a/b.nii.gz", "status": "Done", "seconds": "2.5",
           "model_id": "run-abc", "uncertainty": "nan", "volume_ml_liver": "1500.5", "volume_ml_tumour": ""})
    m.set({"case": "c", "input": "/x/c_0000.nii.gz;/x/c_0001.nii.gz", "output": "", "status": "failed",
           "error": "boom", "extra": "kept"})
    m.save()
    a, c = read_manifest(tmp_path)  # the folder or the file
    assert (a.case, a.inputs, a.series_uid, a.output, a.status) == ("a/b", [Path("/s/ct")], "1.2.3", "a/b.nii.gz", "done")
    assert a.seconds == 2.5 and a.model_id == "run-abc" and a.uncertainty is None
    assert a.volumes_ml == {"liver": 1500.5} and a.ok and a.image == Path("/s/ct")
    assert c.inputs == [Path("/x/c_0000.nii.gz"), Path("/x/c_0001.nii.gz")] and c.series_uid is None
    assert not c.ok and c.error == "boom" and c.output is None and c.row["extra"] == "kept"
    with pytest.raises(InputError, match="has no manifest.csv"):
        read_manifest(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.csv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InputError, match="not a readable manifest"):
        read_manifest(tmp_path / "bad")
    (tmp_path / "bad" / "manifest.csv").write_text("case,foo\nx,1\n")
    with pytest.raises(InputError, match="lacks the columns 'input' and 'output'"):
        read_manifest(tmp_path / "bad")
