"""The baselines users compare LRP against: Integrated Gradients, SmoothGrad and phrase-level
Contextual Decomposition (against a float64 NumPy oracle of the authors' equations); batched, masked,
through ``scale.explain_dataset``."""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.methods import decomposition as cdmod
from lrpjax import methods as explain
from lrpjax import datasets as scale
from lrpjax.cells import StandardCell
from lrpjax.models import Dense, Pool, Recurrent, Sequential, bilstm, lstm
from reference_cd import sigmoid, split_tanh, split_three


@pytest.fixture(autouse=True, scope="module")
def _release_programs():
    yield
    jax.clear_caches()
    gc.collect()


def _params(model, seed, E, H, C, scale_=1.5):
    params = model.init(jax.random.PRNGKey(seed), E, H, C, jnp.float64)
    # Nonzero biases, so that the bias terms of the decomposition are exercised.
    return jax.tree.map(lambda w: w * scale_ + 0.3 * jnp.sin(jnp.arange(w.size, dtype=w.dtype).reshape(w.shape)),
                        params)


@pytest.fixture(scope="module")
def reference():
    params = jax.tree.map(jnp.asarray, bilstm.from_reference(np.load("tests/data/ref_bilstm.npz")))
    x = jnp.asarray(np.random.default_rng(0).normal(0, 0.4, (7, 60)))
    return params, x


# --- Integrated Gradients -----------------------------------------------------------------------------

def test_ig_completeness_gap_shrinks_as_steps_grow(reference):
    params, x = reference
    gaps = [float(explain.integrated_gradients(bilstm.apply, steps).full(params, x, 3).gap) for steps in (8, 32, 128)]
    assert abs(gaps[0]) > abs(gaps[1]) > abs(gaps[2])
    # Midpoint rule: about 1 / steps^2, i.e. a factor 16 per 4 times the steps.
    assert abs(gaps[1]) < abs(gaps[0]) / 8 and abs(gaps[2]) < abs(gaps[1]) / 8
    full = explain.integrated_gradients(bilstm.apply, 128).full(params, x, 3)
    assert abs(float(full.gap)) < 1e-4 * abs(float(full.target_score - full.baseline_score))


def test_ig_full_is_consistent_with_the_call_and_the_model(reference):
    params, x = reference
    method = explain.integrated_gradients(bilstm.apply, 16)
    full = method.full(params, x, 2)
    np.testing.assert_array_equal(full.relevance, method(params, x, 2))
    np.testing.assert_allclose(full.scores, bilstm.apply(params, x), rtol=1e-12)
    assert float(full.target_score) == pytest.approx(float(bilstm.apply(params, x)[2]), rel=1e-12)
    assert float(full.baseline_score) == pytest.approx(float(bilstm.apply(params, jnp.zeros_like(x))[2]), rel=1e-12)
    np.testing.assert_allclose(full.gap, jnp.sum(full.relevance) - (full.target_score - full.baseline_score),
                               rtol=1e-12, atol=1e-14)


def test_ig_with_one_step_is_the_midpoint_gradient_times_the_difference():
    params = _params(lstm.model, 1, 3, 4, 2)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)))
    baseline = (0.2, -0.1, 0.4)
    R = explain.integrated_gradients(lstm.apply, 1, baseline)(params, x, 1)
    x0 = jnp.broadcast_to(jnp.asarray(baseline), x.shape)
    midpoint = lrpjax.gradient(lstm.apply)(params, x0 + 0.5 * (x - x0), 1)
    np.testing.assert_allclose(R, (x - x0) * midpoint, rtol=1e-12, atol=1e-14)


def test_ig_baselines_as_number_sequence_array_or_function_agree():
    params = _params(lstm.model, 2, 3, 2, 2)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)))
    row = np.array([0.3, -0.2, 0.1])
    by_tuple = explain.integrated_gradients(lstm.apply, 4, tuple(row))(params, x, 0)
    by_array = explain.integrated_gradients(lstm.apply, 4, row)(params, x, 0)
    by_function = explain.integrated_gradients(lstm.apply, 4, lambda x_: jnp.broadcast_to(jnp.asarray(row), x_.shape))(
        params, x, 0)
    np.testing.assert_array_equal(by_tuple, by_array)
    np.testing.assert_allclose(by_function, by_tuple, rtol=1e-12, atol=1e-15)
    # The baseline at x itself: nothing to attribute, no gap.
    same = explain.integrated_gradients(lstm.apply, 4, lambda x_: x_).full(params, x, 0)
    assert np.all(np.asarray(same.relevance) == 0) and float(same.gap) == 0.0


