"""Explanations: transform equivalence, the plain-gradient path, conservation, and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import lrpjax
from lrpjax.models import bilstm, lstm
from lrpjax.models.lstm import LSTM

E, H, C, T = 5, 3, 4, 6
PRESETS = lrpjax.rules.PRESETS


def _params(model, seed=0, E=E, H=H, C=C):
    params = model.init(jax.random.PRNGKey(seed), E, H, C, jnp.float64)
    # non-zero biases so that bias absorption and sharing are exercised
    return jax.tree_util.tree_map_with_path(
        lambda p, v: v + 0.3 if jax.tree_util.keystr(p).endswith("['b']") else v, params)


def _x(seed=1, T=T, E=E):
    return jax.random.normal(jax.random.PRNGKey(seed), (T, E), jnp.float64)


# --- an independent plain-JAX BiLSTM (no lrpjax code) for the gradient path --------------------------

def _independent_lstm(W, U, b, xs):
    Hn = U.shape[0]
    y, c = jnp.zeros(Hn), jnp.zeros(Hn)
    for x_t in xs:
        pre = x_t @ W + y @ U + b
        i, z, f, o = (pre[k * Hn:(k + 1) * Hn] for k in range(4))
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(z)
        y = jax.nn.sigmoid(o) * jnp.tanh(c)
    return y


def _independent_bilstm(params, x):
    left = _independent_lstm(params["left"]["W"], params["left"]["U"], params["left"]["b"], x)
    right = _independent_lstm(params["right"]["W"], params["right"]["U"], params["right"]["b"], x[::-1])
    return left @ params["out"]["W_left"] + right @ params["out"]["W_right"]


def test_gradient_equals_jax_grad_of_independent_model():
    params, x = _params(bilstm.model), _x()
    independent = jax.jit(jax.grad(lambda x_, t: _independent_bilstm(params, x_)[t]))
    for target in range(C):
        expected = independent(x, target)
        got = lrpjax.gradient(bilstm.apply)(params, x, target)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_plain_model_passes_gradient_check():
    params, x = _params(bilstm.model), _x()
    check_grads(lambda x_, p: bilstm.apply(p, x_)[1], (x, params), order=1, modes=("rev",))


def test_sensitivity_and_gradient_x_input_follow_the_gradient():
    params, x = _params(bilstm.model), _x()
    g = lrpjax.gradient(bilstm.apply)(params, x, 2)
    np.testing.assert_allclose(lrpjax.sensitivity(bilstm.apply)(params, x, 2), g ** 2)
    np.testing.assert_allclose(lrpjax.gradient_x_input(bilstm.apply)(params, x, 2), g * x)
    np.testing.assert_allclose(lrpjax.sensitivity(bilstm.apply).tokens(params, x, 2), (g ** 2).sum(-1))


# --- conservation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("T_,H_", [(1, 1), (6, 3), (9, 1)])
def test_relevance_is_conserved_with_shares_redistributed(name, bidirectional, T_, H_):
    model = LSTM(bidirectional=bidirectional)
    for seed in range(3):
        params, x = _params(model, seed, H=H_), _x(seed + 10, T=T_)
        target = seed % C
        full = lrpjax.lrp(model.apply, lrpjax.rules.preset(name, eps=0.05, share=True)).full(params, x, target)
        assert abs(float(full.residual)) <= 1e-10 * max(1.0, abs(float(full.target_score)))
        total = full.relevance.sum() + sum(v.sum() for v in jax.tree_util.tree_leaves(full.initial))
        np.testing.assert_allclose(total, full.target_score, rtol=1e-10, atol=1e-12)
        assert all(float(jnp.abs(v).max()) == 0 for v in jax.tree_util.tree_leaves(full.params))


def test_without_sharing_biases_absorb_and_the_residual_is_the_stabiliser_share():
    params, x = _params(bilstm.model), _x()
    full = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=0.0)).full(params, x, 1)
    assert abs(float(full.residual)) < 1e-10   # eps = 0 and signal-take-all: nothing is absorbed elsewhere
    assert abs(float(sum(v.sum() for v in jax.tree_util.tree_leaves(full.params)))) > 1e-6
    full_eps = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=0.5)).full(params, x, 1)
    assert abs(float(full_eps.residual)) > 1e-6


def test_relevance_starts_as_the_target_score():
    params, x = _params(bilstm.model), _x()
    full = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=0.0, share=True)).full(params, x, 3)
    scores = bilstm.apply(params, x)
    np.testing.assert_allclose(full.target_score, scores[3])
    # the final output state of each direction receives the whole output relevance
    final = full.states["left"]["y"][-1].sum() + full.states["right"]["y"][0].sum()
    np.testing.assert_allclose(final, scores[3], rtol=1e-12)


# --- transforms ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lrp-all", "lrp-prop", "gradient", "occlusion", "random"])
def test_batched_padded_results_equal_per_example_results(method):
    params = _params(bilstm.model)
    make = {"lrp-all": lambda a: lrpjax.lrp(a, lrpjax.rules.preset("lrp-all", eps=1e-3)),
            "lrp-prop": lambda a: lrpjax.lrp(a, lrpjax.rules.preset("lrp-prop", eps=0.2)),
            "gradient": lrpjax.gradient, "occlusion": lambda a: lrpjax.occlusion(a, "p"),
            "random": lambda a: lrpjax.random_baseline(a, 3)}[method]
    m = make(bilstm.apply)
    xs = [_x(s, T=t) for s, t in ((1, 6), (2, 2), (3, 9), (4, 2))]
    targets = jnp.array([0, 3, 1, 2])
    X, mask = lrpjax.pad(xs)
    batch = m.batch(params, X, targets, mask=mask)
    for b, x in enumerate(xs):
        if method == "random":   # a different draw per example: compare by index instead
            single = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(3), b), (X.shape[1],), X.dtype)
            single = single[:x.shape[0]]
        else:
            single = m(params, x, targets[b])
        np.testing.assert_allclose(batch[b, :x.shape[0]], single, rtol=1e-10, atol=1e-13)
        assert np.all(np.asarray(batch[b, x.shape[0]:]) == 0)


def test_jit_and_vmap_of_a_method_equal_eager_calls():
    params = _params(bilstm.model)
    m = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-half", eps=1e-2))
    X = jnp.stack([_x(s) for s in range(3)])
    eager = jnp.stack([m(params, X[b], 1) for b in range(3)])
    jitted = jax.jit(lambda p, x: m(p, x, 1))
    np.testing.assert_allclose(jitted(params, X[0]), eager[0], rtol=1e-12)
    vmapped = jax.vmap(lambda x: m(params, x, 1))(X)
    np.testing.assert_allclose(vmapped, eager, rtol=1e-12)


def test_masked_padding_equals_the_unpadded_sequence():
    params, x = _params(bilstm.model), _x()
    padded = jnp.concatenate([x, jnp.full((3, E), 7.0)])
    mask = jnp.arange(T + 3) < T
    for m in (lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-abs", eps=1e-2)), lrpjax.gradient(bilstm.apply)):
        np.testing.assert_allclose(m(params, padded, 2, mask=mask)[:T], m(params, x, 2), rtol=1e-12)
    np.testing.assert_allclose(bilstm.apply(params, padded, mask=mask), bilstm.apply(params, x), rtol=1e-12)


def test_scan_equals_a_python_loop_over_the_cell():
    params, x = _params(lstm.model), _x()
    cell, p = lstm.model.cell, params["lstm"]
    carry = (jnp.zeros(H), jnp.zeros(H))
    for x_t in x:
        carry = cell.step(p, None, carry, x_t)
    np.testing.assert_allclose(lstm.apply(params, x), carry[0] @ params["out"]["W"], rtol=1e-12)


def test_float32_inputs_give_float32_relevance():
    params = jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), _params(bilstm.model))
    x = _x().astype(jnp.float32)
    assert lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all")).__call__(params, x, 0).dtype == jnp.float32


# --- input checks -------------------------------------------------------------------------------------

@pytest.fixture
def setup():
    return _params(bilstm.model), _x(), lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))


def test_wrong_input_shape_is_named(setup):
    params, x, m = setup
    with pytest.raises(ValueError, match=r"`x` must have shape \(T, E\) with E = 5"):
        m(params, x[:, :4], 0)
    with pytest.raises(ValueError, match=r"`x` must be an embedded sequence of shape \(T, E\)"):
        m(params, x[None], 0)


def test_empty_sequence_is_rejected(setup):
    params, x, m = setup
    with pytest.raises(ValueError, match="empty sequence"):
        m(params, x[:0], 0)
    with pytest.raises(ValueError, match="empty"):
        m(params, x, 0, mask=jnp.zeros(T, bool))


@pytest.mark.parametrize("target", [-1, 4, 100])
def test_target_out_of_range_is_rejected(setup, target):
    params, x, m = setup
    with pytest.raises(ValueError, match=r"`target` must be a class index in \[0, 4\)"):
        m(params, x, target)


def test_non_integer_target_is_rejected(setup):
    params, x, m = setup
    with pytest.raises(TypeError, match="target"):
        m(params, x, 1.0)


def test_non_finite_inputs_and_weights_are_rejected(setup):
    params, x, m = setup
    with pytest.raises(ValueError, match="`x` contains non-finite"):
        m(params, x.at[2, 1].set(jnp.nan), 0)
    bad = jax.tree_util.tree_map(lambda v: v, params)
    bad["left"]["U"] = bad["left"]["U"].at[0, 0].set(jnp.inf)
    with pytest.raises(ValueError, match=r"`params\['left'\]\['U'\]` contains non-finite"):
        m(bad, x, 0)


def test_mismatched_mask_is_rejected(setup):
    params, x, m = setup
    with pytest.raises(ValueError, match=r"`mask` must have shape \(T,\) = \(6,\)"):
        m(params, x, 0, mask=jnp.ones(5, bool))
    with pytest.raises(TypeError, match="`mask` must be boolean"):
        m(params, x, 0, mask=jnp.ones(T))


def test_wrong_weight_shape_is_named(setup):
    params, x, m = setup
    bad = dict(params, right=dict(params["right"], U=jnp.zeros((H, 3 * H))))
    with pytest.raises(ValueError, match=r"`params\['right'\]\['U'\]` must have shape \(3, 12\)"):
        m(bad, x, 0)
    with pytest.raises(ValueError, match="missing"):
        m({"left": params["left"]}, x, 0)


def test_batch_checks_name_the_argument(setup):
    params, x, m = setup
    X, mask = lrpjax.pad([x, x[:2]])
    with pytest.raises(ValueError, match=r"`targets` must have shape \(B,\)"):
        m.batch(params, X, jnp.array([0, 1, 2]), mask=mask)
    with pytest.raises(ValueError, match=r"`mask` must have shape \(B, T\)"):
        m.batch(params, X, jnp.array([0, 1]), mask=mask[:, :3])
    with pytest.raises(ValueError, match="`mask` row 1 marks no valid step"):
        m.batch(params, X, jnp.array([0, 1]), mask=mask.at[1].set(False))
    with pytest.raises(ValueError, match=r"`targets` must be a class index in \[0, 4\); got 9"):
        m.batch(params, X, jnp.array([0, 9]), mask=mask)
    with pytest.raises(ValueError, match=r"`X` must be a padded batch"):
        m.batch(params, x, jnp.array([0]))


def test_pad_rejects_bad_sequences():
    with pytest.raises(ValueError, match="`sequences` is empty"):
        lrpjax.pad([])
    with pytest.raises(ValueError, match=r"`sequences\[1\]` must have shape \(T, E\) with T >= 1"):
        lrpjax.pad([np.zeros((2, 3)), np.zeros((0, 3))])
    with pytest.raises(ValueError, match="more than `length`"):
        lrpjax.pad([np.zeros((4, 3))], length=2)


def test_other_method_arguments_are_checked():
    with pytest.raises(ValueError, match="mode"):
        lrpjax.occlusion(bilstm.apply, "x")
    with pytest.raises(TypeError, match="rules"):
        lrpjax.lrp(bilstm.apply, 0.1)
    with pytest.raises(ValueError, match="Unknown rule preset"):
        lrpjax.lrp(bilstm.apply, "lrp-foo")
    params, x = _params(bilstm.model), _x()
    with pytest.raises(TypeError, match="full"):
        lrpjax.gradient(bilstm.apply).full(params, x, 0)
