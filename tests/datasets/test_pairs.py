"""Datasets of pairs (an encoder-decoder, Seq2Seq): explain_dataset, iter_chunks, iter_stream and the shard
writer give, for every (source, target) pair, exactly what one ``method.every_step`` call on that pair gives
(float64, padded chunks of two bucket lengths with dummy rows, sources and targets of different lengths);
the shards describe pairs; a resume is byte-identical; several processes merge; bad items are named.

Compilations dominate the time: one tiny model, two bucket lengths, two target lengths, chunks of 2, and
the stream tests reuse the compiled programs of the dataset test (same methods, same options)."""

import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax import datasets
from lrpjax.datasets import stream
from lrpjax.datasets.layouts import Pairs
from lrpjax.datasets.stream import StreamError
from lrpjax.models import bilstm
from lrpjax.models.seq2seq import Seq2Seq
from lrpjax.rules import preset

S, V, E = 3, 5, 2
BUCKETS, CHUNK = (2, 4), 2
# (source length, target length): targets of 1 step (bucket 2: padded, 3 pairs, so a chunk with a dummy
# row) and of 3 steps (bucket 4: padded); sources of 1 to S steps.
SHAPES = [(2, 1), (3, 3), (1, 1), (1, 3), (3, 1)]
MODEL = Seq2Seq(S, encoder_units=2, units=3, bidirectional=False, score="general")
INNER, _ = MODEL.vector_model(MODEL.init(jax.random.PRNGKey(0), V, E))
LRP = [lrpjax.lrp(INNER.apply, preset("lrp-half", 1e-3, share=True, attention="attnlrp")),
       lrpjax.lrp(INNER.apply, preset("lrp-all", 1e-2))]
WIDTH = S + 3   # the reference calls: every pair packed to one width (its target padded to 3 steps)
OTHERS = [lrpjax.gradient(INNER.apply), lrpjax.occlusion(INNER.apply, "f")]


@pytest.fixture(scope="module")
def params():
    full = MODEL.init(jax.random.PRNGKey(4), V, E, jnp.float64)
    full = jax.tree_util.tree_map(lambda a: a * 1.5, full)            # livelier states
    rng = np.random.default_rng(4)
    for layer in full.values():
        if "b" in layer:
            layer["b"] = jnp.asarray(rng.normal(0, 0.2, layer["b"].shape))
    return MODEL.vector_model(full)[1]


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(5)
    return [(rng.normal(0, 0.8, (s, E)), rng.normal(0, 0.8, (t, E))) for s, t in SHAPES]


def packed(pair):
    """The pair as one every_step call takes it, packed as Seq2Seq.pack packs ids: its source padded to S,
    its target padded to 3 steps (so that every reference call has one shape: one compilation per method;
    that padding changes nothing is tests/models/test_seq2seq.py's)."""
    source, target = pair
    x = np.zeros((WIDTH, E))
    mask = np.zeros(WIDTH, bool)
    x[:len(source)], x[S:S + len(target)] = source, target
    mask[:len(source)], mask[S:S + len(target)] = True, True
    return x, mask


def crop(matrix, pair):
    """(3, S + 3, ...) of a packed pair -> (T, S_i + T, ...): its valid output steps, and its own input
    positions, source first."""
    T = len(pair[1])
    return matrix[:T, np.r_[0:len(pair[0]), S:S + T]]


def assert_same(a, b):
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_array_equal(a.source_lengths, b.source_lengths)
    for field in ("relevance", "scores", "targets"):
        for x, y in zip(getattr(a, field), getattr(b, field)):
            assert x.shape == y.shape and x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


def directory_bytes(path) -> dict:
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in sorted(os.listdir(path))}


@pytest.fixture(scope="module")
def others(params, pairs):
    """Gradient and occlusion over the pairs, one class for every step (the stream tests' reference)."""
    return datasets.explain_dataset(OTHERS, params, pairs, 2, buckets=BUCKETS, chunk_size=CHUNK, tokens=True)


# ============================================================ equal to every_step, pair by pair

