"""CPU thread settings that survive a shared machine, applied when ``medseg`` starts.

The problem (measured in ``bench/shared_cpu.py``): PyTorch's OpenMP threads wait for each other
at the end of every parallel region by *spinning*. With one thread per core and one other
CPU-bound process on the machine, a thread that lost its core keeps the others spinning until
the scheduler gives it back -- training ran 5-40x slower than idle instead of the 2x of a fair
share. Waiting passively (``OMP_WAIT_POLICY=PASSIVE``: sleep instead of spin) removes the
collapse at little cost when the machine is idle.

:func:`configure_threads` (called by the CLI before torch is imported):

* ``MEDSEG_THREADS=N`` -- use N threads (the override);
* else ``OMP_NUM_THREADS`` if the user set it;
* else one thread per CPU this process may run on (``os.sched_getaffinity``, so ``taskset``,
  cgroups' cpusets and Slurm allocations are honoured);

and sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy. Both must be in the
environment before the OpenMP runtime starts (first ``import torch``); if torch is already
imported only the thread count can still change.
"""

from __future__ import annotations

import os
import sys


def available_cpus() -> int:
    """CPUs this process may run on (affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _positive_int(text: str | None) -> int | None:
    try:
        v = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return v if v >= 1 else None


def configure_threads(environ=None) -> str:
    """Choose and apply the thread count and OpenMP wait policy; returns a short description
    (e.g. ``"2 threads (auto), OMP_WAIT_POLICY=PASSIVE"``). ``environ``: a mapping to update
    instead of ``os.environ`` (then a running torch is left alone)."""
    env = os.environ if environ is None else environ
    n, why = _positive_int(env.get("MEDSEG_THREADS")), "MEDSEG_THREADS"
    if env.get("MEDSEG_THREADS") and n is None:
        sys.stderr.write(f"warning: MEDSEG_THREADS={env['MEDSEG_THREADS']!r} is not a whole number >= 1; ignored\n")
    if n is None:
        n, why = _positive_int(env.get("OMP_NUM_THREADS")), "OMP_NUM_THREADS"
    if n is None:
        n, why = available_cpus(), "auto"
    env["OMP_NUM_THREADS"] = str(n)
    env.setdefault("MKL_NUM_THREADS", str(n))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch = sys.modules.get("torch") if environ is None else None
    if torch is not None:  # too late for the wait policy; the count still applies
        try:
            torch.set_num_threads(n)
        except Exception:  # noqa: BLE001 -- never fail a command over thread settings
            pass
    return f"{n} threads ({why}), OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}"
