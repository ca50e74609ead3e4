"""Streaming explanation: equal to explain_dataset bit for bit, input order, windows, resumable output
(interrupted at every kind of point, SIGKILL included), the reader, Parquet shards, and every error."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax import methods as explain
from lrpjax import datasets as scale
from lrpjax.datasets import shards
from lrpjax.datasets import stream
from lrpjax.methods.decomposition import cd
from lrpjax.models import Dense, Recurrent, Sequential, bilstm
from lrpjax.rules import preset
from lrpjax.datasets.stream import StreamError

ROOT = Path(__file__).resolve().parents[2]
E, H, C = 4, 3, 3
BUCKETS = (4, 8)
LENGTHS = (2, 5, 2, 7, 5, 1, 8, 3, 6, 2, 4, 5, 8, 1, 3)


@pytest.fixture(scope="module")
def params():
    return bilstm.init(jax.random.PRNGKey(1), E, H, C, jnp.float64)


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(3)
    return [rng.normal(0.0, 0.5, (T, E)) for T in LENGTHS]


LRP = explain.lrp(bilstm.apply, preset("lrp-all", 1e-3))
PER_DIMENSION = [explain.lrp(bilstm.apply, preset("lrp-prop", 0.2)), explain.gradient(bilstm.apply),
                 explain.sensitivity(bilstm.apply), explain.gradient_x_input(bilstm.apply)]
PER_POSITION = [explain.occlusion(bilstm.apply, "f"), explain.occlusion(bilstm.apply, "p"), cd(bilstm.apply),
                explain.random_baseline(bilstm.apply, 5)]


def assert_same(a, b):
    """Two DatasetExplanations hold the same arrays, bit for bit."""
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert len(a.relevance) == len(b.relevance)
    for x, y in zip(a.relevance, b.relevance):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.scores, b.scores):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.targets, b.targets):
        np.testing.assert_array_equal(x, y)


def directory_bytes(path) -> dict:
    return {name: hashlib.sha256((Path(path) / name).read_bytes()).hexdigest() for name in sorted(os.listdir(path))}


def run_stream(tmp_path, method, params, sequences, targets="pred", name="out", **options):
    options = {"buckets": BUCKETS, "chunk_size": 2, **options}
    summary = stream.explain_stream(method, params, iter(sequences), tmp_path / name, targets, **options)
    return summary, stream.open_results(tmp_path / name)


# ============================================================ 1. equal to explain_dataset, bit for bit

@pytest.mark.parametrize("methods, targets, tokens", [
    (PER_DIMENSION, "pred", False),
    (PER_DIMENSION, "all", True),
    (PER_POSITION, 1, False),
    (PER_POSITION, "all", False),
    (LRP, np.arange(len(LENGTHS)) % C, False),
])
def test_every_method_and_target_mode_equals_explain_dataset(tmp_path, params, sequences, methods, targets, tokens):
    expected = scale.explain_dataset(methods, params, sequences, targets, buckets=BUCKETS, chunk_size=2, tokens=tokens)
    summary, results = run_stream(tmp_path, methods, params, sequences, targets, tokens=tokens, shard_bytes=2000)
    assert results.complete and len(results) == len(LENGTHS) and summary.shards > 1
    assert_same(results.load(), expected)


def test_an_eps_sweep_and_default_buckets_equal_explain_dataset(tmp_path, params, sequences):
    sweep = scale.eps_sweep(bilstm.apply, "lrp-abs", (0.0, 0.01))
    expected = scale.explain_dataset(sweep, params, sequences, "pred", chunk_size=4)
    _, results = run_stream(tmp_path, sweep, params, sequences, buckets=None, chunk_size=4)
    assert results.get(0).relevance.shape == (2, LENGTHS[0], E)
    assert_same(results.load(), expected)


def test_a_per_step_model_equals_explain_dataset(tmp_path, sequences):
    net = Sequential((Recurrent(units=3, bidirectional=True, sequences=True), Dense(2)))
    net_params = net.init(jax.random.PRNGKey(2), E, jnp.float64)
    method = explain.lrp(net.apply, preset("lrp-all", 1e-3))
    for targets, tokens in (("pred", False), ("all", True), (1, True)):
        expected = scale.explain_dataset(method, net_params, sequences, targets, buckets=BUCKETS, chunk_size=2,
                                         tokens=tokens)
        _, results = run_stream(tmp_path, method, net_params, sequences, targets, name=f"o{targets}", tokens=tokens)
        assert results.fields["relevance"]["shape"] == (["T", 2, "T"] if targets == "all" else
                                                        ["T", "T"] if tokens else ["T", "T", E])
        assert_same(results.load(), expected)


def test_sst_test_sentences_equal_explain_dataset(tmp_path):
    from lrpjax.data.sst import load_sst
    from lrpjax.app.model import SSTModel

    model = SSTModel.load()
    # every 4th test sentence: 553 sentences of 2 to 46 words, in the whole set's buckets (8, 16, 32, 64)
    sentences = [np.asarray(model.embed(example.tokens)) for example in load_sst("test")[::4]]
    method = explain.lrp(bilstm.apply, preset("lrp-all", 1e-3))
    expected = scale.explain_dataset(method, model.params["model"], sentences, "pred", tokens=True)
    assert tuple(expected.edges) == (8, 16, 32, 64) and expected.compilations == 4
    summary = stream.explain_stream(method, model.params["model"], iter(sentences), tmp_path / "sst", tokens=True)
    assert summary.sequences == 553 and summary.compilations == 0   # the same programs as explain_dataset
    assert_same(stream.open_results(tmp_path / "sst").load(), expected)


# ============================================================ 2. input order, indices, windows

def test_iter_stream_gives_every_sequence_once_with_its_index(params, sequences):
    pairs = [(10 + 3 * i, x) for i, x in enumerate(sequences)]
    expected = scale.explain_dataset(LRP, params, sequences, 0, buckets=BUCKETS, chunk_size=2)
    seen = {}
    for chunk in stream.iter_stream(LRP, params, iter(pairs), 0, buckets=BUCKETS, chunk_size=2):
        for row, index in enumerate(chunk.indices):
            seen[int(index)] = chunk.relevance[row][:LENGTHS[(index - 10) // 3]]
    assert sorted(seen) == [10 + 3 * i for i in range(len(LENGTHS))]
    for i in range(len(LENGTHS)):
        np.testing.assert_array_equal(seen[10 + 3 * i], expected.relevance[i])


def test_a_window_bounds_how_far_results_lag_behind_the_input(params, sequences):
    consumed = []

    def items():
        for i, x in enumerate(sequences):
            consumed.append(i)
            yield x

    for chunk in stream.iter_stream(LRP, params, items(), 0, buckets=BUCKETS, chunk_size=4, window=3):
        assert max(consumed) - int(chunk.indices.min()) < 3 + 1   # out before 3 more were read
    expected = scale.explain_dataset(LRP, params, sequences, 0, buckets=BUCKETS, chunk_size=4)
    windowed = {int(i): r for c in stream.iter_stream(LRP, params, iter(sequences), 0, buckets=BUCKETS, chunk_size=4,
                                                      window=3) for i, r in zip(c.indices, c.relevance)}
    for i, T in enumerate(LENGTHS):   # other chunks, the same numbers (a row does not depend on its chunk)
        np.testing.assert_array_equal(windowed[i][:T], expected.relevance[i])


def test_flush_runs_the_partly_filled_chunks_before_the_next_item_is_read(params, sequences):
    read = []

    def items():
        for i, x in enumerate(sequences[:3]):
            read.append(i)
            yield x
        yield stream.FLUSH
        read.append("after")
        yield sequences[3]

    out = []
    for chunk in stream.iter_stream(LRP, params, items(), 0, buckets=BUCKETS, chunk_size=4):
        out.append((sorted(chunk.indices.tolist()), list(read)))
    assert out[0] == ([0, 2], [0, 1, 2]) and out[1] == ([1], [0, 1, 2])   # both buckets, before "after"
    assert out[2] == ([3], [0, 1, 2, "after"])


def test_the_reader_gives_rows_by_index_and_in_input_order(tmp_path, params, sequences):
    pairs = [(7 * i + 1, x) for i, x in enumerate(sequences)]
    stream.explain_stream(LRP, params, iter(pairs), tmp_path / "o", "pred", buckets=BUCKETS, chunk_size=2,
                          shard_bytes=1000)
    results = stream.open_results(tmp_path / "o", cache=1)
    np.testing.assert_array_equal(results.indices, [7 * i + 1 for i in range(len(LENGTHS))])
    assert [row.index for row in results] == [7 * i + 1 for i in range(len(LENGTHS))]
    row = results.get(8)
    assert row.length == LENGTHS[1] and row.relevance.shape == (LENGTHS[1], E)
    np.testing.assert_allclose(row.relevance, LRP(params, sequences[1], int(row.target)), rtol=1e-10, atol=1e-14)
    assert 8 in results and 9 not in results
    with pytest.raises(KeyError, match="sequence 9 is not in the results"):
        results.get(9)
    manifest = json.loads((tmp_path / "o" / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["sequences"] == len(LENGTHS)
    assert sum(s["rows"] for s in manifest["shards"]) == len(LENGTHS) == len(results)
    assert manifest["fields"]["relevance"] == {"shape": ["T", E], "dtype": "float64"}


def test_the_random_baseline_draws_by_the_global_index(tmp_path, params, sequences):
    method = explain.random_baseline(bilstm.apply, seed=2)
    pairs = [(100 + i, x) for i, x in enumerate(sequences)]
    _, results = run_stream(tmp_path, method, params, pairs, 0, chunk_size=4)
    for i, T in enumerate(LENGTHS):
        key = jax.random.fold_in(jax.random.PRNGKey(2), 100 + i)
        np.testing.assert_array_equal(results.get(100 + i).relevance, jax.random.normal(key, (T,), jnp.float64))


# ============================================================ 3. resume

def test_resume_of_a_complete_run_changes_nothing(tmp_path, params, sequences):
    run_stream(tmp_path, LRP, params, sequences, shard_bytes=1500)
    before = directory_bytes(tmp_path / "out")
    summary, _ = run_stream(tmp_path, LRP, params, sequences, shard_bytes=1500, resume=True)
    assert summary.explained == 0 and summary.kept == len(LENGTHS) and summary.compilations == 0
    assert directory_bytes(tmp_path / "out") == before


class Killed(Exception):
    pass


@pytest.mark.parametrize("where", ["before the log line", "inside a shard write", "cut log line"])
def test_an_interrupted_run_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, params, sequences, monkeypatch,
                                                                         where):
    run_stream(tmp_path, LRP, params, sequences, name="whole", shard_bytes=600)
    real_append, real_write = stream._Log.append, shards._write_npz
    calls = []

    def append(self, record):   # dies after the 3rd shard is on disk, before its log line
        if "file" in record and len(calls) == 2:
            raise Killed
        calls.append(record)
        real_append(self, record)

    def write(handle, columns):   # dies half-way through writing the 3rd shard
        calls.append(1)
        if len(calls) == 3:
            handle.write(b"PK\x03\x04 half a shard")
            raise Killed
        real_write(handle, columns)

    if where == "before the log line":
        monkeypatch.setattr(stream._Log, "append", append)
    elif where == "inside a shard write":
        monkeypatch.setattr(shards, "_write_npz", write)
    if where != "cut log line":
        with pytest.raises(Killed):
            run_stream(tmp_path, LRP, params, sequences, shard_bytes=600)
        monkeypatch.undo()
    else:
        run_stream(tmp_path, LRP, params, sequences, shard_bytes=600)
        log = tmp_path / "out" / "_log-00000-of-00001.jsonl"
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:3]) + lines[3][:20])   # a line torn by the interruption
        (tmp_path / "out" / "_manifest.json").unlink()
        (tmp_path / "out" / ".part-00000-000002.npz.x.tmp").write_bytes(b"left by a killed write")
    summary, results = run_stream(tmp_path, LRP, params, sequences, shard_bytes=600, resume=True)
    assert summary.kept > 0 and summary.explained > 0
    assert results.complete and directory_bytes(tmp_path / "out") == directory_bytes(tmp_path / "whole")


KILLED_CHILD = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from lrpjax import methods as explain
    from lrpjax.datasets import stream
    from lrpjax.models import bilstm
    from lrpjax.rules import preset

    params = bilstm.init(jax.random.PRNGKey(1), 4, 3, 3, jnp.float64)

    def items():
        for line in sys.stdin:
            index, T = map(int, line.split())
            yield index, np.random.default_rng(index).normal(0.0, 0.5, (T, 4))

    method = explain.lrp(bilstm.apply, preset("lrp-all", 1e-3))
    stream.explain_stream(method, params, items(), sys.argv[1], "pred", buckets=(4, 8), chunk_size=2,
                          shard_bytes=600, resume=True)
""")
KILL_INPUT = [(i, 1 + (i * 7919) % 8) for i in range(400)]


