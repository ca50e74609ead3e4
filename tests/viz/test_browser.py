"""The HTML pages in a real headless Chromium: rendered colours of known words, search and sorting.

Skipped only when no Chromium is installed (``.ci/run`` installs Debian's ``chromium``). The driver
(tests/oracles/browser.py) speaks the DevTools protocol over a pipe, so nothing but the standard library and
the browser is needed.
"""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lrpjax.viz import plot
from lrpjax.viz import report

from browser import Browser, find_chromium

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="chromium is not installed (apt-get install chromium)")

# Two methods, four sentences; relevance chosen so that the page-wide scale of each method is 2.
SENTENCES = ["a good movie", "bad film", "a movie about nothing at all", "fine"]
TOKENS = [s.split() for s in SENTENCES]
RELEVANCE = {
    "A": [[0.0, 2.0, -1.0], [-2.0, 0.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [1.0]],
    "B": [[0.0, -2.0, 1.0], [2.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, -0.5], [0.1]],
}
PREDICTIONS = [3, 1, 2, 4]
PROBABILITIES = [0.6, 0.7, 0.4, 0.9]


def _record(n, method):
    probs = np.full(5, (1 - PROBABILITIES[n]) / 4)
    probs[PREDICTIONS[n]] = PROBABILITIES[n]
    scores = np.arange(5.0) * (n + 1)
    return {"tokens": TOKENS[n], "relevance": RELEVANCE[method][n], "prediction": PREDICTIONS[n],
            "prediction_name": str(PREDICTIONS[n]), "probabilities": probs.tolist(), "scores": scores.tolist(),
            "target": PREDICTIONS[n], "target_name": str(PREDICTIONS[n]), "method": method, "eps": None}


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, browser):
    path = tmp_path_factory.mktemp("page") / "report.html"
    results = {m: [_record(n, m) for n in range(len(SENTENCES))] for m in RELEVANCE}
    path.write_text(report.report_html(SENTENCES, results, title="test report"))
    return browser.open(path.as_uri(), width=1200, height=900)


def _background(pixels, box):
    """The most frequent colour inside a box (viewport CSS pixels; device scale 1): the background,
    whatever the antialiased text on it covers."""
    x0, y0 = int(np.ceil(box["x"])) + 1, int(np.ceil(box["y"])) + 1
    x1, y1 = int(box["x"] + box["width"]) - 1, int(box["y"] + box["height"]) - 1
    region = pixels[y0:y1, x0:x1].reshape(-1, 3)
    assert len(region) > 20, box
    return collections.Counter(map(tuple, region)).most_common(1)[0][0]


def _word_boxes(page, selector):
    script = (f"Array.prototype.map.call(document.querySelectorAll({json.dumps(selector)}), function (e) {{"
              " var r = e.getBoundingClientRect(); return {text: e.firstChild.textContent, x: r.x, y: r.y,"
              " width: r.width, height: r.height}; })")
    return page.evaluate(script)


def _visible_rows(page):
    return page.evaluate("Array.prototype.filter.call(document.querySelectorAll('#rows tr.row'), "
                         "function (r) { return r.getBoundingClientRect().height > 0; })"
                         ".map(function (r) { return parseInt(r.dataset.index); })")


def _click(page, selector):
    box = page.box(selector)
    page.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_rendered_word_colours_match_the_relevance(synthetic):
    pixels = synthetic.screenshot()
    expected = {("A", 0): [(255, 255, 255), (255, 0, 0), (128, 128, 255)],
                ("A", 1): [(0, 0, 255), (255, 255, 255)],
                ("B", 0): [(255, 255, 255), (0, 0, 255), (255, 128, 128)],
                ("B", 3): [(255, 242, 242)]}
    for (method, row), colours in expected.items():
        boxes = _word_boxes(synthetic, f'#rows tr[data-index="{row}"] td[data-method="{method}"] .lrp-w')
        assert [b["text"] for b in boxes] == TOKENS[row]
        got = [_background(pixels, b) for b in boxes]
        assert got == colours, (method, row)


