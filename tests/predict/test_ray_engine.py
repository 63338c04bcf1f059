"""`medseg predict --engine ray` against a real Ray cluster on 127.0.0.1 (2 worker CPUs):
the same masks and manifest as the local engine, and a worker crash fails only its case.

Ray must be installed (CI installs the ``test`` extra): a missing Ray fails these tests, it
does not skip them.
"""

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import ray  # noqa: F401 -- deliberately not importorskip

from medseg.predict.inputs import find_cases
from medseg.predict.ray_engine import RayPool, _CaseWorker

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).parent / "ray"
TIMING = {"seconds", "read_s", "preprocess_s", "network_s", "postprocess_s", "write_s"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Processes of session ``sid``: everything `ray start` (started with its own session) spawned."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
                pids.append(int(d.name))
    return pids


def _stop(proc: subprocess.Popen) -> None:
    """Stop this cluster only (`ray stop` would stop every Ray on the machine): TERM then KILL
    the processes of the session that `ray start --block` leads."""
    for sig, grace in ((signal.SIGTERM, 1.5), (signal.SIGKILL, 0.0)):
        for pid in _session_pids(proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        while time.monotonic() < end and any(_alive(p) for p in _session_pids(proc.pid)):
            time.sleep(0.2)
    proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class _Cluster:
    """A `ray start --head --block` in its own session; ``address`` waits until it serves."""

    def __init__(self, base: Path):
        # Ray's unix socket paths (<temp>/session_<date>_<pid>/sockets/plasma_store) must stay < 108 chars
        self.base = base
        self.temp = base if len(str(base)) <= 40 else Path(tempfile.mkdtemp(prefix="medseg-ray-"))
        port = _free_port()
        ports = {f"--{name}": str(_free_port()) for name in (
            "ray-client-server-port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
            "runtime-env-agent-port", "metrics-export-port", "node-manager-port", "object-manager-port")}
        cmd = [str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
               "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
               "--temp-dir", str(self.temp), "--min-worker-port", "0", "--max-worker-port", "0",
               *[x for kv in ports.items() for x in kv]]
        self.log = open(base / "ray_start.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._address, self._ready, self._error = f"127.0.0.1:{port}", False, ""

    @property
    def address(self) -> str:
        deadline = time.monotonic() + 90
        while not self._ready and not self._error:
            r = subprocess.run([str(RAY), "status", "--address", self._address], capture_output=True, text=True)
            if r.returncode == 0 and "2.0 CPU" in r.stdout:
                self._ready = True
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self._error = (f"the test Ray cluster did not start:\n{(self.base / 'ray_start.log').read_text()[-3000:]}"
                               f"\n{r.stdout[-1000:]}{r.stderr[-1000:]}")
            else:
                time.sleep(0.5)
        if self._error:
            raise RuntimeError(self._error)
        return self._address

    def stop(self) -> None:
        _stop(self.proc)
        self.log.close()
        if self.temp != self.base:
            shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head node on 127.0.0.1 with 2 CPUs, every port free-picked (no clash with another Ray on
    this machine). It starts while the model trains; ``.address`` waits for it.

    Token authentication is set explicitly (off) for the cluster, `ray status` and the drivers:
    otherwise Ray >= 2.5x turns it on in `ray start` whenever ~/.ray/auth_token exists, while a
    driver given an explicit address does not send the token.
    """
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")  # inherited by `ray start`, `ray status` and the `cli` subprocesses
    cluster = _Cluster(tmp_path_factory.mktemp("ray"))
    try:
        yield cluster
    finally:
        cluster.stop()
        mp.undo()


@pytest.fixture
def study(tmp_path, phantom_images):
    """Three small phantom scans (one in a sub-folder) and a corrupt file."""
    root = tmp_path / "study"
    (root / "sub").mkdir(parents=True)
    shutil.copy(phantom_images[0], root / "a.nii.gz")
    shutil.copy(phantom_images[1], root / "b.nii.gz")
    shutil.copy(phantom_images[2], root / "sub" / "c.nii.gz")
    (root / "bad.nii.gz").write_bytes(b"\x1f\x8b not really a gzip file")
    return root


def _manifest(out: Path) -> tuple[list[str], dict[str, dict]]:
    with open(out / "manifest.csv", newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, {r["case"]: r for r in reader}


def test_ray_engine_writes_what_the_local_engine_writes(ray_cluster, study, tiny_run, tmp_path, cli):
    local, remote = tmp_path / "local", tmp_path / "ray"
    r_local = cli("predict", study, "--model", tiny_run, "--out", local, "--device", "cpu", "--quiet")
    r_ray = cli("predict", "--engine", "ray", "--address", ray_cluster.address, "--workers", "2", study, "--model", tiny_run,
                "--out", remote, "--device", "cpu", "--quiet")
    for r in (r_local, r_ray):
        assert r.returncode == 1, r.stderr  # the corrupt case fails ...
        assert "1 case(s) failed" in r.stderr and "Traceback" not in r.stderr
    cols_local, rows_local = _manifest(local)
    cols_ray, rows_ray = _manifest(remote)
    assert cols_ray == cols_local
    assert set(rows_local) == set(rows_ray) == {"a", "b", "sub/c", "bad"}
    for case, row in rows_local.items():  # ... and everything else matches, but for timings
        assert {k: v for k, v in rows_ray[case].items() if k not in TIMING} == \
               {k: v for k, v in row.items() if k not in TIMING}, case
    assert rows_ray["bad"]["status"] == "failed" and "bad.nii.gz" in rows_ray["bad"]["error"]
    for case in ("a", "b", "sub/c"):
        assert rows_ray[case]["status"] == "done"
        a, b = nib.load(local / f"{case}.nii.gz"), nib.load(remote / f"{case}.nii.gz")
        np.testing.assert_array_equal(np.asarray(b.dataobj), np.asarray(a.dataobj))
        np.testing.assert_array_equal(b.affine, a.affine)
        np.testing.assert_array_equal(b.affine, nib.load(study / f"{case}.nii.gz").affine)
    assert sorted(p.relative_to(remote) for p in remote.rglob("*")) == sorted(p.relative_to(local) for p in local.rglob("*"))


class _CrashOnBoom(_CaseWorker):
    """Kills its own worker process on the case named ``boom`` (as a segfault or the OOM killer would)."""

    def run(self, case, out_dir, fmt, uncertainty):
        if case.key == "boom":
            os._exit(1)
        return super().run(case, out_dir, fmt, uncertainty)


class _CrashPool(RayPool):
    worker_class = _CrashOnBoom


def test_a_case_that_kills_its_worker_fails_alone(ray_cluster, study, tiny_run, tmp_path):
    (study / "bad.nii.gz").unlink()
    shutil.copy(study / "a.nii.gz", study / "boom.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    rows = []
    options = dict(device="cpu", tta=False, overlap=None, organ_model=None)
    pool = _CrashPool(tiny_run, options, address=ray_cluster.address, workers=2)
    try:
        assert (pool.workers, pool.use_gpu, pool.n_channels) == (2, False, 1)
        pool.run(find_cases([study], 1, out), out, "nifti", False, rows.append)
    finally:
        pool.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    by_case = {r["case"]: r for r in rows}
    assert sorted(by_case) == ["a", "b", "boom", "sub/c"] and len(rows) == 4
    assert by_case["boom"]["status"] == "failed" and "worker crashed" in by_case["boom"]["error"]
    assert by_case["boom"]["model_id"] == pool.model_id
    assert all(by_case[c]["status"] == "done" for c in ("a", "b", "sub/c"))
    assert not (out / "boom.nii.gz").exists() and (out / "sub" / "c.nii.gz").exists()
    assert not ray.is_initialized()


def test_device_cuda_on_a_cluster_without_gpus_is_one_clear_error(ray_cluster, study, tiny_run, tmp_path, cli):
    r = cli("predict", "--engine", "ray", "--address", ray_cluster.address, study, "--model", tiny_run,
            "--out", tmp_path / "out", "--device", "cuda")
    assert r.returncode == 2 and "has no GPUs" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_an_unreachable_cluster_is_one_clear_error(study, tiny_run, tmp_path, cli):
    r = cli("predict", "--engine", "ray", "--address", f"127.0.0.1:{_free_port()}", study, "--model", tiny_run,
            "--out", tmp_path / "out")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "no Ray cluster answers" in r.stderr and "ray start --head" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_token_auth_cluster_without_the_token_is_one_clear_error_at_once(study, tiny_run, tmp_path, cli, monkeypatch):
    """A cluster with Ray's token authentication: without the token (no RAY_AUTH_MODE, or a wrong
    token) `ray.init` would print a warning a second for about 20 s before failing; medseg asks the
    GCS once and says what to set. With the right token the same command predicts."""
    import secrets

    token = secrets.token_hex(32)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of the machine's user
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)  # for `ray start` and `ray status`
    cluster = _Cluster(tmp_path)
    try:
        address = cluster.address
        args = ("predict", "--engine", "ray", "--address", address, study / "a.nii.gz", "--model", tiny_run,
                "--device", "cpu", "--quiet")
        monkeypatch.delenv("RAY_AUTH_MODE")
        monkeypatch.delenv("RAY_AUTH_TOKEN")
        r = cli(*args, "--out", tmp_path / "no_mode")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "uses token authentication; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN" in r.stderr
        assert "gcs_client" not in r.stderr and r.stderr.count("\n") == 1  # one line, no Ray retry warnings
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)
        r = cli(*args, "--out", tmp_path / "wrong")
        assert r.returncode == 2 and "the token from RAY_AUTH_TOKEN was refused" in r.stderr, r.stderr
        assert "gcs_client" not in r.stderr and r.stderr.count("\n") == 1
        assert not (tmp_path / "no_mode").exists() and not (tmp_path / "wrong").exists()
        monkeypatch.setenv("RAY_AUTH_TOKEN", token)
        r = cli(*args, "--out", tmp_path / "ok")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "ok" / "a.nii.gz").is_file()
    finally:
        cluster.stop()
