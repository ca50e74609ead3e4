"""Explanations differentiate truly: ``jax.grad``, ``jax.jvp`` and ``jax.hessian`` of explanation
functionals against central finite differences in float64, with respect to inputs and parameters.

Functionals of a relevance ``R`` with word-level relevance ``r`` (``per_token``): a weighted sum
``sum(w * r)``, one position ``r[k]`` and the squared norm ``sum(R^2)``. Inputs and parameters are
random with nonzero biases, so no rule meets a branch point (``z = 0`` of a stabiliser, a zero
denominator, a tie of ``max``/``argmax``; see the ``lrpjax.methods`` docstring) within the finite
difference steps. Every method, the dense rules on an MLP, CD, IG and SmoothGrad; the standard LSTM
(uni- and bidirectional, the reference BiLSTM), a stacked bidirectional GRU composition with a dense
layer and pooling, and the LRP-friendly cells.
"""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.methods import decomposition as cdmod
from lrpjax import methods as explain
from lrpjax.cells import GatelessCell, GRUCell, MarkovCell, NondecreasingCell, StandardCell
from lrpjax.models import Dense, Pool, Recurrent, Sequential, bilstm
from lrpjax.models.lstm import LSTM
from lrpjax.models.mlp import MLP
from lrpjax.rules import ZB, AlphaBeta, Epsilon, Flat, Gamma, RuleSet, WSquare, Z, ZPlus, composite, preset

PRESETS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half")


@pytest.fixture(autouse=True)
def _release_programs():
    """Every case compiles new programs; free them (see conftest: memory mappings)."""
    yield
    jax.clear_caches()
    gc.collect()


# --- helpers ----------------------------------------------------------------------------------------

