"""``Pool("last")``: the last valid step of a sequence, against an independent float64 NumPy oracle (explicit
loops), and against a recurrent layer's own final state; masks, batches, jit, gradients, CD, config."""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.cells import StandardCell
from lrpjax.io.checkpoints import load_model, save_model
from lrpjax.models import Dense, Pool, Recurrent, Sequential
from lrpjax.models.layers import layer_from_config
from lrpjax.rules import preset


@pytest.fixture(autouse=True)
def _release_programs():
    yield
    jax.clear_caches()
    gc.collect()


# --- the oracle: h_t = tanh(x_t W1 + b1) at every step, z = h_L W2 + b2 at the last valid step L ----------

def _sgn(z):
    return 1.0 if z >= 0 else -1.0


def oracle_forward(W1, b1, W2, b2, x, length):
    T, E = x.shape
    H = W1.shape[1]
    h = np.zeros((T, H))
    for t in range(length):
        for j in range(H):
            s = b1[j]
            for e in range(E):
                s += x[t, e] * W1[e, j]
            h[t, j] = np.tanh(s)
    L = length - 1
    z = np.zeros(W2.shape[1])
    for c in range(W2.shape[1]):
        z[c] = b2[c] + sum(h[L, j] * W2[j, c] for j in range(H))
    return h, z


def oracle_epsilon(xs, W, b, R_out, eps):
    """LRP-epsilon of one mapping z = xs W + b (bias absorbs its share): relevance of xs."""
    D, M = W.shape
    R = np.zeros(D)
    for m in range(M):
        z = b[m] + sum(xs[d] * W[d, m] for d in range(D))
        den = z + eps * _sgn(z)
        for d in range(D):
            R[d] += xs[d] * W[d, m] / den * R_out[m]
    return R


def oracle_lrp(W1, b1, W2, b2, x, length, target, eps):
    """Relevance (T, E): the head's relevance reaches only step L; tanh passes it; the first mapping splits it."""
    T, E = x.shape
    h, z = oracle_forward(W1, b1, W2, b2, x, length)
    R_z = np.zeros(W2.shape[1])
    R_z[target] = z[target]
    R_h = oracle_epsilon(h[length - 1], W2, b2, R_z, eps)
    R = np.zeros((T, E))
    pre = np.array([b1[j] + sum(x[length - 1, e] * W1[e, j] for e in range(E)) for j in range(W1.shape[1])])
    for j in range(W1.shape[1]):
        den = pre[j] + eps * _sgn(pre[j])
        for e in range(E):
            R[length - 1, e] += x[length - 1, e] * W1[e, j] / den * R_h[j]
    return R


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    E, H, C, T = 3, 4, 2, 6
    p = {"W1": rng.normal(0, 0.7, (E, H)), "b1": rng.normal(0, 0.3, H), "W2": rng.normal(0, 0.7, (H, C)),
         "b2": rng.normal(0, 0.3, C)}
    model = Sequential((Dense(H, "tanh", name="step"), Pool("last", name="last"), Dense(C, name="out")))
    params = {"step": {"W": jnp.asarray(p["W1"]), "b": jnp.asarray(p["b1"])},
              "out": {"W": jnp.asarray(p["W2"]), "b": jnp.asarray(p["b2"])}}
    xs = [rng.normal(0, 0.9, (length, E)) for length in (6, 4, 1)]
    X, mask = lrpjax.pad(xs, T)
    return model, params, p, xs, X, mask


