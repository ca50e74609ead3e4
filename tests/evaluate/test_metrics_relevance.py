"""Metrics given precomputed relevance (``relevance=``) measure exactly what they measure when they explain
the batch themselves, rank by the relevance they are given, and refuse relevance they cannot use."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.evaluate import metrics as M
from lrpjax.models import lstm

E, H, C, T = 3, 4, 3, 6


@pytest.fixture(scope="module")
def setup():
    params = lstm.init(jax.random.PRNGKey(5), E, H, C, jnp.float64)
    rng = np.random.default_rng(5)
    X = np.zeros((3, T, E))
    mask = np.zeros((3, T), bool)
    for b, L in enumerate([6, 3, 5]):
        X[b, :L] = rng.normal(size=(L, E))
        mask[b, :L] = True
    method = lrpjax.lrp(lstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))
    R, targets = M.explained_relevance(method, params, X, mask=mask)        # the predicted classes
    return params, X, mask, method, np.asarray(R), np.asarray(targets)


CALLS = {
    "deletion": lambda m, p, X, kw: M.deletion_curves(m, p, X, steps=4, **kw),
    "insertion lerf road": lambda m, p, X, kw: M.insertion_curves(m, p, X, steps=4, order="least",
                                                                 removal=M.Removal("road", noise=0.1), **kw),
    "comprehensiveness": lambda m, p, X, kw: M.comprehensiveness(m, p, X, k=(0, 20, 50), **kw),
    "sufficiency": lambda m, p, X, kw: M.sufficiency(m, p, X, k=(0, 20, 50), **kw),
    "faithfulness": lambda m, p, X, kw: M.faithfulness_correlation(m, p, X, size=2, n=8, **kw),
    "sensitivity-n": lambda m, p, X, kw: M.sensitivity_n(m, p, X, sizes=(1, 2), n=8, **kw),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_precomputed_relevance_gives_the_same_metric(setup, name):
    params, X, mask, method, R, targets = setup
    own = CALLS[name](method, params, X, {"mask": mask})                      # explains, predicted targets
    given = CALLS[name](method, params, X, {"mask": mask, "targets": targets, "relevance": R})
    np.testing.assert_allclose(np.asarray(given), np.asarray(own), rtol=1e-12, atol=1e-12, equal_nan=True)


def test_the_given_relevance_is_the_ranking(setup):
    """Negated relevance removed most-first is the original removed least-first (no ties in R)."""
    params, X, mask, method, R, targets = setup
    least = M.deletion_curves(method, params, X, targets, mask=mask, steps=T, order="least")
    negated = M.deletion_curves(method, params, X, targets, mask=mask, steps=T, relevance=-R)
    np.testing.assert_allclose(np.asarray(negated), np.asarray(least), rtol=1e-12, atol=1e-12)
    most = M.deletion_curves(method, params, X, targets, mask=mask, steps=T)
    assert not np.allclose(np.asarray(negated), np.asarray(most))


def test_bad_relevance_is_named(setup):
    params, X, mask, method, R, targets = setup
    with pytest.raises(ValueError, match="`relevance` needs `targets`"):
        M.deletion_curves(method, params, X, mask=mask, relevance=R)
    with pytest.raises(ValueError, match=r"`relevance` must have shape \(3, 6\)"):
        M.comprehensiveness(method, params, X, targets, mask=mask, relevance=R[:, :4])
    with pytest.raises(TypeError, match="`relevance` must be a float array"):
        M.faithfulness_correlation(method, params, X, targets, mask=mask, relevance=R.astype(np.int32))
