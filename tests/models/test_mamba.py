"""The Mamba block: forward and relevance equal to the float64 oracle for every preset, both scans equal,
conservation with share=True, masks and batches, true gradients, MambaLRP as Gradient x Input of the
detached model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.core.rules import preset
from lrpjax.models import Conv1D, Dense, MambaBlock, Pool, RMSNorm, Sequential
from lrpjax.models.layers import layer_from_config
from lrpjax.models.mamba import mamba_lrp
from reference_mamba import mamba_forward, mamba_relevance

T, DM, N, K = 5, 3, 3, 3
# (mode, eps, share); the last is MambaLRP (z-rule, half gate).
PRESETS = (("all", 0.01, False), ("prop", 0.01, True), ("abs", 0.01, False), ("half", 0.01, True), ("half", 0.0, False))


def _rules(mode, eps, share):
    return mamba_lrp() if (mode, eps, share) == ("half", 0.0, False) else preset(f"lrp-{mode}", eps, share)


def _block(scan="sequential"):
    return Sequential((MambaBlock(d_state=N, d_conv=K, scan=scan, bias=True, name="mamba"),))


@pytest.fixture(scope="module")
def setup():
    params = _block().init(jax.random.PRNGKey(0), DM, jnp.float64)
    rng = np.random.default_rng(3)
    p = {k: np.asarray(v) + rng.normal(0, 0.3, np.shape(v)) for k, v in params["mamba"].items()}
    p["A_log"] = rng.normal(0, 0.5, p["A_log"].shape)
    params = {"mamba": p}
    x = rng.normal(size=(T, DM))
    r = rng.normal(size=(T, DM))

    def run(params, x, r, scan, presets):
        model = _block(scan)
        results = []
        for rule in presets:
            _, pull = jax.vjp(lambda x_: model.apply(params, x_, _rules(*rule)), x)
            results.append(pull(r)[0])
        return model.apply(params, x), results

    sequential = jax.jit(run, static_argnums=(3, 4))(params, x, r, "sequential", PRESETS)
    parallel = jax.jit(run, static_argnums=(3, 4))(params, x, r, "parallel", PRESETS[1:2])
    return params, x, r, sequential, parallel


def test_forward_equals_the_oracle_and_the_parallel_scan_the_sequential_one(setup):
    params, x, r, (out, _), (out_parallel, _) = setup
    expected, _ = mamba_forward(params["mamba"], x)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_allclose(out_parallel, out, atol=1e-13)


@pytest.mark.parametrize("k", range(len(PRESETS)), ids=[f"{m}-eps{e}-share{s}" for m, e, s in PRESETS])
def test_relevance_equals_the_oracle_for_every_preset(setup, k):
    params, x, r, (_, results), _ = setup
    mode, eps, share = PRESETS[k]
    expected = mamba_relevance(params["mamba"], x, r, mode, eps, share)
    np.testing.assert_allclose(results[k], expected, atol=1e-10)
    if share:   # every computation conserves: the block's input relevance sums to its output's
        np.testing.assert_allclose(results[k].sum(), r.sum(), rtol=1e-11)


def test_parallel_scan_relevance_equals_the_sequential_one(setup):
    _, _, _, (_, results), (_, parallel) = setup
    np.testing.assert_allclose(parallel[0], results[1], atol=1e-12)


def _independent_block(p, x, detach=False, eps=1e-5):
    """The block in plain jnp, written apart from lrpjax; ``detach`` gives MambaLRP's modified model."""
    sg = jax.lax.stop_gradient if detach else (lambda v: v)
    silu = (lambda v: v * sg(jax.nn.sigmoid(v)))
    inv = sg(1.0 / jnp.sqrt(jnp.mean(x ** 2, axis=1, keepdims=True) + eps))
    n = x * inv * p["norm"][None, :]
    sz = n @ p["in_proj"] + p["in_proj_b"][None, :]
    I = p["A_log"].shape[0]
    s, z = sz[:, :I], sz[:, I:]
    Kc = p["conv_W"].shape[0]
    padded = jnp.concatenate([jnp.zeros((Kc - 1, I)), s])
    c = silu(sum(padded[k:k + x.shape[0]] * p["conv_W"][k][None, :] for k in range(Kc)) + p["conv_b"][None, :])
    Rr, Nn = p["dt_proj"].shape[0], p["A_log"].shape[1]
    dbc = c @ p["x_proj"]
    delta = sg(jax.nn.softplus(dbc[:, :Rr] @ p["dt_proj"] + p["dt_bias"][None, :]))
    B, C = sg(dbc[:, Rr:Rr + Nn]), sg(dbc[:, Rr + Nn:])
    a = sg(jnp.exp(delta[:, :, None] * -jnp.exp(p["A_log"])[None, :, :]))
    h = jnp.zeros((I, Nn))
    ys = []
    for t in range(x.shape[0]):
        h = a[t] * h + delta[t][:, None] * B[t][None, :] * c[t][:, None]
        ys.append(h @ C[t] + p["D"] * c[t])
    y = jnp.stack(ys)
    product = y * silu(z)
    g = 0.5 * product + 0.5 * jax.lax.stop_gradient(product) if detach else product
    return x + g @ p["out_proj"] + p["out_proj_b"][None, :]


