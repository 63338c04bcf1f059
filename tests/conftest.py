"""Shared fixtures: `cli` runs the installed `medseg` console script in a subprocess.

Threads: `make test` runs 2 pytest workers on (often) 2 cores. With torch's default of one
OpenMP thread per core in each worker *and* in each `medseg` subprocess, the threads outnumber
the cores and every small convolution waits at an OpenMP barrier for a thread that is not
running -- measured 100x slower (1.2 s instead of 0.012 s per tiny forward pass). Tests
therefore use one torch thread per process.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

MEDSEG = Path(sys.executable).parent / "medseg"  # the installed console script
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses below
os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    except ImportError:
        pass


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(MEDSEG), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def cli():
    return run_cli