def test_ig_function_target_and_all_classes():
    params = _params(lstm.model, 3, 3, 2, 3)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3)))
    method = explain.integrated_gradients(lstm.apply, 8)
    difference = method(params, x, lambda s: s[2] - s[0])
    np.testing.assert_allclose(difference, method(params, x, 2) - method(params, x, 0), rtol=1e-10, atol=1e-13)
    full = method.full(params, x, lambda s: s[2] - s[0])
    scores = lstm.apply(params, x)
    assert float(full.target_score) == pytest.approx(float(scores[2] - scores[0]), rel=1e-12)
    every = method.all(params, x)
    assert every.shape == (3, 4, 3)
    np.testing.assert_allclose(every[1], method(params, x, 1), rtol=1e-12, atol=1e-14)


def test_ig_settings_are_checked():
    with pytest.raises(ValueError, match="steps"):
        explain.integrated_gradients(lstm.apply, 0)
    with pytest.raises(ValueError, match="steps"):
        explain.integrated_gradients(lstm.apply, 2.5)
    with pytest.raises(ValueError, match="baseline"):
        explain.integrated_gradients(lstm.apply, 4, float("nan"))
    with pytest.raises(ValueError, match="baseline"):
        explain.integrated_gradients(lstm.apply, 4, ())
    with pytest.raises(TypeError, match="baseline"):
        explain.integrated_gradients(lstm.apply, 4, "zeros")
    params = _params(lstm.model, 4, 3, 2, 2)
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="E = 3"):
        explain.integrated_gradients(lstm.apply, 4, (0.0, 1.0))(params, x, 0)
    with pytest.raises(ValueError, match="shape"):
        explain.integrated_gradients(lstm.apply, 4, lambda x_: x_[:2])(params, x, 0)
    with pytest.raises(TypeError, match="full"):
        lrpjax.gradient(lstm.apply).full(params, x, 0)


# --- SmoothGrad ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("map_,plain", [("gradient", lrpjax.gradient), ("sensitivity", lrpjax.sensitivity),
                                        ("gradient_x_input", lrpjax.gradient_x_input)])
def test_smoothgrad_without_noise_is_its_map(reference, map_, plain):
    params, x = reference
    smooth = explain.smoothgrad(bilstm.apply, 0.0, 5, map=map_)(params, x, 3)
    np.testing.assert_allclose(smooth, plain(bilstm.apply)(params, x, 3), rtol=1e-12, atol=1e-15)


def test_smoothgrad_is_the_mean_gradient_at_the_documented_noise():
    params = _params(lstm.model, 5, 3, 4, 2)
    x = jnp.asarray(np.random.default_rng(5).normal(size=(4, 3)))
    sigma, samples, seed, index = 0.2, 6, 7, 3
    method = explain.smoothgrad(lstm.apply, sigma, samples, seed)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
    noise = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(key, t), (samples, 3), jnp.float64))
                      for t in range(4)], axis=1)
    noise *= sigma * float(x.max() - x.min())
    gradient = lrpjax.gradient(lstm.apply)
    want = np.mean([np.asarray(gradient(params, x + noise[s], 1)) for s in range(samples)], axis=0)
    got = method.relevance(params, x, 1, None, index)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    absolute = explain.smoothgrad(lstm.apply, 0.05, samples, seed, noise="absolute")
    want = np.mean([np.asarray(gradient(params, x + noise[s] * 0.05 / (sigma * float(x.max() - x.min())), 1))
                    for s in range(samples)], axis=0)
    np.testing.assert_allclose(absolute.relevance(params, x, 1, None, index), want, rtol=1e-10, atol=1e-13)