def _perturbed(params, seed, scale=0.3):
    """Nonzero biases and weights away from zero, so no branch point is met."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda w: jnp.asarray(np.asarray(w, np.float64) * 1.3 + scale * rng.normal(size=np.shape(w))),
                        params)


def _functionals(R, x, w, k):
    """(3,): ``sum(w * r)``, ``r[k]``, ``sum(R^2)`` of a relevance R ((T, E), (T,) or (D,))."""
    r = R.sum(-1) if R.ndim == x.ndim and x.ndim == 2 else R
    return jnp.stack([jnp.sum(w * r), r[k], jnp.sum(R ** 2)])


def _direction(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=np.shape(a))), tree)


def _plus(tree, direction, h):
    return jax.tree.map(lambda a, d: a + h * d, tree, direction)


def _central(F, h):
    """Richardson-extrapolated central difference of F(h) at 0 (error O(h^4))."""
    d1 = (F(h) - F(-h)) / (2 * h)
    d2 = (F(h / 2) - F(-h / 2)) / h
    return (4 * d2 - d1) / 3


def check_derivatives(method, params, x, target, mask=None, *, seed=0, h=1e-4, rtol=2e-6):
    """jvp, grad (reverse mode) and finite differences agree, along random directions in x and params.

    Forward mode (``jax.jvp``) and reverse mode (``jax.grad`` of a random combination of the three
    functionals) are each compared with Richardson-extrapolated central differences; the finite
    differences evaluate the primal output of the compiled jvp (one program for both).
    """
    x = jnp.asarray(x)
    T = x.shape[0]
    w = jnp.asarray(np.random.default_rng(seed + 1).normal(size=T))
    k = T // 2
    F = lambda p, x_: _functionals(method.relevance(p, x_, target, mask, 0), x_, w, k)  # noqa: E731
    jvp = jax.jit(lambda p, x_, tp, tx: jax.jvp(F, (p, x_), (tp, tx)))
    dx, dp = _direction(x, seed + 2), _direction(params, seed + 3)
    zero_p, zero_x = jax.tree.map(jnp.zeros_like, params), jnp.zeros_like(x)
    at = lambda p, x_: jvp(p, x_, zero_p, zero_x)[0]  # noqa: E731
    v = jnp.asarray(np.random.default_rng(seed + 4).normal(size=3))
    grad_p, grad_x = jax.jit(jax.grad(lambda p, x_: jnp.vdot(v, F(p, x_)), argnums=(0, 1)))(params, x)
    value = at(params, x)
    for name, tangent, fd, reverse in (
            ("x", (zero_p, dx), _central(lambda s: at(params, x + s * dx), h), jnp.vdot(grad_x, dx)),
            ("params", (dp, zero_x), _central(lambda s: at(_plus(params, dp, s), x), h),
             sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grad_p), jax.tree.leaves(dp))))):
        forward = jvp(params, x, *tangent)[1]
        scale = float(np.max(np.abs(np.asarray(fd)))) + float(np.max(np.abs(np.asarray(value)))) * 1e-3
        np.testing.assert_allclose(forward, fd, rtol=rtol, atol=rtol * scale, err_msg=f"jvp vs FD, d/d{name}")
        np.testing.assert_allclose(reverse, jnp.vdot(v, fd), rtol=rtol, atol=rtol * scale * 3,
                                   err_msg=f"grad vs FD, d/d{name}")
    return value


def _lstm_params(model, seed, E, H, C):
    return _perturbed(model.init(jax.random.PRNGKey(seed), E, H, C, jnp.float64), seed)


# --- the standard LSTM: every method ------------------------------------------------------------------

LSTM_MODEL = LSTM(StandardCell())


def _lstm_methods():
    apply = LSTM_MODEL.apply
    methods = {name: lrpjax.lrp(apply, preset(name, eps=0.01)) for name in PRESETS}
    methods.update({
        "lrp-all-share": lrpjax.lrp(apply, preset("lrp-all", eps=0.01, share=True)),
        "gradient": lrpjax.gradient(apply), "sensitivity": lrpjax.sensitivity(apply),
        "gradient_x_input": lrpjax.gradient_x_input(apply), "occlusion-f": lrpjax.occlusion(apply, "f"),
        "occlusion-p": lrpjax.occlusion(apply, "p"), "cd": cdmod.cd(apply),
        "cd-2gram-inside": cdmod.cd(apply, 2, "inside"), "ig": explain.integrated_gradients(apply, 8),
        "ig-baseline": explain.integrated_gradients(apply, 4, (0.1, -0.2, 0.3)),
        "smoothgrad-relative": explain.smoothgrad(apply, 0.1, 4, seed=3),
        "smoothgrad-absolute-gxi": explain.smoothgrad(apply, 0.2, 3, noise="absolute", map="gradient_x_input"),
    })
    return methods


LSTM_METHODS = tuple(_lstm_methods())


@pytest.mark.parametrize("name", LSTM_METHODS)
def test_every_method_differentiates_truly_on_the_standard_lstm(name):
    method = _lstm_methods()[name]
    params = _lstm_params(LSTM_MODEL, 1, 3, 4, 3)
    x = np.random.default_rng(1).normal(0, 0.8, (5, 3))
    check_derivatives(method, params, x, 2)


def test_derivatives_of_masked_explanations_ignore_padding():
    method = lrpjax.lrp(LSTM_MODEL.apply, preset("lrp-half", eps=0.01))
    params = _lstm_params(LSTM_MODEL, 2, 3, 4, 3)
    x = np.random.default_rng(2).normal(0, 0.8, (6, 3))
    mask = jnp.asarray([True] * 4 + [False] * 2)
    check_derivatives(method, params, x, 1, mask)
    # The padded steps carry no relevance and no derivative.
    grad = jax.grad(lambda x_: jnp.sum(method.relevance(params, x_, 1, mask, 0) ** 2))(jnp.asarray(x))
    assert np.all(np.asarray(grad[4:]) == 0)


def test_the_random_baseline_has_zero_derivative():
    method = lrpjax.random_baseline(LSTM_MODEL.apply, seed=4)
    params = _lstm_params(LSTM_MODEL, 3, 3, 2, 2)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3)))
    grad_p, grad_x = jax.grad(lambda p, x_: jnp.sum(method.relevance(p, x_, 1, None, 0) ** 2), argnums=(0, 1))(params, x)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves((grad_p, grad_x)))


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_presets_differentiate_truly_on_the_reference_bilstm(name):
    params = jax.tree.map(jnp.asarray, bilstm.from_reference(np.load("tests/data/ref_bilstm.npz")))
    x = np.random.default_rng(0).normal(0, 0.4, (7, 60))
    method = lrpjax.lrp(bilstm.apply, preset(name, eps=1e-3))
    check_derivatives(method, params, x, 3, h=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lrp-prop", "cd", "ig"])
def test_bidirectional_lstm_differentiates_truly(name):
    model = LSTM(StandardCell(), bidirectional=True)
    methods = {"lrp-prop": lrpjax.lrp(model.apply, preset("lrp-prop", 0.05)),
               "cd": cdmod.cd(model.apply), "ig": explain.integrated_gradients(model.apply, 4)}
    params = _lstm_params(model, 5, 3, 3, 2)
    x = np.random.default_rng(5).normal(0, 0.8, (5, 3))
    check_derivatives(methods[name], params, x, 1, jnp.asarray([True, True, True, True, False]))


# --- compositions: stacked bidirectional GRUs, a dense layer, pooling ----------------------------------

GRU_STACK = Sequential((Recurrent(GRUCell(), 3, bidirectional=True, sequences=True),
                        Recurrent(GRUCell(reset_after=False), 2, bidirectional=True, sequences=True),
                        Dense(4, "tanh"), Pool("mean"), Dense(3, bias=False, name="out")))


@pytest.mark.parametrize("name", ("lrp-all", "lrp-half", "gradient"))
def test_a_stacked_bidirectional_gru_composition_differentiates_truly(name):
    apply = GRU_STACK.apply
    methods = {p: lrpjax.lrp(apply, preset(p, 0.01)) for p in PRESETS}
    methods["gradient"] = lrpjax.gradient(apply)
    params = _perturbed(GRU_STACK.init(jax.random.PRNGKey(6), 3, jnp.float64), 6)
    x = np.random.default_rng(6).normal(0, 0.8, (5, 3))
    check_derivatives(methods[name], params, x, 0, jnp.asarray([True, True, True, True, False]))


LSTM_STACK = Sequential((Recurrent(StandardCell(), 3, bidirectional=True, sequences=True),
                         Dense(4, "tanh"), Pool("max"), Dense(2, name="out")))


@pytest.mark.parametrize("name", ["cd", "cd-authors-3gram", "lrp-all"])
def test_cd_through_a_composition_with_max_pooling_differentiates_truly(name):
    apply = LSTM_STACK.apply
    methods = {"cd": cdmod.cd(apply), "cd-authors-3gram": cdmod.cd(apply, 3),
               "lrp-all": lrpjax.lrp(apply, preset("lrp-all", 0.01))}
    params = _perturbed(LSTM_STACK.init(jax.random.PRNGKey(7), 3, jnp.float64), 7)
    x = np.random.default_rng(7).normal(0, 0.8, (5, 3))
    check_derivatives(methods[name], params, x, 1)


# --- the LRP-friendly cells -----------------------------------------------------------------------------

# Every preset is differentiated on the standard LSTM above; each LRP-friendly cell with two of them (the
# pairs rotate, so every preset meets a friendly cell), which keeps the suite's compilations in check.
@pytest.mark.parametrize("cell, name", [(NondecreasingCell(), "lrp-all"), (NondecreasingCell(), "lrp-half"),
                                        (MarkovCell(), "lrp-prop"), (MarkovCell(), "lrp-all"),
                                        (GatelessCell(), "lrp-abs"), (GatelessCell(), "lrp-prop")],
                         ids=lambda v: getattr(v, "kind", v))
def test_lrp_friendly_cells_differentiate_truly(cell, name):
    model = LSTM(cell)
    params = _lstm_params(model, 8, 3, 4, 2)
    x = np.random.default_rng(8).normal(0, 0.8, (5, 3))
    check_derivatives(lrpjax.lrp(model.apply, preset(name, 0.01)), params, x, 1)


# --- dense rules on an MLP ------------------------------------------------------------------------------

MLP_MODEL = MLP((5, 6, 4, 3), "relu")
DENSE_RULES = {
    "epsilon": RuleSet(linear=Epsilon(0.01)), "z": RuleSet(linear=Z()), "z-share": RuleSet(linear=Z(share=True)),
    "zplus": RuleSet(linear=ZPlus()), "alphabeta": RuleSet(linear=AlphaBeta(2.0, 1.0)),
    "gamma": RuleSet(linear=Gamma(0.25)), "flat": RuleSet(linear=Flat()), "wsquare": RuleSet(linear=WSquare()),
    "zb-first": composite(RuleSet(linear=Epsilon(0.01)), first=ZB(-2.0, 2.0)),
}


@pytest.mark.parametrize("name", tuple(DENSE_RULES))
def test_dense_rules_differentiate_truly_on_an_mlp(name):
    params = _perturbed(MLP_MODEL.init(jax.random.PRNGKey(9), jnp.float64), 9, scale=0.5)
    x = np.random.default_rng(9).uniform(-1, 1, 5)
    check_derivatives(lrpjax.lrp(MLP_MODEL.apply, DENSE_RULES[name]), params, x, 2)


# --- forward mode and second derivatives ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["lrp-all", "lrp-abs", "cd"])
def test_hessian_of_an_explanation_functional_matches_finite_differences_of_its_gradient(name):
    apply = LSTM_MODEL.apply
    method = cdmod.cd(apply) if name == "cd" else lrpjax.lrp(apply, preset(name, 0.01))
    params = _lstm_params(LSTM_MODEL, 10, 2, 2, 2)
    x = jnp.asarray(np.random.default_rng(10).normal(0, 0.8, (3, 2)))
    f = lambda x_: jnp.sum(method.relevance(params, x_, 1, None, 0) ** 2)  # noqa: E731
    H = jax.jit(jax.hessian(f))(x)
    assert H.shape == (3, 2, 3, 2)
    np.testing.assert_allclose(H, jnp.transpose(H, (2, 3, 0, 1)), rtol=1e-9, atol=1e-12)
    g = jax.jit(jax.grad(f))
    d = _direction(x, 11)
    fd = _central(lambda s: g(x + s * d), 1e-4)
    np.testing.assert_allclose(jnp.tensordot(H, d, 2), fd, rtol=1e-6, atol=1e-6 * float(jnp.max(jnp.abs(fd))))


def test_batched_explanations_differentiate_as_the_sum_of_their_examples():
    method = lrpjax.lrp(LSTM_MODEL.apply, preset("lrp-all", 0.01))
    params = _lstm_params(LSTM_MODEL, 12, 3, 3, 2)
    rng = np.random.default_rng(12)
    X, mask = lrpjax.pad([rng.normal(size=(T, 3)) for T in (4, 2, 3)])
    targets = jnp.asarray([0, 1, 1])
    batch = jax.grad(lambda p: jnp.sum(method.batch(p, X, targets, mask=mask) ** 2))(params)
    single = [jax.grad(lambda p, b=b: jnp.sum(method.relevance(p, X[b], targets[b], mask[b], 0) ** 2))(params)
              for b in range(3)]
    for got, *want in zip(jax.tree.leaves(batch), *(jax.tree.leaves(s) for s in single)):
        np.testing.assert_allclose(got, sum(want), rtol=1e-10, atol=1e-13)


def test_full_explanations_differentiate_truly():
    """The residual of ``full()`` (what stabilisers absorbed) and the IG gap are differentiable too."""
    params = _lstm_params(LSTM_MODEL, 13, 3, 3, 2)
    x = jnp.asarray(np.random.default_rng(13).normal(size=(4, 3)))
    lrp_half = lrpjax.lrp(LSTM_MODEL.apply, preset("lrp-half", 0.05))
    ig = explain.integrated_gradients(LSTM_MODEL.apply, 4)
    for fn in (lambda x_: lrp_half.full(params, x_, 1).residual, lambda x_: ig.full(params, x_, 1).gap):
        d = _direction(x, 14)
        fd = _central(lambda s: fn(x + s * d), 1e-4)
        np.testing.assert_allclose(jnp.vdot(jax.grad(fn)(x), d), fd, rtol=1e-6, atol=1e-10)


def test_the_model_under_rules_has_no_forward_mode_but_its_explanation_has():
    """Documented: ``apply(params, x, rules)`` is made of custom_vjp ops (JAX refuses jvp of it); the
    explanation built from it has a forward mode."""
    params = _lstm_params(LSTM_MODEL, 15, 3, 2, 2)
    x = jnp.asarray(np.random.default_rng(15).normal(size=(4, 3)))
    rules = preset("lrp-all", 0.01)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x_: LSTM_MODEL.apply(params, x_, rules), (x,), (x,))
    method = lrpjax.lrp(LSTM_MODEL.apply, rules)
    _, tangent = jax.jvp(lambda x_: method.relevance(params, x_, 1, None, 0), (x,), (x,))
    assert tangent.shape == x.shape and np.all(np.isfinite(np.asarray(tangent)))
