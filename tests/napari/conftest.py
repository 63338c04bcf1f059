"""napari GUI tests run under Xvfb, started by pytest-xvfb (see ../shared/ENV.md, "napari, headless").

Tests that use a Qt fixture (``make_napari_viewer``, ``qtbot``, ``qapp``) are marked ``gui``.
Without an X display, Qt would abort the whole pytest process, so they are stopped before
any Qt fixture is set up: in CI (``CI`` set) they FAIL with the reason, so a CI machine
without Xvfb can never pass silently; elsewhere they are skipped with the same reason.
The pure-Python tests (review state, correction helpers) run everywhere.
"""

from __future__ import annotations

import os

import pytest

QT_FIXTURES = {"make_napari_viewer", "make_napari_viewer_proxy", "qtbot", "qapp", "viewer"}
NO_DISPLAY = (
    "no X display for the napari GUI tests: pytest-xvfb did not start Xvfb "
    "(install the Debian packages listed in .ci/run, at least 'xvfb', 'libxcb-icccm4', 'libxcb-keysyms1', "
    "and 'pip install -e napari_plugin[testing]' for pytest-xvfb)"
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if QT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)


def pytest_runtest_setup(item):
    # Runs before fixture set-up, so before pytest-qt creates the QApplication.
    if item.get_closest_marker("gui") is None or os.environ.get("DISPLAY"):
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI: {NO_DISPLAY}", pytrace=False)
    pytest.skip(NO_DISPLAY)


@pytest.fixture(autouse=True)
def _qt_workers_done(request):
    """After a GUI test, wait for napari's worker threads (Qt's global pool) to finish, so no
    thread is mid-flight when a later test in the same process forks (DataLoader workers)."""
    yield
    if request.node.get_closest_marker("gui") is not None and os.environ.get("DISPLAY"):
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(10000)