def test_smoothgrad_draw_depends_on_seed_and_index_not_on_padding():
    params = _params(lstm.model, 6, 3, 3, 2)
    rng = np.random.default_rng(6)
    seqs = [rng.normal(size=(T, 3)) for T in (4, 2, 4)]
    method = explain.smoothgrad(lstm.apply, 0.3, 4, seed=1)
    X, mask = lrpjax.pad(seqs)
    batch = method.batch(params, X, jnp.asarray([0, 1, 0]), mask=mask)
    # Row b draws with index b: the same sequence at rows 0 and 2 gets different noise.
    assert not np.allclose(batch[0], batch[2])
    np.testing.assert_allclose(batch[2], method.relevance(params, jnp.asarray(seqs[2]), 0, None, 2),
                               rtol=1e-10, atol=1e-13)
    # Padding more does not change the draw of the valid steps, and padded steps get 0.
    X8, mask8 = lrpjax.pad(seqs, length=8)
    batch8 = method.batch(params, X8, jnp.asarray([0, 1, 0]), mask=mask8)
    np.testing.assert_allclose(batch8[:, :4], batch, rtol=1e-10, atol=1e-13)
    assert np.all(np.asarray(batch8[:, 4:]) == 0) and np.all(np.asarray(batch[1, 2:]) == 0)
    other = explain.smoothgrad(lstm.apply, 0.3, 4, seed=2).batch(params, X, jnp.asarray([0, 1, 0]), mask=mask)
    assert not np.allclose(other, batch)
    np.testing.assert_array_equal(method.batch(params, X, jnp.asarray([0, 1, 0]), mask=mask), batch)


def test_smoothgrad_settings_are_checked():
    for kwargs, error, match in (({"sigma": -0.1}, ValueError, "sigma"), ({"sigma": float("inf")}, ValueError, "sigma"),
                                 ({"sigma": "big"}, TypeError, "sigma"), ({"samples": 0}, ValueError, "samples"),
                                 ({"noise": "gaussian"}, ValueError, "noise"), ({"map": "lrp"}, ValueError, "map"),
                                 ({"seed": 1.5}, TypeError, "seed")):
        with pytest.raises(error, match=match):
            explain.smoothgrad(lstm.apply, **kwargs)


# --- batches and datasets -----------------------------------------------------------------------------

DATASET_METHODS = {
    "ig": explain.integrated_gradients(bilstm.apply, 8),
    "ig-baseline": explain.integrated_gradients(bilstm.apply, 4, 0.25),
    "smoothgrad": explain.smoothgrad(bilstm.apply, 0.1, 4, seed=3),
    "cd-3gram": cdmod.cd(bilstm.apply, 3),
    "cd-inside": cdmod.cd(bilstm.apply, 1, "inside"),
}


@pytest.mark.parametrize("name", sorted(DATASET_METHODS))
def test_explain_dataset_equals_the_padded_batch_and_single_calls(name):
    method = DATASET_METHODS[name]
    params = _params(bilstm.model, 7, 3, 3, 2)
    rng = np.random.default_rng(7)
    seqs = [rng.normal(0, 0.7, (T, 3)) for T in (2, 5, 3, 5, 1)]
    targets = [0, 1, 1, 0, 1]
    out = scale.explain_dataset(method, params, seqs, targets, buckets=(4, 8), chunk_size=2)
    X, mask = lrpjax.pad(seqs)
    batch = np.asarray(method.batch(params, X, jnp.asarray(targets), mask=mask))
    for i, x in enumerate(seqs):
        T = x.shape[0]
        np.testing.assert_allclose(out.relevance[i], batch[i, :T], rtol=1e-9, atol=1e-12)
        assert np.all(batch[i, T:] == 0)
        if not name.startswith("smoothgrad"):   # SmoothGrad's draw depends on the row (checked above)
            np.testing.assert_allclose(batch[i], method(params, X[i], targets[i], mask=mask[i]), rtol=1e-10,
                                       atol=1e-12)
    tokens = scale.explain_dataset(method, params, seqs, targets, buckets=(8,), chunk_size=4, tokens=True)
    for i in range(len(seqs)):
        np.testing.assert_allclose(tokens.relevance[i], lrpjax.per_token(out.relevance[i], 2), rtol=1e-9, atol=1e-12)


