"""The Segment widget's logic without Qt (napari_medseg.segment): volume from a layer, run
directory checks, layer data from a prediction, lesion centre / reject / accept, the worker job."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from medseg.errors import Cancelled, InputError
from medseg.predict.result import CasePrediction
from medseg.volume import Volume
from napari_medseg.layers import image_layer_data
from napari_medseg.segment import (
    ACCEPTED,
    PENDING,
    REJECTED,
    LesionReview,
    axial_axis,
    check_run_dir,
    image_layers,
    lesion_centre,
    lesion_rows,
    prediction_layer_data,
    run_prediction,
    volume_from_layer,
)

AFFINE = np.array([[-0.8, 0, 0, 30.0], [0, -0.9, 0, 20.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])


def _image_layer(array, affine=AFFINE, name="ct", path="/data/ct.nii.gz"):
    """A stand-in for a napari Image layer opened by the medseg reader (same data and metadata)."""
    data, kw, _ = image_layer_data(Volume(array, affine, {"path": path, "format": "nifti"}))
    layer = type("Image", (), {})()
    layer.data, layer.name, layer.metadata = data, name, kw["metadata"]
    return layer


def _instance_result(shape=(10, 12, 20)):
    mask = np.zeros(shape, np.uint32)
    mask[1:3, 1:3, 2:5] = 1            # lesion 1 on slices 2..4
    mask[5:8, 6:9, 10:13] = 2          # lesion 2 on slices 10..12
    mask[5:6, 6:7, 18] = 3             # lesion 3, one voxel on slice 18
    rows = [{"id": 1, "class": "tumour", "score": 0.9, "first_slice": 2, "last_slice": 4},
            {"id": 2, "class": 1, "score": "0.7"},                        # class by value, slices missing
            {"id": 3, "class": "cyst", "score": 0.4, "volume_ml": 5.0, "first_slice": 18, "last_slice": 18}]
    return CasePrediction(Volume(mask, AFFINE, {"model_id": "m-1"}), {"background": 0, "tumour": 1, "cyst": 2},
                          tables={"lesions": rows})


def test_volume_from_layer_rebuilds_the_reader_volume():
    a = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    layer = _image_layer(a)
    v = volume_from_layer(layer)
    np.testing.assert_array_equal(v.array, a)
    np.testing.assert_array_equal(v.affine, AFFINE)
    assert v.meta["path"].endswith("ct.nii.gz") and v.meta["format"] == "nifti"
    assert image_layers([layer, SimpleNamespace(name="x", metadata={})]) == [layer]

    layer.metadata = {"kind": "image"}
    with pytest.raises(InputError, match="no medseg geometry; open the scan"):
        volume_from_layer(layer)
    layer = _image_layer(a)
    layer.data = a[:, :, :3]
    with pytest.raises(InputError, match=r"shape \(4, 5, 3\) but its medseg grid is \(4, 5, 6\)"):
        volume_from_layer(layer)


def test_check_run_dir_messages(tmp_path):
    with pytest.raises(InputError, match="choose a run directory"):
        check_run_dir("  ")
    with pytest.raises(InputError, match="does not exist"):
        check_run_dir(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_run_dir(tmp_path / "f.txt")
    with pytest.raises(InputError, match="neither a medseg run directory .* nor an nnU-Net results folder"):
        check_run_dir(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"task": "detection"}))
    with pytest.raises(InputError, match="unknown task 'detection'"):
        check_run_dir(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"task": "instance"}))
    with pytest.raises(InputError, match="no weights"):
        check_run_dir(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"")
    (tmp_path / "labels.json").write_text(json.dumps({"labels": {"background": 0, "tumour": 1}}))
    assert check_run_dir(tmp_path) == ("instance", "Mask R-CNN: tumour")


def test_semantic_layer_data_names_classes_and_keeps_the_image_grid():
    image = _image_layer(np.zeros((6, 5, 4), np.int16))
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1:3, 1:3, 1:3] = 2
    res = CasePrediction(Volume(mask, AFFINE + 1e-9, {"model_id": "run-abc"}), {"background": 0, "liver": 1, "tumour": 2})
    data, kw, kind = prediction_layer_data(res, image)
    assert kind == "labels" and kw["name"] == "ct prediction"
    np.testing.assert_array_equal(data, mask)
    np.testing.assert_array_equal(kw["affine"], AFFINE)               # exactly the image's placement
    md = kw["metadata"]
    assert md["classes"] == {0: "background", 1: "liver", 2: "tumour"}
    assert md["image_path"] == image.metadata["source_path"] and md["model_id"] == "run-abc"
    assert md["affine"] == image.metadata["affine"] and md["shape"] == [6, 5, 4] and md["instance"] is False
    assert kw["colormap"][0] == (0, 0, 0, 0) and len(kw["colormap"][2]) == 4

    res.mask = Volume(mask[:, :, :3], AFFINE)
    with pytest.raises(InputError, match="does not match the scan"):
        prediction_layer_data(res, image)


def test_lesion_rows_fill_missing_values_from_the_mask():
    res = _instance_result()
    rows = lesion_rows(res)
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[1]["class"] == "tumour" and rows[1]["score"] == 0.7
    assert (rows[1]["first_slice"], rows[1]["last_slice"]) == (10, 12)
    voxel_ml = 0.8 * 0.9 * 2.5 / 1000
    assert rows[1]["volume_ml"] == pytest.approx(27 * voxel_ml, abs=1e-4)
    assert rows[2]["volume_ml"] == 5.0                                   # given values are kept
    image = _image_layer(np.zeros(res.mask.shape, np.int16))
    _, kw, _ = prediction_layer_data(res, image)
    assert kw["metadata"]["classes"] == {0: "background", 1: "tumour #1", 2: "tumour #2", 3: "cyst #3"}
    assert kw["metadata"]["instance"] is True


def test_lesion_centre_is_on_a_slice_of_the_lesion():
    m = np.zeros((8, 8, 10), np.uint16)
    m[2, 3, 1] = 5
    m[4, 5, 1] = 5
    m[6, 1, 8] = 5            # a lesion on slices 1 and 8: centroid k = 3.33, nearest lesion slice 1
    assert lesion_centre(m, 5) == (3.0, 4.0, 1.0)
    assert lesion_centre(m, 7) is None
    assert lesion_centre(m, 5, axis=0) == (4.0, 5.0, 1.0)   # slices along i: 2, 4, 6; mean 4 -> voxel (4, 5, 1)


def test_slices_follow_the_axial_axis_of_the_stored_array():
    assert axial_axis(AFFINE) == 2
    sagittal = np.array([[0, 0, 0.8, 0], [0, 0.9, 0, 0], [-2.0, 0, 0, 0], [0, 0, 0, 1.0]])  # i runs S -> I
    assert axial_axis(sagittal) == 0
    mask = np.zeros((10, 4, 4), np.uint16)
    mask[6:9, 1:3, 1:3] = 1
    res = CasePrediction(Volume(mask, sagittal), {"background": 0, "tumour": 1},
                         tables={"lesions": [{"id": 1, "class": "tumour", "score": float("nan")}]})
    [row] = lesion_rows(res)
    assert (row["first_slice"], row["last_slice"]) == (6, 8) and row["score"] is None


def test_reject_and_accept_record_decisions_and_restore():
    res = _instance_result()
    data = res.mask.array.copy()
    review = LesionReview(lesion_rows(res))
    assert review.summary() == {PENDING: 3, ACCEPTED: 0, REJECTED: 0}
    where = review.reject(data, 2)
    assert where[0].size == 27 and (data[where] == 2).all()
    data[where] = 0
    assert review.decision(2) == REJECTED
    data[5, 6, 10] = 1                                  # painted over while rejected: stays
    back = review.accept(data, 2)
    assert back[0].size == 26
    data[back] = 2
    assert (data == 2).sum() == 26 and review.decision(2) == ACCEPTED
    assert review.accept(data, 1)[0].size == 0          # accepting a kept lesion changes nothing
    assert review.summary() == {PENDING: 1, ACCEPTED: 2, REJECTED: 0}


class _FakePredictor:
    def __init__(self, result=None, error=None):
        self.result, self.error, self.calls = result, error, 0

    def predict(self, channels, progress=None, cancel=None, **_kw):
        self.calls += 1
        for i in range(3):
            if cancel.is_set():
                raise Cancelled("prediction cancelled")
            progress(i + 1, 3)
        if self.error:
            raise self.error
        return self.result


def test_run_prediction_outcomes(tmp_path):
    vol = Volume(np.zeros((4, 4, 4), np.int16), AFFINE)
    fake = _FakePredictor(result="RESULT")
    loads, seen = [], []

    def load(run_dir, **kw):
        loads.append((run_dir, kw))
        return fake

    out = run_prediction(load, tmp_path, "cpu", True, vol, threading.Event(), lambda d, t: seen.append((d, t)))
    assert out.status == "ok" and out.result == "RESULT" and seen == [(1, 3), (2, 3), (3, 3)]
    assert loads == [(str(tmp_path.resolve()), {"device": "cpu", "tta": True})]
    again = run_prediction(load, tmp_path, "cpu", True, vol, threading.Event(), lambda *a: None, (out.key, fake))
    assert again.status == "ok" and len(loads) == 1                      # weights loaded once

    cancel = threading.Event()
    out = run_prediction(load, tmp_path, "cpu", False, vol, cancel, lambda d, t: cancel.set())
    assert out.status == "cancelled" and out.result is None

    def bad_load(run_dir, **kw):
        raise InputError(f"{run_dir} is not a medseg run directory (config.yaml missing)")

    out = run_prediction(bad_load, tmp_path, "auto", False, vol, threading.Event())
    assert out.status == "error" and "config.yaml missing" in out.message
    out = run_prediction(lambda *a, **k: _FakePredictor(error=ValueError("boom\nsecond line")), tmp_path, "cpu",
                         False, vol, threading.Event(), lambda *a: None)
    assert out.status == "error" and out.message == "prediction failed (ValueError: boom)"
