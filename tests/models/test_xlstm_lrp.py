"""``xlstm_lrp()``, the xLSTM analogue of MambaLRP's rules: the gates, query and key inside the cells get no
relevance, the blocks' gated interactions split half and half. Against the float64 NumPy oracle of
tests/oracles/reference_xlstm.py (explicit loops), conservation with ``share=True``, and what it reduces to."""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
import reference_xlstm as ref
from lrpjax.core.rules import Gate, RuleSet, Z, composite, preset
from lrpjax.core.xlstm import SLSTMCell, XLSTMRuleSet, cell_rules
from lrpjax.models import Dense, Pool, Recurrent, Sequential
from lrpjax.models.xlstm import MLSTMBlock, SLSTMBlock, xlstm_lrp


@pytest.fixture(autouse=True)
def _release_programs():
    yield
    jax.clear_caches()
    gc.collect()


def _random_params(model, E, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), E, jnp.float64))

    def draw(path, leaf):
        near_one = str(getattr(path[-1], "key", "")) in ("scale", "skip")
        return jnp.asarray(near_one + scale * rng.normal(size=leaf.shape))

    return jax.tree_util.tree_map_with_path(draw, shapes)


def test_the_preset_is_the_half_rule_in_blocks_and_signal_take_all_in_cells():
    rules = xlstm_lrp()
    assert isinstance(rules, XLSTMRuleSet) and isinstance(rules, RuleSet)
    assert rules.gate == Gate("half") and rules.cell_gate == Gate("all")
    assert cell_rules(rules).gate == Gate("all") and cell_rules(preset("lrp-prop")) == preset("lrp-prop")
    assert cell_rules(None) is None
    # it survives composite as the default; a plain override gives that layer its own gate
    mixed = composite(xlstm_lrp(0.01, True), by_layer={"out": Z()})
    assert isinstance(mixed, XLSTMRuleSet) and mixed.cell_gate == Gate("all", 0.01, True)
    assert mixed.at("out").linear == Z() and mixed.at("m").cell_gate == Gate("all", 0.01, True)
    with pytest.raises(TypeError, match=r"`cell_gate` of XLSTMRuleSet must be a Gate"):
        XLSTMRuleSet(cell_gate="all")


@pytest.fixture(scope="module")
def block_case():
    D, T = 3, 4
    block = Sequential((MLSTMBlock(heads=2, inner=4, conv_kernel=2, qkv_blocksize=2, name="m"),))
    params = _random_params(block, D, 12)
    x = jax.random.normal(jax.random.PRNGKey(14), (T, D), jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(15), (T, D), jnp.float64)
    return block, params, x, w


def test_mlstm_block_equals_the_oracle_and_conserves_with_share(block_case):
    block, params, x, w = block_case
    taps = block.zero_taps(params, x)
    configs = ((0.0, False), (0.01, True))

    @jax.jit
    def relevances(params, x, taps):
        out = []
        for eps, share in configs:
            y, pull = jax.vjp(lambda x_, t: block.apply(params, x_, xlstm_lrp(eps, share), taps=t), x, taps)
            r_x, r_taps = pull(y * w)
            out.append((r_x, r_taps["initial"]["m"]["C0"]))
        return out

    y = np.asarray(block.apply(params, x))
    layer = jax.tree_util.tree_map(np.asarray, params["m"])
    for (eps, share), (r_x, r_c0) in zip(configs, relevances(params, x, taps)):
        expected_x, expected_c0 = ref.mlstm_block_lrp(layer, x, 2, y * np.asarray(w), "half", eps, share,
                                                      cell_mode="all")
        np.testing.assert_allclose(r_x, expected_x, atol=1e-10, rtol=0, err_msg=f"eps={eps} share={share}")
        np.testing.assert_allclose(r_c0, expected_c0, atol=1e-10, rtol=0, err_msg=f"eps={eps} share={share}")
        total = float(jnp.sum(r_x) + jnp.sum(r_c0))
        if share:   # conserved: the input and the initial memory hold the output's relevance
            assert abs(total - float(np.sum(y * np.asarray(w)))) < 1e-10
        # it is neither LRP-all nor LRP-half: the block's gate and the memory's products split differently
        for mode in ("all", "half"):
            other, _ = ref.mlstm_block_lrp(layer, x, 2, y * np.asarray(w), mode, eps, share)
            assert np.max(np.abs(other - expected_x)) > 1e-6


