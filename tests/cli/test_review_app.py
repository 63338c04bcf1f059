"""``medseg review DIR`` opens the GUI through the entry point ``medseg.review_app`` only; without
the napari plugin it says how to install it (one line, exit 2). medseg never imports napari."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys

import pytest

from medseg.cli import review as review_cli

NO_PLUGIN = """
import importlib.metadata, sys
real = importlib.metadata.entry_points
importlib.metadata.entry_points = lambda **kw: [] if kw.get("group") == "medseg.review_app" else real(**kw)
from medseg.cli.main import main
rc = main(["review", sys.argv[1]])
assert "napari" not in sys.modules
sys.exit(rc)
"""


def test_review_without_the_plugin_says_how_to_install_it(tmp_path):
    r = subprocess.run([sys.executable, "-c", NO_PLUGIN, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error:") and "pip install -e napari_plugin" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr


def _args(folder, *extra):
    parser = argparse.ArgumentParser()
    review_cli.add_parser(parser.add_subparsers(dest="command"), [])
    return parser.parse_args(["review", str(folder), *extra])


def test_review_calls_the_registered_app(tmp_path, monkeypatch):
    calls = []

    def app(folder, *, reviewer=None):
        calls.append((folder, reviewer))
        return 0

    monkeypatch.setattr(review_cli, "review_app", lambda: app)
    assert review_cli.run(_args(tmp_path, "--reviewer", "dr_x")) == 0
    assert calls == [(tmp_path, "dr_x")]


def test_the_napari_plugin_registers_its_review_app():
    eps = importlib.metadata.entry_points(group="medseg.review_app")
    if not eps:
        pytest.skip("the napari plugin is not installed")
    assert {ep.name: ep.value for ep in eps} == {"napari": "napari_medseg:launch_review"}
