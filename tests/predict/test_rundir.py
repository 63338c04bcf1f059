"""`RunDir`: one reader of the run directory -- a real tiny run, and broken copies of it, each with
its one message."""

import hashlib
import json
import shutil

import pytest

from medseg.errors import InputError
from medseg.model.rundir import BEST, CONFIG, LABELS, LAST, PLAN, RUN_INFO
from medseg.predict import RunDir, describe_run, run_task
from medseg.predict.registry import model_id


def _sha12(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _copy(run, dest, *names):
    """A copy of ``run`` with only the files ``names``."""
    dest.mkdir()
    for name in names:
        shutil.copy2(run / name, dest / name)
    return dest


def _weights(run):
    return run / BEST if (run / BEST).is_file() else run / LAST


def test_a_trained_run_reads_as_the_trainer_wrote_it(tiny_run):
    run = RunDir.open(tiny_run)
    assert run.path == tiny_run and run.task == "semantic" and run_task(tiny_run) == "semantic"
    plan = run.plan()
    assert run.labels == plan.dataset.labels == {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "tumour": 4}
    assert run.channels == {0: "CT"} and run.info["fold"] is not None
    assert run.config_path == tiny_run / CONFIG and run.config_path.is_file()
    assert run.checkpoint() == _weights(tiny_run)
    expect = f"{tiny_run.name}-{_sha12(_weights(tiny_run))}"
    assert run.model_id() == expect == model_id(tiny_run) == describe_run(tiny_run)[1]
    assert describe_run(tiny_run) == (plan.dataset.labels, expect, 1)
    run.require(CONFIG, PLAN, LABELS, RUN_INFO)  # all there: no error


def test_without_best_the_last_weights_serve_and_name_the_model(tiny_run, tmp_path):
    from medseg.predict import Predictor

    run = _copy(tiny_run, tmp_path / "r", CONFIG, PLAN, LABELS, RUN_INFO)
    shutil.copy2(_weights(tiny_run), run / LAST)
    assert RunDir(run).checkpoint() == run / LAST and RunDir(run).checkpoint(LAST) == run / LAST
    expect = f"r-{_sha12(run / LAST)}"
    assert RunDir(run).model_id() == expect == RunDir(run).model_id(LAST)
    assert Predictor.from_run(run, device="cpu").model_id == expect
    assert describe_run(run)[1] == expect


def test_no_weights_is_one_message(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path / "r", CONFIG, PLAN, LABELS, RUN_INFO)
    msg = f"{run} has no weights (best.pt or last.pt); the training has not saved a checkpoint yet"
    for call in (lambda: RunDir(run).checkpoint(), lambda: RunDir(run).model_id(), lambda: describe_run(run),
                 lambda: model_id(run)):
        with pytest.raises(InputError, match="^" + msg.replace("(", r"\(").replace(")", r"\)")):
            call()
    with pytest.raises(InputError, match=r"has no weights \(last.pt\)"):
        RunDir(run).checkpoint(LAST)
    from medseg.predict import Predictor

    with pytest.raises(InputError, match="has no weights"):
        Predictor.from_run(run, device="cpu")


def test_missing_run_json_is_not_a_run_directory(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path / "r", CONFIG, PLAN, LABELS)
    for call in (lambda: RunDir.open(run), lambda: RunDir(run).task, lambda: run_task(run), lambda: describe_run(run)):
        with pytest.raises(InputError, match=r"is neither a medseg run directory \(no run.json\) nor an nnU-Net"):
            call()
    with pytest.raises(InputError, match=r"^--init .* is not a medseg run directory \(run.json missing\); give the "
                                         r"--out folder of `medseg train`$"):
        RunDir(run, "--init").info


def test_unreadable_run_json_and_unknown_task(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path / "r", CONFIG, PLAN, LABELS)
    (run / RUN_INFO).write_text('{"task": "semantic"')
    assert RunDir.open(run).path == run  # a run.json is there
    for call in (lambda: RunDir(run).info, lambda: RunDir(run).task, lambda: run_task(run)):
        with pytest.raises(InputError, match=r"run.json is unreadable \(.*\); restore it from the training run"):
            call()
    (run / RUN_INFO).write_text("[1, 2]")
    with pytest.raises(InputError, match=r"is unreadable \(not a JSON object\)"):
        RunDir(run).task
    (run / RUN_INFO).write_text(json.dumps({"task": "detection"}))
    with pytest.raises(InputError, match="unknown task 'detection'; this medseg knows semantic, instance"):
        RunDir(run).task
    (run / RUN_INFO).write_text(json.dumps({}))
    assert RunDir(run).task == "semantic"  # runs written before the key existed


def test_required_files_have_one_message(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path / "r", CONFIG, LABELS, RUN_INFO)
    shutil.copy2(_weights(tiny_run), run / BEST)
    expect = f"{run} is not a medseg run directory (plan.yaml missing); give the --out folder of `medseg train`"
    from medseg.predict import Predictor

    for call in (lambda: RunDir(run).require(CONFIG, PLAN), lambda: RunDir(run).plan(), lambda: describe_run(run),
                 lambda: Predictor.from_run(run, device="cpu")):
        with pytest.raises(InputError) as e:
            call()
        assert str(e.value) == expect
    with pytest.raises(InputError) as e:
        RunDir(run, "--init").require(PLAN)
    assert str(e.value) == f"--init {expect}"


def test_instance_classes_and_channels(tmp_path):
    (tmp_path / RUN_INFO).write_text(json.dumps({"task": "instance"}))
    (tmp_path / LABELS).write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2},
                                               "classes": {"background": 0, "tumour": 1},
                                               "channels": {"0": "CT", "1": "PET"}}))
    (tmp_path / LAST).write_bytes(b"weights")
    run = RunDir.open(tmp_path)
    assert run.task == "instance" and run.classes == {"background": 0, "tumour": 1}
    assert run.labels == {"background": 0, "liver": 1, "tumour": 2} and run.channels == {0: "CT", 1: "PET"}
    expect = f"{tmp_path.name}-{hashlib.sha256(b'weights').hexdigest()[:12]}"
    assert describe_run(tmp_path) == ({"background": 0, "tumour": 1}, expect, 2)
    (tmp_path / LABELS).write_text(json.dumps({"labels": {"background": 0, "x": 1}}))
    with pytest.raises(InputError, match=r"labels.json has no model classes \('classes'\); it is not from an instance run"):
        run.classes
    assert run.channels == {}


