"""``medseg predict --engine ray``: spread the cases of a batch over a Ray cluster.

One Ray actor per worker holds one loaded model (``load_predictor`` once, in the actor) and
runs whole cases with :func:`medseg.predict.case.run_case` -- the very function the local
engine uses -- so the masks, uncertainty maps and manifest rows are the same files. The
driver (the machine running ``medseg predict``) keeps at most ``in_flight`` cases queued per
actor, records each finished case as it completes, and owns ``OUT_DIR/manifest.csv``.

Resources: with ``--device cuda`` (or ``auto`` on a cluster that has GPUs) each actor asks
Ray for one GPU (``num_gpus=1``, Ray sets ``CUDA_VISIBLE_DEVICES``); otherwise for one CPU.
Default workers: one per cluster GPU, else ``min(2, cluster CPUs)``.

A real cluster needs, on every node: medseg (same version as the driver) and Ray (same
version) installed in the Python that ``ray start`` runs, and RUN_DIR, the inputs and OUT_DIR
on a shared filesystem at the same paths (the workers read and write them directly). The pool
checks both the model id and that OUT_DIR is visible on each worker before the first case.

    pool = RayPool("runs/organs", dict(device="auto", tta=False, overlap=None, organ_model=None),
                   address="10.0.0.5:6379", workers=4)
    pool.run(cases, out_dir, "nifti", False, record)   # record(row) per finished case
    pool.shutdown()
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections import deque
from dataclasses import replace
from pathlib import Path

from medseg.errors import InputError, short_reason
from medseg.predict.inputs import CaseInput, safe_resolve
from medseg.predict.registry import describe_run

IN_FLIGHT = 2  # cases queued per actor: one computing, one waiting (its read overlaps nothing else)
_START_HINT = ("start one with `ray start --head` (then `ray start --address HEAD:6379` on the other machines), "
               "or leave out --address to run a local Ray on this machine")


LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def _loopback_only(active: bool):
    """Make a *local* Ray (one that ``ray.init`` starts) bind every server to 127.0.0.1.

    ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray replaces a loopback
    node address by the machine's routable IP, and then its gRPC servers (GCS, raylet, workers,
    the driver) listen on every interface -- reachable, unauthenticated, from the network.
    Ray keeps loopback when clusters are "disabled" (its switch for laptops,
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), which this sets while the local Ray starts (the
    processes it spawns inherit it). A cluster given by ``--address`` / ``RAY_ADDRESS`` is the
    user's choice and is not touched.
    """
    if not active:
        yield
        return
    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    old_env = os.environ.get(name)
    os.environ[name] = "0"
    try:
        from ray._private import ray_constants
    except ImportError:  # a Ray without this switch: the environment variable is all we can do
        ray_constants = None
    old_const = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if ray_constants is not None and old_const is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False  # read at import time; ray may be imported already
    try:
        yield
    finally:
        if ray_constants is not None and old_const is not None:
            ray_constants.ENABLE_RAY_CLUSTER = old_const
        if old_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old_env


#: The reaper: waits for its parent (the driver) to die, then kills the processes given as
#: ``pid:create_time`` arguments that still exist with that start time (never a reused pid).
_REAPER = """
import os, signal, sys, time
import psutil
parent = os.getppid()
while os.getppid() == parent:
    time.sleep(0.25)
for arg in sys.argv[1:]:
    pid, created = arg.split(":")
    try:
        p = psutil.Process(int(pid))
        if abs(p.create_time() - float(created)) < 1e-3:
            p.send_signal(signal.SIGKILL)
    except (psutil.Error, ValueError):
        pass
"""


def _descendants() -> dict[int, float]:
    """``{pid: create_time}`` of this process's descendants ({} without psutil)."""
    try:
        import psutil

        return {p.pid: p.create_time() for p in psutil.Process().children(recursive=True)}
    except Exception:  # noqa: BLE001  (psutil is a Ray dependency; without it Ray's own timeouts apply)
        return {}


