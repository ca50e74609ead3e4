"""Dataset explanation: buckets and chunks equal per-sequence calls, order, compile counts, many targets."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax import methods as explain
from lrpjax import datasets as scale
from lrpjax.methods.decomposition import cd
from lrpjax.models import bilstm, lstm
from lrpjax.rules import preset

E, H, C = 4, 3, 3
# Two distinct lengths keep the per-sequence references to two compilations; compilation dominates
# the run time, so most tests use one bucket (8,) holding both lengths, and the bucket layout is
# checked separately (test_several_buckets_equal_per_sequence_calls).
LENGTHS = (2, 5, 2, 5, 5, 2, 5)
BUCKETS = (4, 8)
_scores = jax.jit(bilstm.apply)


@pytest.fixture(scope="module")
def params():
    return bilstm.init(jax.random.PRNGKey(1), E, H, C, jnp.float64)


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(3)
    return [rng.normal(0.0, 0.5, (T, E)) for T in LENGTHS]


METHODS = {
    "lrp-all": explain.lrp(bilstm.apply, preset("lrp-all", 1e-3)),
    "lrp-prop": explain.lrp(bilstm.apply, preset("lrp-prop", 0.2)),
    "lrp-abs": explain.lrp(bilstm.apply, preset("lrp-abs", 1e-3, share=True)),
    "lrp-half": explain.lrp(bilstm.apply, "lrp-half"),
    "gradient": explain.gradient(bilstm.apply),
    "sensitivity": explain.sensitivity(bilstm.apply),
    "gradient_x_input": explain.gradient_x_input(bilstm.apply),
    "occlusion-f": explain.occlusion(bilstm.apply, "f"),
    "occlusion-p": explain.occlusion(bilstm.apply, "p"),
    "cd": cd(bilstm.apply),
}


def _predicted(params, x):
    return int(np.argmax(_scores(params, x)))


@partial(jax.jit, static_argnums=(0,))
def _per_sequence(methods, params, x, target):
    """Each method on one unpadded sequence, as ``method(params, x, target)`` computes it (one
    compilation per length for all methods, to keep the tests fast)."""
    return tuple(m.relevance(params, x, target, None, 0) for m in methods)


# Methods giving (T, E) and position-wise (T,) relevance, each group explained in one call.
GROUPS = {"per_dimension": ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half", "gradient", "sensitivity",
                            "gradient_x_input"),
          "per_position": ("occlusion-f", "occlusion-p", "cd")}


def _group_of(name):
    return next(group for group, names in GROUPS.items() if name in names)


@pytest.mark.parametrize("group", sorted(GROUPS))
@pytest.mark.parametrize("targets", ["pred", "given"])
def test_buckets_and_chunks_equal_per_sequence_calls(group, targets, params, sequences):
    methods = tuple(METHODS[name] for name in GROUPS[group])
    targets = "pred" if targets == "pred" else [(i + 1) % C for i in range(len(LENGTHS))]
    out = scale.explain_dataset(methods, params, sequences, targets, buckets=(8,), chunk_size=2)
    np.testing.assert_array_equal(out.lengths, LENGTHS)
    for i, x in enumerate(sequences):
        target = _predicted(params, x) if targets == "pred" else targets[i]
        assert out.targets[i] == target
        np.testing.assert_allclose(out.scores[i], _scores(params, x), rtol=1e-12, atol=1e-12)
        if i < 2:  # the public per-sequence call, checked against the shared reference
            np.testing.assert_array_equal(methods[-1](params, x, target), _per_sequence(methods, params, x, target)[-1])
        for k, (method, expected) in enumerate(zip(methods, _per_sequence(methods, params, x, target))):
            assert out.relevance[i][k].shape == expected.shape
            np.testing.assert_allclose(out.relevance[i][k], expected, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{method.name} sequence {i}")


def test_random_baseline_draws_by_dataset_index(params, sequences):
    method = explain.random_baseline(bilstm.apply, seed=5)
    out = scale.explain_dataset(method, params, sequences, 0, buckets=(8,), chunk_size=2)
    X, mask = explain.pad(sequences)
    expected = np.asarray(method.batch(params, X, jnp.zeros((len(sequences),), jnp.int32), mask=mask))
    for i, T in enumerate(LENGTHS):
        np.testing.assert_array_equal(out.relevance[i], expected[i, :T])


def test_order_is_the_input_order(params, sequences):
    method = METHODS["lrp-all"]
    out = scale.explain_dataset(method, params, sequences, 1, buckets=(8,), chunk_size=2)
    order = [4, 0, 6, 2, 5, 1, 3]
    permuted = scale.explain_dataset(method, params, [sequences[i] for i in order], 1, buckets=(8,), chunk_size=2)
    for position, i in enumerate(order):
        np.testing.assert_array_equal(permuted.relevance[position], out.relevance[i])
        assert permuted.lengths[position] == LENGTHS[i]


def test_several_buckets_equal_per_sequence_calls(params, sequences):
    method = METHODS["lrp-all"]
    out = scale.explain_dataset(method, params, sequences, 2, buckets=BUCKETS, chunk_size=1)
    assert out.edges == BUCKETS and out.compilations <= 2
    for i, x in enumerate(sequences):
        (expected,) = _per_sequence((method,), params, x, 2)
        np.testing.assert_allclose(out.relevance[i], expected, rtol=1e-10, atol=1e-12)


def test_compilations_are_bounded_by_the_buckets():
    rng = np.random.default_rng(0)
    params = lstm.init(jax.random.PRNGKey(2), E, H, C, jnp.float64)
    method = explain.lrp(lstm.apply, preset("lrp-half", 0.125))  # a rule set no other test compiles
    first = [rng.normal(size=(T, E)) for T in (1, 2, 3, 4, 5, 8, 7)]  # buckets of 2, 4 and 8
    total = scale.compilations()
    out = scale.explain_dataset(method, params, first, 0, buckets=(2, 4, 8), chunk_size=2)
    assert out.compilations == 3 and scale.compilations() == total + 3
    second = [rng.normal(size=(T, E)) for T in (6, 2, 1, 3, 3, 8, 5, 4, 2)]
    again = scale.explain_dataset(method, params, second, 0, buckets=(2, 4, 8), chunk_size=2)
    assert again.compilations == 0
    other_params = jax.tree_util.tree_map(lambda a: a * 0.5, params)  # new values, same shapes
    assert scale.explain_dataset(method, other_params, second, 0, buckets=(2, 4, 8), chunk_size=2).compilations == 0


def test_all_classes_equal_separate_calls(params, sequences):
    for group in (("lrp-abs", "gradient_x_input"), ("cd",)):
        out = scale.explain_dataset([METHODS[name] for name in group], params, sequences, "all",
                                    buckets=(8,), chunk_size=4)
        assert np.all(out.targets == -1)
        for i, x in enumerate(sequences):
            assert out.relevance[i].shape[:3] == (len(group), C, LENGTHS[i])
            for c in range(C):
                expected = _per_sequence(methods := tuple(METHODS[n] for n in GROUPS[_group_of(group[0])]),
                                         params, x, c)
                for k, name in enumerate(group):
                    np.testing.assert_allclose(out.relevance[i][k, c], expected[methods.index(METHODS[name])],
                                               rtol=1e-10, atol=1e-12)


def test_eps_sweep_equals_separate_calls(params, sequences):
    sweep = scale.eps_sweep(bilstm.apply, "lrp-prop", (0.2, 0.0))
    assert sweep[0] == METHODS["lrp-prop"]
    both = scale.explain_dataset(sweep, params, sequences, "all", buckets=(8,), chunk_size=4)
    for i, x in enumerate(sequences):
        assert both.relevance[i].shape == (2, C, LENGTHS[i], E)
        for c in range(C):
            for k, expected in enumerate(_per_sequence(sweep, params, x, c)):
                np.testing.assert_allclose(both.relevance[i][k, c], expected, rtol=1e-10, atol=1e-12)


def test_tokens_sum_over_the_embedding(params, sequences):
    method = METHODS["gradient"]
    words = scale.explain_dataset(method, params, sequences, 0, buckets=(8,), chunk_size=4, tokens=True)
    for x, r in zip(sequences, words.relevance):
        np.testing.assert_allclose(r, method.tokens(params, x, 0), rtol=1e-12, atol=1e-14)


def test_iter_chunks_cover_every_sequence_once(params, sequences):
    seen = []
    for chunk in scale.iter_chunks(METHODS["lrp-all"], params, sequences, 0, buckets=(8,), chunk_size=2):
        assert chunk.relevance.shape[0] == len(chunk.indices) <= 2
        seen.extend(chunk.indices.tolist())
    assert sorted(seen) == list(range(len(LENGTHS)))


def test_float32_keeps_its_dtype(params, sequences):
    params32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
    seqs32 = [s.astype(np.float32) for s in sequences]
    out = scale.explain_dataset(METHODS["lrp-all"], params32, seqs32, 0, buckets=(8,), chunk_size=4)
    assert out.relevance[0].dtype == np.float32
    np.testing.assert_allclose(out.relevance[2], METHODS["lrp-all"](params32, seqs32[2], 0), rtol=1e-5, atol=1e-6)


def test_bucket_edges_minimise_padded_work():
    lengths = [1, 2, 2, 3, 5, 5, 6, 9, 9, 9, 14]
    for n_buckets, chunk in ((1, 1), (2, 1), (3, 2), (4, 3)):
        edges = scale.bucket_edges(lengths, n_buckets, chunk)

        def work(e):
            padded = scale.assign_buckets(lengths, e)
            return sum(-(-np.sum(padded == L) // chunk) * chunk * L for L in e)

        best = min(work(e + (14,)) for k in range(n_buckets) for e in itertools.combinations(sorted(set(lengths))[:-1], k))
        assert len(edges) <= n_buckets and edges[-1] == 14 and work(edges) == best


def test_sequences_beyond_the_last_edge_go_to_its_multiples():
    np.testing.assert_array_equal(scale.assign_buckets([1, 4, 5, 9, 13], (4, 8)), [4, 4, 8, 16, 16])


def test_bad_arguments_raise(params, sequences):
    method = METHODS["gradient"]
    with pytest.raises(ValueError, match="`sequences` is empty"):
        scale.explain_dataset(method, params, [], 0)
    with pytest.raises(ValueError, match=r"`sequences\[1\]`.*T >= 1"):
        scale.explain_dataset(method, params, [sequences[0], np.zeros((0, E))], 0)
    with pytest.raises(ValueError, match=r"`sequences\[1\]`.*E = 4"):
        scale.explain_dataset(method, params, [sequences[0], np.zeros((2, E + 1))], 0)
    with pytest.raises(ValueError, match=r"`targets` must have shape \(N,\) = \(7,\)"):
        scale.explain_dataset(method, params, sequences, [0, 1])
    with pytest.raises(ValueError, match=r"`targets`.*\[0, 3\)"):
        scale.explain_dataset(method, params, sequences, 3)
    with pytest.raises(ValueError, match="'pred' or 'all'"):
        scale.explain_dataset(method, params, sequences, "best")
    with pytest.raises(TypeError, match="`targets`"):
        scale.explain_dataset(method, params, sequences, [0.5] * len(sequences))
    with pytest.raises(ValueError, match="`chunk_size`"):
        scale.explain_dataset(method, params, sequences, 0, chunk_size=0)
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        scale.explain_dataset(method, params, sequences, 0, chunk_size=3, devices=jax.devices() * 2)
    with pytest.raises(ValueError, match="`buckets`"):
        scale.explain_dataset(method, params, sequences, 0, buckets=(4, 2))
    with pytest.raises(TypeError, match="`method`"):
        scale.explain_dataset(bilstm.apply, params, sequences, 0)
    with pytest.raises(ValueError, match="different shapes"):
        scale.explain_dataset([method, METHODS["occlusion-f"]], params, sequences[:1], 0, buckets=(8,))
    with pytest.raises(ValueError, match="non-finite"):
        scale.explain_dataset(method, params, [np.full((2, E), np.nan)], 0)
    with pytest.raises(ValueError, match="`eps` is empty"):
        scale.eps_sweep(bilstm.apply, "lrp-all", ())