def test_an_nnunet_results_folder_is_task_nnunet(tmp_path):
    model = tmp_path / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "dataset.json").write_text("{}")
    (model / "plans.json").write_text("{}")
    for folder in (model, model.parent):
        assert RunDir.open(folder).task == "nnunet" and run_task(folder) == "nnunet"
        assert RunDir(folder).nnunet_folder == model


def test_init_sources_read_through_rundir(tiny_run, tmp_path):
    from medseg.train.init import init_source, instance_init_source

    assert init_source(tiny_run) == (tiny_run, _weights(tiny_run))
    with pytest.raises(InputError, match="that is a U-Net run"):
        instance_init_source(tiny_run)
    inst = tmp_path / "inst"
    inst.mkdir()
    (inst / RUN_INFO).write_text(json.dumps({"task": "instance"}))
    (inst / LABELS).write_text(json.dumps({"labels": {"background": 0, "t": 1}, "classes": {"background": 0, "t": 1}}))
    with pytest.raises(InputError, match=r"that is an instance \(Mask R-CNN\) run"):
        init_source(inst)
    with pytest.raises(InputError, match=r"^--init .* has no weights \(best.pt or last.pt\)"):
        instance_init_source(inst)
    (inst / BEST).write_bytes(b"w")
    assert instance_init_source(inst) == (inst, inst / BEST, {"background": 0, "t": 1})
    with pytest.raises(InputError, match=r"^--init .* is not a medseg run directory \(run.json missing\)"):
        instance_init_source(tmp_path / "nothing")


def test_a_cascade_names_its_organ_model_in_its_messages(tiny_run, tmp_path):
    import yaml

    from medseg.predict.registry import cascade_model_id

    run = _copy(tiny_run, tmp_path / "stage2", CONFIG, PLAN, LABELS, RUN_INFO)
    shutil.copy2(_weights(tiny_run), run / BEST)
    cfg = yaml.safe_load((run / CONFIG).read_text())
    cfg["cascade"] = {"organ_labels": ["liver"], "margin_mm": 10.0, "organ_model": str(tmp_path / "organs")}
    (run / CONFIG).write_text(yaml.safe_dump(cfg))
    (tmp_path / "organs").mkdir()
    with pytest.raises(InputError, match=r"^--organ-model .*organs is not a medseg run directory \(run.json missing\)"):
        cascade_model_id(run, BEST, None)
    (tmp_path / "organs" / RUN_INFO).write_text("{}")
    with pytest.raises(InputError, match=r"^--organ-model .*organs has no weights \(best.pt or last.pt\)"):
        cascade_model_id(run, BEST, None)
    assert cascade_model_id(run, BEST, tiny_run) == f"stage2-{_sha12(run / BEST)}+{model_id(tiny_run)}"


def test_rundir_writers_round_trip_atomically_with_the_umask(tmp_path):
    """What the trainers write through RunDir reads back with json / yaml / csv, leaves no
    temporary file, and gets the umask's mode."""
    import csv
    import json
    import os
    import stat

    import yaml

    from medseg.model.rundir import CONFIG, METRICS, RUN_INFO, RunDir

    old = os.umask(0o027)
    try:
        run = RunDir(tmp_path)
        run.write_json(RUN_INFO, {"task": "instance", "fold": 0})
        run.write_yaml(CONFIG, {"epochs": 3, "model": {"name": "maskrcnn"}})
        run.write_metrics([{"epoch": 1, "lr": "0.001"}, {"epoch": 2, "lr": "0.0005"}], ["epoch", "lr"])
    finally:
        os.umask(old)
    assert json.loads((tmp_path / RUN_INFO).read_text()) == {"task": "instance", "fold": 0}
    assert yaml.safe_load((tmp_path / CONFIG).read_text()) == {"epochs": 3, "model": {"name": "maskrcnn"}}
    with open(tmp_path / METRICS, newline="") as f:
        assert list(csv.DictReader(f)) == [{"epoch": "1", "lr": "0.001"}, {"epoch": "2", "lr": "0.0005"}]
    assert run.metrics_rows() == [{"epoch": "1", "lr": "0.001"}, {"epoch": "2", "lr": "0.0005"}]
    assert RunDir(tmp_path / "new").metrics_rows() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([RUN_INFO, CONFIG, METRICS])
    for name in (RUN_INFO, CONFIG, METRICS):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640
    assert RunDir.open(tmp_path).task == "instance"


def test_organ_model_that_does_not_exist_is_one_clear_cli_error(tmp_path, cli):
    """`medseg predict --organ-model` is checked before any case: a missing folder is exit 2 with
    the RunDir message, no traceback."""
    r = cli("predict", tmp_path, "--model", tmp_path, "--organ-model", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert r.returncode == 2 and "--organ-model" in r.stderr and "is not a folder" in r.stderr
    assert "Traceback" not in r.stderr
