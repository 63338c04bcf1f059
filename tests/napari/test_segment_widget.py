"""The Segment widget in a real napari viewer (Xvfb): a tiny trained U-Net run on a phantom,
Cancel, the Mask R-CNN lesion table (with a fake predictor), and run-directory errors."""

from __future__ import annotations

import json
import threading

import nibabel as nib
import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QPushButton

from medseg import read_volume
from medseg.data.phantoms import write_phantom_dataset
from medseg.plans import save_plan
from medseg.predict import load_predictor
from medseg.predict.result import CasePrediction
from medseg.volume import Volume
from napari_medseg._writer import write_labels
from napari_medseg.segment import preload_triton
from napari_medseg.segment_widget import LESION_COLUMNS, SegmentWidget
from tests.train.conftest import tiny_config, tiny_plan

PLUGIN = "napari-medseg"
WAIT_MS = 60000


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory):
    """A tiny U-Net trained for 2 epochs on 3 small phantoms (about 15 s on 2 CPU cores), and
    the image of one phantom. Returns ``(run_dir, image_path)``."""
    preload_triton()  # earlier GUI tests in this process may have loaded Mesa's LLVM (see its docstring)
    from medseg.train.trainer import train

    root = tmp_path_factory.mktemp("segment")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDSEG_CACHE", str(root / "cache"))
        ds = write_phantom_dataset(root / "ds", cases=3, seed=0, size="small")
        save_plan(tiny_plan(), root / "plan.yaml")
        train(tiny_config(), ds, root / "run", plan=root / "plan.yaml", progress=False)
    return root / "run", ds / "imagesTr" / "phantom_000_0000.nii.gz"


def _segment_widget(viewer) -> SegmentWidget:
    """The widget as a user gets it: Plugins > medseg > Segment (through the npe2 manifest)."""
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert isinstance(widget, SegmentWidget)
    return widget


def _run_and_wait(w, qtbot):
    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    assert w.busy, w.message.text()
    qtbot.waitUntil(lambda: not w.busy, timeout=WAIT_MS)


def test_unet_run_adds_a_labels_layer_on_the_image_grid(unet_run, tmp_path, make_napari_viewer, qtbot):
    run, image_path = unet_run
    viewer = make_napari_viewer()
    [image] = viewer.open(image_path, plugin=PLUGIN)
    w = _segment_widget(viewer)
    assert w.image_layer() is image
    w.run_edit.setText(str(run))
    assert w.run_message.text() == "U-Net: liver, spleen, kidney, tumour"
    w.device_box.setCurrentText("cpu")
    reports = []
    w._progress.changed.connect(lambda d, t: reports.append((d, t)))
    _run_and_wait(w, qtbot)

    lab = w.result_layer
    assert lab is not None and lab in viewer.layers and lab.name == f"{image.name} prediction", w.message.text()
    volume = read_volume(image_path)                                   # independent of the widget
    expected = load_predictor(run, device="cpu").predict([volume]).mask.array
    assert expected.any()
    np.testing.assert_array_equal(lab.data, expected)
    assert reports and reports[-1][0] == reports[-1][1] > 0            # progress reached 100 %
    voxels = [(0, 0, 0), (10, 20, 5), tuple(s - 1 for s in expected.shape), (47, 31, 18)]
    for v in voxels:                                                   # the overlay sits on the scan
        np.testing.assert_allclose(lab.data_to_world(v), image.data_to_world(v), atol=1e-6)
        np.testing.assert_allclose(lab.data_to_world(v), volume.geometry.index_to_world(v), atol=1e-4)
    assert lab.metadata["classes"] == {0: "background", 1: "liver", 2: "spleen", 3: "kidney", 4: "tumour"}
    assert lab.metadata["image_path"] == str(image_path.resolve())
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled() and w.lesion_box.isHidden()

    out = tmp_path / "pred.nii.gz"                                     # the writer saves it on the source grid
    write_labels(str(out), lab.data, {"metadata": lab.metadata})
    saved = nib.load(str(out))
    np.testing.assert_allclose(saved.affine, nib.load(str(image_path)).affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), expected)


class _BlockingPredictor:
    """Wraps a real predictor; its first progress report waits until the run is cancelled."""

    def __init__(self, inner):
        self.inner, self.started = inner, threading.Event()

    def predict(self, channels, progress=None, cancel=None, **kw):
        def report(done, total):
            self.started.set()
            cancel.wait(20)
            progress(done, total)

        return self.inner.predict(channels, progress=report, cancel=cancel, **kw)


