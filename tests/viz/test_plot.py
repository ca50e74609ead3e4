"""Relevance pictures: colour scale, terminal text, LaTeX, HTML, matplotlib heatmaps, atomic writes."""

import io
import re
import shutil
import subprocess

import numpy as np
import pytest

from lrpjax.viz import plot


def test_colors_are_white_at_zero_red_for_positive_blue_for_negative():
    colors = plot.relevance_colors([0.0, 2.0, -2.0, 1.0, -0.5])
    np.testing.assert_array_equal(colors[0], [255, 255, 255])
    np.testing.assert_array_equal(colors[1], [255, 0, 0])
    np.testing.assert_array_equal(colors[2], [0, 0, 255])
    np.testing.assert_array_equal(colors[3], [255, 128, 128])
    np.testing.assert_array_equal(colors[4], [191, 191, 255])
    np.testing.assert_array_equal(plot.relevance_colors(np.zeros(3)), np.full((3, 3), 255))


def test_a_given_scale_is_shared_and_values_beyond_it_take_the_end_colour():
    colors = plot.relevance_colors([1.0, -4.0, 8.0], scale=4.0)
    np.testing.assert_array_equal(colors, [[255, 191, 191], [0, 0, 255], [255, 0, 0]])
    assert plot.shared_scale([1.0, -3.0], [2.0], []) == 3.0 and plot.shared_scale() == 0.0


@pytest.mark.parametrize("scale", [0.0, -1.0, np.inf, np.nan])
def test_bad_scale_raises(scale):
    with pytest.raises(ValueError, match="scale"):
        plot.relevance_colors([1.0], scale=scale)


def test_text_is_white_on_saturated_blue_and_black_on_light_and_red_boxes():
    assert plot.text_colors([[0, 0, 255], [255, 255, 255], [255, 0, 0], [128, 128, 255]]) == [
        "#fff", "#000", "#000", "#000"]


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
    assert len(lines) == 4


def test_table_adds_the_target_score_biases_and_residual_when_given():
    conservation = {"target_score": 2.5, "bias": 0.25, "initial": 0.0, "residual": 0.25}
    lines = plot.relevance_table(["good", "film"], [3.0, -1.0], conservation=conservation).splitlines()
    labels = [line[5:].split("  ")[0].strip() for line in lines[3:]]
    assert labels == ["sum", "target score", "biases", "initial states", "residual"]
    assert "+2.5000e+00" in lines[4] and "+2.5000e-01" in lines[5] and "+2.5000e-01" in lines[7]


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


# --- LaTeX -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("word, escaped", [
    ("50%", r"50\%"), ("&", r"\&"), ("$", r"\$"), ("_", r"\_"), ("\\", r"\textbackslash{}"), ("{", r"\{"),
    ("}", r"\}"), ("#", r"\#"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"),
    ("a<b>c", r"a\textless{}b\textgreater{}c"), ("x|y", r"x\textbar{}y"), ("plain", "plain"),
    ("C:\\50%_{x}", r"C:\textbackslash{}50\%\_\{x\}"),
])
def test_latex_escape_writes_every_special_character_as_a_command(word, escaped):
    assert plot.latex_escape(word) == escaped


def _strip_latex_commands(text: str) -> str:
    """The text left after removing the commands the exporter writes (so raw specials stand out)."""
    text = re.sub(r"\\colorbox\[RGB\]\{\d+,\d+,\d+\}", "", text)
    text = re.sub(r"\\(textbackslash|textasciitilde|textasciicircum|textless|textgreater|textbar)\{\}", "", text)
    text = re.sub(r"\\[{}#$%&_]", "", text)
    text = re.sub(r"\\(strut|textcolor|textbf|noindent|par|setlength|fboxsep)", "", text)
    return text


def test_latex_heatmap_colours_each_word_and_leaves_no_raw_special_character():
    words = ["50%", "&", "$", "_", "\\", "{", "#", "~", "^", "good"]
    relevance = [0.0] * 9 + [2.0]
    tex = plot.latex_heatmap([("LRP & co", words, relevance), ("", ["bad"], [-2.0])])
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert r"\colorbox[RGB]{255,0,0}{\strut good}" in body
    assert r"\colorbox[RGB]{0,0,255}{\strut \textcolor{white}{bad}}" in body
    assert r"\colorbox[RGB]{255,255,255}{\strut 50\%}" in body and r"\textbf{LRP \& co}" in body
    assert body.count(r"\colorbox") == 11
    rest = _strip_latex_commands("\n".join(line for line in body.splitlines() if line.startswith("\\noindent")))
    assert not set(rest) & set("%&$_#~^\\"), rest
    assert rest.count("{") == rest.count("}")
    assert "% LRP & co: relevance, end colour = 2 (red: for the target, blue: against it, white: 0)" in tex


