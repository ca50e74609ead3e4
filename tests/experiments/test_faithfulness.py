"""The time-series study and the faithfulness benchmark in their --quick forms write what they promise."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(script, out, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / script), "--quick", "--out", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.slow
def test_timeseries_study_quick(tmp_path):
    _run("timeseries_japanese_vowels.py", tmp_path)
    summary = json.loads((tmp_path / "timeseries_japanese_vowels.json").read_text())
    assert summary["test_accuracy"] > 0.5                        # 9 classes: chance is 0.11
    lrp_all = summary["metrics"]["lrp-all"]
    random = summary["metrics"]["random"]
    assert lrp_all["delta A_F (zero)"]["mean"] > random["delta A_F (zero)"]["mean"]
    assert lrp_all["faithfulness correlation"]["mean"] > random["faithfulness correlation"]["mean"]
    for name in ("timeseries_heatmap.png", "timeseries_over_time.png", "timeseries_japanese_vowels.md"):
        assert (tmp_path / name).stat().st_size > 500


@pytest.mark.slow
def test_benchmark_quick(tmp_path):
    _run("benchmark_faithfulness.py", tmp_path, "--n", "6")
    summary = json.loads((tmp_path / "benchmark_faithfulness.json").read_text())
    assert set(summary["results"]) == {"SST BiLSTM", "JapaneseVowels GRU"}
    for model, per_method in summary["results"].items():
        assert {"lrp-all eps=0.001", "random"} <= set(per_method)
        speedup = summary["speedup"][model]["speedup over loop over steps"]   # measured, not asserted: a timing
        assert isinstance(speedup, float) and speedup > 0                     # (6 examples say nothing of it)
    assert (tmp_path / "benchmark_faithfulness.png").stat().st_size > 5000
