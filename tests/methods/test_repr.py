"""Results render themselves: short reprs of Explanation, Attribution and DatasetExplanation, and an HTML
fragment of an Explanation for notebooks, without giving up their tuple and pytree behaviour."""

import re
from html.parser import HTMLParser

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax import methods as explain
from lrpjax import datasets as scale
from lrpjax.methods import Attribution, Explanation
from lrpjax.models import bilstm
from lrpjax.models.mlp import MLP
from lrpjax.rules import preset
from lrpjax.datasets import DatasetExplanation

E, H, C, T = 6, 3, 5, 4
FIELDS = ("relevance", "scores", "target_score", "params", "initial", "states", "residual")


@pytest.fixture(scope="module", params=[np.float32, np.float64], ids=["float32", "float64"])
def case(request):
    dtype = request.param
    params = bilstm.init(jax.random.PRNGKey(0), E, H, C, dtype)
    x = np.random.default_rng(0).normal(0.0, 0.5, (T, E)).astype(dtype)
    return dtype, params, x


@pytest.fixture(scope="module")
def lrp():
    return lrpjax.lrp(bilstm.apply, preset("lrp-all", eps=1e-3))


class _Tags(HTMLParser):
    """Checks that every opened tag is closed in order (the fragments use no void elements)."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _parsed(fragment: str) -> _Tags:
    parser = _Tags()
    parser.feed(fragment)
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    return parser


def _number(text: str, name: str) -> float:
    match = re.search(re.escape(name) + r"=([-+][0-9.e+-]+)", text)
    assert match, f"{name} not in {text!r}"
    return float(match.group(1))


# --- Explanation ------------------------------------------------------------------------------------

def test_explanation_repr_shows_shapes_target_and_conservation(case, lrp):
    dtype, params, x = case
    e = lrp.full(params, x, 3)
    text = repr(e)
    name = np.dtype(dtype).name
    assert text.startswith(f"Explanation(relevance=({T}, {E}) {name}, scores=({C},) {name}, target=3, ")
    assert "\n" not in text and len(text) < 250
    assert _number(text, "target_score") == pytest.approx(float(e.target_score), rel=1e-3)
    assert _number(text, "sum(relevance)") == pytest.approx(float(np.sum(e.relevance)), rel=1e-3)
    assert _number(text, "residual") == pytest.approx(float(e.residual), rel=1e-3, abs=1e-12)
    absorbed = sum(float(np.sum(leaf)) for leaf in jax.tree_util.tree_leaves(e.params))
    assert _number(text, "sum(params)") == pytest.approx(absorbed, rel=1e-3)
    assert "sum(initial)=" in text
    assert str(e) == text


def test_explanation_repr_of_weights_target_has_no_class(case, lrp):
    _, params, x = case
    e = lrp.full(params, x, np.array([0.5, 0, 0, 0.5, 0]))
    assert "target=?" in repr(e)


def test_explanation_repr_of_tied_scores_has_no_class():
    e = Explanation(np.ones((2, 3)), np.array([1.0, 1.0, 0.0]), np.float64(1.0), {}, {}, {}, np.float64(0.0))
    assert "target=?" in repr(e) and "target <b>?</b>" in e._repr_html_()


def test_explanation_repr_is_short_for_big_arrays():
    n = 20000
    e = Explanation(np.ones((n, 300), np.float32), np.arange(10.0), np.float64(3.0), {"b": np.ones(n)},
                    {"y0": np.zeros(n)}, {"y": np.ones((n, n // 100))}, np.float64(0.25))
    text = repr(e)
    assert len(text) < 250 and "[" not in text and "array" not in text
    assert f"relevance=({n}, 300) float32" in text and "target=3" in text and "residual=+0.25" in text


def test_explanation_html_is_valid_and_shows_the_numbers(case, lrp):
    _, params, x = case
    e = lrp.full(params, x, 3)
    page = e._repr_html_()
    parsed = _parsed(page)
    scores = np.asarray(e.scores)
    predicted = int(np.argmax(scores))
    assert page.startswith('<div class="lrpjax-explanation"><style>')
    assert f"prediction <b>{predicted}</b>" in page and "target <b>3</b>" in page
    assert f"{float(e.target_score):+.4g}" in page and f"{float(e.residual):+.4g}" in page
    assert "residual" in page and "sum of relevance" in page and "lrp-legend" in page
    words = np.asarray(e.relevance, np.float64).sum(-1)
    assert page.count('class="lrp-w"') == T
    for value in words:
        assert f"{value:+.3g}" in page
    text = "".join(parsed.text)
    assert "Explanation" in text


def test_explanation_html_of_a_long_sequence_says_what_it_shows():
    n = 1200
    relevance = np.linspace(-1.0, 1.0, n * 2).reshape(n, 2)
    e = Explanation(relevance, np.array([0.0, 1.0]), np.float64(1.0), {}, {}, {}, np.float64(0.0))
    page = e._repr_html_()
    _parsed(page)
    assert page.count('class="lrp-w"') == 500 and f"positions 0..499 of {n} shown" in page


def test_explanation_html_without_finite_relevance_has_no_heatmap():
    e = Explanation(np.array([[np.nan], [1.0]]), np.array([0.0, 1.0]), np.float64(1.0), {}, {}, {},
                    np.float64(np.nan))
    page = e._repr_html_()
    _parsed(page)
    assert "non-finite" in page and 'class="lrp-w"' not in page and "nan" in page
    assert "residual=+nan" in repr(e) or "residual=nan" in repr(e)


def test_explanation_of_a_vector_input_has_no_heatmap():
    model = MLP((4, 3, 2), activation="tanh")
    params = model.init(jax.random.PRNGKey(0), jnp.float64)
    e = lrpjax.lrp(model.apply, preset("lrp-all", eps=1e-3)).full(params, np.array([0.5, -1.0, 2.0, 0.1]), 1)
    assert repr(e).startswith("Explanation(relevance=(4,) float64, scores=(2,) float64, target=1, ")
    page = e._repr_html_()
    _parsed(page)
    assert 'class="lrp-w"' not in page and "target <b>1</b>" in page and "residual" in page


# --- tuple and pytree behaviour ----------------------------------------------------------------------

def test_explanation_is_still_a_namedtuple_and_a_pytree(case, lrp):
    _, params, x = case
    e = lrp.full(params, x, 3)
    assert isinstance(e, tuple) and e._fields == FIELDS and len(e) == 7
    relevance, scores, target_score, absorbed, initial, states, residual = e
    assert relevance is e.relevance and residual is e.residual and e[1] is scores
    leaves, treedef = jax.tree_util.tree_flatten(e)
    assert len(leaves) == len(jax.tree_util.tree_leaves(tuple(e)))
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(rebuilt) is Explanation and repr(rebuilt) == repr(e)
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, e)
    assert type(doubled) is Explanation
    np.testing.assert_allclose(doubled.residual, 2 * np.asarray(e.residual))
    assert e._replace(residual=np.float64(0.5)).residual == 0.5 and "residual=+0.5" in repr(e._replace(
        residual=np.float64(0.5)))
    empty = jax.tree_util.tree_map(lambda _: None, e)     # None fields: the shapes, no error
    assert repr(empty).startswith("Explanation(relevance=NoneType")


def test_explanations_returned_by_jit_and_vmap(case, lrp):
    _, params, x = case
    direct = lrp.full(params, x, 3)
    jitted = jax.jit(lambda p, x_: lrp.full(p, x_, 3))(params, x)
    assert type(jitted) is Explanation and repr(jitted) == repr(direct)
    assert jitted._repr_html_() == direct._repr_html_()

    seen = []

    def traced(x_):
        e = lrp.full(params, x_, 3)
        seen.append((repr(e), e._repr_html_()))
        return e

    jax.jit(traced)(x)
    assert seen[0][0].startswith(f"Explanation(relevance=({T}, {E}) ") and "target_score=()" in seen[0][0]
    assert seen[0][1].startswith("<pre>Explanation(relevance=")

    X = np.stack([x, x[::-1]])
    batched = jax.vmap(lambda x_: lrp.full(params, x_, 3))(X)
    assert type(batched) is Explanation and batched.relevance.shape == (2, T, E)
    text = repr(batched)
    assert text.startswith(f"Explanation(relevance=(2, {T}, {E}) ") and "target_score=(2,)" in text
    assert batched._repr_html_() == f"<pre>{text}</pre>"
    np.testing.assert_allclose(batched.residual[0], direct.residual, rtol=1e-5, atol=1e-6)


# --- Attribution -----------------------------------------------------------------------------------

def test_attribution_repr_shows_scores_and_gap(case):
    dtype, params, x = case
    ig = explain.integrated_gradients(bilstm.apply, steps=4)
    a = ig.full(params, x, 2)
    assert type(a) is Attribution and a._fields == ("relevance", "scores", "target_score", "baseline_score", "gap")
    text = repr(a)
    name = np.dtype(dtype).name
    assert text.startswith(f"Attribution(relevance=({T}, {E}) {name}, scores=({C},) {name}, target=2, ")
    assert _number(text, "target_score") == pytest.approx(float(a.target_score), rel=1e-3)
    assert _number(text, "baseline_score") == pytest.approx(float(a.baseline_score), rel=1e-3)
    assert _number(text, "sum(relevance)") == pytest.approx(float(np.sum(a.relevance)), rel=1e-3)
    assert _number(text, "gap") == pytest.approx(float(a.gap), rel=1e-3, abs=1e-12)
    assert len(text) < 250
    jitted = jax.jit(lambda p, x_: ig.full(p, x_, 2))(params, x)
    assert type(jitted) is Attribution and repr(jitted) == text
    batched = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), a, a)
    assert repr(batched).startswith(f"Attribution(relevance=(2, {T}, {E}) ") and "gap=(2,)" in repr(batched)


# --- DatasetExplanation ------------------------------------------------------------------------------

def test_dataset_explanation_repr(lrp):
    params = bilstm.init(jax.random.PRNGKey(0), E, H, C, jnp.float64)
    rng = np.random.default_rng(1)
    sequences = [rng.normal(0.0, 0.5, (n, E)) for n in (2, 5, 3)]
    result = scale.explain_dataset(lrp, params, sequences, targets=1, chunk_size=2)
    text = repr(result)
    assert text.startswith("DatasetExplanation(3 sequences, lengths 2..5, relevance[0] (2, 6) float64, "
                           "scores (3, 5) float64, targets (3,) int32, explained classes {1: 3}, ")
    assert f"edges {tuple(result.edges)}" in text and f"compilations {result.compilations}" in text
    every = scale.explain_dataset(lrp, params, sequences, targets="all", chunk_size=2)
    assert "every class explained" in repr(every) and "relevance[0] (5, 2, 6)" in repr(every)


def test_dataset_explanation_repr_is_short_for_big_datasets():
    n = 5000
    lengths = np.arange(1, n + 1)
    big = DatasetExplanation([np.ones((t, 3), np.float32) for t in lengths[:n]], lengths,
                             np.zeros((n, 2)), np.arange(n) % 50, 0, tuple(range(1, 40)))
    text = repr(big)
    assert len(text) < 250 and "array" not in text
    assert "5000 sequences, lengths 1..5000" in text and "39 edges 1..39" in text
    assert "explained classes" not in text   # 50 classes: too many to list
    per_step = DatasetExplanation([np.ones((2, 2, 3))], np.array([2]), [np.zeros((2, 4))], [np.zeros(2, int)], 1,
                                  (8,))
    assert "scores: 1 arrays (per step)" in repr(per_step) and "targets: 1 arrays (per step)" in repr(per_step)
    empty = DatasetExplanation([], np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int32), 0, ())
    assert repr(empty) == ("DatasetExplanation(0 sequences, scores (0, 2) float64, targets (0,) int32, edges (), "
                           "compilations 0)")
