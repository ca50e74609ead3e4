"""The offline HTML report, the LRP conservation figures and the SentenceExplanation reprs."""

import re

import numpy as np
import pytest

import lrpjax
from lrpjax.app import report
from lrpjax.models import bilstm
from lrpjax.app.model import SentenceExplanation, SSTModel


def _record(tokens, relevance, pred=3, method="m"):
    probs = [0.1] * 5
    probs[pred] = 0.6
    return {"tokens": tokens, "relevance": relevance, "prediction": pred, "prediction_name": "p",
            "probabilities": probs, "scores": [0.0, 1.0, 2.0, 3.0, 4.0], "target": pred, "target_name": "t",
            "method": method, "eps": None}


def _page(**kwargs):
    sentences = ["good film", "", "a <bad> & film"]
    results = {"lrp-all": [_record(["good", "film"], [2.0, -1.0]), "empty sentence: nothing to explain",
                           _record(["a", "<bad>", "&", "film"], [0.0, -2.0, 0.0, 0.5])],
               "gi": [_record(["good", "film"], [0.5, 0.0]), "empty sentence: nothing to explain",
                      _record(["a", "<bad>", "&", "film"], [0.0, -0.25, 0.0, 0.0])]}
    return report.report_html(sentences, results, **kwargs)


def test_report_page_is_one_offline_file_with_controls_and_a_row_per_sentence():
    page = _page(title="my <report>", notes=["model: x"])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for needle in ("http:", "https:", "<link", " src=", "@import", "url("):
        assert needle not in page
    assert "<title>my &lt;report&gt;</title>" in page and "model: x" in page
    assert 'id="search"' in page and "<script>" in page and page.count('class="sort"') == 7
    assert len(re.findall(r'<tr class="row"', page)) == 3
    assert "empty sentence: nothing to explain" in page and "&lt;bad&gt;" in page and "<bad>" not in page
    assert 'data-text="a &lt;bad&gt; &amp; film a &lt;bad&gt; &amp; film"' in page


def test_report_has_one_scale_per_method_with_a_legend_each():
    page = _page()
    assert page.count('class="lrp-legend"') == 2
    assert "&minus;2</span>" in page and "&minus;0.5</span>" in page     # lrp-all scale 2, gi scale 0.5
    gi_cell = page.split('data-method="gi"')[1]
    assert "rgb(255,0,0)" in gi_cell.split("</td>")[0]                  # 0.5 is full red on gi's scale
    assert 'data-r0="1"' in page and 'data-r1="0.5"' in page and 'data-length="2"' in page


def test_report_scale_per_sentence():
    page = _page(scale="sentence")
    assert "colours scaled per sentence" in page
    third_gi = page.split('data-method="gi"')[2].split("</td>")[0]
    assert "rgb(0,0,255)" in third_gi


def test_report_input_errors():
    with pytest.raises(ValueError, match="scale"):
        _page(scale="page")
    with pytest.raises(ValueError, match=r"results\['m'\]"):
        report.report_html(["a", "b"], {"m": [_record(["a"], [1.0])]})
    with pytest.raises(ValueError, match="results"):
        report.report_html(["a"], {})
    with pytest.raises(TypeError, match="sentences"):
        report.report_html("a", {"m": [_record(["a"], [1.0])]})
    with pytest.raises(TypeError, match="results"):
        report.report_html(["a"], {"m": [3.0]})


@pytest.mark.parametrize("methods, message", [([], "at least one"), (["lrp-all", "magic"], "magic"),
                                              (["gi", "gi"], "distinct")])
def test_explain_report_checks_methods_before_loading_anything(methods, message):
    with pytest.raises(ValueError, match=message):
        report.explain_report(["a film"], methods, model=object())


@pytest.fixture(scope="module")
def sst():
    return SSTModel.load()


def test_conservation_books_the_target_score_and_matches_the_unpadded_pass(sst):
    result = sst.explain_sentence("the plot is dull but the actors are wonderful", "lrp-all")
    books = report.conservation(sst, result)
    total = books["relevance_sum"] + books["bias"] + books["initial"] + books["residual"]
    assert total == pytest.approx(books["target_score"], abs=1e-5)
    assert books["relevance_sum"] == pytest.approx(float(np.sum(result.relevance)), abs=1e-4)
    assert books["target_score"] == pytest.approx(float(result.scores[result.target]), abs=1e-5)
    method = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))
    full = method.full(sst.params["model"], sst.embed(result.tokens), result.target)
    assert books["residual"] == pytest.approx(float(full.residual), abs=1e-5)
    assert report.conservation(sst, sst.explain_sentence("a fine film", "gi")) is None


def test_write_report_explains_and_writes_the_page(sst, tmp_path):
    path = tmp_path / "r.html"
    path.write_text("previous")
    summary = report.write_report(path, ["a fine film", "", "not good"], ("lrp-all", "occlusion-f"), model=sst)
    assert summary == {"sentences": 3, "errors": 1}
    page = path.read_text()
    assert page.count('<tr class="row"') == 3 and 'data-method="occlusion-f"' in page
    assert page.count("biases") == 2 and "residual" in page          # conservation for the two LRP rows
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    with pytest.raises(ValueError, match="scale"):
        report.write_report(path, ["a"], ("gi",), model=sst, scale="x")


def test_sentence_explanation_repr_and_html(sst):
    result = sst.explain_sentence("not a qwzxplk film", "lrp-all")
    text = repr(result)
    assert text.startswith("SentenceExplanation(prediction: ") and "method: lrp-all, eps 0.001" in text
    assert "not[" in text and "qwzxplk" in text.splitlines()[-1] and "residual" not in text
    result.conservation = report.conservation(sst, result)
    assert "residual" in repr(result)
    page = result._repr_html_()
    assert "lrp-legend" in page and "qwzxplk" in page and "residual" in page and "underline dotted" in page
    assert result.to_json()["conservation"] == result.conservation
    plain = SentenceExplanation("a", ["a"], [], np.zeros(5), np.full(5, 0.2), 0, 0, "gi", None, np.zeros(1))
    assert "conservation" not in plain.to_json() and "eps" not in repr(plain).splitlines()[0]
