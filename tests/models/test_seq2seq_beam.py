"""Beam search of Seq2Seq against an independent NumPy beam search (explicit loops over hypotheses and tokens,
the next-token scores from the float64 oracle of reference_seq2seq, no lrpjax code); width 1 is greedy; the
log-probabilities are those of the teacher-forced scores; bad arguments are named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.models.seq2seq import Seq2Seq

import reference_seq2seq as ref

S, V, E, STEPS = 3, 5, 3, 4
SOURCE, BOS, EOS = [1, 4, 2], 0, 3


@pytest.fixture(scope="module")
def setup():
    model = Seq2Seq(S, encoder_units=2, units=4, combine_units=3, score="general", input_feeding=True)
    params = model.init(jax.random.PRNGKey(5), V, E, jnp.float64)
    params = jax.tree_util.tree_map(lambda a: a * 2.0, params)          # peaked, varied next-token distributions
    params["out"]["b"] = jnp.asarray(np.random.default_rng(5).normal(0, 0.5, V))
    return model, params


def _next_log_probs(model, params, prefix):
    """log softmax of the oracle's scores of the token after ``[BOS] + prefix``."""
    P = {k: jax.tree_util.tree_map(np.asarray, v) for k, v in params.items()}
    oracle = {"fwd": P["encoder_forward"], "bwd": P["encoder_backward"], "dec": P["decoder"], "att": P["attention"],
              "Wc": P["combine"]["W_context"], "Wh": P["combine"]["W_state"], "bc": P["combine"]["b"],
              "Wo": P["out"]["W"], "bo": P["out"]["b"]}
    source = P["source_embedding"]["table"][SOURCE]
    target = P["target_embedding"]["table"][[BOS] + list(prefix)]
    scores = ref.seq2seq(oracle, source, target, len(SOURCE), len(target), model.score, model.input_feeding)[-1]
    top = max(scores)
    log_sum = top + np.log(sum(np.exp(u - top) for u in scores))
    return [u - log_sum for u in scores]


def numpy_beam(model, params, width, eos, alpha):
    """Beam search, one hypothesis at a time: (tokens, log-probability, finished, length) each."""
    hypotheses = [([], 0.0, False, 0)]
    for t in range(STEPS):
        candidates = []
        for b, (tokens, log_p, done, length) in enumerate(hypotheses):
            if done:
                candidates.append((b * V + eos, tokens + [eos], log_p, True, length))
                continue
            log_q = _next_log_probs(model, params, tokens)
            for v in range(V):
                candidates.append((b * V + v, tokens + [v], log_p + log_q[v], eos is not None and v == eos, t + 1))
        key = [c[2] / c[4] ** alpha for c in candidates]
        order = sorted(range(len(candidates)), key=lambda k: (-key[k], candidates[k][0]))
        hypotheses = [candidates[k][1:] for k in order[:width]]
    return np.array([h[0] for h in hypotheses]), np.array([h[1] for h in hypotheses])


@pytest.mark.parametrize("width, eos, alpha", [(3, None, 0.0), (2, EOS, 1.0)])
def test_beam_equals_an_independent_numpy_beam_search(setup, width, eos, alpha):
    model, params = setup
    tokens, log_p = model.beam(params, SOURCE, BOS, STEPS, width, eos=eos, length_penalty=alpha)
    want_tokens, want_log_p = numpy_beam(model, params, width, eos, alpha)
    np.testing.assert_array_equal(np.asarray(tokens), want_tokens)
    np.testing.assert_allclose(np.asarray(log_p), want_log_p, rtol=0, atol=1e-10)
    if eos is None:
        # the log-probability of each hypothesis is that of its teacher-forced scores (one batched forward)
        X, M = model.pack([SOURCE] * width, [[BOS] + list(row[:-1]) for row in np.asarray(tokens)])
        scores = jax.vmap(lambda x, m: model.apply(params, x, mask=m))(X, M)
        log_q = jax.nn.log_softmax(scores, axis=-1)
        picked = np.take_along_axis(np.asarray(log_q), np.asarray(tokens)[:, :, None], axis=2)[..., 0]
        np.testing.assert_allclose(picked.sum(axis=1), log_p, rtol=0, atol=1e-12)
        assert np.all(np.diff(np.asarray(log_p)) <= 0)                   # best first


def test_width_one_is_greedy(setup):
    model, params = setup
    tokens, log_p = model.beam(params, SOURCE[:2], BOS, STEPS, 1)
    np.testing.assert_array_equal(np.asarray(tokens)[0], np.asarray(model.greedy(params, SOURCE[:2], BOS, STEPS)))
    assert tokens.shape == (1, STEPS) and tokens.dtype == jnp.int32 and log_p.shape == (1,)


def test_beam_names_its_bad_arguments(setup):
    model, params = setup
    for kwargs, match in (({"width": 0}, "width"), ({"width": V + 1}, "width"), ({"width": 2.0}, "width"),
                          ({"width": 2, "eos": V}, "eos"), ({"width": 2, "length_penalty": float("nan")},
                                                            "length_penalty"),
                          ({"width": 2, "length_penalty": "1"}, "length_penalty"), ({"width": 2, "steps": 0}, "steps"),
                          ({"width": 2, "bos": -1}, "bos")):
        arguments = {"source": SOURCE, "bos": BOS, "steps": STEPS, **kwargs}
        with pytest.raises(ValueError, match=match):
            model.beam(params, **arguments)
    for source in ([1, 2, 3, 4], []):                     # longer than S = 3, empty
        with pytest.raises(ValueError, match="`source` must have 1 to S = 3 ids"):
            model.beam(params, source, BOS, STEPS, 2)
        with pytest.raises(ValueError, match="`source` must have 1 to S = 3 ids"):
            model.greedy(params, source, BOS, STEPS)
    inner, inner_params = model.vector_model(params)
    with pytest.raises(TypeError, match="beam"):
        inner.beam(inner_params, SOURCE, BOS, STEPS, 2)