def test_cancel_adds_nothing_and_the_widget_is_ready_again(unet_run, make_napari_viewer, qtbot):
    run, image_path = unet_run
    viewer = make_napari_viewer()
    viewer.open(image_path, plugin=PLUGIN)
    w = _segment_widget(viewer)
    w.run_edit.setText(str(run))
    w.device_box.setCurrentText("cpu")
    blocking = _BlockingPredictor(load_predictor(run, device="cpu"))
    w.load_predictor = lambda run_dir, **kw: blocking
    n_layers = len(viewer.layers)

    qtbot.mouseClick(w.run_button, Qt.MouseButton.LeftButton)
    assert w.busy and not w.run_button.isEnabled() and w.cancel_button.isEnabled()
    qtbot.waitUntil(blocking.started.is_set, timeout=WAIT_MS)        # the model is running
    qtbot.mouseClick(w.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.busy, timeout=WAIT_MS)
    assert len(viewer.layers) == n_layers and w.result_layer is None
    assert "cancelled" in w.message.text()
    assert w.run_button.isEnabled() and not w.cancel_button.isEnabled() and w.progress.isHidden()

    w.load_predictor = lambda run_dir, **kw: blocking.inner           # ready again: a full run works
    _run_and_wait(w, qtbot)
    assert len(viewer.layers) == n_layers + 1 and w.result_layer.data.any()


class _FakeInstancePredictor:
    """Stands for medseg's Mask R-CNN predictor: an instance mask with three lesions."""

    def __init__(self, mask: np.ndarray, rows: list[dict]):
        self.mask, self.rows = mask, rows

    def predict(self, channels, progress=None, cancel=None, **_kw):
        progress(1, 1)
        vol = channels[0]
        return CasePrediction(Volume(self.mask.copy(), vol.affine.copy(), {"model_id": "fake-mrcnn"}),
                              {"background": 0, "tumour": 1}, tables={"lesions": self.rows})


def test_instance_result_lesion_table_jump_and_reject(unet_run, tmp_path, make_napari_viewer, qtbot):
    _run, image_path = unet_run
    viewer = make_napari_viewer()
    [image] = viewer.open(image_path, plugin=PLUGIN)
    shape = image.data.shape                                           # (95, 63, 37)
    mask = np.zeros(shape, np.uint32)
    mask[10:14, 10:14, 4:7] = 1
    mask[40:46, 30:35, 20:25] = 2                                      # centre slice k = 22
    mask[70:72, 50:52, 31] = 3
    rows = [{"id": i, "class": "tumour", "score": s, "first_slice": a, "last_slice": b}
            for i, s, a, b in ((1, 0.95, 4, 6), (2, 0.81, 20, 24), (3, 0.42, 31, 31))]
    run = tmp_path / "mrcnn_run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"task": "instance"}))
    (run / "best.pt").write_bytes(b"")
    w = _segment_widget(viewer)
    w.load_predictor = lambda run_dir, **kw: _FakeInstancePredictor(mask, rows)
    w.run_edit.setText(str(run))
    assert w.run_message.text().startswith("Mask R-CNN") and not w.tta.isEnabled()
    _run_and_wait(w, qtbot)

    lab = w.result_layer
    assert lab is not None, w.message.text()
    np.testing.assert_array_equal(lab.data, mask)
    assert not w.lesion_box.isHidden() and w.table.rowCount() == 3
    cells = [[w.table.item(r, c).text() for c in range(6)] for r in range(3)]
    ml = 150 * float(np.prod(read_volume(image_path).spacing)) / 1000   # 6 x 5 x 5 voxels, mm^3 -> ml
    assert cells[1] == ["2", "tumour", "0.810", f"{ml:.2f}", "20–24", "pending"]

    rect = w.table.visualItemRect(w.table.item(1, 0))                  # click row 2
    qtbot.mouseClick(w.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert lab.selected_label == 2
    assert viewer.dims.not_displayed == (2,)                           # the slider steps through z (axial)
    k = lab.world_to_data(viewer.dims.point)[2]
    assert round(float(k)) == 22
    z_step = viewer.dims.range[2]
    assert viewer.dims.current_step[2] == round((viewer.dims.point[2] - z_step.start) / z_step.step)

    reject = w.table.cellWidget(1, LESION_COLUMNS.index("")).findChild(QPushButton, "reject_2")
    qtbot.mouseClick(reject, Qt.MouseButton.LeftButton)
    assert not (lab.data == 2).any()
    assert (lab.data == 1).sum() == 48 and (lab.data == 3).sum() == 4  # the other lesions are kept
    assert w.table.item(1, LESION_COLUMNS.index("decision")).text() == "rejected"
    lab.undo()                                                         # a rejection is undoable
    assert (lab.data == 2).sum() == 150
    accept = w.table.cellWidget(0, LESION_COLUMNS.index("")).findChild(QPushButton, "accept_1")
    qtbot.mouseClick(accept, Qt.MouseButton.LeftButton)
    assert w.table.item(0, LESION_COLUMNS.index("decision")).text() == "accepted"
    assert "1 accepted, 1 rejected, 1 pending" in w.message.text()


def test_bad_run_directory_shows_a_clear_message(unet_run, tmp_path, make_napari_viewer, qtbot):
    _run, image_path = unet_run
    viewer = make_napari_viewer()
    viewer.open(image_path, plugin=PLUGIN)
    w = _segment_widget(viewer)
    n_layers = len(viewer.layers)

    w.run_edit.setText(str(tmp_path / "missing"))
    assert "does not exist; choose the --out folder of `medseg train`" in w.run_message.text()
    assert w.run() is False and not w.busy
    assert w.message.text().startswith("run directory: ") and "does not exist" in w.message.text()

    w.run_edit.setText(str(tmp_path))
    assert "is neither a medseg run directory (no run.json)" in w.run_message.text()

    broken = tmp_path / "broken"                                       # passes the quick check, fails to load
    broken.mkdir()
    (broken / "run.json").write_text(json.dumps({"task": "semantic"}))
    (broken / "best.pt").write_bytes(b"not a checkpoint")
    w.run_edit.setText(str(broken))
    w.device_box.setCurrentText("cpu")
    _run_and_wait(w, qtbot)
    assert w.message.text().startswith("error: ") and "config.yaml missing" in w.message.text()
    assert len(viewer.layers) == n_layers and w.run_button.isEnabled()


def test_models_load_after_napari_has_rendered(qapp):
    """In a fresh process that has drawn with OpenGL (Mesa under Xvfb) first, opening the Segment
    widget and then importing the model stack must not crash (Triton's LLVM vs Mesa's)."""
    import subprocess
    import sys

    code = (
        "import numpy as np, napari\n"
        "v = napari.Viewer(show=False)\n"
        "v.add_image(np.zeros((8, 8, 8), np.float32))\n"
        "v.screenshot(canvas_only=True)\n"
        "from napari_medseg.segment_widget import SegmentWidget\n"
        "SegmentWidget(v)\n"
        "import monai, torch\n"
        "print(torch.nn.Conv3d(1, 1, 3)(torch.zeros(1, 1, 4, 4, 4)).shape)\n"
        "v.close()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert "torch.Size([1, 1, 2, 2, 2])" in r.stdout


class _FakeSemanticPredictor:
    """Stands for a U-Net: each call returns a different one-class mask (a box growing along i),
    so a replaced layer can be told from the one it replaced."""

    def __init__(self):
        self.calls = 0

    @staticmethod
    def mask(shape, call: int) -> np.ndarray:
        m = np.zeros(shape, np.uint8)
        m[2:2 + 2 * call, 3:8, 1:4] = 1
        return m

    def predict(self, channels, progress=None, cancel=None, **_kw):
        self.calls += 1
        progress(1, 1)
        vol = channels[0]
        return CasePrediction(Volume(self.mask(vol.shape, self.calls), vol.affine.copy(), {"model_id": "fake-unet"}),
                              {"background": 0, "organ": 1})


def _fake_run(path):
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"task": "semantic"}))
    (path / "best.pt").write_bytes(b"")
    return path


