"""The `cli` fixture lives in tests/conftest.py; names re-exported for imports."""

from tests.conftest import MEDSEG, run_cli  # noqa: F401