def test_lrp_with_an_attention_rule_equals_every_step_on_each_pair(params, pairs):
    # One bucket (one compilation of the costliest program): its 5 pairs, targets of 1 and 3 steps padded to
    # 4, in chunks of 2, the last with a dummy row; two buckets: the tests below.
    result = datasets.explain_dataset(LRP, params, pairs, "pred", buckets=(4,), chunk_size=CHUNK, residual=True)
    assert result.edges == (4,) and result.compilations == 1
    np.testing.assert_array_equal(result.lengths, [t for _, t in SHAPES])
    np.testing.assert_array_equal(result.source_lengths, [s for s, _ in SHAPES])
    assert repr(result).startswith("DatasetExplanation(5 pairs, sources 1..3, targets 1..3")
    for i, pair in enumerate(pairs):
        x, mask = packed(pair)
        T, S_i = len(pair[1]), len(pair[0])
        scores = np.asarray(INNER.apply(params, x, mask=mask))[:T]
        np.testing.assert_allclose(result.scores[i], scores, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(result.targets[i], scores.argmax(-1))          # "pred": each step's
        assert result.relevance[i].shape == (2, T, S_i + T, E)
        for k, method in enumerate(LRP):
            expected = crop(np.asarray(method.every_step(params, x, mask=mask)), pair)
            np.testing.assert_allclose(result.relevance[i][k], expected, rtol=0, atol=1e-12)
        assert result.residuals[i].shape == (2, T)
        assert np.all(np.abs(result.residuals[i][0]) < 1e-10)     # shared stabilisers: relevance is conserved
        for t in range(T):   # the decoder is causal: target positions after t get nothing
            assert np.all(result.relevance[i][:, t, S_i + t + 1:] == 0)
        expected = np.asarray(LRP[0].every_step(params, x, mask=mask))
        assert np.all(expected[T:] == 0) and np.all(expected[:, len(pair[0]):S] == 0)   # padding: exactly 0


def test_gradient_and_occlusion_equal_every_step_on_each_pair(params, pairs, others):
    assert others.compilations in (0, 2)
    for i, pair in enumerate(pairs):
        x, mask = packed(pair)
        T = len(pair[1])
        assert others.relevance[i].shape == (2, T, len(pair[0]) + T)
        np.testing.assert_array_equal(others.targets[i], np.full(T, 2))
        for k, method in enumerate(OTHERS):
            expected = np.asarray(method.every_step(params, x, 2, mask=mask))
            expected = crop(expected.sum(-1) if expected.ndim == 3 else expected, pair)
            np.testing.assert_allclose(others.relevance[i][k], expected, rtol=0, atol=1e-12)


def test_every_class_of_every_step_equals_every_step_per_class_in_memory_and_in_shards(tmp_path, params, pairs):
    """``targets="all"`` (T_i, C, S_i + T_i, E) per pair, the feature axis kept: row (t, c) is step t of
    ``every_step`` for class c; the shards' template has the class axis between the steps and the positions."""
    gradient = OTHERS[0]
    options = {"buckets": (4,), "chunk_size": CHUNK}
    result = datasets.explain_dataset(gradient, params, pairs, "all", **options)
    for i, pair in enumerate(pairs):
        x, mask = packed(pair)
        T, S_i = len(pair[1]), len(pair[0])
        assert result.relevance[i].shape == (T, V, S_i + T, E)
        np.testing.assert_array_equal(result.targets[i], np.full(T, -1))
        for c in range(V):
            expected = crop(np.asarray(gradient.every_step(params, x, c, mask=mask)), pair)
            np.testing.assert_allclose(result.relevance[i][:, c], expected, rtol=0, atol=1e-12)
    stream.explain_stream(gradient, params, pairs, tmp_path / "all", "all", shard_bytes=1, **options)
    results = stream.open_results(tmp_path / "all")
    assert results.fields["relevance"]["shape"] == ["T", V, "S+T", E] and len(results.shards) == 3
    assert_same(results.load(), result)


def check_chunks(chunks, pairs, expected) -> list:
    """Each chunk's padded rows (K, L, S + L) cropped to their pairs equal ``expected``; the indices seen."""
    layout, seen = Pairs(S), []
    for chunk in chunks:
        L = chunk.scores.shape[1]
        assert chunk.relevance.shape == (len(chunk.indices), 2, L, S + L)
        for row, i in enumerate(chunk.indices):
            T, S_i = len(pairs[i][1]), len(pairs[i][0])
            np.testing.assert_array_equal(chunk.relevance[row][:, :T][..., layout.positions(T, S_i)],
                                          expected.relevance[i])
            np.testing.assert_array_equal(chunk.scores[row, :T], expected.scores[i])
            seen.append(int(i))
    return seen


def test_iter_chunks_gives_padded_rows_that_crop_to_the_pairs(params, pairs, others):
    chunks = datasets.iter_chunks(OTHERS, params, pairs, 2, buckets=BUCKETS, chunk_size=CHUNK, tokens=True)
    assert sorted(check_chunks(chunks, pairs, others)) == list(range(len(pairs)))


# ============================================================ streams and shards

def test_streams_and_shards_of_pairs_equal_explain_dataset(tmp_path, params, pairs, others):
    chunks = list(stream.iter_stream(OTHERS, params, iter(pairs), 2, buckets=BUCKETS, chunk_size=CHUNK, tokens=True))
    assert sorted(check_chunks(chunks, pairs, others)) == list(range(len(pairs)))
    batcher = stream.Batcher(OTHERS, params, 2, buckets=BUCKETS, chunk_size=CHUNK, tokens=True)
    pushed = [c for i, pair in enumerate(pairs) for c in batcher.add(i, pair)] + batcher.flush()
    assert [c.indices.tolist() for c in pushed] == [c.indices.tolist() for c in chunks]

    for fmt in ("npz", "parquet"):
        if fmt == "parquet":
            pytest.importorskip("pyarrow")
        summary = stream.explain_stream(OTHERS, params, ((i, p) for i, p in enumerate(pairs)), tmp_path / fmt, 2,
                                        buckets=BUCKETS, chunk_size=CHUNK, tokens=True, shard_bytes=300, format=fmt)
        assert summary.sequences == len(pairs) and summary.shards > 1 and summary.compilations == 0
        results = stream.open_results(tmp_path / fmt)
        assert results.config["layout"] == {"kind": "pair", "source_steps": S}
        assert results.fields["relevance"]["shape"] == [2, "T", "S+T"]
        row = results.get(3)
        assert (row.length, row.source_length) == (3, 1) and row.relevance.shape == (2, 3, 4)
        assert_same(results.load(), others)


class Killed(Exception):
    pass


def test_an_interrupted_run_of_pairs_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, params, pairs,
                                                                                   monkeypatch, others):
    options = {"buckets": BUCKETS, "chunk_size": CHUNK, "tokens": True, "shard_bytes": 1}   # a shard per chunk
    stream.explain_stream(OTHERS, params, pairs, tmp_path / "whole", 2, **options)
    real_append = stream._Log.append

    def append(self, record):   # dies once the 2nd shard is on disk, before its log line
        if "file" in record and record["serial"] == 1:
            raise Killed
        real_append(self, record)

    monkeypatch.setattr(stream._Log, "append", append)
    with pytest.raises(Killed):
        stream.explain_stream(OTHERS, params, pairs, tmp_path / "out", 2, **options)
    monkeypatch.undo()
    summary = stream.explain_stream(OTHERS, params, pairs, tmp_path / "out", 2, resume=True, **options)
    assert summary.kept == 2 and summary.explained == len(pairs) - 2   # the first shard: pairs 0 and 2
    assert directory_bytes(tmp_path / "out") == directory_bytes(tmp_path / "whole")

    changed = [(s, t + (i == 4)) for i, (s, t) in enumerate(pairs)]           # another target, same lengths
    with pytest.raises(StreamError, match="the input differs from the run that wrote part-00000-"):
        stream.explain_stream(OTHERS, params, changed, tmp_path / "out", 2, resume=True, **options)
    longer = Seq2Seq(S + 1, encoder_units=2, units=3, bidirectional=False, score="general", reads_ids=False)
    methods = [lrpjax.gradient(longer.apply), lrpjax.occlusion(longer.apply, "f")]
    with pytest.raises(StreamError, match=r"config.layout.source_steps: 3 before, 4 now"):
        stream.explain_stream(methods, params, pairs, tmp_path / "out", 2, resume=True, **options)
    sequences = [np.concatenate(pair) for pair in pairs]                      # the same numbers, as sequences
    net = bilstm.init(jax.random.PRNGKey(0), E, 2, V, jnp.float64)
    with pytest.raises(StreamError, match=r"config.layout: \{\"kind\": \"pair\", \"source_steps\": 3\} before, null now"):
        stream.explain_stream([lrpjax.gradient(bilstm.apply), lrpjax.occlusion(bilstm.apply, "f")], net, sequences,
                              tmp_path / "out", 2, resume=True, **options)