def test_scores_and_relevance_equal_the_oracle_on_padded_batches(case):
    model, params, p, xs, X, mask = case
    targets = jnp.array([0, 1, 1])
    explain = lrpjax.lrp(model.apply, preset("lrp-all", eps=0.01))
    R = np.asarray(explain.batch(params, X, targets, mask=mask))
    scores = np.asarray(jax.vmap(lambda x_, m: model.apply(params, x_, mask=m))(X, mask))
    for b, x in enumerate(xs):
        padded = np.asarray(X[b])
        _, z = oracle_forward(p["W1"], p["b1"], p["W2"], p["b2"], padded, len(x))
        np.testing.assert_allclose(scores[b], z, rtol=0, atol=1e-12)
        expected = oracle_lrp(p["W1"], p["b1"], p["W2"], p["b2"], padded, len(x), int(targets[b]), 0.01)
        np.testing.assert_allclose(R[b], expected, rtol=0, atol=1e-12)
        assert np.all(R[b, :len(x) - 1] == 0) and np.all(R[b, len(x):] == 0)
        # each sequence alone, unpadded, jit-compiled
        target = int(targets[b])
        alone = jax.jit(lambda x_: explain(params, x_, target))(jnp.asarray(x))
        np.testing.assert_allclose(R[b, :len(x)], alone, rtol=0, atol=1e-13)


def test_gradient_equals_jax_grad_of_an_independent_model(case):
    model, params, p, xs, X, mask = case

    def independent(x, m):
        length = jnp.sum(m)
        h = jnp.tanh(x @ p["W1"] + p["b1"][None, :])
        return (jnp.sum(jnp.where((jnp.arange(x.shape[0]) == length - 1)[:, None], h, 0.0), axis=0) @ p["W2"]
                + p["b2"])[1]

    G = lrpjax.gradient(model.apply).batch(params, X, jnp.ones(3, jnp.int32), mask=mask)
    for b in range(3):
        np.testing.assert_allclose(G[b], jax.grad(independent)(X[b], mask[b]), rtol=1e-12, atol=1e-14)


def test_a_recurrent_layer_read_at_its_last_step_is_its_final_state():
    """Recurrent(sequences=True) + Pool("last") is Recurrent(sequences=False): scores, LRP with conservation
    (share), the gradient and Contextual Decomposition agree, padded or not."""
    from lrpjax.methods import decomposition as cd

    final = Sequential((Recurrent(StandardCell(), 3, name="lstm"), Dense(2, name="out")))
    params = final.init(jax.random.PRNGKey(1), 4, jnp.float64)
    last = Sequential((Recurrent(StandardCell(), 3, sequences=True, name="lstm"), Pool("last"), Dense(2, name="out")))
    x = jnp.asarray(np.random.default_rng(2).normal(0, 0.8, (6, 4)))
    mask = jnp.arange(6) < 4
    np.testing.assert_allclose(last.apply(params, x, mask=mask), final.apply(params, x, mask=mask), rtol=1e-13)
    for method in (lambda f: lrpjax.lrp(f, preset("lrp-half", 0.01, True)), lrpjax.gradient):
        got, want = method(last.apply)(params, x, 1, mask=mask), method(final.apply)(params, x, 1, mask=mask)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    full = lrpjax.lrp(last.apply, preset("lrp-all", 0.01, True)).full(params, x, 1, mask=mask)
    assert abs(float(full.residual)) < 1e-12
    relevant = jnp.array([False, True, True, False, False, False])
    got, want = cd.decompose(last.apply, params, x, relevant, mask=mask), cd.decompose(final.apply, params, x,
                                                                                      relevant, mask=mask)
    np.testing.assert_allclose(got.beta, want.beta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.gamma, want.gamma, rtol=1e-12, atol=1e-14)


def test_config_checkpoint_summary_and_checks(tmp_path):
    layer = Pool("last", name="p")
    assert layer_from_config(layer.config()) == layer
    assert layer.describe() == "Pool(last)"
    model = Sequential((Recurrent(StandardCell(), 2, sequences=True), Pool("last"), Dense(1, bias=False)))
    params = model.init(jax.random.PRNGKey(0), 2, jnp.float64)
    save_model(tmp_path / "m.npz", model, params)
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.model == model
    with pytest.raises(ValueError, match=r"`mode` of Pool must be one of \('mean', 'sum', 'max', 'last'\)"):
        Pool("first")
    with pytest.raises(ValueError, match=r"layer 'pool_0' \(Pool\) needs a sequence"):
        Sequential((Dense(3), Pool("last")), sequence_input=False)
