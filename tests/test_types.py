"""The package type-checks: ``python -m mypy lrpjax/`` with the configuration in pyproject.toml."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                    reason="mypy is not installed (it is in the `test` extra: pip install -e '.[test]')")
def test_mypy_passes_on_the_package():
    run = subprocess.run([sys.executable, "-m", "mypy", "lrpjax/"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, f"mypy lrpjax/ failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    assert "Success" in run.stdout, run.stdout
