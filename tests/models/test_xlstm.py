"""xLSTM: the sLSTM and mLSTM cells and the mLSTM block against the independent float64 oracle
(tests/oracles/reference_xlstm.py) under every preset; the parallel mLSTM equals the recurrent one;
conservation with share=True; masks and batches equal per-example results; gradients equal jax.grad of the
oracle's independently written forward; checkpoints round-trip; bad settings are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference_xlstm as ref
import lrpjax
from lrpjax.core.cells import unroll
from lrpjax.core.rules import preset
from lrpjax.core.xlstm import SLSTMCell, mlstm_parallel, mlstm_recurrent
from lrpjax.io.checkpoints import load_model, save_model
from lrpjax.models import Sequential
from lrpjax.models.xlstm import LayerNorm, MLSTMBlock, SLSTMBlock, xlstm_stack

MODES = ("all", "prop", "abs", "half")
# Every preset once, with and without sharing (one compilation of all of them per test keeps the suite fast).
CONFIGS = tuple((mode, 0.01, share) for mode, share in zip(MODES, (False, True, False, True)))


EXP_CONFIGS = (("prop", 0.01, False),)


def _rules(mode, eps, share):
    return preset(f"lrp-{mode}", eps=eps, share=share)


def _random_params(model, E, seed, scale=0.5):
    """Random float64 parameters of the model's shapes (no compilation): norm weights and skips near 1."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), E, jnp.float64))

    def draw(path, leaf):
        near_one = str(getattr(path[-1], "key", "")) in ("scale", "skip")
        return jnp.asarray(near_one + scale * rng.normal(size=leaf.shape))

    return jax.tree_util.tree_map_with_path(draw, shapes)