@pytest.fixture(scope="module")
def gradients(setup):
    """One compiled program: the block's true gradient and that of the independent model; MambaLRP's relevance
    and Gradient x Input of the independent detached model."""
    params, x, r, (out, _), _ = setup
    p = {k: jnp.asarray(v) for k, v in params["mamba"].items()}
    seed = r * np.asarray(out)

    @jax.jit
    def run(params, p, x, r, seed):
        g = jax.grad(lambda x_: jnp.sum(r * _block().apply(params, x_)))(x)
        g_ref = jax.grad(lambda x_: jnp.sum(r * _independent_block(p, x_)))(x)
        _, pull = jax.vjp(lambda x_: _block().apply(params, x_, mamba_lrp()), x)
        gi = x * jax.grad(lambda x_: jnp.sum(r * _independent_block(p, x_, detach=True)))(x)
        return g, g_ref, pull(seed)[0], gi

    return run(params, p, x, r, seed)


def test_without_rules_the_gradient_is_that_of_an_independent_model(gradients):
    g, g_ref, _, _ = gradients
    np.testing.assert_allclose(g, g_ref, atol=1e-11)


def test_mamba_lrp_is_gradient_times_input_of_the_detached_model(gradients):
    """MambaLRP (Jafari et al. 2024) is Gradient x Input with SiLU's sigmoid, the norm's scale, Delta, A, B, C
    detached and the gate split half and half. Gradient x Input of sum(r * out) gives out the relevance r * out:
    the relevance LRP is seeded with."""
    _, _, relevance, gi = gradients
    np.testing.assert_allclose(relevance, gi, atol=1e-11)


def test_a_padded_batch_equals_each_example_and_conserves():
    model = Sequential((MambaBlock(d_state=2, d_conv=2, expand=1), RMSNorm(), Pool("sum"), Dense(2)))
    params = model.init(jax.random.PRNGKey(1), 2, jnp.float64)
    X = np.random.default_rng(4).normal(size=(2, 4, 2))
    mask = np.array([[True] * 4, [True] * 2 + [False] * 2])
    explain = lrpjax.lrp(model.apply, preset("lrp-half", 1e-3, True))
    batch = explain.batch(params, X, np.array([1, 0]), mask=mask)
    full = explain.full(params, X[1, :2], 0)
    np.testing.assert_allclose(batch[1, :2], full.relevance, atol=1e-12)
    assert np.all(batch[1, 2:] == 0)
    assert abs(float(full.residual)) < 1e-10
    np.testing.assert_allclose(full.target_score, model.apply(params, X[1, :2])[0], rtol=1e-12)


def test_config_round_trip_and_errors(setup):
    block = MambaBlock(d_state=4, d_conv=2, scan="parallel", name="m")
    assert layer_from_config(block.config()) == block
    assert layer_from_config(RMSNorm(1e-6, "n").config()) == RMSNorm(1e-6, "n")
    with pytest.raises(ValueError, match="scan"):
        MambaBlock(scan="fast")
    with pytest.raises(ValueError, match="d_state"):
        MambaBlock(d_state=0)
    params, x = setup[0], setup[1]
    bad = {"mamba": {**params["mamba"], "D": np.zeros(3)}}
    with pytest.raises(ValueError, match=r"params\['mamba'\]\['D'\]"):
        _block().apply(bad, x)
    with pytest.raises(ValueError, match="d_state = 4"):
        Sequential((MambaBlock(d_state=4, d_conv=K, bias=True, name="mamba"),)).apply(params, x)
    missing = {"mamba": {k: v for k, v in params["mamba"].items() if k != "conv_b"}}
    with pytest.raises(ValueError, match=r"missing \['conv_b'\]"):
        _block().apply(missing, x)


def test_a_differentiated_explanation_equals_finite_differences():
    """d/ds of a function of the relevance (as the trainer's explanation penalty differentiates it), through the
    convolution's and the scan's relevance rules: equal to central differences."""
    model = Sequential((Conv1D(3, 2, "same"), MambaBlock(d_state=2, d_conv=2, expand=1), Pool("sum"), Dense(2)))
    params = model.init(jax.random.PRNGKey(2), 2, jnp.float64)
    x = np.random.default_rng(5).normal(size=(4, 2))
    rules = preset("lrp-prop", 0.01, True)

    def loss(s):
        scaled = jax.tree_util.tree_map(lambda v: v * s, params)
        _, pull = jax.vjp(lambda x_: model.apply(scaled, x_, rules), x)
        R = pull(jnp.array([0.0, 1.0]))[0]
        return jnp.sum(R ** 2 * jnp.arange(8.0).reshape(4, 2))

    h = 1e-6
    grad, plus, minus = jax.jit(lambda s: (jax.grad(loss)(s), loss(s + h), loss(s - h)))(1.1)
    np.testing.assert_allclose(grad, (plus - minus) / (2 * h), rtol=1e-6)