# --- phrase-level Contextual Decomposition against the oracle ---------------------------------------------

def oracle_phrase_direction(cell, x, first, last, rule):
    """Relevant final output of one direction (explicit loops, the authors' equations): inputs at steps
    ``first <= i <= last`` are relevant (inclusive, as in ``sent_util.CD``); the product L(b_i) L(b_g) is
    relevant at ``first <= i < last`` ("authors"), ``first <= i <= last`` ("inside") or never ("gamma")."""
    W, U, b = (np.asarray(cell[k], np.float64) for k in ("W", "U", "b"))
    H = U.shape[0]
    Ws = [W[:, k * H:(k + 1) * H] for k in range(4)]
    Us = [U[:, k * H:(k + 1) * H] for k in range(4)]
    bs = [b[k * H:(k + 1) * H] for k in range(4)]
    rel_c, irr_c, rel_h, irr_h = np.zeros(H), np.zeros(H), np.zeros(H), np.zeros(H)
    for i in range(x.shape[0]):
        rel = [rel_h @ Ug for Ug in Us]
        irr = [irr_h @ Ug for Ug in Us]
        for g in range(4):
            if first <= i <= last:
                rel[g] = rel[g] + x[i] @ Ws[g]
            else:
                irr[g] = irr[g] + x[i] @ Ws[g]
        ri, ii, bi = split_three(rel[0], irr[0], bs[0], sigmoid)
        rg, ig, bg = split_three(rel[1], irr[1], bs[1], np.tanh)
        rf, if_, bf = split_three(rel[2], irr[2], bs[2], sigmoid)
        new_rel = ri * (rg + bg) + bi * rg
        new_irr = ii * (rg + ig + bg) + (ri + bi) * ig
        bias_relevant = {"authors": first <= i < last, "inside": first <= i <= last, "gamma": False}[rule]
        if bias_relevant:
            new_rel = new_rel + bi * bg
        else:
            new_irr = new_irr + bi * bg
        if i > 0:
            new_rel = new_rel + (rf + bf) * rel_c
            new_irr = new_irr + (rf + if_ + bf) * irr_c + if_ * rel_c
        o = sigmoid(x[i] @ Ws[3] + (rel_h + irr_h) @ Us[3] + bs[3])
        h_rel, h_irr = split_tanh(new_rel, new_irr)
        rel_c, irr_c, rel_h, irr_h = new_rel, new_irr, o * h_rel, o * h_irr
    return rel_h


def oracle_phrase(params, x, start, stop, target, rule, bidirectional):
    """The relevant score of the span [start, stop) of an unpadded sequence x (T, E)."""
    x = np.asarray(x, np.float64)
    if not bidirectional:
        return oracle_phrase_direction(params["lstm"], x, start, stop - 1, rule) @ np.asarray(params["out"]["W"])[:, target]
    T = x.shape[0]
    left = oracle_phrase_direction(params["left"], x, start, stop - 1, rule)
    right = oracle_phrase_direction(params["right"], x[::-1], T - stop, T - 1 - start, rule)
    return (left @ np.asarray(params["out"]["W_left"])[:, target]
            + right @ np.asarray(params["out"]["W_right"])[:, target])


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("rule", cdmod.BIAS_PRODUCTS)
def test_phrases_equal_the_oracle(bidirectional, rule):
    model = bilstm.model if bidirectional else lstm.model
    params = _params(model, 8, 3, 4, 3)
    T = 7
    x = np.random.default_rng(8).normal(size=(T, 3))
    spans = np.array([(0, 1), (2, 5), (0, T), (4, 7), (3, 4), (1, 3)])
    got = cdmod.phrase(model.apply, params, x, spans, 2, bias_product=rule)
    want = [oracle_phrase(params, x, a, b, 2, rule, bidirectional) for a, b in spans]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    one = cdmod.phrase(model.apply, params, x, (2, 5), 2, bias_product=rule)
    assert one.shape == () and float(one) == pytest.approx(float(got[1]), rel=1e-12)


