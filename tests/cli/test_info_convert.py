"""`medseg info --json` and `medseg convert` on every bundled sample, checked against SimpleITK."""

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from tests.helpers import ALL_SAMPLES, MR_DICOM, grid_points, read_series_sitk, sitk_array_ijk, sitk_world_ras

REQUIRED = {"shape", "spacing", "affine_ras", "orientation", "dtype", "min", "max", "format"}


def _sitk(path):
    return read_series_sitk(path) if path.is_dir() else sitk.ReadImage(str(path))


@pytest.mark.parametrize("sample", ALL_SAMPLES, ids=lambda p: p.name)
def test_info_json_on_every_sample(cli, sample):
    r = cli("info", sample, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # stdout is exactly one JSON object
    assert isinstance(report, dict) and REQUIRED <= set(report)
    img = _sitk(sample)
    ref = sitk_array_ijk(img)
    assert report["shape"] == list(ref.shape)
    assert report["spacing"] == pytest.approx(list(img.GetSpacing()), abs=1e-3)
    assert report["min"] == ref.min() and report["max"] == ref.max()
    ijk = grid_points(report["shape"])
    aff = np.array(report["affine_ras"])
    assert np.max(np.abs(nib.affines.apply_affine(aff, ijk) - sitk_world_ras(img, ijk))) < 1e-3
    assert report["orientation"] == "".join(nib.aff2axcodes(aff))
    if report["format"] == "dicom":
        assert report["series_uid"] and report["n_series"] == 1


def test_info_text_mentions_the_essentials(cli):
    r = cli("info", MR_DICOM)
    assert r.returncode == 0
    for word in ("256 x 256 x 20", "LPS", "oblique", "0.85938", "MR"):
        assert word in r.stdout
    assert r.stderr.startswith("warning: ") and "not uniform" in r.stderr


@pytest.mark.parametrize("sample", ALL_SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_convert_every_sample_preserves_geometry_and_values(cli, tmp_path, sample, suffix):
    out = tmp_path / f"out{suffix}"
    r = cli("convert", sample, out)
    assert r.returncode == 0, r.stderr
    src = _sitk(sample)
    dst = sitk.ReadImage(str(out))  # read back by a second library
    np.testing.assert_array_equal(sitk_array_ijk(dst), sitk_array_ijk(src))
    ijk = grid_points(sitk_array_ijk(src).shape)
    assert np.max(np.abs(sitk_world_ras(dst, ijk) - sitk_world_ras(src, ijk))) < 1e-3
    if suffix == ".nii.gz":
        assert np.max(np.abs(nib.affines.apply_affine(nib.load(str(out)).affine, ijk) - sitk_world_ras(src, ijk))) < 1e-3


def test_help_for_every_command(cli):
    for args in (["--help"], ["info", "--help"], ["convert", "--help"]):
        r = cli(*args)
        assert r.returncode == 0 and "usage: medseg" in r.stdout


def test_series_option_selects_a_series(cli, tmp_path):
    from tests.helpers import write_dicom_series

    write_dicom_series(tmp_path / "a", np.ones((4, 4, 5), np.uint16), series_uid="1.2.826.0.1.5")
    write_dicom_series(tmp_path / "b", np.ones((4, 4, 3), np.uint16), series_uid="1.2.826.0.1.3")
    r = cli("info", tmp_path, "--json")
    rep = json.loads(r.stdout)
    assert rep["series_uid"] == "1.2.826.0.1.5" and rep["n_series"] == 2 and "note: " in r.stderr
    rep = json.loads(cli("info", tmp_path, "--json", "--series", "1.2.826.0.1.3").stdout)
    assert rep["series_uid"] == "1.2.826.0.1.3" and rep["shape"] == [4, 4, 3]
