"""The README's Python API example runs end to end (so the README cannot go stale)."""

import os
import re
import subprocess
import sys

from tests.helpers import REPO


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_example_runs(tmp_path):
    code = readme_example()
    assert "medseg.train(" in code and "medseg.Predictor.from_run(" in code and "medseg.evaluate_folders(" in code
    (tmp_path / "example.py").write_text(code)
    for name in ("data_samples", "configs"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "MEDSEG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(128, 128, 34)" in r.stdout and "1 done, 0 failed" in r.stdout
    assert (tmp_path / "example_out" / "masks" / "manifest.csv").is_file()
    assert (tmp_path / "example_out" / "phantom_000_mask.nii.gz").is_file()
    dice_line = r.stdout.strip().splitlines()[-1]
    assert dice_line.startswith("{") and "liver" in dice_line