def test_a_recurrent_slstm_cell_gets_lrp_all():
    """No block around the cell: the preset is LRP-all, the oracle's signal-take-all."""
    E, H, NH, T = 3, 4, 2, 4
    model = Sequential((Recurrent(SLSTMCell(NH), H, name="s"), Dense(1, bias=False, name="out")))
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(3), 4)
    cell = {"W": jax.random.normal(k1, (E, 4 * H), jnp.float64), "R": 0.5 * jax.random.normal(k2, (NH, H // NH, 2 * H)),
            "b": jax.random.normal(k3, (4 * H,), jnp.float64)}
    w = jnp.asarray([[1.0], [-0.5], [0.3], [2.0]])
    params = {"s": cell, "out": {"W": w}}
    x = jax.random.normal(k4, (T, E), jnp.float64)
    got = lrpjax.lrp(model.apply, xlstm_lrp())(params, x, 0)
    y_final = ref.slstm_forward(*(np.asarray(a) for a in (cell["W"], cell["R"], cell["b"], x)), NH)[-1]["y"]
    expected, _, _ = ref.slstm_lrp(cell["W"], cell["R"], cell["b"], x, NH, y_final * np.asarray(w)[:, 0], "all", 0.0,
                                   False)
    np.testing.assert_allclose(got, expected, atol=1e-10, rtol=0)


def test_slstm_block_cells_take_all_ffn_takes_half_and_a_stack_conserves_with_share():
    """An sLSTM block without the feed-forward has no gate outside its cell: the preset is LRP-all there;
    with the feed-forward its gate splits half and half. A stack of both blocks conserves with share, and
    without share (eps = 0) once the biases that carry relevance are zero (the gate biases are not)."""
    x = jax.random.normal(jax.random.PRNGKey(8), (4, 4), jnp.float64)
    plain = Sequential((SLSTMBlock(heads=2, conv_kernel=2, ffn=False, name="s"), Pool("last"), Dense(2, name="out")))
    ffn = Sequential((SLSTMBlock(heads=2, conv_kernel=2, ffn_inner=3, name="s"), Pool("last"), Dense(2, name="out")))
    stack = Sequential((MLSTMBlock(heads=2, inner=4, conv_kernel=2, qkv_blocksize=2, name="m"),
                        SLSTMBlock(heads=2, conv_kernel=2, ffn_inner=3, name="s"), Pool("mean"), Dense(2, name="out")))
    p_plain, p_ffn, p_stack = (_random_params(m, 4, seed, 0.3) for m, seed in ((plain, 1), (ffn, 2), (stack, 3)))
    H = 4
    p_unbiased = jax.tree_util.tree_map(lambda a: a, p_stack)
    p_unbiased["m"]["conv"]["b"] = 0 * p_stack["m"]["conv"]["b"]
    p_unbiased["s"]["conv"]["b"] = 0 * p_stack["s"]["conv"]["b"]
    p_unbiased["s"]["b"] = p_stack["s"]["b"].at[2 * H:3 * H].set(0.0)   # the cell input z's bias; i, f, o keep theirs
    p_unbiased["out"]["b"] = 0 * p_stack["out"]["b"]
    assert float(jnp.min(jnp.abs(p_unbiased["m"]["igate"]["b"]))) > 0

    @jax.jit
    def run(p_plain, p_ffn, p_stack, p_unbiased, x):
        on_plain = [lrpjax.lrp(plain.apply, r)(p_plain, x, 1) for r in (xlstm_lrp(), preset("lrp-all"))]
        on_ffn = [lrpjax.lrp(ffn.apply, r)(p_ffn, x, 1) for r in (xlstm_lrp(), preset("lrp-all"),
                                                                  preset("lrp-half"))]
        full = lrpjax.lrp(stack.apply, xlstm_lrp(0.01, True)).full(p_stack, x, 1)
        unshared = jnp.sum(lrpjax.lrp(stack.apply, xlstm_lrp())(p_unbiased, x, 1)) - stack.apply(p_unbiased, x)[1]
        return on_plain, on_ffn, full.residual, full.target_score, unshared

    on_plain, on_ffn, residual, score, unshared = run(p_plain, p_ffn, p_stack, p_unbiased, x)
    assert abs(float(unshared)) < 1e-10
    np.testing.assert_allclose(on_plain[0], on_plain[1], atol=1e-12, rtol=0)
    assert np.max(np.abs(on_ffn[0] - on_ffn[1])) > 1e-6 and np.max(np.abs(on_ffn[0] - on_ffn[2])) > 1e-6
    assert abs(float(residual)) < 1e-10 * max(1.0, abs(float(score)))