def _start_reaper(before: dict[int, float]):
    """Start the local Ray's reaper for the processes that ``ray.init`` started (the
    descendants now that were not in ``before``); Linux / macOS; None elsewhere or without psutil.

    When the driver is killed (SIGKILL, OOM), Ray takes its GCS, raylet and workers down at once,
    but its dashboard and runtime-env agents first try to report the dead raylet to the dead GCS
    and only exit after that call's fixed 60 s timeout, still holding their (loopback) ports. The
    reaper (a tiny process, ``_REAPER``) notices the driver's death within a quarter second and
    kills every process the local Ray had started (and nothing else the caller runs). A normal
    shutdown stops it first.
    """
    started = {pid: t for pid, t in _descendants().items() if before.get(pid) != t}
    if sys.platform == "win32" or not started:
        return None
    import subprocess

    args = [f"{pid}:{t!r}" for pid, t in started.items()]
    return subprocess.Popen([sys.executable, "-c", _REAPER, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


def _auth_token() -> tuple[str | None, str]:
    """The token Ray would send, and where it comes from (Ray's own precedence: RAY_AUTH_TOKEN,
    then the file RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None, path
    except OSError:
        return None, path


def _check_auth(gcs: str, address: str) -> None:
    """Ask the cluster's GCS for its id once (a few ms). A cluster with token authentication
    refuses a missing or wrong token at once, where ``ray.init`` would retry for about 20 s,
    printing a warning a second, before failing. Anything else (no gRPC stubs in this Ray,
    another error) is left to ``ray.init``."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except Exception:  # noqa: BLE001  (Ray's generated stubs moved: skip the early check)
        return
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token"  # Ray sends a token only then
    token, source = _auth_token()
    metadata = [("authorization", f"Bearer {token}")] if (mode and token) else None
    with grpc.insecure_channel(gcs) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=5, metadata=metadata)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAUTHENTICATED:
                return
            if not mode:
                todo = "set RAY_AUTH_MODE=token" + (f" (the token in {source} is then used)" if token else
                                                    " and RAY_AUTH_TOKEN to the cluster's token")
            elif token:
                todo = f"the token from {source} was refused: give the cluster's token in RAY_AUTH_TOKEN"
            else:
                todo = (f"no token was found ({source} is absent): set RAY_AUTH_TOKEN to the cluster's token or "
                        "copy the head node's ~/.ray/auth_token to this machine")
            raise InputError(f"--address {address}: the Ray cluster there uses token authentication; {todo} "
                             "(see docs/guides/prediction.md, Ray)") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'medseg[ray]'") from None
    return ray


class _CaseWorker:
    """The Ray actor: one loaded model; ``run`` predicts and writes one whole case."""

    def __init__(self, run_dir: str, options: dict, cwd: str | None):
        import ray

        if cwd and os.path.isdir(cwd):  # relative paths mean what they mean on the driver
            os.chdir(cwd)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        import torch

        torch.set_num_threads(max(1, int(cpus)))
        self.error, self.predictor = "", None
        try:
            from medseg.predict.registry import load_predictor

            self.predictor = load_predictor(run_dir, **options)
        except Exception as e:  # noqa: BLE001 -- reported by ready(), as one line
            from medseg.predict.case import error_text

            self.error = error_text(e)

    def ready(self, out_dir: str) -> dict:
        import ray

        p = self.predictor
        return {"error": self.error, "model_id": p.model_id if p is not None else "", "node": ray.util.get_node_ip_address(),
                "out_visible": os.path.isdir(out_dir)}

    def run(self, case: CaseInput, out_dir: str, fmt: str, uncertainty: bool) -> dict:
        from medseg.predict.case import run_case

        return run_case(self.predictor, case, Path(out_dir), fmt, uncertainty)


class RayPool:
    """``workers`` Ray actors holding the model of ``run_dir``; see the module docstring.

    Attributes (read on the driver from the run folder): ``labels`` {name: value},
    ``model_id``, ``n_channels``; ``workers`` (actors started), ``use_gpu``.

    Raises:
        InputError: Ray missing, cluster unreachable, ``--device cuda`` on a cluster without
            GPUs, not a run folder.
    """

    worker_class = _CaseWorker  # the actor's Python class (a subclass may wrap it)

    def __init__(self, run_dir: str | Path, options: dict, *, address: str | None = None, workers: int | None = None,
                 runtime_env: dict | None = None, in_flight: int = IN_FLIGHT):
        self._ray = ray = _import_ray()
        self.run_dir = Path(run_dir).resolve()
        self.labels, self.model_id, self.n_channels = describe_run(self.run_dir, options.get("organ_model"), options.get("folds"))
        self.in_flight = max(1, int(in_flight))
        self._owns_ray = False
        self._actors: list = []
        self._connect(address, runtime_env)
        try:
            self.use_gpu, self.workers = self._size(options.get("device", "auto"), workers, address)
            opts = dict(options, device="cuda" if self.use_gpu else "cpu")
            if opts.get("organ_model") is not None and Path(opts["organ_model"]).exists():
                opts["organ_model"] = str(Path(opts["organ_model"]).resolve())
            self._options = opts
            self._actor_cls = ray.remote(self.worker_class)
            self._actors = [self._new_actor() for _ in range(self.workers)]  # models load while cases are found
        except BaseException:
            self.shutdown()
            raise

    # -- cluster --------------------------------------------------------------------------
    def _connect(self, address: str | None, runtime_env: dict | None) -> None:
        import logging

        ray = self._ray
        if ray.is_initialized():  # a caller's own Ray session: use it, leave it running
            return
        if address and address not in ("auto", "local") and not address.startswith("ray://"):
            host, _, port = address.rpartition(":")
            try:
                socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
            except (OSError, ValueError) as e:
                raise InputError(f"--address {address}: no Ray cluster answers there ({short_reason(e, 80)}); "
                                 f"{_START_HINT}") from None
            _check_auth(f"{host or '127.0.0.1'}:{port}", address)
        target = address or os.environ.get("RAY_ADDRESS") or "local"
        kw = dict(address=target, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                  ignore_reinit_error=True, configure_logging=True)
        if target == "local":
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kw["_node_ip_address"] = LOOPBACK
        if runtime_env:
            kw["runtime_env"] = runtime_env
        try:
            before = _descendants() if target == "local" else {}
            with _loopback_only(target == "local"):
                ray.init(**kw)
            if target == "local":
                self._reaper = _start_reaper(before)
        except ray.exceptions.AuthenticationError:
            raise InputError(f"the Ray cluster at {target} uses token authentication: set RAY_AUTH_MODE=token and "
                             "give its token (RAY_AUTH_TOKEN, or the head node's ~/.ray/auth_token copied to this "
                             "machine); see https://docs.ray.io/en/latest/ray-security/token-auth.html") from None
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
            auth = ("" if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else
                    "; if it uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN")
            raise InputError(f"--engine ray: cannot connect to the Ray cluster at {target} "
                             f"({short_reason(e, 160)}){auth}; {_START_HINT}") from None
        self._owns_ray = True

    def _size(self, device: str, workers: int | None, address: str | None) -> tuple[bool, int]:
        res = self._ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 0))
        where = f"the Ray cluster at {address}" if address else "the local Ray"
        if device == "cuda" and not gpus:
            raise InputError(f"--device cuda: {where} has no GPUs; use --device cpu or auto, or add GPU nodes")
        use_gpu = device == "cuda" or (device == "auto" and gpus > 0)
        cap = gpus if use_gpu else cpus
        if cap < 1:
            raise InputError(f"{where} has no CPUs to run workers on; add nodes with `ray start --address HEAD:6379`")
        n = workers or (gpus if use_gpu else min(2, cpus))
        if n > cap:
            print(f"note: --workers {n} but {where} has {cap} {'GPU' if use_gpu else 'CPU'}(s); using {cap} workers",
                  file=sys.stderr)
            n = cap
        return use_gpu, n

    def _new_actor(self):
        res = dict(num_cpus=1, num_gpus=1 if self.use_gpu else 0)
        return self._actor_cls.options(**res, max_restarts=0, max_task_retries=0).remote(
            str(self.run_dir), self._options, os.getcwd())

    def _check_ready(self, actor, out_dir: Path) -> None:
        """Wait for ``actor``'s model; InputError when it failed or sees another model / no OUT_DIR."""
        ray = self._ray
        try:
            info = ray.get(actor.ready.remote(str(out_dir)))
        except ray.exceptions.RayError as e:
            raise InputError(f"a Ray worker could not start ({short_reason(e, 200)})") from None
        node = info["node"]
        if info["error"]:
            raise InputError(f"the Ray worker on {node} could not load {self.run_dir}: {info['error']}")
        if info["model_id"] != self.model_id:
            raise InputError(f"the Ray worker on {node} loaded model {info['model_id']}, not {self.model_id}: "
                             f"{self.run_dir} must be the same folder on every node (a shared filesystem)")
        if not info["out_visible"]:
            raise InputError(f"the Ray worker on {node} cannot see {out_dir}; put OUT_DIR (and the inputs) "
                             "on a filesystem shared by all nodes, at the same path")

    # -- the batch ------------------------------------------------------------------------
    def run(self, cases: list[CaseInput], out_dir: str | Path, fmt: str, uncertainty: bool, record) -> None:
        """Predict ``cases`` into ``out_dir``; ``record(row)`` for each, in completion order.

        A case that kills its worker (a crash, the OOM killer, a lost node) becomes a ``failed``
        row and the worker is replaced. Ctrl-C cancels the queued cases, kills the workers and
        re-raises ``KeyboardInterrupt`` (outputs are atomic; ``--resume`` continues).
        """
        if not cases:
            return
        ray = self._ray
        out = Path(out_dir).resolve()
        for a in self._actors:
            self._check_ready(a, out)
        queue = deque(replace(c, sources=[safe_resolve(p) for p in c.sources]) for c in cases)
        slots: list[deque] = [deque() for _ in self._actors]  # per actor: refs in submission order
        owner: dict = {}  # ref -> (slot, case)
        try:
            while queue or owner:
                for i, a in enumerate(self._actors):
                    while a is not None and queue and len(slots[i]) < self.in_flight:
                        case = queue.popleft()
                        ref = a.run.remote(case, str(out), fmt, uncertainty)
                        slots[i].append(ref)
                        owner[ref] = (i, case)
                if not owner:
                    raise InputError("every Ray worker died; see the Ray logs (`ray logs cluster`) and rerun with --resume")
                done, _ = ray.wait(list(owner), num_returns=1, timeout=1.0)
                for ref in done:
                    if ref not in owner:  # already settled with its actor's crash
                        continue
                    i, case = owner[ref]
                    try:
                        row = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:  # run_case itself raised (it should not)
                        row = self._failed_row(case, _cause_text(e))
                    except ray.exceptions.RayError:
                        self._worker_died(i, slots, owner, queue, out, record)
                        continue
                    slots[i].remove(ref)
                    del owner[ref]
                    record(row)
        except KeyboardInterrupt:
            for ref in owner:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 -- the actors are killed next anyway
                    pass
            self._kill_actors()
            raise

    def _worker_died(self, i: int, slots, owner, queue: deque, out: Path, record) -> None:
        """Actor ``i`` died: results it finished still count; the case it was running fails;
        the cases queued behind it go back to the front of the queue; a new actor takes its slot."""
        ray = self._ray
        pending = list(slots[i])
        slots[i].clear()
        behind: list[CaseInput] = []
        culprit = None
        for ref in pending:
            _, case = owner.pop(ref)
            if culprit is not None:
                behind.append(case)
                continue
            try:  # finished before the crash: its row is safe in the object store
                record(ray.get(ref, timeout=10))
            except ray.exceptions.RayTaskError as e:
                record(self._failed_row(case, _cause_text(e)))
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as e:
                culprit = case
                record(self._failed_row(case, _crash_text(e)))
        queue.extendleft(reversed(behind))
        try:
            ray.kill(self._actors[i], no_restart=True)
        except Exception:  # noqa: BLE001 -- already gone
            pass
        self._actors[i] = self._new_actor()
        try:
            self._check_ready(self._actors[i], out)
        except InputError as e:
            print(f"warning: a replacement Ray worker could not start ({e}); going on with fewer workers", file=sys.stderr)
            self._actors[i] = None

    def _failed_row(self, case: CaseInput, error: str) -> dict:
        return {"case": case.key, "input": case.input_text, "output": "", "status": "failed", "error": error,
                "seconds": 0.0, "model_id": self.model_id}

    # -- teardown -------------------------------------------------------------------------
    def _kill_actors(self) -> None:
        for a in self._actors:
            if a is not None:
                try:
                    self._ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001 -- already dead / disconnected
                    pass
        self._actors = [None] * len(self._actors)

    def shutdown(self) -> None:
        """Kill the actors; disconnect from (or stop the local) Ray only if this pool started it."""
        self._kill_actors()
        if self._owns_ray:
            self._owns_ray = False
            try:
                self._ray.shutdown()
            except Exception:  # noqa: BLE001
                pass
        reaper = getattr(self, "_reaper", None)
        if reaper is not None and reaper.poll() is None:
            reaper.terminate()  # Ray is down: nothing left to reap
            reaper.wait(timeout=5)


def _cause_text(e: BaseException) -> str:
    from medseg.predict.case import error_text

    cause = getattr(e, "cause", None)
    return error_text(cause) if isinstance(cause, BaseException) else f"{type(e).__name__}: {short_reason(e, 250)}"


def _crash_text(e: BaseException) -> str:
    """The ``error`` of a case whose worker died under it."""
    if "OutOfMemory" in type(e).__name__:  # Ray's memory monitor killed it
        return ("the Ray worker ran out of memory on this case; retry with fewer --workers or on nodes with more "
                f"memory ({short_reason(e, 120)})")
    return (f"the Ray worker crashed on this case ({type(e).__name__}: {short_reason(e, 160)}); a segfault or the "
            "kernel's OOM killer are the usual causes -- see `ray logs cluster`, retry with fewer --workers")
