"""The shipped time-series sets load as published (sizes, lengths, classes), bad files are named, and the
time-series figures are drawn."""

import numpy as np
import pytest

from lrpjax.data import timeseries


def test_shipped_sets_have_their_published_sizes():
    jv = timeseries.load("JapaneseVowels", "train")
    assert jv.X.shape == (270, 26, 12) and jv.classes == tuple("123456789")
    assert jv.lengths.min() == 7 and np.all(np.bincount(jv.y) == 30)
    test = timeseries.load("JapaneseVowels", "test")
    assert len(test) == 370 and test.lengths.max() == 29
    np.testing.assert_array_equal(test.X[~test.mask], 0.0)
    bm = timeseries.load("BasicMotions", "test")
    assert bm.X.shape == (40, 100, 6) and bm.classes == ("Standing", "Running", "Walking", "Badminton")
    train_s, test_s = timeseries.standardise(jv, test)
    valid = train_s.X[train_s.mask]
    np.testing.assert_allclose(valid.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(valid.std(0), 1, atol=1e-4)


def test_bad_names_and_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="name"):
        timeseries.load("Vowels", "train")
    with pytest.raises(ValueError, match="split"):
        timeseries.load("BasicMotions", "val")
    bad = tmp_path / "bad.ts"
    bad.write_text("@classLabel true a b\n@data\n1,2,3:4,5:a\n")
    with pytest.raises(ValueError, match="bad.ts, line 3: the channels have different lengths"):
        timeseries.read_ts(bad)
    bad.write_text("@classLabel true a b\n@data\n1,2:4,5:c\n")
    with pytest.raises(ValueError, match="label 'c'"):
        timeseries.read_ts(bad)


def test_figures_are_drawn(tmp_path):
    from lrpjax.viz import timeseries as tsplot

    rng = np.random.default_rng(0)
    maps = {"lrp": rng.normal(size=(6, 3)), "gradient": rng.normal(size=(6, 3))}
    mask = np.array([True] * 4 + [False] * 2)
    tsplot.time_heatmap(maps, tmp_path / "h.png", x=rng.normal(size=(6, 3)), mask=mask, features=["a", "b", "c"])
    fig = tsplot.relevance_over_time(maps, mask=mask)
    assert len(fig.axes[0].lines) == 3 and len(fig.axes[0].lines[0].get_xdata()) == 4   # two methods, the zero line
    assert (tmp_path / "h.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="features"):
        tsplot.time_heatmap(maps, features=["a"])
    with pytest.raises(ValueError, match="one shape"):
        tsplot.relevance_over_time({"a": np.zeros((6, 3)), "b": np.zeros((5, 3))})
