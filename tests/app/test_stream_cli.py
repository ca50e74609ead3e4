"""The command line's batch mode on the streaming engine: sentence streams in input order, Parquet
datasets (written, read back, resumed, refused), and the batcher's push interface."""

import json
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.app import cli
from lrpjax import methods as explain
from lrpjax import datasets as scale
from lrpjax.datasets import stream
from lrpjax.data.sst import PAD, UNK, Vocabulary
from lrpjax.models import bilstm
from lrpjax.io.sinks import ParquetSink, SinkError, read_records
from lrpjax.app.model import SSTModel

WORDS = ["good", "bad", "film", "dull", "fun", "not", "very", "a", "the", "."]
TEXTS = [f"{'a ' * (i % 9)}{WORDS[i % len(WORDS)]} film" if i % 7 else "" for i in range(1, 41)]   # 40, 5 empty
DONE = 1   # the exit status of a run over TEXTS: its 5 empty lines are failed records (docs/guide/reliability.md)


@pytest.fixture(scope="module")
def model():
    vocab = Vocabulary([PAD, UNK, *WORDS])
    key_m, key_e = jax.random.split(jax.random.PRNGKey(0))
    embed = np.array(jax.random.normal(key_e, (len(vocab), 4), jnp.float64))
    params = {"embed": embed, "model": jax.tree_util.tree_map(np.asarray, bilstm.init(key_m, 4, 3, 5, jnp.float64))}
    return SSTModel(vocab, params, {"note": "tiny"})


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("tiny") / "tiny.npz")


def test_a_sentence_stream_comes_back_in_input_order_whatever_the_window(model):
    def run(window, batch):
        return list(model.explain_stream(enumerate(TEXTS), "gi", "pred", batch_size=batch, window=window))

    base = run(4096, 4)
    assert [i for i, _ in base] == list(range(len(TEXTS)))
    assert all(isinstance(r, str) == (TEXTS[i] == "") for i, r in base)
    many = model.explain_many(TEXTS, "gi", batch_size=4)
    for (i, r), expected in zip(base, many):
        if isinstance(r, str):
            assert r == expected
            continue
        assert r.tokens == expected.tokens and r.target == expected.target == expected.prediction
        np.testing.assert_allclose(r.relevance, expected.relevance, rtol=1e-10, atol=1e-14)
    for window in (1, 3, 7):
        for (i, r), (j, s) in zip(run(window, 4), base):
            assert i == j and (isinstance(r, str) or np.array_equal(r.relevance, s.relevance))


