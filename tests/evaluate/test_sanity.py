"""Sanity checks against NumPy implementations of Spearman's rho and SSIM (explicit loops), the randomised
models' layout, and the batched calls against per-example explanations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.evaluate import sanity as S
from lrpjax.models import lstm

E, H, C, T = 3, 4, 3, 5
LENGTHS = [5, 3, 4]


def _np_ranks(v):
    """Average ranks from 1 (ties share their mean rank), by counting."""
    return np.array([1 + sum(u < x for u in v) + (sum(u == x for u in v) - 1) / 2 for x in v])


def _np_pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return (a @ b) / np.sqrt((a @ a) * (b @ b))


def _np_spearman(a, b):
    return _np_pearson(_np_ranks(list(a)), _np_ranks(list(b)))


def _np_ssim(a, b):
    """Wang et al. 2004, Eq. 13, one window, sample (co)variances, L the range of a."""
    n = len(a)
    L = a.max() - a.min() or 1.0
    mu_a, mu_b = sum(a) / n, sum(b) / n
    var_a = sum((x - mu_a) ** 2 for x in a) / (n - 1)
    var_b = sum((y - mu_b) ** 2 for y in b) / (n - 1)
    cov = sum((x - mu_a) * (y - mu_b) for x, y in zip(a, b)) / (n - 1)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def test_spearman_and_ssim_match_loop_oracles():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    a[1, 0] = a[2, 2] = a[0, 1]                               # ties share their average rank
    mask = np.array([True] * 4 + [False] * 2)
    b_padded = b.copy()
    b_padded[4:] = 1e6                                       # padding never counts
    np.testing.assert_allclose(S.spearman(a, b_padded, mask), _np_spearman(a[:4].ravel(), b[:4].ravel()), rtol=1e-12)
    np.testing.assert_allclose(S.ssim(a, b_padded, mask), _np_ssim(a[:4].ravel(), b[:4].ravel()), rtol=1e-12)
    np.testing.assert_allclose(S.spearman(a[:, 0], 3 * a[:, 0] + 1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(S.ssim(a, a), 1.0, rtol=1e-12)
    np.testing.assert_allclose(S.spearman(a.ravel(), -a.ravel()), -1.0, rtol=1e-12)


@pytest.fixture(scope="module")
def setup():
    params = lstm.init(jax.random.PRNGKey(2), E, H, C, jnp.float64)
    rng = np.random.default_rng(2)
    X = np.zeros((3, T, E))
    mask = np.zeros((3, T), bool)
    for b, L in enumerate(LENGTHS):
        X[b, :L] = rng.normal(size=(L, E))
        mask[b, :L] = True
    return params, X, mask, lrpjax.lrp(lstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))


def test_randomised_parameters_layout(setup):
    params = setup[0]
    layers = ("lstm", "out")
    cascading = S.randomised_parameters(params, layers, "cascading", seed=1)
    independent = S.randomised_parameters(params, layers, "independent", seed=1)
    same = lambda p, q: all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(p),  # noqa: E731
                                                                  jax.tree_util.tree_leaves(q)))
    assert same(cascading[0]["lstm"], params["lstm"]) and not same(cascading[0]["out"], params["out"])
    assert not same(cascading[1]["lstm"], params["lstm"]) and same(cascading[1]["out"], cascading[0]["out"])
    assert same(independent[1]["out"], params["out"]) and same(independent[1]["lstm"], cascading[1]["lstm"])
    W = np.asarray(cascading[1]["lstm"]["W"])
    assert abs(W.std() / np.asarray(params["lstm"]["W"]).std() - 1) < 0.5


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_parameter_randomisation_matches_per_model_oracle(setup, mode):
    params, X, mask, method = setup
    result = S.parameter_randomisation(method, params, X, mask=mask, mode=mode, seed=3)
    assert result.layers == ("out", "lstm")
    models = S.randomised_parameters(params, ("lstm", "out"), mode, seed=3)
    for b, L in enumerate(LENGTHS):                 # padded rows with their masks: one compiled program
        predicted = int(np.argmax(lstm.apply(params, X[b], mask=mask[b])))
        original = np.asarray(method(params, X[b], predicted, mask=mask[b]))[:L]
        for k, p in enumerate(models):
            other = np.asarray(method(p, X[b], predicted, mask=mask[b]))[:L]
            np.testing.assert_allclose(result.spearman[b, k], _np_spearman(original.ravel(), other.ravel()), rtol=1e-9)
            np.testing.assert_allclose(result.ssim[b, k], _np_ssim(original.ravel(), other.ravel()), rtol=1e-9)


def test_random_logit_matches_per_example_oracle(setup):
    params, X, mask, method = setup
    targets = np.array([0, 2, 1])
    result = S.random_logit(method, params, X, targets, mask=mask, seed=4, absolute=True)
    other = np.asarray(result.other)
    assert np.all(other != targets) and np.all((0 <= other) & (other < C))
    for b, L in enumerate(LENGTHS):
        a = np.abs(np.asarray(method(params, X[b], int(targets[b]), mask=mask[b]))[:L]).ravel()
        c = np.abs(np.asarray(method(params, X[b], int(other[b]), mask=mask[b]))[:L]).ravel()
        np.testing.assert_allclose(result.spearman[b], _np_spearman(a, c), rtol=1e-9)
        np.testing.assert_allclose(result.ssim[b], _np_ssim(a, c), rtol=1e-9)


def test_bad_arguments_are_named(setup):
    params, X, mask, method = setup
    with pytest.raises(ValueError, match="mode"):
        S.parameter_randomisation(method, params, X, mask=mask, mode="sideways")
    with pytest.raises(ValueError, match="layers"):
        S.parameter_randomisation(method, params, X, mask=mask, layers=("embedding",))
    with pytest.raises(ValueError, match="mode"):
        S.randomised_parameters(params, ("lstm",), "all")