def test_latex_standalone_is_a_whole_document_and_a_scale_can_be_given():
    tex = plot.latex_heatmap([("", ["good"], [1.0])], standalone=True, scale=2.0)
    assert tex.startswith("\\documentclass{article}") and "\\usepackage{xcolor}" in tex
    assert "\\begin{document}" in tex and tex.rstrip().endswith("\\end{document}")
    assert r"\colorbox[RGB]{255,128,128}{\strut good}" in tex


@pytest.mark.parametrize("rows, message", [
    ([], "rows"), ("abc", "rows"), ([("a", ["x"])], "rows\\[0\\]"), ([("a", ["x", "y"], [1.0])], "rows\\[0\\] relevance"),
])
def test_bad_rows_raise(rows, message):
    with pytest.raises(ValueError, match=message):
        plot.latex_heatmap(rows)


def test_tokens_given_as_one_string_are_refused():
    with pytest.raises(TypeError, match="tokens"):
        plot.latex_heatmap([("", "good film", [1.0, 2.0])])


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (string tests cover the escaping)")
def test_standalone_latex_compiles_with_pdflatex(tmp_path):
    words = ["50%", "&", "$", "_", "\\", "{", "}", "#", "~", "^", "<", ">", "|", "naïve", "good"]
    source = tmp_path / "heatmap.tex"
    source.write_text(plot.latex_heatmap([("method_1", words, np.linspace(-1, 1, len(words)))], standalone=True))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "heatmap.pdf").read_bytes()[:4] == b"%PDF"


# --- HTML ------------------------------------------------------------------------------------------

def test_html_page_is_standalone_escaped_and_offline():
    page = plot.html_page([
        {"tokens": ["<b>", "good"], "relevance": [0.0, 1.0], "prediction_name": "positive",
         "target_name": "positive", "method": "lrp-all", "eps": 0.001, "probabilities": [0.1, 0.1, 0.1, 0.6, 0.1],
         "unknown": ["<b>"]},
        {"sentence": "", "error": "empty sentence"},
    ], title="t & t")
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "&lt;b&gt;" in page and "<b>good" not in page
    assert "background-color: rgb(255,0,0)" in page and "empty sentence" in page
    assert "<title>t &amp; t</title>" in page
    for needle in ("http:", "https:", "<link", " src=", "@import", "url("):
        assert needle not in page


def test_html_page_has_one_scale_a_legend_numbers_and_the_conservation_figures():
    records = [{"tokens": ["good", "film"], "relevance": [2.0, -1.0], "prediction_name": "positive",
                "probabilities": [0.1, 0.1, 0.1, 0.6, 0.1], "scores": [0.0, 0.1, 0.2, 1.5, 0.3],
                "conservation": {"target_score": 1.5, "bias": 0.25, "initial": 0.0, "residual": 0.25}},
               {"tokens": ["fine"], "relevance": [1.0]}]
    page = plot.html_page(records)
    assert "rgb(255,0,0)" in page and "rgb(128,128,255)" in page      # scale 2 from the first sentence
    assert "rgb(255,128,128)" in page                                   # the second sentence on the same scale
    assert "&minus;2</span>" in page and "+2</span>" in page            # the legend's ends
    assert '<span class="v">+2</span>' in page and '<span class="v">-1</span>' in page   # numbers, no hover
    assert "sum of relevance <b>+1</b>" in page and "target score <b>+1.5</b>" in page
    assert "biases <b>+0.25</b>" in page and "residual <b>+0.25</b>" in page
    assert "probabilities: 0.100, 0.100, 0.100, 0.600, 0.100" in page and "scores: +0.000" in page


def test_html_sentence_marks_unknown_words():
    fragment = plot.html_sentence(["qwz", "film"], [0.5, -0.5], unknown=["qwz"])
    assert "underline dotted" in fragment and "not in the vocabulary" in fragment
    assert fragment.count('class="lrp-w"') == 2