def test_the_authors_rule_differs_from_gamma_only_for_phrases():
    params = _params(bilstm.model, 9, 3, 4, 2)
    x = np.random.default_rng(9).normal(size=(6, 3))
    words = [(t, t + 1) for t in range(6)]
    authors = cdmod.phrase(bilstm.apply, params, x, words, 1)
    np.testing.assert_array_equal(authors, cdmod.phrase(bilstm.apply, params, x, words, 1, bias_product="gamma"))
    np.testing.assert_allclose(authors, cdmod.cd(bilstm.apply)(params, x, 1), rtol=1e-12, atol=1e-14)
    phrase = [(1, 4)]
    assert not np.allclose(cdmod.phrase(bilstm.apply, params, x, phrase, 1),
                           cdmod.phrase(bilstm.apply, params, x, phrase, 1, bias_product="gamma"))
    inside = cdmod.phrase(bilstm.apply, params, x, words, 1, bias_product="inside")
    assert not np.allclose(inside, authors)


def test_phrase_decomposition_is_complete():
    """beta + gamma is the true state for every bias rule (the product moves, nothing is lost)."""
    params = _params(lstm.model, 10, 3, 4, 2)
    x = np.random.default_rng(10).normal(size=(6, 3))
    relevant = np.array([False, True, True, True, False, False])
    scores = lstm.apply(params, x)
    for rule in cdmod.BIAS_PRODUCTS:
        dec = cdmod.decompose(lstm.apply, params, x, relevant, bias_product=rule)
        np.testing.assert_allclose(dec.beta + dec.gamma, scores, rtol=1e-12, atol=1e-13)
    default = cdmod.decompose(lstm.apply, params, x, relevant)
    gamma = cdmod.decompose(lstm.apply, params, x, relevant, bias_product="gamma")
    np.testing.assert_array_equal(default.beta, gamma.beta)


def test_phrase_batch_equals_single_calls_and_masks():
    params = _params(bilstm.model, 11, 3, 3, 2)
    rng = np.random.default_rng(11)
    seqs = [rng.normal(size=(T, 3)) for T in (5, 3, 4)]
    X, mask = lrpjax.pad(seqs)
    spans = np.array([[(0, 2), (1, 5)], [(0, 3), (2, 3)], [(1, 4), (0, 1)]])
    got = cdmod.phrase_batch(bilstm.apply, params, X, spans, jnp.asarray([0, 1, 1]), mask=mask)
    assert got.shape == (3, 2)
    for b, x in enumerate(seqs):
        want = [oracle_phrase(params, x, a, s, [0, 1, 1][b], "authors", True) for a, s in spans[b]]
        np.testing.assert_allclose(got[b], want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cdmod.phrase(bilstm.apply, params, X[b], spans[b], [0, 1, 1][b], mask=mask[b]),
                                   got[b], rtol=1e-12, atol=1e-14)
    single = cdmod.phrase_batch(bilstm.apply, params, X, spans[:, 0], 1, mask=mask)
    assert single.shape == (3,)


def test_ngram_cd_is_the_phrase_starting_at_each_position():
    params = _params(lstm.model, 12, 3, 3, 2)
    x = np.random.default_rng(12).normal(size=(5, 3))
    R = cdmod.cd(lstm.apply, 2)(params, x, 1)
    spans = [(t, min(t + 2, 5)) for t in range(5)]
    np.testing.assert_allclose(R, cdmod.phrase(lstm.apply, params, x, spans, 1), rtol=1e-12, atol=1e-14)


