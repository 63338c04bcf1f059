"""The one nnU-Net dataset writer: what it writes is read back by medseg's dataset loader and,
independently, by nibabel (same grid for image and labels, labels unchanged)."""

import json

import nibabel as nib
import numpy as np
import pytest

from medseg.data.layout import load_dataset
from medseg.data.nnunet_writer import dataset_meta, image_path, label_path, write_case, write_dataset_json
from medseg.errors import OutputError
from medseg.volume import Volume


def test_written_dataset_loads_with_nibabel_and_medseg(tmp_path):
    aff = np.array([[0.0, -0.8, 0.0, 10.0], [-0.7, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 30.0], [0, 0, 0, 1]])
    rng = np.random.default_rng(0)
    ct = Volume(rng.normal(size=(7, 6, 5)).astype(np.float32) * 100, aff)
    t2 = Volume(rng.normal(size=(7, 6, 5)).astype(np.float32), aff)
    lab = np.zeros((7, 6, 5), np.uint8)
    lab[1:4, 2:5, 1:3] = 2
    write_case(tmp_path, "case_7", [ct, t2], lab)
    meta = dataset_meta("Dataset123_X", {0: "CT", 1: "T2"}, {"background": 0, "lesion": 2}, 1,
                        description="test", medseg_note={"a": 1}, skipped=None)
    write_dataset_json(tmp_path, meta)
    assert list(meta)[:2] == ["name", "description"] and "skipped" not in meta
    data = json.loads((tmp_path / "dataset.json").read_text())
    assert data["channel_names"] == {"0": "CT", "1": "T2"} and data["file_ending"] == ".nii.gz"
    assert data["numTraining"] == 1 and data["labels"] == {"background": 0, "lesion": 2}
    img_n, lab_n = nib.load(image_path(tmp_path, "case_7", 1)), nib.load(label_path(tmp_path, "case_7"))
    np.testing.assert_allclose(img_n.affine, aff, atol=1e-5)
    np.testing.assert_allclose(lab_n.affine, aff, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(lab_n.dataobj), lab)
    np.testing.assert_allclose(np.asarray(img_n.dataobj), t2.array, rtol=1e-6)
    spec = load_dataset(tmp_path)
    assert [c.case_id for c in spec.cases] == ["case_7"] and len(spec.cases[0].images) == 2
    assert spec.labels == {"background": 0, "lesion": 2}
    with pytest.raises(OutputError):
        write_case(tmp_path, "case_7", [ct], lab, overwrite=False)