# --- library explanations --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explanation():
    import lrpjax
    from lrpjax.models import bilstm

    params = bilstm.from_reference(np.load("tests/data/ref_bilstm.npz"))
    x = np.random.default_rng(0).normal(0, 0.4, (4, 60))
    return lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3)).full(params, x, 3)


def test_explanation_summary_books_the_target_score(explanation):
    summary = plot.explanation_summary(explanation)
    assert summary["target"] == 3
    total = summary["relevance_sum"] + summary["bias"] + summary["initial"] + summary["residual"]
    assert total == pytest.approx(summary["target_score"], abs=1e-12)
    assert plot.explanation_summary(explanation, target=1)["target"] == 1


def test_explanation_text_and_html_show_target_conservation_and_words(explanation):
    text = plot.explanation_text(explanation, tokens=["a", "b", "c", "d"])
    lines = text.splitlines()
    assert lines[0].startswith("Explanation(target 3, score ") and "relevance 4x60" in lines[0]
    assert "sum of relevance" in lines[1] and "biases" in lines[1] and "residual" in lines[1]
    assert lines[2].strip().startswith("a[") and " d[" in lines[2]
    numbered = plot.explanation_text(explanation)
    assert numbered.splitlines()[2].strip().startswith("0[")
    page = plot.explanation_html(explanation, tokens=["a", "b", "c", "<d>"])
    assert "target 3" in page and "&lt;d&gt;" in page and "residual" in page and "lrp-legend" in page
    with pytest.raises(ValueError, match="explanation.relevance"):
        plot.explanation_text(explanation, tokens=["a"])


def test_explanation_without_a_matching_score_shows_an_unknown_target():
    from types import SimpleNamespace

    fake = SimpleNamespace(relevance=np.ones((2, 3)), scores=np.array([1.0, 2.0]), target_score=np.array(5.0),
                           params={"b": np.array([0.5])}, initial={}, residual=np.array(-1.5))
    summary = plot.explanation_summary(fake)
    assert summary["target"] is None and summary["bias"] == 0.5 and summary["relevance_sum"] == 6.0
    assert plot.explanation_text(fake).startswith("Explanation(target ?, score +5")
    assert "target ?" in plot.explanation_html(fake)


def test_a_batched_or_traced_explanation_shows_its_shapes():
    import jax
    from types import SimpleNamespace

    batch = SimpleNamespace(relevance=np.ones((4, 2, 3)), scores=np.ones((4, 5)), target_score=np.ones(4),
                            params={}, initial={}, residual=np.zeros(4))
    assert plot.explanation_text(batch) == ("Explanation(relevance (4, 2, 3), scores (4, 5), target_score (4,), "
                                            "residual (4,))")
    assert plot.explanation_html(batch).startswith("<pre>Explanation(relevance (4, 2, 3)")
    with pytest.raises(ValueError, match="explanation"):
        plot.explanation_summary(batch)

    def traced(r):
        return len(plot.explanation_text(SimpleNamespace(relevance=r, scores=r, target_score=r.sum(),
                                                         params={}, initial={}, residual=r.sum())))
    jax.jit(lambda r: r * traced(r))(np.ones(3))


# --- matplotlib heatmaps ---------------------------------------------------------------------------

