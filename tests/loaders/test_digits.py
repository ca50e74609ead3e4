"""The digits reader and split, and a --quick run of the pixel-flipping experiment."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrpjax.data import digits

ROOT = Path(__file__).resolve().parents[2]


def test_load_digits_shapes_ranges_and_classes():
    X, y = digits.load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.dtype == np.float64 and X.min() == 0.0 and X.max() == 1.0
    assert np.array_equal(np.unique(y), np.arange(10))
    assert np.bincount(y).min() >= 170                       # about 180 images per class
    raw, y_raw = digits.load_digits(scaled=False)
    np.testing.assert_array_equal(raw / 16, X)
    np.testing.assert_array_equal(y_raw, y)
    # the first image is a zero (sklearn's digits.images[0])
    assert y[0] == 0 and raw[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_split_is_seeded_disjoint_and_complete():
    train, test = digits.split(1797, 0.2, seed=0)
    assert len(test) == 359 and len(train) == 1438
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    again = digits.split(1797, 0.2, seed=0)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(digits.split(1797, 0.2, seed=1)[1], test)
    with pytest.raises(ValueError, match="test_fraction"):
        digits.split(10, 0.0)
    with pytest.raises(ValueError, match="n"):
        digits.split(1)


@pytest.mark.parametrize("line,match", [
    ("1,2,3\n", "65 values"),
    (",".join(["0"] * 64 + ["x"]) + "\n", "integers"),
    (",".join(["17"] + ["0"] * 63 + ["1"]) + "\n", "0..16"),
    (",".join(["0"] * 64 + ["10"]) + "\n", "label"),
])
def test_malformed_files_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.csv.gz"
    good = ",".join(["0"] * 64 + ["3"]) + "\n"
    with gzip.open(path, "wt") as stream:
        stream.write(good + line)
    with pytest.raises(ValueError, match=rf"bad.csv.gz:2: .*{match}"):
        digits.load_digits(path)
    with pytest.raises(FileNotFoundError, match="LRPJAX_DATA"):
        digits.load_digits(tmp_path / "missing.csv.gz")


@pytest.mark.slow
def test_quick_experiment_runs_and_writes_results(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / "digits_pixel_flipping.py"), "--quick",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| method |" in result.stdout
    data = json.loads((tmp_path / "digits_pixel_flipping.json").read_text())
    assert data["config"]["quick"] is True
    assert data["test_accuracy"] > 0.8
    assert (tmp_path / "digits_pixel_flipping.png").stat().st_size > 10_000
    aopc = {name: m["aopc"]["zero"]["mean"] for name, m in data["methods"].items()}
    assert {"sensitivity", "gradient_x_input", "random"} <= set(aopc)
    assert aopc["LRP-eps"] > aopc["random"]
