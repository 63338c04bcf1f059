"""`medseg plan` through the CLI: writes a loadable plan, refuses broken datasets and overwrites."""

from medseg.plans import load_plan
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


def test_plan_cli_spacing_override(cli, tmp_path):
    """--spacing replaces the automatic target spacing; the patch is derived for it."""
    ds = write_dataset(tmp_path / "ds", n=3)
    auto, coarse = tmp_path / "auto.yaml", tmp_path / "coarse.yaml"
    assert cli("plan", ds, "--out", auto).returncode == 0
    r = cli("plan", ds, "--out", coarse, "--spacing", "4", "4", "6")
    assert r.returncode == 0, r.stderr
    a, c = load_plan(auto), load_plan(coarse)
    assert list(c.preprocessing.target_spacing) == [4.0, 4.0, 6.0]
    assert list(a.preprocessing.target_spacing) != [4.0, 4.0, 6.0]
    assert all(pc <= pa for pc, pa in zip(c.training.patch_size, a.training.patch_size))
    r = cli("plan", ds, "--out", tmp_path / "bad.yaml", "--spacing", "0", "1", "1")
    assert r.returncode == 2 and "--spacing" in r.stderr and not (tmp_path / "bad.yaml").exists()


def test_plan_cli_base_filters(cli, tmp_path):
    """--base-filters sets the first stage's width, doubling per stage; nonsense is refused."""
    ds = write_dataset(tmp_path / "ds", n=3)
    out = tmp_path / "narrow.yaml"
    r = cli("plan", ds, "--out", out, "--base-filters", "16")
    assert r.returncode == 0, r.stderr
    f = load_plan(out).network.filters
    assert f[0] == 16 and all(b == min(2 * a, 320) for a, b in zip(f, f[1:]))
    r = cli("plan", ds, "--out", tmp_path / "bad.yaml", "--base-filters", "two")
    assert r.returncode == 2 and "--base-filters" in r.stderr and "Traceback" not in r.stderr
