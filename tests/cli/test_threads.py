"""Thread settings at CLI start (medseg.threads): the override, the user's OpenMP variables kept,
passive OpenMP waiting by default. Reference: what torch reports in a fresh process."""

import os
import subprocess
import sys

from medseg.threads import available_cpus, configure_threads

PROBE = ("from medseg.threads import configure_threads; d = configure_threads(); import torch, os; "
         "print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])")


def _fresh(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MEDSEG_THREADS", "OMP_WAIT_POLICY",
                                                             "MKL_NUM_THREADS")}
    base.update(env)
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=base, timeout=120)
    assert r.returncode == 0, r.stderr
    n, policy = r.stdout.split()
    return int(n), policy, r.stderr


def test_defaults_override_and_user_settings():
    assert _fresh() == (available_cpus(), "PASSIVE", "")
    assert _fresh(MEDSEG_THREADS="1")[:2] == (1, "PASSIVE")
    assert _fresh(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")[:2] == (1, "ACTIVE")
    n, _, err = _fresh(MEDSEG_THREADS="zero")
    assert n == available_cpus() and err.startswith("warning: MEDSEG_THREADS='zero'")


def test_configure_threads_on_a_given_environment():
    env = {"MEDSEG_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    assert configure_threads(env).startswith("3 threads (MEDSEG_THREADS)")
    assert env["OMP_NUM_THREADS"] == "3" and env["OMP_WAIT_POLICY"] == "ACTIVE"
