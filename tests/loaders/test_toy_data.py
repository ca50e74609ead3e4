"""The toy adding/subtracting data of Sec. 11.5.1: splits, distributions, markers and targets."""

import numpy as np
import pytest

from lrpjax.data import toy


@pytest.fixture(scope="module")
def splits():
    return {(task, split): toy.load_toy(task, split, seed=0) for task in toy.TASKS for split in toy.SPLITS}


@pytest.mark.parametrize("split,size,lengths", [("train", 10000, range(4, 11)), ("val", 2500, (11, 12)),
                                                ("test", 2500, (13, 14))])
@pytest.mark.parametrize("task", toy.TASKS)
def test_split_sizes_and_lengths(splits, task, split, size, lengths):
    s = splits[task, split]
    T = max(lengths)
    assert s.x.shape == (size, T, 2) and s.mask.shape == (size, T) and s.y.shape == (size,)
    assert set(np.unique(s.lengths)) == set(lengths)
    np.testing.assert_array_equal(s.mask.sum(1), s.lengths)
    assert np.all(s.mask[:, 0])  # padding at the end
    assert np.all(s.x[~s.mask] == 0)
    # Every allowed length about equally often.
    counts = np.array([np.sum(s.lengths == t) for t in lengths])
    assert np.all(np.abs(counts / size - 1 / len(lengths)) < 4 * np.sqrt(1 / len(lengths) / size))


@pytest.mark.parametrize("task", toy.TASKS)
def test_markers_targets_and_positions(splits, task):
    s = splits[task, "train"]
    rows = np.arange(len(s.y))
    assert np.all(s.a < s.b) and np.all(s.b < s.lengths) and np.all(s.a >= 0)
    markers = s.x[:, :, 1]
    assert np.all(markers.sum(1) == 2) and np.all(markers[rows, s.a] == 1) and np.all(markers[rows, s.b] == 1)
    n_a, n_b = s.numbers[rows, s.a], s.numbers[rows, s.b]
    np.testing.assert_allclose(s.y, n_a + n_b if task == "add" else n_a - n_b, rtol=1e-6)


def test_number_distributions(splits):
    add = splits["add", "train"].numbers[splits["add", "train"].mask]
    sub = splits["sub", "train"].numbers[splits["sub", "train"].mask]
    assert np.all((np.abs(add) >= 0.5) & (np.abs(add) <= 1.0))
    assert abs(np.mean(add > 0) - 0.5) < 0.01  # both halves of [-1,-0.5] u [0.5,1] equally likely
    assert np.all((sub >= 0.5) & (sub <= 1.0))
    # Uniform within [0.5, 1]: mean 0.75, variance 1/48, quartiles 0.625 / 0.875.
    for values in (np.abs(add), sub):
        assert abs(values.mean() - 0.75) < 0.003
        assert abs(values.var() - 1 / 48) < 0.001
        np.testing.assert_allclose(np.quantile(values, [0.25, 0.75]), [0.625, 0.875], atol=0.005)


@pytest.mark.parametrize("T", [4, 13])
def test_positions_uniform_over_pairs(T):
    s = toy.make_split("add", 60000, (T,), seed=3)
    pairs = T * (T - 1) // 2
    counts = np.bincount(s.a * T + s.b, minlength=T * T).reshape(T, T)
    upper = counts[np.triu_indices(T, 1)]
    assert counts.sum() == upper.sum()  # only a < b
    expected = 60000 / pairs
    assert np.all(np.abs(upper - expected) < 5 * np.sqrt(expected))


def test_seeded_and_splits_differ():
    one, two = toy.load_toy("sub", "val", seed=5), toy.load_toy("sub", "val", seed=5)
    np.testing.assert_array_equal(one.x, two.x)
    assert not np.array_equal(toy.load_toy("sub", "val", seed=6).x, one.x)
    assert not np.array_equal(toy.load_toy("add", "val", seed=5).x[:, :, 1], one.x[:, :, 1])


def test_dtype_and_small_n():
    s = toy.load_toy("add", "test", n=7, dtype=np.float64)
    assert s.x.dtype == np.float64 and s.y.dtype == np.float64 and s.x.shape == (7, 14, 2)


def test_errors():
    with pytest.raises(ValueError, match="task"):
        toy.load_toy("mul", "train")
    with pytest.raises(ValueError, match="split"):
        toy.load_toy("add", "dev")
    with pytest.raises(ValueError, match="lengths"):
        toy.make_split("add", 3, (1, 2), seed=0)
    with pytest.raises(ValueError, match="`n`"):
        toy.make_split("add", 0, (4,), seed=0)
    with pytest.raises(TypeError, match="dtype"):
        toy.make_split("add", 3, (4,), seed=0, dtype=np.int32)