# --- the sLSTM cell ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slstm_case():
    E, H, NH, T = 3, 4, 2, 4
    cell = SLSTMCell(NH)
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"W": jax.random.normal(k1, (E, 4 * H), jnp.float64), "R": 0.5 * jax.random.normal(k2, (NH, H // NH, 2 * H)),
              "b": jax.random.normal(k3, (4 * H,), jnp.float64)}
    x = jax.random.normal(k4, (T, E), jnp.float64)
    w = jnp.asarray([1.0, -0.5, 0.3, 2.0])

    @jax.jit
    def relevances(params, x):
        out = []
        for cell_, configs in ((cell, CONFIGS), (SLSTMCell(NH, "exp"), EXP_CONFIGS)):
            for config in configs:
                y, pull = jax.vjp(lambda x_: unroll(cell_, params, x_, _rules(*config))[0], x)
                out.append(pull(y * w)[0])
        return jnp.stack(out)

    return cell, params, x, w, relevances(params, x)


def test_slstm_cell_relevance_equals_the_oracle_under_every_preset(slstm_case):
    cell, params, x, w, R = slstm_case
    cases = [("sigmoid", c) for c in CONFIGS] + [("exp", c) for c in EXP_CONFIGS]
    for got, (forget, (mode, eps, share)) in zip(R, cases):
        y_final = ref.slstm_forward(*(np.asarray(a) for a in (params["W"], params["R"], params["b"], x)), cell.heads,
                                    forget)[-1]["y"]
        expected, _, _ = ref.slstm_lrp(params["W"], params["R"], params["b"], x, cell.heads, y_final * np.asarray(w),
                                       mode, eps, share, forget)
        np.testing.assert_allclose(got, expected, atol=1e-10, rtol=0, err_msg=f"{forget} {mode} share={share}")


def test_slstm_cell_gradient_equals_jax_grad_of_the_oracle(slstm_case):
    cell, params, x, w, _ = slstm_case
    ours = jax.jit(jax.grad(lambda x_: jnp.sum(unroll(cell, params, x_)[1] * w[None, :])))(x)
    # the oracle's loops traced once into one program (eager, every small op would compile on its own)
    theirs = jax.jit(jax.grad(lambda x_: sum(jnp.sum(r["y"] * w) for r in ref.slstm_forward(
        params["W"], params["R"], params["b"], x_, cell.heads, "sigmoid", jnp))))(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-12, rtol=0)


# --- the mLSTM cell ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlstm_case():
    T, NH, DH = 4, 2, 2
    keys = jax.random.split(jax.random.PRNGKey(1), 6)
    q, k, v = (jax.random.normal(keys[i], (T, NH, DH), jnp.float64) for i in range(3))
    z_i = jax.random.normal(keys[3], (T, NH), jnp.float64)
    z_f = jax.random.normal(keys[4], (T, NH), jnp.float64) + 1.0
    w = jax.random.normal(keys[5], (T, NH, DH), jnp.float64)
    return q, k, v, z_i, z_f, w


def test_mlstm_cell_relevance_equals_the_oracle_under_every_preset(mlstm_case):
    q, k, v, z_i, z_f, w = mlstm_case
    C0 = jnp.zeros((q.shape[1], q.shape[2], q.shape[2]))

    @jax.jit
    def relevances_c0(q, k, v, z_i, z_f, C0):
        out = []
        for config in CONFIGS:
            h, pull = jax.vjp(lambda q_, k_, v_, i_, f_, c_: mlstm_recurrent(_rules(*config), q_, k_, v_, i_, f_,
                                                                               None, c_), q, k, v, z_i, z_f, C0)
            out.append(pull(h * w))
        return out

    results = relevances_c0(q, k, v, z_i, z_f, C0)
    h = np.asarray(mlstm_recurrent(None, q, k, v, z_i, z_f))
    for (mode, eps, share), got in zip(CONFIGS, results):
        expected = ref.mlstm_lrp(q, k, v, z_i, z_f, h * np.asarray(w), mode, eps, share)
        for name, a, b in zip(("q", "k", "v", "z_i", "z_f", "C0"), got, expected):
            np.testing.assert_allclose(a, b, atol=1e-10, rtol=0, err_msg=f"{mode} share={share}: {name}")
        if share:   # conserved: every input and the initial memory together hold the output's relevance
            total = sum(float(jnp.sum(a)) for a in got)
            assert abs(total - float(np.sum(h * np.asarray(w)))) < 1e-10


def test_mlstm_parallel_form_equals_the_recurrent_form_and_the_oracle(mlstm_case):
    q, k, v, z_i, z_f, w = mlstm_case
    mask = jnp.asarray([True, True, True, False])

    @jax.jit
    def both(q, k, v, z_i, z_f):
        forms = []
        for form in (lambda *a: mlstm_recurrent(None, *a, mask), lambda *a: mlstm_parallel(*a, mask)):
            h, pull = jax.vjp(form, q, k, v, z_i, z_f)
            forms.append((h, pull(w)))
        return forms

    (h_rec, g_rec), (h_par, g_par) = both(q, k, v, z_i, z_f)
    np.testing.assert_allclose(h_par, h_rec, atol=1e-13, rtol=0)
    for a, b in zip(g_par, g_rec):
        np.testing.assert_allclose(a, b, atol=1e-11, rtol=0)
    expected, _ = ref.mlstm_forward(*(np.asarray(a[:3]) for a in (q, k, v, z_i, z_f)))
    np.testing.assert_allclose(h_rec[:3], expected, atol=1e-13, rtol=0)
    assert np.all(np.asarray(h_rec[3]) == 0) and np.all(np.asarray(h_par[3]) == 0)
    # the masked gradient is the unpadded 3-step sequence's (the oracle's), and 0 at the padded step
    theirs = jax.jit(jax.grad(lambda args: jnp.sum(ref.mlstm_forward(*args, jnp)[0] * w[:3])))(
        tuple(a[:3] for a in (q, k, v, z_i, z_f)))
    for a, b in zip(g_rec, theirs):
        np.testing.assert_allclose(a[:3], b, atol=1e-11, rtol=0)
        assert np.all(np.asarray(a[3]) == 0)


# --- the mLSTM block --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def block_case():
    D, T = 3, 4
    block = Sequential((MLSTMBlock(heads=2, inner=4, conv_kernel=2, qkv_blocksize=2, name="m"),))
    params = _random_params(block, D, 2)
    x = jax.random.normal(jax.random.PRNGKey(4), (T, D), jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(5), (T, D), jnp.float64)
    return block, params, x, w


def test_mlstm_block_relevance_equals_the_oracle_under_every_preset(block_case):
    block, params, x, w = block_case
    taps = block.zero_taps(params, x)
    configs = tuple((mode, 0.01, share) for mode, share in zip(MODES, (False, True, False, True)))

    @jax.jit
    def relevances(params, x, taps):
        out = []
        for config in configs:
            y, pull = jax.vjp(lambda x_, t: block.apply(params, x_, _rules(*config), taps=t), x, taps)
            r_x, r_taps = pull(y * w)
            out.append((r_x, r_taps["initial"]["m"]["C0"]))
        return out

    y = np.asarray(block.apply(params, x))
    layer = jax.tree_util.tree_map(np.asarray, params["m"])
    for (mode, eps, share), (r_x, r_c0) in zip(configs, relevances(params, x, taps)):
        expected_x, expected_c0 = ref.mlstm_block_lrp(layer, x, 2, y * np.asarray(w), mode, eps, share)
        np.testing.assert_allclose(r_x, expected_x, atol=1e-10, rtol=0, err_msg=f"{mode} share={share}")
        np.testing.assert_allclose(r_c0, expected_c0, atol=1e-10, rtol=0, err_msg=f"{mode} share={share}")
        if share:   # conserved: the input and the initial memory hold the output's relevance
            assert abs(float(jnp.sum(r_x) + jnp.sum(r_c0)) - float(np.sum(y * np.asarray(w)))) < 1e-10


def test_mlstm_block_gradient_equals_jax_grad_of_the_oracle(block_case):
    block, params, x, w = block_case
    layer = params["m"]
    ours = jax.jit(jax.grad(lambda x_: jnp.sum(block.apply(params, x_) * w)))(x)
    theirs = jax.jit(jax.grad(lambda x_: jnp.sum(ref.mlstm_block_forward(layer, x_, 2, jnp)[0] * w)))(x)
    np.testing.assert_allclose(ours, theirs, atol=1e-11, rtol=0)


# --- stacks: conservation, masks and batches, checkpoints ---------------------------------------------------

@pytest.fixture(scope="module")
def stack_case():
    model = xlstm_stack("ms", 2, heads=2, inner=4, ffn_inner=3, conv_kernel=2, qkv_blocksize=2)
    params = _random_params(model, 4, 6, 0.3)
    return model, params


def test_a_stack_conserves_relevance_with_share(stack_case):
    model, params = stack_case
    x = jax.random.normal(jax.random.PRNGKey(8), (4, 4), jnp.float64)
    # LRP-prop and -half with share are also checked on the mLSTM block alone (against the oracle, and conserved)
    configs = (("all", 0.01, True), ("abs", 0.01, True))

    @jax.jit
    def residuals(params, x):
        out = []
        for config in configs:
            full = lrpjax.lrp(model.apply, _rules(*config)).full(params, x, 1)
            out.append(jnp.stack([full.residual, full.target_score]))
        return jnp.stack(out)

    res = np.asarray(residuals(params, x))
    assert np.all(np.abs(res[:, 0]) < 1e-10 * np.maximum(1.0, np.abs(res[:, 1]))), res


def test_masked_batches_equal_per_example_results(stack_case):
    model, params = stack_case
    method = lrpjax.lrp(model.apply, _rules("half", 0.01, True))
    xs = [jax.random.normal(jax.random.PRNGKey(9 + i), (T, 4), jnp.float64) for i, T in enumerate((4, 2))]
    X, mask = lrpjax.pad(xs)
    batch = method.batch(params, X, [0, 1], mask=mask)
    for i, x in enumerate(xs):
        single = method(params, jnp.pad(x, ((0, 4 - x.shape[0]), (0, 0))), i,
                        mask=jnp.arange(4) < x.shape[0])
        np.testing.assert_allclose(batch[i], single, atol=1e-12, rtol=0)
        assert np.all(np.asarray(batch[i, x.shape[0]:]) == 0)
    # an unpadded sequence gives the padded one's relevance (the program runs with an all-true mask)
    np.testing.assert_allclose(batch[0], method(params, xs[0], 0), atol=1e-12, rtol=0)


def test_a_stack_round_trips_through_a_checkpoint(stack_case, tmp_path):
    model, params = stack_case
    save_model(tmp_path / "xlstm.npz", model, params)
    loaded = load_model(tmp_path / "xlstm.npz")
    assert loaded.model == model
    for a, b in zip(jax.tree_util.tree_leaves(loaded.params), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)


# --- refusals ---------------------------------------------------------------------------------------------

def test_bad_settings_and_parameters_are_refused():
    with pytest.raises(ValueError, match="heads"):
        SLSTMCell(0)
    with pytest.raises(ValueError, match="forget"):
        SLSTMBlock(forget="tanh")
    with pytest.raises(ValueError, match="ffn_activation"):
        SLSTMBlock(ffn_activation="relu^2")
    with pytest.raises(ValueError, match="blocks"):
        xlstm_stack("mx", 2)
    model = Sequential((MLSTMBlock(heads=2, inner=4, qkv_blocksize=2, name="m"), LayerNorm()))
    params = _random_params(model, 3, 0)
    params["m"]["skip"] = jnp.ones(5)
    with pytest.raises(ValueError, match=r"\['skip'\]` must have shape \(4,\); got \(5,\)"):
        model.specs(params)
    with pytest.raises(ValueError, match="multiple of heads = 3"):
        jax.eval_shape(lambda: Sequential((SLSTMBlock(heads=3, ffn_inner=2),)).init(jax.random.PRNGKey(0), 4))
