"""The recurrent-layers benchmark in its quick form: every section writes its rows, table and figure."""

import importlib.util
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_recurrent", ROOT / "experiments" / "benchmark_recurrent.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("benchmark_recurrent", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_mamba_section(tmp_path):
    _benchmark().main(["--quick", "--only", "mamba", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "benchmark_recurrent.json").read_text())
    rows = results["sections"]["mamba"]["rows"]
    configs = {(row["model"], row["config"]) for row in rows}
    for scan in ("sequential", "parallel"):
        assert {(f"mamba ({scan} scan)", c) for c in ("forward", "gradient", "lrp-mambalrp", "lrp-all")} <= configs
    assert all(row["seconds"] > 0 and row["over_forward"] > 0 for row in rows)
    assert set(results["sections"]["mamba"]["parallel_over_sequential"]) == {"forward", "gradient", "lrp-mambalrp",
                                                                              "lrp-all"}
    assert "| mamba (parallel scan) | lrp-mambalrp |" in (tmp_path / "benchmark_recurrent.md").read_text()
    assert (tmp_path / "benchmark_recurrent.png").stat().st_size > 0


@pytest.mark.slow
def test_quick_xlstm_section(tmp_path):
    _benchmark().main(["--quick", "--only", "xlstm", "--out", str(tmp_path)])
    section = json.loads((tmp_path / "benchmark_recurrent.json").read_text())["sections"]["xlstm"]
    configs = {(row["model"], row["config"]) for row in section["rows"]}
    assert {("mLSTM block (parallel form)", c) for c in ("forward", "gradient")} <= configs
    for model in ("mLSTM block (recurrent form)", "sLSTM block"):
        assert {(model, c) for c in ("forward", "gradient", "lrp-xlstm", "lrp-all")} <= configs
    assert all(row["seconds"] > 0 and row["over_forward"] > 0 for row in section["rows"])
    assert set(section["recurrent_over_parallel"]) == {"forward", "gradient"}
    assert set(section["lrp_over_parallel_forward"]) == {"lrp-xlstm", "lrp-all"}
    assert "| sLSTM block | lrp-xlstm |" in (tmp_path / "benchmark_recurrent.md").read_text()