def test_search_keeps_only_matching_rows(synthetic):
    assert _visible_rows(synthetic) == [0, 1, 2, 3]
    synthetic.evaluate("document.getElementById('search').focus()")
    synthetic.type_text("movie")
    assert _visible_rows(synthetic) == [0, 2]
    synthetic.type_text(" nothing")                       # every word must occur
    assert _visible_rows(synthetic) == [2]
    assert "1 of 4 sentence(s) shown" in synthetic.evaluate("document.getElementById('status').textContent")
    synthetic.evaluate("var s = document.getElementById('search'); s.value = ''; "
                       "s.dispatchEvent(new Event('input'))")
    assert _visible_rows(synthetic) == [0, 1, 2, 3]


def test_clicking_sort_buttons_reorders_the_rows(synthetic):
    _click(synthetic, 'button[data-key="length"]')
    assert _visible_rows(synthetic) == [2, 0, 1, 3]        # longest first
    _click(synthetic, 'button[data-key="length"]')
    assert _visible_rows(synthetic) == [3, 1, 0, 2]        # click again: reversed
    _click(synthetic, 'button[data-key="prob"]')
    assert _visible_rows(synthetic) == [3, 1, 0, 2]        # 0.9, 0.7, 0.6, 0.4
    _click(synthetic, 'button[data-key="r1"]')              # sum of method B's relevance, largest first
    assert _visible_rows(synthetic) == [1, 3, 2, 0]
    _click(synthetic, 'button[data-key="pred"]')
    assert _visible_rows(synthetic) == [3, 0, 2, 1]
    _click(synthetic, 'button[data-key="index"]')
    assert _visible_rows(synthetic) == [0, 1, 2, 3]
    assert "sorted by input order" in synthetic.evaluate("document.getElementById('status').textContent")


def test_numbers_are_visible_and_the_checkbox_hides_them(synthetic):
    shown = synthetic.evaluate("document.querySelector('.lrp-w .v').getBoundingClientRect().height")
    assert shown > 5
    _click(synthetic, "#numbers")
    assert synthetic.evaluate("document.querySelector('.lrp-w .v').getBoundingClientRect().height") == 0
    _click(synthetic, "#numbers")


def test_single_sentence_page_renders_its_colours(tmp_path, browser):
    path = tmp_path / "one.html"
    path.write_text(plot.html_page([{"tokens": ["good", "bad", "film"], "relevance": [1.0, -1.0, 0.5]}]))
    page = browser.open(path.as_uri(), width=1000, height=600)
    pixels = page.screenshot()
    boxes = _word_boxes(page, ".item .lrp-w")
    assert [_background(pixels, b) for b in boxes] == [(255, 0, 0), (0, 0, 255), (255, 128, 128)]


def test_the_command_line_report_renders_in_the_browser(tmp_path, browser):
    source, out = tmp_path / "in.txt", tmp_path / "report.html"
    source.write_text("a gorgeous , witty , seductive movie .\n\nthe plot is dull but the actors are wonderful\n")
    env = dict(os.environ, NO_COLOR="1")
    env.pop("JAX_ENABLE_X64", None)
    done = subprocess.run([sys.executable, "-m", "lrpjax.app.cli", "report", "--input", str(source), "--output",
                           str(out), "--methods", "lrp-all,gi"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    page = browser.open(out.as_uri(), width=1300, height=900)
    assert _visible_rows(page) == [0, 1, 2]
    pixels = page.screenshot()
    words = page.evaluate("Array.prototype.map.call(document.querySelectorAll("
                          "'#rows td[data-method=\"lrp-all\"] .lrp-w'), function (e) {"
                          " var r = e.getBoundingClientRect(); return {text: e.firstChild.textContent,"
                          " row: e.closest('tr').dataset.index, r: parseFloat(e.dataset.r),"
                          " color: getComputedStyle(e).backgroundColor,"
                          " x: r.x, y: r.y, width: r.width, height: r.height}; })")
    assert [w["text"] for w in words if w["row"] == "0"] == "a gorgeous , witty , seductive movie .".split()
    for word in words:
        assert "rgb(%d, %d, %d)" % _background(pixels, word) == word["color"], word
    strongest = max(words, key=lambda w: abs(w["r"]))      # the page's scale: full red or full blue
    assert _background(pixels, strongest) == ((255, 0, 0) if strongest["r"] > 0 else (0, 0, 255))