def test_a_sentence_stream_yields_everything_up_to_a_window_before_reading_on(model):
    read = []

    def sentences():
        for i, text in enumerate(TEXTS[:10]):
            read.append(i)
            yield i, text

    for index, _ in model.explain_stream(sentences(), "lrp-all", 1, batch_size=8, window=4):
        assert max(read) < (index // 4 + 1) * 4 + 1


def test_bad_stream_arguments_are_refused(model):
    with pytest.raises(ValueError, match="`window` must be an int >= 1"):
        next(model.explain_stream(enumerate(TEXTS), window=0))
    with pytest.raises(ValueError, match="`target` must be 'pred', a class index or a class name"):
        next(model.explain_stream(enumerate(TEXTS), target=[1, 2]))
    with pytest.raises(ValueError, match="indices must increase"):
        list(model.explain_stream([(3, "a film"), (2, "a good film")]))


def write_lines(tmp_path, lines, name="in.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def batch(tmp_path, checkpoint, output, *extra, source=None):
    source = source or write_lines(tmp_path, TEXTS)
    return cli.main(["explain", "--checkpoint", str(checkpoint), "--method", "random", "--seed", "3",
                     "--input", str(source), "--output", str(tmp_path / output), "--batch-size", "4", *extra])


def test_a_parquet_output_holds_the_records_of_the_json_lines_output(tmp_path, capsys, checkpoint):
    pq = pytest.importorskip("pyarrow.parquet")
    assert batch(tmp_path, checkpoint, "out.jsonl") == DONE
    assert batch(tmp_path, checkpoint, "out.parquet", "--chunk-size", "16") == DONE
    jsonl = read_records(tmp_path / "out.jsonl")
    assert read_records(tmp_path / "out.parquet") == jsonl
    table = pq.read_table(tmp_path / "out.parquet")   # the directory is one table for pyarrow
    assert table.num_rows == len(TEXTS) and table.column("line").to_pylist() == list(range(1, 41))
    assert sorted(p.name for p in (tmp_path / "out.parquet").iterdir()) == [
        "_log.jsonl", "_run.json", "part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]


def test_a_parquet_output_resumes_after_its_last_whole_part(tmp_path, capsys, checkpoint):
    pytest.importorskip("pyarrow")
    assert batch(tmp_path, checkpoint, "whole.parquet", "--chunk-size", "8") == DONE
    assert batch(tmp_path, checkpoint, "out.parquet", "--chunk-size", "8") == DONE
    log = tmp_path / "out.parquet" / "_log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2]) + lines[2][:15])   # part 2 on disk, its log line cut short
    capsys.readouterr()
    assert batch(tmp_path, checkpoint, "out.parquet", "--chunk-size", "8", "--resume") == DONE
    assert "after 16 kept from the previous run" in capsys.readouterr().err
    assert read_records(tmp_path / "out.parquet") == read_records(tmp_path / "whole.parquet")
    for k in range(5):
        name = f"part-{k:06d}.parquet"
        assert (tmp_path / "out.parquet" / name).read_bytes() == (tmp_path / "whole.parquet" / name).read_bytes()


def test_parquet_outputs_are_refused_when_they_cannot_be_written_or_continued(tmp_path, capsys, checkpoint):
    pytest.importorskip("pyarrow")
    assert batch(tmp_path, checkpoint, "out.parquet") == DONE
    capsys.readouterr()
    assert batch(tmp_path, checkpoint, "out.parquet") == 1
    assert "holds the output of an earlier run; pass --resume to continue it" in capsys.readouterr().err
    (tmp_path / "other.parquet").mkdir()
    (tmp_path / "other.parquet" / "x").write_text("not ours")
    assert batch(tmp_path, checkpoint, "other.parquet", "--resume") == 1
    assert "holds no lrpjax output (no _log.jsonl)" in capsys.readouterr().err
    (tmp_path / "file.parquet").write_text("a file")
    assert batch(tmp_path, checkpoint, "file.parquet") == 1
    assert "exists and is not a Parquet dataset directory" in capsys.readouterr().err
    log = tmp_path / "out.parquet" / "_log.jsonl"
    log.write_text(log.read_text().replace('"first": 1,', '"first": 2,'))
    assert batch(tmp_path, checkpoint, "out.parquet", "--resume") == 1
    assert re.search(r"its _log.jsonl line 1 does not continue line 0", capsys.readouterr().err)


def test_a_parquet_output_without_pyarrow_names_the_extra(tmp_path, capsys, checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert batch(tmp_path, checkpoint, "out.parquet") == 1
    assert "needs pyarrow: pip install 'lrpjax[parquet]'" in capsys.readouterr().err
    with pytest.raises(SinkError, match=r"needs pyarrow: pip install 'lrpjax\[parquet\]'"):
        ParquetSink(tmp_path / "x.parquet")


def test_the_parquet_sink_keeps_line_order_and_its_columns(tmp_path):
    pytest.importorskip("pyarrow")
    with ParquetSink(tmp_path / "o.parquet") as sink:
        with pytest.raises(SinkError, match="expected line 1, got 2"):
            sink.write({"line": 2})
        with pytest.raises(SinkError, match=r"no column for: \['colour'\]"):
            sink.write({"line": 1, "colour": "red"})
        sink.write({"line": 1, "sentence": "", "error": "empty"})
        sink.write({"line": 2, "sentence": "x", "error": "bad", "failed": True})
    with ParquetSink(tmp_path / "o.parquet", resume=True) as sink:
        assert (sink.done, sink.failed, sink.last["line"]) == (2, 1, 2)
    assert read_records(tmp_path / "o.parquet") == [{"line": 1, "sentence": "", "error": "empty"},
                                                     {"line": 2, "sentence": "x", "error": "bad", "failed": True}]


def test_html_pages_of_a_parquet_batch_read_its_records(tmp_path, capsys, checkpoint):
    pytest.importorskip("pyarrow")
    assert batch(tmp_path, checkpoint, "out.parquet", "--html", str(tmp_path / "page.html")) == DONE
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "dull" in page and "lrpjax: random relevance" in page


def test_the_batcher_returns_chunks_as_they_finish(tmp_path):
    params = bilstm.init(jax.random.PRNGKey(1), 4, 3, 3, jnp.float64)
    method = explain.gradient(bilstm.apply)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(T, 4)) for T in (3, 6, 2, 3)]
    batcher = stream.Batcher(method, params, 2, buckets=(4, 8), chunk_size=2)
    assert batcher.flush() == []
    assert batcher.add(0, xs[0]) == [] and batcher.add(1, xs[1]) == []
    assert batcher.add(2, xs[2]) == []                      # the first chunk (0, 2) is launched, not fetched
    done = batcher.add(5, xs[3]) + batcher.flush()
    assert [c.indices.tolist() for c in done] == [[0, 2], [1], [5]]   # partly filled ones in the order opened
    expected = scale.explain_dataset(method, params, xs, 2, buckets=(4, 8), chunk_size=2)
    np.testing.assert_array_equal(done[0].relevance[1][:2], expected.relevance[2])
    with pytest.raises(ValueError, match="indices must increase; got 5 after 5"):
        batcher.add(5, xs[0])
    with pytest.raises(ValueError, match="a number of buckets needs every length in advance"):
        stream.Batcher(method, params, buckets=3)
