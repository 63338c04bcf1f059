"""Hostile inputs: every one ends as exactly one ``error:`` line and exit code 2 (never
``internal error ... this is a medseg bug``, exit 1), and leaves its inputs byte for byte as
they were.

The CLI runs in-process (``medseg.cli.main.main``) to keep the suite fast. The bad inputs are
made here with nibabel / SimpleITK / pydicom / raw header bytes -- not with medseg's writers.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.cli.main import main
from tests.dataset_factory import write_dataset
from tests.helpers import sha256, write_dicom_series


def _nifti_raw(path: Path, data: np.ndarray, srow=None, sform_code=1, qform_code=0, pixdim=(1.0, 1.0, 1.0)) -> Path:
    """A NIfTI-1 written field by field (nibabel's writer would repair the broken fields)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(data.dtype)
    hdr.set_data_shape(data.shape)
    srow = np.eye(4) if srow is None else np.asarray(srow, float)
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = srow[0], srow[1], srow[2]
    hdr["sform_code"], hdr["qform_code"] = sform_code, qform_code
    nib.save(nib.Nifti1Image(data, None, hdr), str(path))
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[80:92] = struct.pack("<3f", *pixdim)  # pixdim[1..3], after nibabel's save-time fix
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def _with(d: Path, srow_fix) -> np.ndarray:
    a = np.eye(4)
    srow_fix(a)
    return a


ZEROS = np.zeros((4, 4, 3), np.int16)


def _dataset(tmp_path: Path, name: str = "ds", layout: str = "nnunet") -> Path:
    return write_dataset(tmp_path / name, n=3, shape=(12, 10, 6), layout=layout)


def _edit_json(ds: Path, **kw) -> Path:
    j = json.loads((ds / "dataset.json").read_text())
    j.update(kw)
    (ds / "dataset.json").write_text(json.dumps(j))
    return ds


def _case(tmp_path: Path, name: str):
    """(argv, regex the error line must match, paths that must stay unchanged)."""
    t = tmp_path
    if name == "NaN in the sform":
        p = _nifti_raw(t / "x.nii.gz", ZEROS, srow=_with(t, lambda a: a.__setitem__((0, 0), np.nan)))
        return ["info", p], "sform holds NaN or infinite", [p]
    if name == "inf in the sform":
        p = _nifti_raw(t / "x.nii.gz", ZEROS, srow=_with(t, lambda a: a.__setitem__((1, 3), np.inf)))
        return ["convert", p, t / "o.nii.gz"], "sform holds NaN or infinite", [p]
    if name == "zero spacing in the sform":
        p = _nifti_raw(t / "x.nii.gz", ZEROS, srow=_with(t, lambda a: a.__setitem__((2, 2), 0.0)))
        return ["info", p], "sform is singular", [p]
    if name == "singular sform":
        p = _nifti_raw(t / "x.nii.gz", ZEROS, srow=[[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        return ["info", p], "sform is singular", [p]
    if name == "zero pixdim, no sform":
        p = _nifti_raw(t / "x.nii.gz", ZEROS, sform_code=0, qform_code=1, pixdim=(1.0, 0.0, 1.0))
        return ["info", p], r"pixdim\[2\] = 0.*does not guess 1 mm", [p]
    if name == "NaN pixdim, no xform":
        p = _nifti_raw(t / "x.nii.gz", ZEROS, sform_code=0, qform_code=0, pixdim=(float("nan"), 1.0, 1.0))
        return ["info", p], r"pixdim\[1\] = nan", [p]
    if name == "RGB NIfTI":
        p = t / "rgb.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]), np.eye(4)), str(p))
        return ["convert", p, t / "o.nrrd"], r"colour \(RGB/RGBA\) voxels", [p]
    if name == "RGB NIfTI in a dataset":
        ds = _dataset(t)
        img = next((ds / "imagesTr").iterdir())
        ref = nib.load(str(img))
        rgb = np.zeros(ref.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        nib.save(nib.Nifti1Image(rgb, ref.affine), str(img))
        return ["check-dataset", ds], r"problem\(s\) in", [ds]
    if name == "NRRD with spacing 0":
        img = sitk.GetImageFromArray(ZEROS)
        p = t / "s0.nrrd"
        sitk.WriteImage(img, str(p))
        p.write_bytes(p.read_bytes().replace(b"space directions: (1,0,0)", b"space directions: (0,0,0)"))
        return ["info", p], "could not be read|spacing", [p]
    if name == "MetaImage data file outside its folder":
        (t / "secret").mkdir()
        (t / "secret" / "data.raw").write_bytes(bytes(range(8)))
        (t / "hdr").mkdir()
        p = t / "hdr" / "evil.mhd"
        p.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n"
                     "ElementSpacing = 1 1 1\nElementDataFile = ../secret/data.raw\n")
        return ["convert", p, t / "leak.nii.gz"], "outside its own folder", [p, t / "secret"]
    if name in ("NRRD data file outside its folder", "NRRD data file LIST outside its folder"):
        (t / "secret").mkdir()
        (t / "secret" / "data.raw").write_bytes(bytes(range(8)))
        (t / "hdr").mkdir()
        (t / "hdr" / "ok.raw").write_bytes(bytes(4))
        p = t / "hdr" / "evil.nhdr"
        head = ("NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n"
                "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n")
        if name.endswith("LIST outside its folder"):
            p.write_text(head + "data file: LIST 2\nok.raw\n../secret/data.raw\n")
        else:
            p.write_text(head + "data file: ../secret/data.raw\n")
        return ["convert", p, t / "leak.nii.gz"], "outside its own folder", [p, t / "secret"]
    if name == "DICOM PixelSpacing 0":
        p = t / "series"
        write_dicom_series(p, np.ones((4, 4, 5), np.uint16), spacing=(0.0, 0.8))
        return ["convert", p, t / "o.nii.gz"], r"PixelSpacing \[0\.0, 0\.8\] mm is not valid", [p]
    if name == "DICOM huge RescaleSlope":
        p = t / "series"
        write_dicom_series(p, np.ones((4, 4, 5), np.uint16), slope=1e300)
        return ["info", p], "RescaleSlope .* overflow", [p]
    if name == "numTraining not a number":
        ds = _edit_json(_dataset(t), numTraining="three")
        return ["check-dataset", ds], "'numTraining' must be a whole number", [ds]
    if name == "channel_names a list":
        ds = _edit_json(_dataset(t), channel_names=["CT"])
        return ["plan", ds, "--out", t / "p.yaml"], "'channel_names' must map channel numbers", [ds]
    if name == "channel_names key not a number":
        ds = _edit_json(_dataset(t), channel_names={"x": "CT"})
        return ["check-dataset", ds], "keys must be channel numbers", [ds]
    if name == "Decathlon test not a list":
        ds = _edit_json(_dataset(t, layout="msd"), test="imagesTs/a.nii.gz")
        return ["check-dataset", ds], r"problem\(s\) in", [ds]
    if name == "Decathlon test entry not a path":
        ds = _edit_json(_dataset(t, layout="msd"), test=[{"label": 3}])
        return ["check-dataset", ds], r"problem\(s\) in", [ds]
    if name == "splits.json not a list":
        ds = _dataset(t)
        (ds / "splits.json").write_text(json.dumps({"fold": 1}))
        return (["train", "--dataset", ds, "--out", t / "run", "--epochs", "1", "--device", "cpu"],
                "splits.json must hold a list", [ds])
    if name == "splits.json fold malformed":
        ds = _dataset(t)
        (ds / "splits.json").write_text(json.dumps([{"train": 5, "val": []}]))
        return (["train", "--dataset", ds, "--out", t / "run", "--epochs", "1", "--device", "cpu"],
                "fold 0 is", [ds])
    if name == "lr .nan in a config":
        ds = _dataset(t)
        cfg = t / "nan.yaml"
        cfg.write_text("optimizer:\n  lr: .nan\n")
        return (["train", "--config", cfg, "--dataset", ds, "--out", t / "run", "--device", "cpu"],
                "lr: expected a finite number", [ds, cfg])
    if name == "batch_size 0 in a config":
        ds = _dataset(t)
        cfg = t / "bs.yaml"
        cfg.write_text("batch_size: 0\n")
        return (["train", "--config", cfg, "--dataset", ds, "--out", t / "run", "--device", "cpu"],
                "batch_size: must be >= 1", [ds, cfg])
    if name == "plan --spacing nan 1 1":
        ds = _dataset(t)
        return ["plan", ds, "--out", t / "p.yaml", "--spacing", "nan", "1", "1"], "finite numbers > 0", [ds]
    if name == "plan spacing 0.01 mm":
        ds = _dataset(t)
        return (["plan", ds, "--out", t / "p.yaml", "--spacing", "0.01", "0.01", "0.01"],
                r"would resample the largest case to .* voxels", [ds])
    if name == "plan over the dataset's dataset.json":
        ds = _dataset(t)
        return (["plan", ds, "--out", ds / "dataset.json", "--overwrite"],
                "is a file of the dataset", [ds])
    if name == "convert .mhd over another header's data file":
        src = _nifti_raw(t / "x.nii.gz", ZEROS)
        other = t / "other"
        other.mkdir()
        (other / "b.zraw").write_bytes(b"data of another b.mhd")
        return ["convert", src, other / "b.mhd"], r"would replace .*b\.zraw", [src, other]
    if name == "convert .mhd over the input's own data file":
        img = sitk.GetImageFromArray(ZEROS)
        (t / "in").mkdir()
        src = t / "in" / "a.mhd"
        sitk.WriteImage(img, str(src), useCompression=True)  # a.mhd + a.zraw
        hdr = src.read_text().replace("ElementDataFile = a.zraw", "ElementDataFile = b.zraw")
        (t / "in" / "a.zraw").rename(t / "in" / "b.zraw")
        src.write_text(hdr)
        return ["convert", src, t / "in" / "b.mhd", "--overwrite"], "a file of the INPUT", [t / "in"]
    if name == "report --out equal to its input":
        pred = t / "pred"
        pred.mkdir()
        (pred / "manifest.csv").write_text("case,input,output,status\n")
        return ["report", pred, "--out", pred, "--overwrite"], "is PRED_DIR itself", [pred]
    if name == "binary manifest":
        pred = t / "pred"
        pred.mkdir()
        (pred / "manifest.csv").write_bytes(bytes(range(256)) * 8)
        return ["report", pred, "--out", t / "rep"], "not a readable manifest", [pred]
    if name == "label value 2,000,000,000 in evaluate":
        big = t / "big.nii.gz"
        a = np.zeros((4, 4, 3), np.int32)
        a[0, 0, 0] = 2_000_000_000
        nib.save(nib.Nifti1Image(a, np.eye(4)), str(big))
        ref = t / "ref.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.uint8), np.eye(4)), str(ref))
        return ["evaluate", "--pred", big, "--ref", ref], "label value 2000000000", [big, ref]
    raise AssertionError(name)


CASES = [
    "NaN in the sform", "inf in the sform", "zero spacing in the sform", "singular sform", "zero pixdim, no sform",
    "NaN pixdim, no xform", "RGB NIfTI", "RGB NIfTI in a dataset", "NRRD with spacing 0",
    "MetaImage data file outside its folder", "NRRD data file outside its folder",
    "NRRD data file LIST outside its folder", "DICOM PixelSpacing 0", "DICOM huge RescaleSlope",
    "numTraining not a number", "channel_names a list", "channel_names key not a number",
    "Decathlon test not a list", "Decathlon test entry not a path", "splits.json not a list",
    "splits.json fold malformed", "lr .nan in a config", "batch_size 0 in a config", "plan --spacing nan 1 1",
    "plan spacing 0.01 mm", "plan over the dataset's dataset.json", "convert .mhd over another header's data file",
    "convert .mhd over the input's own data file", "report --out equal to its input", "binary manifest",
    "label value 2,000,000,000 in evaluate",
]


#: check-dataset lists the problems on stdout: what the listed problem must say
PROBLEM = {
    "RGB NIfTI in a dataset": r"case_00\d: unreadable: .*colour \(RGB/RGBA\) voxels",
    "Decathlon test not a list": r"'test' must be a list of image paths",
    "Decathlon test entry not a path": r"test\[0\]: .*entry must be an image path",
}


@pytest.mark.parametrize("name", CASES)
def test_hostile_input_is_one_error_line_exit_2(tmp_path, capsys, monkeypatch, name):
    monkeypatch.setenv("MEDSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv, pattern, keep = _case(tmp_path, name)
    before = {p: sha256(p) for p in keep}
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, (code, err)
    if name in PROBLEM:
        assert re.search(PROBLEM[name], captured.out), captured.out
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    assert "internal error" not in errors[0] and "Traceback" not in err
    assert re.search(pattern, errors[0]), errors[0]
    for p, h in before.items():
        assert sha256(p) == h, f"{p} was modified"
    assert not [p.name for p in tmp_path.rglob(".*tmp*")], "temporary files left behind"


def test_convert_removes_stale_temporaries_of_its_output_only(tmp_path, capsys):
    src = _nifti_raw(tmp_path / "x.nii.gz", ZEROS)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stale = out_dir / ".y.nii.gz.ab12cd34.tmp.nii.gz"  # what a killed `convert ... out/y.nii.gz` leaves
    stale.write_bytes(b"half")
    other = out_dir / ".z.nii.gz.ab12cd34.tmp.nii.gz"  # another output's: not this command's business
    other.write_bytes(b"half")
    assert main(["convert", str(src), str(out_dir / "y.nii.gz")]) == 0, capsys.readouterr().err
    assert not stale.exists() and other.exists()
    assert np.array_equal(np.asarray(nib.load(str(out_dir / "y.nii.gz")).dataobj), ZEROS)


def test_detached_nrrd_inside_its_folder_reads_like_simpleitk(tmp_path, capsys):
    """The containment check leaves an ordinary detached NRRD (header + .raw / .raw.gz) alone."""
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    for i, gz in enumerate((False, True)):
        p = tmp_path / f"n{i}.nhdr"
        sitk.WriteImage(sitk.GetImageFromArray(data), str(p), gz)
        assert main(["convert", str(p), str(tmp_path / f"n{i}.nii.gz")]) == 0, capsys.readouterr().err
        back = np.asarray(nib.load(str(tmp_path / f"n{i}.nii.gz")).dataobj)
        assert np.array_equal(back, sitk.GetArrayFromImage(sitk.ReadImage(str(p))).T)


def test_convert_mhd_replaces_a_foreign_data_file_only_with_overwrite(tmp_path, capsys):
    src = _nifti_raw(tmp_path / "x.nii.gz", ZEROS)
    (tmp_path / "b.zraw").write_bytes(b"not ours")
    assert main(["convert", str(src), str(tmp_path / "b.mhd")]) == 2
    assert (tmp_path / "b.zraw").read_bytes() == b"not ours"
    assert main(["convert", str(src), str(tmp_path / "b.mhd"), "--overwrite"]) == 0, capsys.readouterr().err
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b.mhd"))).T
    assert np.array_equal(back, ZEROS)
