"""`medseg plan` through the CLI: writes a loadable plan, refuses broken datasets and overwrites."""

from medseg.data.plan import load_plan
from tests.dataset_factory import write_dataset
from tests.helpers import sha256


def test_plan_cli_writes_a_valid_plan(cli, tmp_path):
    ds = write_dataset(tmp_path / "ds", n=3)
    before = sha256(ds)
    out = tmp_path / "p.yaml"
    r = cli("plan", ds, "--out", out, "--gpu-memory", "12")
    assert r.returncode == 0, r.stderr
    plan = load_plan(out)
    assert plan.gpu_memory_gb == 12 and plan.dataset.labels == {"background": 0, "organ": 1, "lesion": 2}
    assert plan.preprocessing.normalization[0].scheme == "ct"
    assert "target spacing" in r.stdout and sha256(ds) == before
    r = cli("plan", ds, "--out", out)
    assert r.returncode == 2 and "already exists" in r.stderr


def test_plan_cli_refuses_a_broken_dataset(cli, tmp_path):
    ds = write_dataset(tmp_path / "ds", n=2)
    (ds / "labelsTr" / "case_001.nii.gz").unlink()
    r = cli("plan", ds, "--out", tmp_path / "p.yaml")
    assert r.returncode == 2 and "problem(s)" in r.stderr and "case_001" in r.stderr
    assert not (tmp_path / "p.yaml").exists()