def test_processes_explain_their_chunks_of_pairs_and_merge_to_the_single_process_output(tmp_path, params, pairs,
                                                                                        others):
    for k in range(2):
        stream.explain_stream(OTHERS, params, pairs, tmp_path / "two", 2, buckets=BUCKETS, chunk_size=CHUNK,
                              tokens=True, process_index=k, process_count=2)
    results = stream.open_results(tmp_path / "two")
    assert results.complete and len({s["process"] for s in results.shards}) == 2
    assert_same(results.load(), others)


# ============================================================ errors

@pytest.mark.parametrize("items, message", [
    ([(np.ones((S + 1, E)), np.ones((2, E)))], r"`sequences\[0\]`: its source has 4 steps; the model's "
                                               r"source_steps S = 3"),
    ([(np.ones((2, E)), np.ones((1, E))), (np.ones((2, E)), np.ones((0, E)))],
     r"`sequences\[1\]`: its target must have shape \(n, E\) with n >= 1; got \(0, 2\)"),
    ([np.ones((4, E))], r"`sequences\[0\]` must be a pair \(source \(S_i, E\), target \(T_i, E\)\) for this "
                        r"encoder-decoder \(S_i <= S = 3\); got an array of shape \(4, 2\)"),
    ([(np.ones((2, E)), np.ones((2, E + 1)))], r"its source and target must have one E; got 2 and 3"),
    ([(np.ones((2, E)), np.ones((1, E))), (np.ones((2, 3)), np.ones((1, 3)))],
     r"`sequences\[1\]` must have shape \(n, E\) parts with E = 2 \(as sequences\[0\]\); got \(2, 3\)"),
])
def test_bad_pairs_are_refused_naming_the_item(params, items, message):
    with pytest.raises(ValueError, match=message):
        datasets.explain_dataset(OTHERS, params, items, 0, buckets=BUCKETS, chunk_size=CHUNK)