def _png_pixels(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_heatmap_draws_the_words_in_their_colours(tmp_path):
    path = tmp_path / "h.png"
    plot.sentence_heatmap(["good", "bad", "film"], [1.0, -1.0, 0.0], path, colorbar=False)
    pixels = _png_pixels(path).reshape(-1, 3)
    count = lambda rgb: int(np.all(pixels == rgb, axis=1).sum())  # noqa: E731
    assert count([255, 0, 0]) > 500 and count([0, 0, 255]) > 500


def test_a_500_word_sentence_wraps_to_the_fixed_width(tmp_path):
    words = [f"word{n}" for n in range(500)]
    relevance = np.sin(np.arange(500.0))
    short, long = tmp_path / "short.png", tmp_path / "long.png"
    plot.sentence_heatmap(words[:5], relevance[:5], short, width=6.5, dpi=100)
    plot.sentence_heatmap(words, relevance, long, width=6.5, dpi=100)
    h_short, w_short, _ = _png_pixels(short).shape
    h_long, w_long, _ = _png_pixels(long).shape
    assert w_short == w_long == 650 and h_long > 10 * h_short


def test_a_word_longer_than_a_line_is_broken_not_cut(tmp_path):
    path = tmp_path / "w.svg"
    plot.sentence_heatmap(["x" * 400, "end"], [1.0, -1.0], path, width=3.0)
    svg = path.read_text()
    assert 'width="216pt"' in svg
    pieces = re.findall(r">(x+)<", svg)
    assert len(pieces) > 1 and sum(len(p) for p in pieces) == 400


def test_methods_are_labelled_rows_and_pdf_svg_keep_text_as_text(tmp_path):
    rows = {"LRP-all": [1.0, -0.5, 0.2], "Gradient x Input": [0.3, 0.1, -0.2]}
    plot.sentence_heatmap(["a", "$5", "50%"], rows, tmp_path / "m.svg", title="t")
    svg = (tmp_path / "m.svg").read_text()
    for text in ("LRP-all", "Gradient x Input", "$5", "50%", "<text"):
        assert text in svg
    plot.sentence_heatmap(["a", "$5", "50%"], rows, tmp_path / "m.pdf")
    pdf = (tmp_path / "m.pdf").read_bytes()
    assert pdf[:4] == b"%PDF" and b"/FontFile2" in pdf        # TrueType embedded: selectable text


def test_heatmap_returns_a_figure_without_a_path_and_accepts_scales():
    fig = plot.heatmap([("a", ["x", "y"], [1.0, -2.0]), ("b", ["z"], [0.5])], scale="row")
    assert fig.get_figwidth() == 6.5 and len(fig.texts) >= 5
    fig = plot.heatmap([("", ["x"], [1.0])], scale=3.0, width=3.3)
    assert fig.get_figwidth() == 3.3


@pytest.mark.parametrize("kwargs, message", [
    ({"scale": "column"}, "scale"), ({"scale": -1.0}, "scale"), ({"width": 0.3}, "width"), ({"width": -1.0}, "width"),
    ({"font_size": 0.0}, "font_size"),
])
def test_bad_heatmap_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot.heatmap([("a long label", ["x"], [1.0])], **kwargs)


@pytest.mark.parametrize("name", ["h.jpg", "h", "h.png.txt", "h.eps"])
def test_figures_refuse_other_extensions(tmp_path, name):
    with pytest.raises(ValueError, match="path"):
        plot.sentence_heatmap(["a"], [1.0], tmp_path / name)
    with pytest.raises(ValueError, match="path"):
        plot.relevance_figure(["a"], [1.0], tmp_path / name)
    assert not (tmp_path / name).exists()


def test_empty_mapping_of_rows_raises():
    with pytest.raises(ValueError, match="relevance"):
        plot.sentence_heatmap(["a"], {})


def test_figures_are_written_as_png(tmp_path):
    plot.relevance_figure(["a", "good", "movie"], [0.1, 1.0, -0.3], tmp_path / "r.png", title="x")
    curves = {"LRP-all": {"correct": [1, 0.8, 0.6], "false": [0, 0.2, 0.3]},
              "random": {"correct": [1, 0.9, 0.85], "false": [0, 0.05, 0.1]}}
    plot.deletion_figure(curves, tmp_path / "d.png",
                         stds={"random": {"correct": [0, 0.01, 0.01], "false": [0, 0.01, 0.02]}})
    for name in ("r.png", "d.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_bar_chart_of_a_long_sentence_keeps_a_bounded_width(tmp_path):
    plot.relevance_figure([f"w{n}" for n in range(500)], np.ones(500), tmp_path / "r.png")
    height, width, _ = _png_pixels(tmp_path / "r.png").shape
    assert width <= 19.5 * 120 and height > width


# --- files -----------------------------------------------------------------------------------------

def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "h.png"
    path.write_bytes(b"previous")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(plot.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        plot.sentence_heatmap(["a"], [1.0], path)
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["h.png"]


def test_write_atomic_replaces_the_file_and_reports_a_missing_directory(tmp_path):
    path = tmp_path / "a.txt"
    plot.write_atomic(path, "one")
    plot.write_atomic(path, b"two")
    assert path.read_text() == "two" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(OSError):
        plot.write_atomic(tmp_path / "missing" / "a.txt", "x")
