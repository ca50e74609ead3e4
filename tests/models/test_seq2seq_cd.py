"""Contextual Decomposition of encoder-decoder RNNs (Seq2Seq) against an independent float64 NumPy oracle written
from Murdoch et al.'s rules (explicit loops over steps, no lrpjax code): uni- and bidirectional encoders, with
and without input feeding, general and additive scores; completeness (beta + gamma = the true value at every
state); the public entries (cd with a (t, v) target, every_step, phrase, decompose) on ids and on vectors;
padded batches equal per-example results; a GRU Seq2Seq refused."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.methods import decomposition as cdm
from lrpjax.models.seq2seq import Seq2Seq

S, V, E = 4, 5, 3                 # source steps, vocabulary, embedding
SOURCE, TARGET = [1, 4, 2], [0, 3]   # 3 of 4 source steps and 2 of 3 target steps valid: padding in both parts
T = 3


def _model(bidirectional, feeding, score, cell=StandardCell()):
    return Seq2Seq(S, cell, encoder_units=2, units=3, combine_units=3, bidirectional=bidirectional, score=score,
                   attention_units=3 if score == "additive" else None, input_feeding=feeding)


def _params(model, seed):
    params = model.init(jax.random.PRNGKey(seed), V, E, jnp.float64)
    params = jax.tree_util.tree_map(lambda a: a * 1.5, params)          # livelier states
    rng = np.random.default_rng(seed)
    for key in ("combine", "out", "decoder", *model.encoder.keys()):
        params[key]["b"] = jnp.asarray(rng.normal(0, 0.3, params[key]["b"].shape))
    if model.score == "additive":
        params["attention"]["b"] = jnp.asarray(rng.normal(0, 0.3, params["attention"]["b"].shape))
    return params


# --- the oracle ------------------------------------------------------------------------------------

def _sigmoid(v):
    return np.array([1.0 / (1.0 + math.exp(-u)) for u in v])


def _tanh(v):
    return np.array([math.tanh(u) for u in v])


def _split(a, b, c, act):
    """act(a + b + c) as (L(a), L(b), L(c)): the two orderings of a and b averaged, the bias c entering first."""
    return (0.5 * (act(a + c) - act(c) + act(a + b + c) - act(b + c)),
            0.5 * (act(b + c) - act(c) + act(a + b + c) - act(a + c)), act(c))


def _mat(v, W):
    """v @ W by explicit sums."""
    return np.array([sum(v[i] * W[i, j] for i in range(len(v))) for j in range(W.shape[1])])


def _lstm(P, x, y, c):
    """One step of the standard LSTM (gates stacked i, z, f, o): (y', c')."""
    H = len(y)
    z = _mat(x, P["W"]) + _mat(y, P["U"]) + P["b"]
    c = _sigmoid(z[2 * H:3 * H]) * c + _sigmoid(z[:H]) * _tanh(z[H:2 * H])
    return _sigmoid(z[3 * H:]) * _tanh(c), c


def _lstm_cd(P, x_rel, x_irr, rel, irr, bias_relevant):
    """One CD step on the separately propagated parts: rel = (y_rel, c_rel), irr = (y_irr, c_irr)."""
    H = len(rel[0])
    W, U, b = P["W"], P["U"], P["b"]
    pr = _mat(x_rel, W) + _mat(rel[0], U)
    pi = _mat(x_irr, W) + _mat(irr[0], U)
    g = lambda v, k: v[k * H:(k + 1) * H]                                      # noqa: E731
    ri, ii, bi = _split(g(pr, 0), g(pi, 0), g(b, 0), _sigmoid)
    rz, iz, bz = _split(g(pr, 1), g(pi, 1), g(b, 1), _tanh)
    rf, if_, bf = _split(g(pr, 2), g(pi, 2), g(b, 2), _sigmoid)
    c_rel = ri * (rz + bz) + bi * rz + (rf + bf) * rel[1]
    c_irr = ii * (rz + iz + bz) + (ri + bi) * iz + (rf + if_ + bf) * irr[1] + if_ * rel[1]
    if bias_relevant:
        c_rel = c_rel + bi * bz
    else:
        c_irr = c_irr + bi * bz
    o = _sigmoid(g(pr, 3) + g(pi, 3) + g(b, 3))
    y_rel = o * 0.5 * (_tanh(c_rel) + _tanh(c_rel + c_irr) - _tanh(c_irr))
    y_irr = o * 0.5 * (_tanh(c_irr) + _tanh(c_rel + c_irr) - _tanh(c_rel))
    return (y_rel, c_rel), (y_irr, c_irr)


def _bias_flags(flags, mode):
    """Per step read: is the bias-bias product relevant (never; at relevant steps; at a relevant step whose next
    step read is relevant too)?"""
    if mode == "gamma":
        return [False] * len(flags)
    if mode == "inside":
        return list(flags)
    return [flags[k] and k + 1 < len(flags) and flags[k + 1] for k in range(len(flags))]


def _direction(P, xs, flags, mode):
    """CD of one encoder direction over the steps xs read in order: true, relevant, irrelevant (y, c) per step."""
    H = P["U"].shape[0]
    true, rel, irr = (np.zeros(H), np.zeros(H)), (np.zeros(H), np.zeros(H)), (np.zeros(H), np.zeros(H))
    out = []
    for x, flag, bias in zip(xs, flags, _bias_flags(flags, mode)):
        zero = np.zeros_like(x)
        true = _lstm(P, x, *true)
        rel, irr = _lstm_cd(P, x if flag else zero, zero if flag else x, rel, irr, bias)
        out.append((true, rel, irr))
    return out


def _score(score, P, q, k):
    if score == "additive":
        return float(_mat(_tanh(_mat(k, P["W"]) + _mat(q, P["U"]) + P["b"]), P["v"])[0])
    g = k if score == "dot" else _mat(k, P["W"])
    return sum(q[d] * g[d] for d in range(len(q)))


def oracle(model, params, x, Ls, Lt, relevant, mode="gamma"):
    """CD of the packed pair x (S + T, E) (Ls, Lt valid steps) for the relevant positions (S + T,).

    Returns dict: "true"/"rel"/"irr" scores (T, V) and the states "keys", "y", "c", "context", "hidden" as
    (true, rel, irr) triples of (steps, size) arrays; padded steps 0."""
    P = {k: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    src_flags = [bool(relevant[s]) for s in range(Ls)]
    keys = []
    for key, reverse in zip(model.encoder.keys(), (False, True)):
        order = list(reversed(range(Ls))) if reverse else list(range(Ls))
        run = _direction(P[key], [x[s] for s in order], [src_flags[s] for s in order], mode)
        by_position = [None] * Ls
        for k, s in enumerate(order):
            by_position[s] = run[k]
        keys.append(by_position)
    Hk = sum(P[k]["U"].shape[0] for k in model.encoder.keys())
    K = {part: np.zeros((S, Hk)) for part in ("true", "rel", "irr")}
    for s in range(Ls):
        for j, part in enumerate(("true", "rel", "irr")):
            K[part][s] = np.concatenate([keys[d][s][j][0] for d in range(len(keys))])
    H, M, Vo = P["decoder"]["U"].shape[0], len(P["combine"]["b"]), len(P["out"]["b"])
    res = {name: {part: np.zeros((T, size)) for part in ("true", "rel", "irr")}
           for name, size in (("y", H), ("c", H), ("context", Hk), ("hidden", M), ("scores", Vo))}
    tgt_flags = [bool(relevant[S + t]) for t in range(Lt)]
    true, rel, irr = ((np.zeros(H), np.zeros(H)) for _ in range(3))
    feed = {part: np.zeros(M) for part in ("true", "rel", "irr")}
    Wc, Wh, bc = P["combine"]["W_context"], P["combine"]["W_state"], P["combine"]["b"]
    for t, bias in zip(range(Lt), _bias_flags(tgt_flags, mode)):
        e = x[S + t]
        zero = np.zeros_like(e)
        e_rel, e_irr = (e, zero) if tgt_flags[t] else (zero, e)
        if model.input_feeding:
            ins = (np.concatenate([e, feed["true"]]), np.concatenate([e_rel, feed["rel"]]),
                   np.concatenate([e_irr, feed["irr"]]))
        else:
            ins = (e, e_rel, e_irr)
        true = _lstm(P["decoder"], ins[0], *true)
        rel, irr = _lstm_cd(P["decoder"], ins[1], ins[2], rel, irr, bias)
        # the weights from the true decoder state and the true keys
        scores = [_score(model.score, P["attention"], true[0], K["true"][s]) for s in range(Ls)]
        top = max(scores)
        w = [math.exp(u - top) for u in scores]
        alpha = [u / sum(w) for u in w]
        ctx = {part: sum(alpha[s] * K[part][s] for s in range(Ls)) for part in ("true", "rel", "irr")}
        h = {"true": true[0], "rel": rel[0], "irr": irr[0]}
        pre_rel = _mat(ctx["rel"], Wc) + _mat(h["rel"], Wh)
        pre_irr = _mat(ctx["irr"], Wc) + _mat(h["irr"], Wh)
        hid_rel, hid_irr, hid_b = _split(pre_rel, pre_irr, bc, _tanh)
        hid = {"true": _tanh(_mat(ctx["true"], Wc) + _mat(h["true"], Wh) + bc), "rel": hid_rel,
               "irr": hid_irr + hid_b}
        out = {"true": _mat(hid["true"], P["out"]["W"]) + P["out"]["b"], "rel": _mat(hid["rel"], P["out"]["W"]),
               "irr": _mat(hid["irr"], P["out"]["W"]) + P["out"]["b"]}
        feed = hid
        for name, value in (("y", {"true": true[0], "rel": rel[0], "irr": irr[0]}),
                            ("c", {"true": true[1], "rel": rel[1], "irr": irr[1]}),
                            ("context", ctx), ("hidden", hid), ("scores", out)):
            for part in ("true", "rel", "irr"):
                res[name][part][t] = value[part]
    res["keys"] = K
    return res


# --- tests -----------------------------------------------------------------------------------------

# (bidirectional encoder, input feeding, scores, where the bias-bias product goes): one compiled program each
CONFIGS = [(True, True, "general", "authors"), (False, False, "general", "inside"),
           (True, False, "additive", "inside"), (False, True, "additive", "authors")]


@pytest.mark.parametrize("bidirectional, feeding, score, mode", CONFIGS,
                         ids=[f"{'bi' if b else 'uni'}-{'feed' if f else 'nofeed'}-{s}-{m}" for b, f, s, m in CONFIGS])
def test_decomposition_equals_the_oracle_and_is_complete(bidirectional, feeding, score, mode):
    model = _model(bidirectional, feeding, score)
    params = _params(model, 7)
    X, M = model.pack([SOURCE], [TARGET], T)
    x, mask = X[0], M[0]
    embedded = np.asarray(model.embed(params, x))
    true_scores = np.asarray(model.apply(params, x, mask=mask))
    Ls, Lt = len(SOURCE), len(TARGET)
    rng = np.random.default_rng(1)
    sets = [np.arange(S + T) == k for k in range(S + T)]                         # single positions
    sets += [np.isin(np.arange(S + T), [0, 1, S + 1]), rng.random(S + T) < 0.5]   # a set across both parts
    for relevant in sets:
        got = cdm.decompose(model.apply, params, x, relevant, mask=mask, bias_product=mode)
        want = oracle(model, params, embedded, Ls, Lt, relevant & mask, mode)
        msg = f"relevant {relevant.astype(int)} {mode}"
        np.testing.assert_allclose(got.beta, want["scores"]["rel"], rtol=0, atol=1e-10, err_msg=msg)
        np.testing.assert_allclose(got.gamma, want["scores"]["irr"], rtol=0, atol=1e-10, err_msg=msg)
        # completeness: beta + gamma is the true value, here and in the oracle (parts propagated apart)
        np.testing.assert_allclose(got.beta + got.gamma, true_scores, rtol=0, atol=1e-12)
        np.testing.assert_allclose(want["scores"]["rel"] + want["scores"]["irr"], want["scores"]["true"],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(want["scores"]["true"], true_scores, rtol=0, atol=1e-12)
        for name, field, key in (("y", "y", "decoder"), ("c", "c", "decoder"), ("context", "y", "attention"),
                                 ("hidden", "y", "combine")):
            beta = np.asarray(getattr(got, f"beta_{field}")[key])[:Lt]
            gamma = np.asarray(getattr(got, f"gamma_{field}")[key])[:Lt]
            np.testing.assert_allclose(beta, want[name]["rel"][:Lt], rtol=0, atol=1e-10, err_msg=f"{name} {msg}")
            np.testing.assert_allclose(gamma, want[name]["irr"][:Lt], rtol=0, atol=1e-10, err_msg=f"{name} {msg}")
            np.testing.assert_allclose(beta + gamma, want[name]["true"][:Lt], rtol=0, atol=1e-12)
            np.testing.assert_allclose(want[name]["rel"] + want[name]["irr"], want[name]["true"], rtol=0,
                                       atol=1e-12)
        keys = np.concatenate([np.asarray(got.beta_y[k]) for k in model.encoder.keys()], axis=1)[:Ls]
        keys_all = keys + np.concatenate([np.asarray(got.gamma_y[k]) for k in model.encoder.keys()], axis=1)[:Ls]
        np.testing.assert_allclose(keys, want["keys"]["rel"][:Ls], rtol=0, atol=1e-10, err_msg=f"keys {msg}")
        np.testing.assert_allclose(keys_all, want["keys"]["true"][:Ls], rtol=0, atol=1e-12)
        # padded target steps score 0 in both parts; a step never sees a target position after it
        assert np.all(np.asarray(got.beta)[Lt:] == 0) and np.all(np.asarray(got.gamma)[Lt:] == 0)
        first = np.flatnonzero(relevant & mask)
        if first.size and first[0] >= S:
            np.testing.assert_allclose(np.asarray(got.beta)[:first[0] - S], 0, rtol=0, atol=1e-15)


def test_cd_every_step_phrase_and_batches_on_a_seq2seq():
    model = _model(True, True, "general")
    params = _params(model, 3)
    sources, targets = [SOURCE, [3, 2]], [TARGET, [0, 1, 4]]
    X, M = model.pack(sources, targets, T)
    x, mask = X[0], M[0]
    embedded = np.asarray(model.embed(params, x))
    method = cdm.cd(model.apply)
    classes = np.array([2, 4, 0])
    matrix = np.asarray(method.every_step(params, x, classes, mask=mask))               # (T, S + T)
    assert matrix.shape == (T, S + T)
    for t in range(len(TARGET)):
        expected = [oracle(model, params, embedded, 3, 2, np.arange(S + T) == k)["scores"]["rel"][t, classes[t]]
                    if mask[k] else 0.0 for k in range(S + T)]
        np.testing.assert_allclose(matrix[t], expected, rtol=0, atol=1e-10)
    assert np.all(matrix[len(TARGET):] == 0) and np.all(matrix[:, ~mask] == 0)
    # one step's target (t, v)
    np.testing.assert_allclose(method(params, x, (1, 4), mask=mask), matrix[1], rtol=0, atol=1e-12)
    inner, inner_params = model.vector_model(params)
    # phrases: ids == vectors == decompose with the authors' bias product
    spans = np.array([[0, 2], [S, S + 2]])
    got = np.asarray(cdm.phrase(model.apply, params, x, spans, (1, 4), mask=mask))
    np.testing.assert_allclose(cdm.phrase(inner.apply, inner_params, embedded, spans, (1, 4), mask=mask), got,
                               rtol=0, atol=1e-12)
    for (start, stop), value in zip(spans, got):
        relevant = (np.arange(S + T) >= start) & (np.arange(S + T) < stop)
        want = oracle(model, params, embedded, 3, 2, relevant, "authors")["scores"]["rel"][1, 4]
        np.testing.assert_allclose(value, want, rtol=0, atol=1e-10)
    # a padded batch of pairs equals each pair alone (the second: shorter source, longer target)
    batch = np.asarray(method.batch(params, X, np.array([[1, 4], [2, 1]]), mask=M))
    np.testing.assert_allclose(batch[0], matrix[1], rtol=0, atol=1e-12)
    embedded_2 = np.asarray(model.embed(params, X[1]))
    expected = [oracle(model, params, embedded_2, 2, 3, np.arange(S + T) == k)["scores"]["rel"][2, 1]
                if M[1, k] else 0.0 for k in range(S + T)]
    np.testing.assert_allclose(batch[1], expected, rtol=0, atol=1e-10)
    spans_b = np.array([[[0, 2]], [[S, S + 3]]])
    got_b = np.asarray(cdm.phrase_batch(model.apply, params, X, spans_b, np.array([[1, 4], [2, 1]]), mask=M))
    np.testing.assert_allclose(got_b[0, 0], got[0], rtol=0, atol=1e-12)
    relevant = np.arange(S + T) >= S
    want = oracle(model, params, embedded_2, 2, 3, relevant, "authors")["scores"]["rel"][2, 1]
    np.testing.assert_allclose(got_b[1, 0], want, rtol=0, atol=1e-10)


def test_a_gru_seq2seq_and_bad_arguments_are_refused():
    gru = _model(True, False, "general", GRUCell())
    with pytest.raises(TypeError, match="GRUCell.*standard LSTM cell"):
        cdm.cd(gru.apply)
    params = gru.init(jax.random.PRNGKey(0), V, E, jnp.float64)
    X, M = gru.pack([SOURCE], [TARGET], T)
    with pytest.raises(TypeError, match="GRUCell"):
        cdm.decompose(gru.apply, params, X[0], np.ones(S + T, bool), mask=M[0])
    model = _model(False, False, "general")
    params = _params(model, 1)
    X, M = model.pack([SOURCE], [TARGET], T)
    with pytest.raises(ValueError, match="spans"):
        cdm.phrase(model.apply, params, X[0], [S, S + T + 1], (0, 1), mask=M[0])
    with pytest.raises(ValueError, match="mask"):
        cdm.decompose(model.apply, params, X[0], np.ones(S + T, bool), mask=np.ones(S + T - 1, bool))
    with pytest.raises(ValueError, match="x"):
        cdm.decompose(model.apply, params, X[0, :S], np.ones(S, bool))
    with pytest.raises(ValueError, match="target"):
        cdm.cd(model.apply)(params, X[0], (T, 0), mask=M[0])