def test_pairs_and_sequences_given_to_the_wrong_model_and_ids_models_are_refused(params, pairs):
    net = bilstm.init(jax.random.PRNGKey(0), E, 2, V, jnp.float64)
    with pytest.raises(ValueError, match=r"`sequences\[0\]` is a pair of arrays \(source, target\); this model takes "
                                         r"single sequences"):
        datasets.explain_dataset(lrpjax.gradient(bilstm.apply), net, pairs, 0)
    with pytest.raises(ValueError, match=r"`items\[0\]` is a pair of arrays"):
        list(stream.iter_stream(lrpjax.gradient(bilstm.apply), net, pairs, 0))
    with pytest.raises(ValueError, match=r"`items\[1\]` must be a pair \(source"):
        list(stream.iter_stream(OTHERS[0], params, [pairs[0], pairs[1][1]], 0))
    with pytest.raises(ValueError, match=r"`items\[0\]`: its source has 4 steps"):
        list(stream.iter_stream(OTHERS[0], params, [(7, (np.ones((4, E)), np.ones((1, E))))], 0))
    with pytest.raises(TypeError, match=r"`items\[0\]` must be floating point"):
        list(stream.iter_stream(OTHERS[0], params, [(np.ones((2, E), np.int32), np.ones((1, E)))], 0))
    with pytest.raises(TypeError, match=r"datasets of pairs take embedded vectors: explain `inner.apply`"):
        datasets.explain_dataset(lrpjax.gradient(MODEL.apply), params, pairs, 0)