def _killed_run(out: Path, feed: int, shards_before_kill: int):
    """Runs the child on the first `feed` input lines; SIGKILLs it once its log names that many shards
    (stdin stays open, so it is still working or waiting)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    process = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(out)], stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    log = out / "_log-00000-of-00001.jsonl"
    try:
        process.stdin.write("".join(f"{i} {T}\n" for i, T in KILL_INPUT[:feed]))
        process.stdin.flush()
        deadline = time.monotonic() + 240
        while not (log.exists() and log.read_text().count('"file"') >= shards_before_kill):
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL
    finally:
        process.kill()
        process.stderr.close()


def test_sigkilled_twice_then_resumed_equals_an_uninterrupted_run(tmp_path, params):
    out = tmp_path / "killed"
    _killed_run(out, 150, 3)
    first = out.joinpath("_log-00000-of-00001.jsonl").read_text().count('"file"')
    _killed_run(out, 300, first + 5)
    # the last resume, to the end, in this process (a process start fewer; the benchmark's quick run in
    # test_the_quick_benchmark_... resumes a SIGKILLed run in a fresh process)
    items = lambda: ((i, np.random.default_rng(i).normal(0.0, 0.5, (T, 4))) for i, T in KILL_INPUT)  # noqa: E731
    resumed = stream.explain_stream(LRP, params, items(), out, "pred", buckets=(4, 8), chunk_size=2, shard_bytes=600,
                                    resume=True)
    assert resumed.kept > 0 and resumed.explained > 0
    stream.explain_stream(LRP, params, items(), tmp_path / "whole", "pred", buckets=(4, 8), chunk_size=2,
                          shard_bytes=600)
    assert directory_bytes(out) == directory_bytes(tmp_path / "whole")


def test_resume_refuses_other_options_another_input_and_another_process_count(tmp_path, params, sequences):
    run_stream(tmp_path, LRP, params, sequences, shard_bytes=1500)
    with pytest.raises(StreamError, match=r"other options or another model \(config.chunk_size: 2 before, 4 now\)"):
        run_stream(tmp_path, LRP, params, sequences, chunk_size=4, shard_bytes=1500, resume=True)
    with pytest.raises(StreamError, match=r"config.methods"):
        run_stream(tmp_path, PER_DIMENSION[1], params, sequences, shard_bytes=1500, resume=True)
    with pytest.raises(StreamError, match=r"config.params"):
        run_stream(tmp_path, LRP, jax.tree_util.tree_map(lambda a: a * 2, params), sequences, shard_bytes=1500,
                   resume=True)
    changed = [x + (i == 4) for i, x in enumerate(sequences)]
    with pytest.raises(StreamError, match="the input differs from the run that wrote part-00000-0000"):
        run_stream(tmp_path, LRP, params, changed, shard_bytes=1500, resume=True)
    with pytest.raises(StreamError, match="written from a longer input"):
        run_stream(tmp_path, LRP, params, sequences[:4], shard_bytes=1500, resume=True)
    with pytest.raises(StreamError, match="its run is complete after 15 sequences, and this input holds more"):
        run_stream(tmp_path, LRP, params, sequences + [sequences[0]], shard_bytes=1500, resume=True)
    with pytest.raises(StreamError, match="its run is complete after 15 sequences, and this input holds more"):
        run_stream(tmp_path, LRP, params, sequences + [stream.FLUSH, sequences[0]], shard_bytes=1500, resume=True)
    with pytest.raises(StreamError, match="already holds the output of a run .*pass resume=True"):
        run_stream(tmp_path, LRP, params, sequences, shard_bytes=1500)
    with pytest.raises(StreamError, match="a run with 1 process.*this run has 2"):
        run_stream(tmp_path, LRP, params, sequences, shard_bytes=1500, resume=True, process_index=0, process_count=2)


def test_independent_processes_without_a_coordinator_merge_to_the_single_process_output(tmp_path, params, sequences):
    _, single = run_stream(tmp_path, PER_POSITION, params, sequences, name="one")
    for k in range(3):
        summary, results = run_stream(tmp_path, PER_POSITION, params, sequences, name="three", process_index=k,
                                      process_count=3)
        assert (summary.manifest is None) == (k < 2) and results.complete == (k == 2)
    assert_same(stream.open_results(tmp_path / "three").load(), single.load())
    for k in range(2):   # each process its own part, given with global indices
        run_stream(tmp_path, PER_POSITION, params, [(i, x) for i, x in enumerate(sequences) if i % 2 == k],
                   name="given", partition="given", process_index=k, process_count=2)
    assert_same(stream.open_results(tmp_path / "given").load(), single.load())
    for k in range(2):   # every process must read the whole input
        stream.explain_stream(PER_POSITION, params, sequences[:len(sequences) - k], tmp_path / "short", "pred",
                              buckets=BUCKETS, chunk_size=2, process_index=k, process_count=2)
    with pytest.raises(StreamError, match=r"its processes read inputs of different lengths \(14, 15 sequences\)"):
        stream.open_results(tmp_path / "short")


# ============================================================ 4. Parquet

def test_parquet_shards_form_a_dataset_pyarrow_reads(tmp_path, params, sequences):
    pq = pytest.importorskip("pyarrow.parquet")
    expected = scale.explain_dataset(PER_DIMENSION, params, sequences, "all", buckets=BUCKETS, chunk_size=2,
                                     tokens=True)
    _, results = run_stream(tmp_path, PER_DIMENSION, params, sequences, "all", tokens=True, format="parquet",
                            shard_bytes=2000)
    assert_same(results.load(), expected)
    table = pq.read_table(tmp_path / "out")   # the directory as a dataset: _log and _manifest are skipped
    assert table.num_rows == len(LENGTHS) and table.column_names == ["index", "length", "scores", "target",
                                                                    "relevance"]
    row = table.to_pylist()[0]
    shape = [d if d != "T" else row["length"] for d in results.fields["relevance"]["shape"]]
    np.testing.assert_array_equal(np.reshape(row["relevance"], shape), expected.relevance[row["index"]])
    assert json.loads(table.schema.metadata[b"lrpjax"])["fields"] == results.fields


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch, params, sequences):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(StreamError, match=r"pip install 'lrpjax\[parquet\]'"):
        run_stream(tmp_path, LRP, params, sequences, format="parquet")


# ============================================================ 5. errors

@pytest.mark.parametrize("items, error, message", [
    ("abc", TypeError, "`items` must be an iterable"),
    ([(0, np.ones((2, E)), 1)], TypeError, r"`items\[0\]` must be a \(T, E\) array or an \(index, array\) pair"),
    ([(1, np.ones((2, E))), (1, np.ones((2, E)))], ValueError, r"`items\[1\]`: indices must increase; got 1 after 1"),
    ([(-1, np.ones((2, E)))], ValueError, r"the index must lie in \[0, 2\*\*31\)"),
    ([np.ones((0, E))], ValueError, r"`items\[0\]` must have shape \(T, E\) with T >= 1"),
    ([np.ones(E)], ValueError, r"must have shape \(T, E\)"),
    ([np.ones((2, E), np.int32)], TypeError, "must be floating point"),
    ([np.ones((2, E)), np.ones((2, E + 1))], ValueError, r"`items\[1\]` must have shape \(T, E\) with E = 4"),
    ([np.ones((2, E)), np.full((2, E), np.nan)], ValueError, r"`items` \(sequence 1\) contains non-finite"),
])
def test_bad_items_are_refused_naming_the_item(params, items, error, message):
    with pytest.raises(error, match=message):
        list(stream.iter_stream(LRP, params, items, 0, buckets=BUCKETS, chunk_size=2))


@pytest.mark.parametrize("options, error, message", [
    ({"buckets": 3}, ValueError, "a number of buckets needs every length in advance"),
    ({"buckets": (4, 2)}, ValueError, "`buckets` edges must be increasing"),
    ({"window": 0}, ValueError, "`window` must be None or an int >= 1"),
    ({"chunk_size": 0}, ValueError, "`chunk_size`"),
    ({"tokens": 1}, TypeError, "`tokens` must be a bool"),
])
def test_bad_options_are_refused(params, sequences, options, error, message):
    with pytest.raises(error, match=message):
        list(stream.iter_stream(LRP, params, sequences, 0, **{"buckets": BUCKETS, "chunk_size": 2, **options}))


@pytest.mark.parametrize("targets, error, message", [
    ("best", ValueError, "'pred' or 'all'"),
    (3, ValueError, r"class indices in \[0, 3\)"),
    ([0.5], TypeError, "`targets` must be 'pred', 'all', a class index"),
    (np.zeros(3, np.int64), ValueError, "`targets` has 3 entries; sequence 3 has none"),
])
def test_bad_targets_are_refused(params, sequences, targets, error, message):
    with pytest.raises(error, match=message):
        list(stream.iter_stream(LRP, params, sequences, targets, buckets=BUCKETS, chunk_size=2))


@pytest.mark.parametrize("options, error, message", [
    ({"format": "csv"}, ValueError, "`format` must be one of npz, parquet"),
    ({"partition": "rows"}, ValueError, "`partition` must be 'chunks' or 'given'"),
    ({"shard_bytes": 0}, ValueError, "`shard_bytes` must be an int >= 1"),
    ({"process_index": 2, "process_count": 2}, ValueError, r"`process_index` must lie in \[0, process_count\)"),
    ({"process_count": 1.0}, TypeError, "`process_count` must be an int"),
])
def test_bad_writer_options_are_refused(tmp_path, params, sequences, options, error, message):
    with pytest.raises(error, match=message):
        run_stream(tmp_path, LRP, params, sequences, **options)
    assert not (tmp_path / "out").exists()


def test_empty_input_and_a_file_as_output_are_refused(tmp_path, params, sequences):
    with pytest.raises(ValueError, match="`items` is empty"):
        run_stream(tmp_path, LRP, params, [stream.FLUSH])
    (tmp_path / "file").write_text("x")
    with pytest.raises(StreamError, match="exists and is not a directory"):
        run_stream(tmp_path, LRP, params, sequences, name="file")
    assert list(stream.iter_stream(LRP, params, [], 0)) == []


def test_the_reader_refuses_what_is_not_a_complete_stream_output(tmp_path, params, sequences):
    with pytest.raises(StreamError, match="is not a directory of stream results"):
        stream.open_results(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamError, match="holds no lrpjax stream output"):
        stream.open_results(tmp_path / "empty")
    run_stream(tmp_path, LRP, params, sequences, shard_bytes=1500)
    (tmp_path / "out" / "_log-00000-of-00002.jsonl").write_text("")
    with pytest.raises(StreamError, match="runs with 1 and 2 processes"):
        stream.open_results(tmp_path / "out")
    (tmp_path / "out" / "_log-00000-of-00002.jsonl").unlink()
    (tmp_path / "out" / "part-00000-000001.npz").write_bytes(b"not a zip")
    with pytest.raises(StreamError, match="cannot read the shard .*part-00000-000001.npz"):
        list(stream.open_results(tmp_path / "out"))
    log = tmp_path / "out" / "_log-00000-of-00001.jsonl"
    log.write_text('{"format": "something else"}\n')
    with pytest.raises(StreamError, match="is not the log of an lrpjax stream"):
        stream.open_results(tmp_path / "out")
    log.write_text('{"format": "lrpjax-stream"}\n{broken\n{"more": 1}\n')
    with pytest.raises(StreamError, match="line 2 is not a complete JSON record, and more lines follow"):
        stream.open_results(tmp_path / "out")


def test_an_incomplete_run_reads_as_incomplete_and_overlapping_parts_are_refused(tmp_path, params, sequences):
    run_stream(tmp_path, LRP, params, sequences[:6], partition="given", process_index=0, process_count=2)
    results = stream.open_results(tmp_path / "out")
    assert not results.complete and len(results) == 6 and not (tmp_path / "out" / "_manifest.json").exists()
    run_stream(tmp_path, LRP, params, [(i, sequences[i]) for i in range(4, len(LENGTHS))], partition="given",
               process_index=1, process_count=2)
    with pytest.raises(StreamError, match="sequence index 4 appears in two shards"):
        stream.open_results(tmp_path / "out").indices


# ============================================================ 6. the benchmark, in its quick form

@pytest.mark.slow
def test_the_quick_benchmark_measures_memory_resume_and_two_processes(tmp_path):
    # The benchmark's six worker processes compile the same programs: the first ones compiled are kept in
    # a persistent compilation cache the later ones load (its quick timings are not checked; the results
    # are, and a loaded program is the one a compilation gives). 71 -> 44 s CPU.
    cache = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "benchmark_streaming.py"), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", **cache})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "benchmark_streaming.json").read_text())
    runs = result["runs"]
    assert runs["killed_and_resumed"]["identical_to_uninterrupted"] is True
    assert runs["killed_and_resumed"]["resumed"]["kept"] > 0
    assert runs["two_processes"]["merged_equals_one_process"] is True
    assert sum(w["sequences"] for w in runs["two_processes"]["workers"]) == 4_000
    assert runs["one_process_4000"]["disk_bytes"] > 0 and runs["one_process_4000"]["shards"] >= 5
    assert "| one process | 4,000 |" in (tmp_path / "benchmark_streaming.md").read_text()
