"""Relevance pictures: colour scale, terminal text, HTML page, matplotlib figures."""

import io

import numpy as np
import pytest

from lrpjax import plot


def test_colors_are_white_at_zero_red_for_positive_blue_for_negative():
    colors = plot.relevance_colors([0.0, 2.0, -2.0, 1.0, -0.5])
    np.testing.assert_array_equal(colors[0], [255, 255, 255])
    np.testing.assert_array_equal(colors[1], [255, 0, 0])
    np.testing.assert_array_equal(colors[2], [0, 0, 255])
    np.testing.assert_array_equal(colors[3], [255, 128, 128])
    np.testing.assert_array_equal(colors[4], [191, 191, 255])
    np.testing.assert_array_equal(plot.relevance_colors(np.zeros(3)), np.full((3, 3), 255))


def test_ansi_sentence_uses_truecolor_backgrounds():
    text = plot.ansi_sentence(["good", "bad"], [1.0, -1.0])
    assert "\x1b[48;2;255;0;0m" in text and "\x1b[48;2;0;0;255m" in text
    assert text.count("\x1b[0m") == 2 and "good" in text and "bad" in text


def test_plain_sentence_and_table_show_the_numbers():
    assert plot.plain_sentence(["good", "movie"], [1.25, -0.5]) == "good[+1.25] movie[-0.5]"
    table = plot.relevance_table(["good", "zzz"], [3.0, -1.0], unknown=["zzz"])
    lines = table.splitlines()
    assert lines[0].split() == ["pos", "word", "relevance", "|share|"]
    assert "+3.0000e+00" in lines[1] and "75.0%" in lines[1]
    assert "<unk>" in lines[2] and "sum" in lines[3] and "+2.0000e+00" in lines[3]


def test_shape_mismatch_and_non_finite_relevance_raise():
    with pytest.raises(ValueError, match="relevance"):
        plot.plain_sentence(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        plot.ansi_sentence(["a"], [np.nan])


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_use_color_only_on_a_terminal_without_no_color():
    assert plot.use_color(_Stream(True), environ={})
    assert not plot.use_color(_Stream(False), environ={})
    assert not plot.use_color(_Stream(True), environ={"NO_COLOR": "1"})
    assert plot.use_color(_Stream(True), environ={"NO_COLOR": ""})


def test_html_page_is_standalone_and_escaped():
    page = plot.html_page([
        {"tokens": ["<b>", "good"], "relevance": [0.0, 1.0], "prediction_name": "positive",
         "target_name": "positive", "method": "lrp-all", "eps": 0.001, "probabilities": [0.1, 0.1, 0.1, 0.6, 0.1],
         "unknown": ["<b>"]},
        {"sentence": "", "error": "empty sentence"},
    ], title="t & t")
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "&lt;b&gt;" in page and "<b>good" not in page
    assert "background-color: rgb(255,0,0)" in page and "empty sentence" in page
    assert "<title>t &amp; t</title>" in page and "http" not in page.split("</style>")[0]


def test_figures_are_written_as_png(tmp_path):
    plot.relevance_figure(["a", "good", "movie"], [0.1, 1.0, -0.3], tmp_path / "r.png", title="x")
    curves = {"LRP-all": {"correct": [1, 0.8, 0.6], "false": [0, 0.2, 0.3]},
              "random": {"correct": [1, 0.9, 0.85], "false": [0, 0.05, 0.1]}}
    plot.deletion_figure(curves, tmp_path / "d.png",
                         stds={"random": {"correct": [0, 0.01, 0.01], "false": [0, 0.01, 0.02]}})
    for name in ("r.png", "d.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
