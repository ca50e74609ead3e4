"""HTML pages and reports say what their numbers are: sensitivities (never negative) on the sequential
white-purple scale with their own legend, signed relevance on the diverging scale centred at 0."""

import re

from lrpjax.viz import render, report

SIGNED = {"tokens": ["a", "b"], "relevance": [0.5, -1.0], "method": "lrp-all"}
UNSIGNED = {"tokens": ["a", "b"], "relevance": [0.25, 2.0], "method": "sa"}


def _colours(page: str) -> list[str]:
    return re.findall(r"background-color: rgb\((\d+,\d+,\d+)\)", page)


def test_a_page_with_both_kinds_has_a_legend_and_a_scale_for_each():
    page = render.html_page([SIGNED, UNSIGNED])
    assert page.count('class="lrp-legend"') == 2
    assert "lrp-bar lrp-unsigned" in page and "never negative" in page and "red: for the target" in page
    assert "per kind of values" in page
    signed, unsigned = _colours(page)[:2], _colours(page)[2:]
    assert signed == ["255,128,128", "0,0,255"]                # +0.5 and -1.0 of max |R| = 1: diverging
    assert unsigned == ["234,228,241", "84,39,143"]            # 0.25 and 2.0 of max 2: white .. purple


def test_a_page_of_relevance_alone_keeps_one_diverging_legend():
    page = render.html_page([SIGNED])
    assert page.count('class="lrp-legend"') == 1 and "lrp-bar lrp-unsigned" not in page and "per kind" not in page


def test_a_report_column_of_sensitivities_reads_on_the_sequential_scale():
    page = report.report_html(["a b"], {"lrp-all": [SIGNED], "sa": [UNSIGNED]})
    assert "lrp-bar lrp-unsigned" in page and "never negative" in page
    assert "84,39,143" in page and "0,0,255" in page
