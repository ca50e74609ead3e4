"""The benchmark's direct-call section alone (``--only direct --quick``): every row has finite positive
times and ratio = direct / jit. Nothing here asserts a timing."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_direct_section_alone(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "benchmark.py"), "--only", "direct", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((tmp_path / "benchmark_direct.json").read_text(encoding="utf-8"))
    rows = report["direct"]["rows"]
    assert [r["call"].split("(")[0] for r in rows] == ["bilstm.apply", "model.apply", "lrp", "lrp"]
    for row in rows:
        for key in ("first_s", "direct_ms", "jit_ms", "ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["call"], key)
        assert row["ratio"] == pytest.approx(row["direct_ms"] / row["jit_ms"])
    markdown = (tmp_path / "benchmark_direct.md").read_text(encoding="utf-8")
    assert "| `bilstm.apply(params, x)` |" in markdown and not (tmp_path / "benchmark.json").exists()
