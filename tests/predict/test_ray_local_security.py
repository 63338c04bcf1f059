"""The local Ray that `medseg predict --engine ray` starts (no --address) listens on loopback
only, and its processes die with the driver.

Reference: the kernel's own table of listening TCP sockets (``/proc/net/tcp``, ``tcp6``) mapped
to processes through ``/proc/<pid>/fd`` -- not anything Ray reports about itself.
"""

import ipaddress
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")  # test_ray_engine.py already fails loudly when Ray is missing
pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent("""
    import json, os, sys, time
    from medseg.predict.ray_engine import RayPool
    pool = RayPool.__new__(RayPool)
    import ray
    pool._ray, pool._owns_ray, pool._actors = ray, False, []
    pool._connect(None, None)

    @ray.remote(num_cpus=1)
    def pid():
        return os.getpid()

    worker = ray.get(pid.remote())
    print(json.dumps({"worker": worker, "session": ray._private.worker._global_node.session_name}), flush=True)
    time.sleep(300)
""")


def _hex_addr(text: str) -> str:
    """``0100007F:1F90`` (little-endian words, /proc/net/tcp*) -> IP address text."""
    ip_hex = text.split(":")[0]
    raw = bytes.fromhex(ip_hex)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def _listening_inodes() -> dict[int, str]:
    """socket inode -> local IP of every TCP socket in LISTEN state (state 0A)."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if f[3] == "0A":
                out[int(f[9])] = _hex_addr(f[1])
    return out


def _pids_of(session_name: str, driver: int) -> set[int]:
    """Processes of this Ray session: the driver's descendants plus anything naming the session."""
    pids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if session_name in cmd or int(stat[1]) == driver or int(stat[3]) == driver:
            pids.add(int(d.name))
    return pids


def _listen_ips(pids: set[int]) -> dict[int, list[str]]:
    socks = _listening_inodes()
    out: dict[int, list[str]] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in socks:
                    out.setdefault(pid, []).append(socks[inode])
    return out


def _is_loopback(ip: str) -> bool:
    a = ipaddress.ip_address(ip)
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return a.is_loopback


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_local_ray_listens_on_loopback_only_and_dies_with_the_driver(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_ADDRESS="")
    env.pop("RAY_ADDRESS")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    pids: set[int] = set()
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        info = json.loads(line)
        pids = _pids_of(info["session"], proc.pid) | {proc.pid, info["worker"]}
        listening = _listen_ips(pids)
        # the GCS, the raylet, the driver and the worker each serve gRPC: all of it must be loopback
        assert len(listening) >= 3, listening
        exposed = {pid: ips for pid, ips in listening.items() if not all(map(_is_loopback, ips))}
        assert not exposed, f"Ray processes listening beyond loopback: {exposed}"
        proc.send_signal(signal.SIGKILL)  # the driver dies without any cleanup of its own
        proc.wait(timeout=10)
        # the GCS, raylet and workers go at once; Ray's agents would linger for their 60 s report to
        # the dead GCS, but medseg's reaper kills them within a quarter second (15 s: a loaded machine)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.5)
        left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:150] for p in pids if _alive(p)}
        assert not left, f"Ray processes outlived the driver: {left}"
    finally:
        for p in pids:
            if _alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if proc.poll() is None:
            proc.kill()
