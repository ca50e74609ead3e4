"""Temporal Saliency Rescaling against a NumPy loop over Algorithm 1 of Ismail et al. (2020)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.methods.tsr import TSR, tsr
from lrpjax.models import lstm


def _np_tsr(explain, x, L, threshold=None, baseline=0.0):
    """Algorithm 1: time-relevance scores, then feature-relevance scores of the steps above alpha."""
    T, E = x.shape
    R = explain(x)
    delta = np.zeros(T)
    for t in range(L):
        masked = x.copy()
        masked[t, :] = baseline
        delta[t] = np.abs(R - explain(masked)).sum()
    alpha = delta[:L].mean() if threshold is None else threshold
    out = np.zeros((T, E))
    for t in range(L):
        if delta[t] > alpha:
            for i in range(E):
                masked = x.copy()
                masked[t, i] = baseline
                out[t, i] = delta[t] * np.abs(R - explain(masked)).sum()
    return out


def test_tsr_matches_algorithm_1():
    E, H, C, T = 2, 3, 2, 4
    params = lstm.init(jax.random.PRNGKey(7), E, H, C, jnp.float64)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(2, T, E))
    mask = np.array([[True] * 4, [True] * 3 + [False]])
    grad = lrpjax.gradient(lstm.apply)
    method = tsr(grad, baseline=0.5)
    got = np.asarray(method.batch(params, X, np.array([0, 1]), mask=mask))
    for b, L in enumerate([4, 3]):
        explain = lambda x_: np.asarray(grad(params, x_, int(b), mask=mask[b]))  # noqa: E731
        np.testing.assert_allclose(got[b], _np_tsr(explain, X[b], L, baseline=0.5), rtol=1e-9, atol=1e-13)
    assert method.name == "tsr-gradient" and method.identity()["base"]["method"].endswith("Gradient")
    with pytest.raises(ValueError, match="per_position|position"):
        tsr(lrpjax.occlusion(lstm.apply))
    with pytest.raises(TypeError, match="base"):
        tsr(lstm.apply)
    with pytest.raises(ValueError, match="apply"):
        TSR(lrpjax.lrp(lstm.apply).apply.__call__, grad)
