"""A tiny run of the adding/subtracting fidelity experiment (Sec. 11.5.1, Table 11.2)."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "experiments"))

import toy_arithmetic  # noqa: E402
from lrpjax.data import toy  # noqa: E402


def test_statistics_of_a_perfect_explanation():
    split = toy.load_toy("sub", "test", n=200, dtype=np.float64)
    rows = np.arange(200)
    R = np.zeros(split.x.shape[:2])
    R[rows, split.a] = split.numbers[rows, split.a]
    R[rows, split.b] = -split.numbers[rows, split.b]
    stats = toy_arithmetic.statistics(R, split)
    assert stats["rho_a"] == pytest.approx(1.0) and stats["rho_b"] == pytest.approx(-1.0)
    assert stats["share"] == pytest.approx(1.0)
    R[:, :] += 1.0 * split.mask  # relevance everywhere: the share drops below 1
    assert toy_arithmetic.statistics(R, split)["share"] < 0.9


@pytest.mark.slow
def test_quick_run_writes_every_method_and_statistic(tmp_path, capsys):
    toy_arithmetic.main(["--quick", "--out", str(tmp_path), "--tasks", "add,sub", "--n-seeds", "2", "--n-models", "2",
                         "--epochs", "1", "--n-train", "640", "--n-val", "100", "--n-test", "50",
                         "--checkpoints", str(tmp_path / "ckpt")])
    result = json.loads((tmp_path / "toy_arithmetic.json").read_text())
    assert (tmp_path / "toy_arithmetic.png").stat().st_size > 0
    for task in ("add", "sub"):
        info = result["tasks"][task]
        assert info["training"]["seeds_tried"] == 2 and info["training"]["kept"] == 2 and info["n_test"] == 50
        assert set(info["methods"]) == set(toy_arithmetic.METHODS)
        for method in toy_arithmetic.METHODS:
            for stat in ("rho_a", "rho_b", "share"):
                entry = info["methods"][method][stat]
                assert set(entry) == {"mean", "std", "n_nan"}
                assert len(info["per_model"][method][stat]) == 2
        assert (tmp_path / "ckpt" / f"toy_{task}.npz").exists()
    table = capsys.readouterr().out
    assert "LRP-all" in table and "CD" in table and "99.995 (0.002)" in table