def test_running_again_replaces_the_result_instead_of_adding_a_duplicate(tmp_path, make_napari_viewer, qtbot):
    from tests.napari.factory import save_nifti

    aff = np.diag([-1.2, -1.2, 3.0, 1.0])
    shape = (16, 14, 8)
    for name in ("scan_a", "scan_b"):
        save_nifti(tmp_path / f"{name}.nii.gz", np.full(shape, -1000, np.int16), aff)
    viewer = make_napari_viewer()
    [scan_a] = viewer.open(tmp_path / "scan_a.nii.gz", plugin=PLUGIN)
    [scan_b] = viewer.open(tmp_path / "scan_b.nii.gz", plugin=PLUGIN)
    w = _segment_widget(viewer)
    fake = _FakeSemanticPredictor()
    w.load_predictor = lambda run_dir, **kw: fake
    run1, run2 = _fake_run(tmp_path / "run1"), _fake_run(tmp_path / "run2")

    def run(image, run_dir):
        w.set_image_layer(image)
        w.run_edit.setText(str(run_dir))
        w.device_box.setCurrentText("cpu")
        _run_and_wait(w, qtbot)
        return w.result_layer

    def names():
        return [lay.name for lay in viewer.layers]

    first = run(scan_a, run1)
    assert names() == ["scan_a", "scan_b", "scan_a prediction"]
    viewer.layers.move(names().index("scan_a prediction"), 0)       # the user put it at the bottom
    second = run(scan_a, run1)                                        # same image, same run: replaced in place
    assert names() == ["scan_a prediction", "scan_a", "scan_b"] and first not in viewer.layers
    np.testing.assert_array_equal(second.data, _FakeSemanticPredictor.mask(shape, 2))
    assert viewer.dims.order == (2, 1, 0)                             # shown in the radiological axial view

    second.brush_size = 1
    second.paint((15, 13, 7), 1)                                      # the user corrects it ...
    edited = np.array(second.data)
    third = run(scan_a, run1)                                         # ... so a new run keeps it
    assert second in viewer.layers and third is not second and "is kept" in w.message.text()
    np.testing.assert_array_equal(second.data, edited)
    np.testing.assert_array_equal(third.data, _FakeSemanticPredictor.mask(shape, 3))
    n = len(viewer.layers)
    fourth = run(scan_a, run1)                                        # the untouched newest result is replaced
    assert len(viewer.layers) == n and third not in viewer.layers and second in viewer.layers

    other_run = run(scan_a, run2)                                     # another run, another image: new layers
    other_image = run(scan_b, run1)
    assert len(viewer.layers) == n + 2
    assert {fourth, other_run, other_image} <= set(viewer.layers)
    assert other_image.name == "scan_b prediction"