def test_phrases_through_a_stacked_composition():
    model = Sequential((Recurrent(StandardCell(), 3, bidirectional=True, sequences=True),
                        Recurrent(StandardCell(), 2), Dense(2, bias=False, name="out")))
    params = jax.tree.map(lambda w: w * 1.5 + 0.2, model.init(jax.random.PRNGKey(13), 3, jnp.float64))
    x = np.random.default_rng(13).normal(size=(5, 3))
    scores = model.apply(params, x)
    for rule in cdmod.BIAS_PRODUCTS:
        relevant = np.array([False, True, True, False, False])
        dec = cdmod.decompose(model.apply, params, x, relevant, bias_product=rule)
        np.testing.assert_allclose(dec.beta + dec.gamma, scores, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(cdmod.phrase(model.apply, params, x, (1, 3), 0, bias_product=rule), dec.beta[0],
                                   rtol=1e-12, atol=1e-14)


def test_phrase_arguments_are_checked():
    params = _params(lstm.model, 14, 3, 2, 2)
    x = np.zeros((4, 3))
    for spans, match in (((2, 2), r"\(2, 2\)"), ((-1, 2), "start"), ((1, 5), "L = 4"), ([(0, 1, 2)], "last axis")):
        with pytest.raises(ValueError, match=match):
            cdmod.phrase(lstm.apply, params, x, spans, 0)
    with pytest.raises(ValueError, match="L = 2"):
        cdmod.phrase(lstm.apply, params, x, (0, 3), 0, mask=np.array([True, True, False, False]))
    with pytest.raises(TypeError, match="integer"):
        cdmod.phrase(lstm.apply, params, x, (0.0, 2.0), 0)
    with pytest.raises(ValueError, match="bias_product"):
        cdmod.phrase(lstm.apply, params, x, (0, 2), 0, bias_product="beta")
    with pytest.raises(ValueError, match="target"):
        cdmod.phrase(lstm.apply, params, x, (0, 2), 5)
    with pytest.raises(TypeError, match="target"):
        cdmod.phrase(lstm.apply, params, x, (0, 2), lambda s: s[0])
    X, mask = lrpjax.pad([x, x[:2]])
    with pytest.raises(ValueError, match=r"entry \(1, 0\)"):
        cdmod.phrase_batch(lstm.apply, params, X, [[(0, 2)], [(0, 3)]], 0, mask=mask)
    with pytest.raises(ValueError, match="B = 2"):
        cdmod.phrase_batch(lstm.apply, params, X, [(0, 2)], 0, mask=mask)
    with pytest.raises(ValueError, match="ngram"):
        cdmod.cd(lstm.apply, 0)
    with pytest.raises(ValueError, match="bias_product"):
        cdmod.cd(lstm.apply, 2, "all")
    with pytest.raises(ValueError, match="bias_product"):
        cdmod.decompose(lstm.apply, params, x, np.ones(4, bool), bias_product="none")
    with pytest.raises(TypeError, match="standard"):
        cdmod.phrase(Sequential((Recurrent(lrpjax.cells.GRUCell(), 2), Dense(2))).apply, params, x, (0, 1), 0)


def test_pool_composition_allows_phrases():
    model = Sequential((Recurrent(StandardCell(), 2, sequences=True), Pool("mean"), Dense(2, name="out")))
    params = jax.tree.map(lambda w: w + 0.3, model.init(jax.random.PRNGKey(15), 3, jnp.float64))
    x = np.random.default_rng(15).normal(size=(4, 3))
    whole = cdmod.phrase(model.apply, params, x, (0, 4), 1, bias_product="inside")
    # Everything relevant, bias products included: beta is the score minus the output bias.
    assert float(whole) == pytest.approx(float(model.apply(params, x)[1] - params["out"]["b"][1]), rel=1e-10)


def test_the_command_line_explains_with_ig_and_smoothgrad():
    import os
    import subprocess
    import sys

    env = dict(os.environ, NO_COLOR="1")
    env.pop("JAX_ENABLE_X64", None)
    outputs = {}
    for method, extra in (("ig", ()), ("smoothgrad", ("--seed", "3")), ("smoothgrad", ("--seed", "4"))):
        done = subprocess.run([sys.executable, "-m", "lrpjax.app.cli", "explain", "--method", method, *extra,
                               "the plot is dull but the actors are wonderful"], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert f"method: {method}" in lines[1]
        outputs[(method, extra)] = lines[2]
        assert len(lines[2].split()) == 9
    assert outputs[("smoothgrad", ("--seed", "3"))] != outputs[("smoothgrad", ("--seed", "4"))]
    help_text = subprocess.run([sys.executable, "-m", "lrpjax.app.cli", "explain", "--help"], capture_output=True,
                               text=True, env=env, timeout=300).stdout
    assert "ig" in help_text and "smoothgrad" in help_text
