"""Shared fixtures: `cli` runs the installed `medseg` console script in a subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest

MEDSEG = Path(sys.executable).parent / "medseg"  # the installed console script


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(MEDSEG), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def cli():
    return run_cli
