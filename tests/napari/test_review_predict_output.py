"""`medseg review` on a real `medseg predict` output folder (nested study tree, DICOM series,
uncertainty), through the review session API (no Qt needed)."""

import json
import shutil

import numpy as np

from medseg.io import read_volume
from medseg.predict import predict_folder
from napari_medseg.review import ReviewSession
from tests.helpers import MR_DICOM
from tests.predict.conftest import train_tiny


def test_review_session_over_a_predict_folder(tmp_path):
    run = train_tiny(tmp_path / "train")
    study = tmp_path / "study"
    shutil.copytree(MR_DICOM, study / "pat1" / "mr")
    (study / "pat2").mkdir()
    src = sorted((tmp_path / "train" / "ds" / "imagesTr").glob("*_0000.nii.gz"))
    shutil.copy(src[0], study / "pat2" / "ct.nii.gz")
    shutil.copy(src[1], study / "ct.nii.gz")  # same file name at another level: distinct cases
    out = tmp_path / "masks"
    s = predict_folder(run, [study], out, device="cpu", uncertainty=True, progress=False)
    assert (s.done, s.failed) == (3, 0)

    session = ReviewSession(out, reviewer="dr_test")
    cases = {c.case: c for c in session.cases}
    assert set(cases) == {"pat1__mr", "pat2__ct", "ct"}
    assert all(c.image is not None and c.uncertainty is not None for c in cases.values())
    assert cases["pat1__mr"].series_uid == read_volume(MR_DICOM).meta["series_uid"]
    loaded = session.load("pat1__mr")
    assert loaded.image is not None and loaded.image.shape == loaded.prediction.shape
    np.testing.assert_allclose(loaded.image.affine, loaded.prediction.affine, atol=1e-4)
    # a correction, accepted, then exported for retraining
    corrected = loaded.labels.copy()
    corrected[:5] = 0
    session.open("pat1__mr")
    session.save_correction("pat1__mr", corrected)
    line = session.accept("pat1__mr")
    assert line["status"] == "corrected"
    audit = [json.loads(x) for x in (out / "review" / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["case"] == "pat1__mr" and audit[-1]["reviewer"] == "dr_test"
    np.testing.assert_array_equal(read_volume(out / "pat1" / "mr.nii.gz").array, loaded.prediction.array)  # untouched


def test_review_widget_on_a_predict_folder_under_xvfb(tmp_path, make_napari_viewer, qtbot):
    """The GUI path of `medseg review OUT` on real predict output: the DICOM case opens with
    its scan and mask on one world grid, and a paint stroke is autosaved."""
    import nibabel as nib

    from napari_medseg.review.widget import ReviewWidget

    run = train_tiny(tmp_path / "train")
    study = tmp_path / "study"
    shutil.copytree(MR_DICOM, study / "pat1" / "mr")
    out = tmp_path / "masks"
    assert predict_folder(run, [study], out, device="cpu", progress=False).done == 1
    viewer = make_napari_viewer()
    w = ReviewWidget(viewer, folder=out, reviewer="dr_x")
    viewer.window.add_dock_widget(w)
    w.next_case()
    qtbot.waitUntil(lambda: w.current == "pat1__mr" and w.labels_layer is not None, timeout=20000)
    pred = read_volume(out / "pat1" / "mr.nii.gz")
    np.testing.assert_array_equal(w.labels_layer.data, pred.array)
    np.testing.assert_allclose(w.image_layer.data_to_world((1, 2, 3)), w.labels_layer.data_to_world((1, 2, 3)), atol=1e-4)
    lab = w.labels_layer
    lab.brush_size = 1
    voxel = tuple(int(v) for v in np.argwhere(pred.array == 0)[0])
    lab.paint(voxel, 1)
    corrected = out / "review" / "corrected" / "pat1__mr.nii.gz"
    qtbot.waitUntil(lambda: corrected.is_file() and np.asarray(nib.load(str(corrected)).dataobj)[voxel] == 1, timeout=20000)
