"""A cascade run predicts both stages: organ model -> crop around the organ -> stage 2 -> paste."""

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.io import read_volume
from medseg.predict import CasePrediction, Predictor
from medseg.model.cascade import organ_box
from medseg.model.config import CascadeConfig
from tests.predict.conftest import train_tiny


def test_cascade_prediction_crops_around_the_organ_and_pastes_back(tmp_path, tiny_run, phantom_images):
    stage2 = train_tiny(tmp_path, cascade=CascadeConfig(["liver"], 10.0, organ_model=str(tiny_run)))
    casc = Predictor.from_run(stage2, device="cpu")
    assert casc.stage1 is not None and casc.stage1.run_dir == tiny_run
    image = read_volume(phantom_images[0])
    # stage 1 replaced by a known organ mask: liver in a block, spleen elsewhere
    organs = np.zeros(image.shape, np.uint8)
    organs[20:40, 10:30, 5:20] = 1
    organs[70:80, 40:50, 10:15] = 2
    first = image.with_array(organs)
    casc.stage1.predict = lambda channels, **kw: CasePrediction(first, dict(casc.stage1.labels))
    res = casc.predict([image])
    assert res.mask.shape == image.shape and np.array_equal(res.mask.affine, image.affine)
    start, stop = organ_box(first, [1], 10.0)
    start, stop = np.clip(start, 0, image.shape), np.clip(stop, 0, image.shape)
    margin = np.ceil(10.0 / np.asarray(image.spacing)).astype(int)
    np.testing.assert_array_equal(start, np.maximum([20, 10, 5] - margin, 0))  # box = organ +- 10 mm
    inside = np.zeros(image.shape, bool)
    inside[tuple(slice(a, b) for a, b in zip(start, stop))] = True
    assert inside.any() and not inside.all()
    # outside the organ box: the organ model's labels (same names, same values here)
    np.testing.assert_array_equal(res.mask.array[~inside], first.array[~inside])
    # inside: the stage-2 model on the crop, with the crop's exact geometry
    crop = image.crop(start, stop)
    single = Predictor.from_run(stage2, device="cpu")
    single.stage1 = None
    np.testing.assert_array_equal(res.mask.array[inside].reshape(crop.shape), single(crop).array)
    # a cascade without its organ model is a clear error
    import yaml

    cfg = yaml.safe_load((stage2 / "config.yaml").read_text())
    cfg["cascade"]["organ_model"] = None
    (stage2 / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(InputError, match="--organ-model"):
        Predictor.from_run(stage2, device="cpu")
    assert Predictor.from_run(stage2, device="cpu", organ_model=tiny_run).stage1 is not None


def test_cascade_identity_covers_both_stages_and_a_skipped_stage_2_is_recorded(tmp_path, tiny_run, phantom_images):
    """--resume with another organ model redoes every case (the model id names both stages), and a
    case whose organ model found no organ is `done` with a manifest note saying stage 2 was skipped."""
    import csv
    import shutil

    from medseg.predict.batch import predict_folder

    stage2 = train_tiny(tmp_path, cascade=CascadeConfig(["liver"], 10.0, organ_model=str(tiny_run)))
    other = tmp_path / "other_organs"
    shutil.copytree(tiny_run, other)
    import torch

    ck = torch.load(other / "best.pt", weights_only=False) if (other / "best.pt").exists() else None
    name = "best.pt" if ck is not None else "last.pt"
    ck = ck or torch.load(other / name, weights_only=False)
    for k, v in ck["model"].items():  # another organ model: same network, other weights
        if v.is_floating_point():
            v.zero_()
    torch.save(ck, other / name)
    a = Predictor.from_run(stage2, device="cpu")
    b = Predictor.from_run(stage2, device="cpu", organ_model=other)
    assert a.model_id != b.model_id and a.model_id.startswith(a.model_id.split("+")[0] + "+")
    out = tmp_path / "out"
    inputs = [str(phantom_images[0])]
    predict_folder(stage2, inputs, out, device="cpu", progress=False)
    # all-zero weights predict background everywhere: no liver, so stage 2 is skipped
    summary = predict_folder(stage2, inputs, out, device="cpu", resume=True, organ_model=other, progress=False)
    assert summary.skipped == 0 and summary.done == 1  # redone, not skipped as "done with this model"
    row = next(csv.DictReader(open(out / "manifest.csv")))
    assert row["status"] == "done" and row["model_id"] == b.model_id
    assert row["note"].startswith("stage 2 skipped")
