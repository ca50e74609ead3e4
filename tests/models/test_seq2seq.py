"""Encoder-decoder RNNs with attention (Seq2Seq, CrossAttention): an independent float64 oracle for a full
encoder-decoder step for every attention rule and the presets; conservation with sharing; padded batches of
pairs equal per-example results; causality; the gradient path equals ``jax.grad`` of an independently written
model; every method runs; greedy decoding; configs; errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.core.rules import ATTENTION_MODES, preset
from lrpjax.models.attention import CrossAttention
from lrpjax.models.seq2seq import Seq2Seq

import reference_seq2seq as ref

S, T, V, E = 4, 3, 5, 3          # source steps, target steps, vocabulary, embedding
LS, LT = 3, 3                    # valid source and target steps of the explained pair
SOURCE, TARGET = [1, 4, 2], [0, 3, 1]
# (product rule of the LSTMs, attention mode, eps, share): every attention mode without stabiliser, two with
# sharing and other product rules; the other scores take the other modes with sharing, and the presets' rules.
RULES = ([("lrp-all", mode, 0.0, False) for mode in ATTENTION_MODES]
         + [("lrp-prop", "gate", 0.01, True), ("lrp-half", "attnlrp", 0.01, True)])
SHARED = [("lrp-all", mode, 0.01, True) for mode in ("gate", "prop", "attnlrp")]   # fewer programs for the others
MIXED = [("lrp-prop", "prop", 0.0, False), ("lrp-abs", "abs", 0.01, True), ("lrp-half", "half", 0.01, True)]


def _model(score, feeding, cell=StandardCell()):
    return Seq2Seq(S, cell, encoder_units=2, units=4, combine_units=3, score=score,
                   attention_units=3 if score == "additive" else None, input_feeding=feeding)


def _params(model, seed):
    params = model.init(jax.random.PRNGKey(seed), V, E, jnp.float64)
    params = jax.tree_util.tree_map(lambda a: a * 1.5, params)          # livelier states and weights
    rng = np.random.default_rng(seed)
    for key in ("combine", "out"):
        params[key]["b"] = jnp.asarray(rng.normal(0, 0.2, params[key]["b"].shape))
    for key in ("encoder_forward", "encoder_backward", "decoder"):
        params[key]["b"] = jnp.asarray(rng.normal(0, 0.2, params[key]["b"].shape))
    return params


def _oracle_params(params):
    n = {k: jax.tree_util.tree_map(np.asarray, v) for k, v in params.items()}
    return {"fwd": n["encoder_forward"], "bwd": n["encoder_backward"], "dec": n["decoder"], "att": n["attention"],
            "Wc": n["combine"]["W_context"], "Wh": n["combine"]["W_state"], "bc": n["combine"]["b"],
            "Wo": n["out"]["W"], "bo": n["out"]["b"]}


@pytest.mark.parametrize("score, feeding, rules", [("general", True, RULES), ("additive", False, SHARED),
                                                   ("dot", True, MIXED)])
def test_encoder_decoder_equals_the_oracle_for_every_rule(score, feeding, rules):
    model = _model(score, feeding)
    params = _params(model, 3)
    x, mask = (a[0] for a in model.pack([SOURCE], [TARGET]))
    embedded = np.asarray(model.embed(params, x))
    inner, inner_params = model.vector_model(params)             # the model over embedded vectors
    methods = [lrpjax.lrp(inner.apply, preset(p, eps=eps, share=share, attention=mode))
               for p, mode, eps, share in rules]
    step = (1, 2)

    @jax.jit
    def run(x, mask):
        return jnp.stack([m.relevance(inner_params, x, jnp.asarray(step[0] * V + step[1]), mask, jnp.asarray(0))
                          for m in methods]), inner.apply(inner_params, x, mask=mask)

    relevance, scores = run(jnp.asarray(embedded), jnp.asarray(mask))
    P = _oracle_params(params)
    expected_scores = ref.seq2seq(P, embedded[:S], embedded[S:], LS, LT, score, feeding)
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-12)
    for got, (p, mode, eps, share) in zip(np.asarray(relevance), rules):
        _, expected = ref.seq2seq(P, embedded[:S], embedded[S:], LS, LT, score, feeding, step,
                                  p.removeprefix("lrp-"), mode, eps, share)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10, err_msg=f"{p} {mode} eps={eps} share={share}")
    assert np.all(relevance[:, LS:S] == 0) and np.all(relevance[:, S + step[0] + 1:] == 0)   # padding; causality


def test_relevance_is_conserved_with_sharing_for_every_attention_mode():
    model = _model("additive", True)
    params = _params(model, 5)
    inner, inner_params = model.vector_model(params)
    methods = [lrpjax.lrp(inner.apply, preset(p, eps=1e-3, share=True, attention=mode))
               for p, mode in (("lrp-all", "gate"), ("lrp-abs", "prop"), ("lrp-all", "attnlrp"))]

    @jax.jit
    def residuals(x, mask, target):
        return jnp.stack([m.prepare_full(inner_params, x, mask, 0)[1](target).residual for m in methods])

    for seed, (source, target) in enumerate([(SOURCE, TARGET), ([3, 3, 1, 2], [0, 2])]):
        X, mask = model.pack([source], [target], T)
        res = residuals(model.embed(params, X[0]), jnp.asarray(mask[0]), jnp.asarray((len(target) - 1) * V + seed))
        assert np.abs(np.asarray(res)).max() < 1e-10, res
    # the public call, on a GRU encoder-decoder with half splits
    gru = _model("general", False, GRUCell())
    params = _params(gru, 6)
    X, mask = gru.pack([SOURCE], [TARGET])
    full = lrpjax.lrp(gru.apply, preset("lrp-half", eps=1e-3, share=True, attention="half")).full(
        params, X[0], (2, 1), mask=mask[0])
    initial = sum(float(jnp.sum(a)) for a in jax.tree_util.tree_leaves(full.initial))
    assert abs(float(full.residual)) < 1e-10
    assert abs(float(full.relevance.sum()) + initial - float(full.target_score)) < 1e-10   # biases shared: 0


def test_padded_batches_of_pairs_equal_per_example_results():
    model = _model("general", True, GRUCell())
    params = _params(model, 7)
    sources, targets = [[1, 2], [4, 3, 2, 1]], [[0, 1, 4], [0, 2]]
    X, mask = model.pack(sources, targets)
    method = lrpjax.lrp(model.apply, preset("lrp-half", eps=1e-3, attention="attnlrp"))
    batch = np.asarray(method.batch(params, X, np.array([[2, 1], [1, 3]]), mask=mask))
    s, t = sources[0], targets[0]                                      # its source padded, its target not
    alone = Seq2Seq(len(s), GRUCell(), 2, 4, 3, score="general", input_feeding=True)   # no padding at all
    single = np.asarray(lrpjax.lrp(alone.apply, method.rules)(params, np.asarray(s + t, np.int32), (2, 1)))
    np.testing.assert_allclose(batch[0, :len(s)], single[:len(s)], rtol=0, atol=1e-12)
    np.testing.assert_allclose(batch[0, S:], single[len(s):], rtol=0, atol=1e-12)
    for b, (s, t) in enumerate(zip(sources, targets)):
        assert np.all(batch[b, len(s):S] == 0) and np.all(batch[b, S + len(t):] == 0)
    matrix = np.asarray(method.every_step(params, X[1], np.array([-1, 3, 0]), mask=mask[1]))   # (T, S + T, E)
    assert matrix.shape == (T, S + T, E) and np.all(matrix[len(targets[1]):] == 0)   # padded output steps
    np.testing.assert_allclose(matrix[1], batch[1], rtol=0, atol=1e-12)   # the padded target against the batch
    short = model.pack([sources[1]], [targets[1]])                          # the same pair, target unpadded
    np.testing.assert_allclose(method.every_step(params, short[0][0], np.array([-1, 3]), mask=short[1][0])[1],
                               batch[1, :S + 2], rtol=0, atol=1e-12)


def _plain_lstm(P, x, y, c):
    z = x @ P["W"] + y @ P["U"] + P["b"]
    i, g, f, o = jnp.split(z, 4)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _plain_seq2seq(params, embedded, Ls, Lt):
    """The model (general scores, input feeding, bidirectional LSTM encoder) written independently with jnp,
    on the valid steps only."""
    def run(P, xs):
        H = P["U"].shape[0]
        y, c, ys = jnp.zeros(H), jnp.zeros(H), []
        for x in xs:
            y, c = _plain_lstm(P, x, y, c)
            ys.append(y)
        return ys

    source, target = embedded[:S], embedded[S:]
    forward = run(params["encoder_forward"], [source[s] for s in range(Ls)])
    backward = run(params["encoder_backward"], [source[s] for s in reversed(range(Ls))])[::-1]
    keys = jnp.stack([jnp.concatenate([f, b]) for f, b in zip(forward, backward)])
    H, M = params["decoder"]["U"].shape[0], params["combine"]["b"].shape[0]
    y, c, hidden, out = jnp.zeros(H), jnp.zeros(H), jnp.zeros(M), []
    for t in range(Lt):
        y, c = _plain_lstm(params["decoder"], jnp.concatenate([target[t], hidden]), y, c)
        alpha = jax.nn.softmax((keys @ params["attention"]["W"]) @ y)
        context = alpha @ keys
        hidden = jnp.tanh(context @ params["combine"]["W_context"] + y @ params["combine"]["W_state"]
                          + params["combine"]["b"])
        out.append(hidden @ params["out"]["W"] + params["out"]["b"])
    return jnp.stack(out)


def test_gradient_equals_jax_grad_of_an_independent_model():
    model = _model("general", True)
    params = _params(model, 11)
    X, mask = model.pack([[2, 4]], [[0, 1]], T)
    embedded = model.embed(params, X[0])
    expected = jax.jit(jax.grad(lambda e: _plain_seq2seq(params, e, 2, 2)[1, 3]))(embedded)
    got = lrpjax.gradient(model.apply)(params, X[0], (1, 3), mask=mask[0])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.apply(params, X[0], mask=mask[0])[:2],
                               jax.jit(_plain_seq2seq, static_argnums=(2, 3))(params, embedded, 2, 2), rtol=0, atol=1e-12)


def test_every_method_explains_a_pair_and_leaves_padding_at_zero():
    model = _model("dot", False)
    params = _params(model, 13)
    X, mask = model.pack([[1, 2], [3]], [[0, 4], [0, 1, 2]])
    # (Gradient x Input is the gradient's pullback, tested against jax.grad below.)
    methods = [lrpjax.integrated_gradients(model.apply, steps=4), lrpjax.occlusion(model.apply, "p")]
    for method in methods:
        R = np.asarray(method.batch(params, X, np.array([[1, 2], [2, 0]]), mask=mask))
        assert np.all(np.isfinite(R)) and np.all(R[0, 2:S] == 0) and np.all(R[0, S + 2:] == 0), method.name
        assert np.all(R[1, 1:S] == 0), method.name
        assert np.abs(R[1, :1]).max() > 0, method.name                # the source reaches the output


def test_attention_weights_and_greedy_decoding():
    model = _model("general", True)
    params = _params(model, 17)
    X, mask = model.pack([[1, 2, 3]], [[0, 2, 4]])
    weights = np.asarray(model.weights(params, X[0], mask[0]))
    assert weights.shape == (3, S) and np.allclose(weights.sum(1), 1.0) and np.all(weights[:, 3] == 0)
    tokens = np.asarray(model.greedy(params, [1, 2, 3], 0, 3))
    # greedy decoding feeds its own argmax: teacher forcing on its output predicts the same tokens
    forced = model.pack([[1, 2, 3]], [[0, *tokens[:-1]]])
    np.testing.assert_array_equal(np.asarray(model.apply(params, forced[0][0], mask=forced[1][0])).argmax(-1), tokens)
    attention = CrossAttention("general")
    keys = jnp.asarray(np.random.default_rng(0).normal(size=(S, 4)))
    queries = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4)))
    p = attention.init(jax.random.PRNGKey(0), 4, 4, jnp.float64)
    valid = jnp.arange(S) < 3
    alpha = attention.weights(p, queries, keys, valid)
    np.testing.assert_allclose(attention.apply(p, queries, keys, valid), alpha @ keys, rtol=0, atol=1e-12)


def test_config_round_trip_and_bad_inputs_are_refused_by_name():
    model = _model("additive", True, GRUCell())
    assert Seq2Seq.from_config(model.config()) == model
    params = _params(model, 19)
    X, mask = model.pack([[1, 2]], [[0, 1]])
    with pytest.raises(ValueError, match="source part"):
        model.apply(params, X[0], mask=np.array([False, True, False, False, True, True]))
    with pytest.raises(ValueError, match="no valid target"):
        model.apply(params, X[0], mask=np.array([True, False, False, False, False, False]))
    with pytest.raises(ValueError, match="S = 4 source steps"):
        model.apply(params, X[0, :S], mask=None)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.apply(params, np.array([1, 2, 0, 0, 0, 9]))
    with pytest.raises(ValueError, match="source_steps"):
        Seq2Seq(0)
    with pytest.raises(ValueError, match="score"):
        Seq2Seq(3, score="cosine")
    with pytest.raises(ValueError, match="dot scores"):
        Seq2Seq(S, StandardCell(), 2, 3, score="dot").sizes(Seq2Seq(S, StandardCell(), 2, 3, score="general").init(
            jax.random.PRNGKey(0), V, E) | {"attention": {}})
    with pytest.raises(ValueError, match="missing"):
        model.apply({k: v for k, v in params.items() if k != "combine"}, X[0], mask=mask[0])
    with pytest.raises(ValueError, match="sources\\[0\\]"):
        model.pack([[1, 2, 3, 4, 1]], [[0]])
    with pytest.raises(ValueError, match="classes"):
        lrpjax.gradient(model.apply).every_step(params, X[0], np.array([1, 2, 3]), mask=mask[0])
    with pytest.raises(ValueError, match="bos"):
        model.greedy(params, [1], V, 2)
    with pytest.raises(ValueError, match=r"overrides part\(s\) \['decoderr'\].*'decoder'"):
        lrpjax.lrp(model.apply, lrpjax.rules.composite(preset("lrp-all"), by_layer={"decoderr": preset("lrp-half")}))
    assert lrpjax.lrp(model.apply, lrpjax.rules.composite(preset("lrp-all"), by_layer={"decoder": preset("lrp-half")}))
