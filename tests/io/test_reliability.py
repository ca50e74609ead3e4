"""Nothing lost, nothing silent: atomic checkpoints, bounded and checked loading, strict JSON results,
training that refuses bad input and keeps its work when interrupted, a streaming and resumable batch mode,
'\\n'-only line numbering, rule sets validated when built, and a command line without tracebacks.

New names are imported inside the tests, so that each test fails on its own where they are missing.
"""

import errno
import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrpjax.io import checkpoints as ck
from lrpjax.app import cli
from lrpjax.core import rules
from lrpjax.train import trainer as tr
from lrpjax.data.sst import PAD, UNK, Vocabulary, read_trees
from lrpjax.models import bilstm
from lrpjax.app.model import SSTModel

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("good", "bad", "movie", "not", "a", "film", "very", "dull", "fun", ".")


# ------------------------------------------------------------------------------------------- helpers


def tiny_sst(seed=0, nan_word=None):
    """A small SST bundle (E=4, H=3, float64); `nan_word`'s embedding is NaN (weights that give NaN)."""
    vocab = Vocabulary([PAD, UNK, *WORDS])
    key_m, key_e = jax.random.split(jax.random.PRNGKey(seed))
    embed = np.array(jax.random.normal(key_e, (len(vocab), 4), jnp.float64))
    if nan_word is not None:
        embed[vocab.encode([nan_word])[0][0]] = np.nan
    params = {"embed": embed, "model": jax.tree_util.tree_map(np.asarray, bilstm.init(key_m, 4, 3, 5, jnp.float64))}
    return SSTModel(vocab, params, {"note": "tiny"})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return tiny_sst().save(tmp_path_factory.mktemp("tiny") / "tiny.npz")


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory):
    return tiny_sst(nan_word="dull").save(tmp_path_factory.mktemp("nan") / "nan.npz")


def strict_json(line):
    """json.loads that refuses NaN and Infinity, as strict JSON readers do."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(line, parse_constant=refuse)


def run_cli(*args, stdin=None, env_extra=None, timeout=300):
    env = dict(os.environ, NO_COLOR="1", **(env_extra or {}))
    env.pop("JAX_ENABLE_X64", None)
    return subprocess.run([sys.executable, "-m", "lrpjax.app.cli", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=timeout, cwd=ROOT)


def leftovers(directory):
    """Temporary files an atomic write might have left behind."""
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith("."))


def load_experiment(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def npy_member(header_shape, data: bytes, dtype="<f8"):
    """Raw bytes of an .npy member whose header announces `header_shape` and which holds `data`."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {header_shape!r}, }}"
    header = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + data


META = '{"kind": "toy", "format_version": 1}'


def write_zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def metadata_member():
    import io
    buffer = io.BytesIO()
    np.save(buffer, np.array(META))
    return buffer.getvalue()


# ===================================================================== 1. checkpoints: atomic save


def _fail_after_some_bytes(exception):
    def savez(handle, **arrays):
        handle.write(b"PK\x03\x04 partial archive")
        raise exception
    return savez


@pytest.mark.parametrize("exception", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EIO, "Input/output error"),
    KeyboardInterrupt(),
])
def test_a_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch, exception):
    path = ck.save(tmp_path / "model.npz", {"w": np.arange(4.0)}, {"kind": "toy"})
    before = Path(path).read_bytes()
    monkeypatch.setattr(ck.np, "savez_compressed", _fail_after_some_bytes(exception))
    with pytest.raises(type(exception)):
        ck.save(path, {"w": np.zeros(4)}, {"kind": "toy"})
    assert Path(path).read_bytes() == before
    assert leftovers(tmp_path) == []
    np.testing.assert_array_equal(ck.load(path).params["w"], np.arange(4.0))


def test_disk_full_error_names_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(ck.np, "savez_compressed", _fail_after_some_bytes(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(OSError, match=r"cannot write checkpoint '.*new\.npz': No space left") as info:
        ck.save(tmp_path / "new.npz", {"w": np.ones(2)}, {"kind": "toy"})
    assert info.value.errno == errno.ENOSPC
    assert not (tmp_path / "new.npz").exists() and leftovers(tmp_path) == []


def test_a_failing_fsync_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from lrpjax.io import files as _files

    path = ck.save(tmp_path / "model.npz", {"w": np.arange(3.0)}, {"kind": "toy"})
    before = Path(path).read_bytes()

    def fsync(fd):
        raise OSError(errno.EIO, "fsync failed")

    monkeypatch.setattr(_files.os, "fsync", fsync)
    with pytest.raises(OSError, match="fsync failed"):
        ck.save(path, {"w": np.zeros(3)}, {"kind": "toy"})
    assert Path(path).read_bytes() == before and leftovers(tmp_path) == []


def test_save_into_a_missing_directory_names_the_file(tmp_path):
    with pytest.raises(OSError, match="cannot write checkpoint .*missing.*m.npz"):
        ck.save(tmp_path / "missing" / "m.npz", {"w": np.ones(1)}, {"kind": "toy"})


def test_a_saved_checkpoint_gets_the_permissions_of_a_plain_file(tmp_path):
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    path = ck.save(tmp_path / "m.npz", {"w": np.ones(1)}, {"kind": "toy"})
    assert os.stat(path).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


@pytest.mark.parametrize("metadata, where", [
    ({"kind": "toy", "val_mse": float("nan")}, "val_mse"),
    ({"kind": "toy", "metrics": {"loss": np.float64(np.inf)}}, "metrics/loss"),
    ({"kind": "toy", "history": [1.0, 2.0, -float("inf")]}, "history/2"),
    ({"kind": "toy", "curve": np.array([0.5, np.nan])}, "curve/1"),
])
def test_metadata_must_be_strict_json(tmp_path, metadata, where):
    with pytest.raises(ValueError, match=f"metadata` value at '{where}' is not a finite number"):
        ck.save(tmp_path / "m.npz", {"w": np.ones(1)}, metadata)
    assert not (tmp_path / "m.npz").exists()


# ================================================================ 1. checkpoints: bounded loading


def test_a_member_larger_than_max_bytes_is_refused_before_reading(tmp_path):
    path = ck.save(tmp_path / "big.npz", {"w": np.zeros(100_000)}, {"kind": "toy"})
    assert os.path.getsize(path) < 5_000  # zeros compress to almost nothing
    with pytest.raises(ck.CheckpointError, match=r"big\.npz.*'params/w' declares 800128 bytes.*max_bytes = 100000"):
        ck.load(path, max_bytes=100_000)
    assert ck.load(path, max_bytes=1_000_000).params["w"].shape == (100_000,)


def test_the_total_uncompressed_size_is_bounded_too(tmp_path):
    path = ck.save(tmp_path / "many.npz", {f"w{i}": np.zeros(1000) for i in range(10)}, {"kind": "toy"})
    with pytest.raises(ck.CheckpointError, match=r"many\.npz' declares \d+ bytes uncompressed in all"):
        ck.load(path, max_bytes=20_000)


def test_the_default_bound_is_one_gibibyte_and_none_lifts_it(tmp_path):
    assert ck.MAX_BYTES == 1 << 30
    path = ck.save(tmp_path / "m.npz", {"w": np.ones(10)}, {"kind": "toy"})
    assert ck.load(path, max_bytes=None).params["w"].sum() == 10


@pytest.mark.parametrize("max_bytes", [0, -5, 1.5, True])
def test_max_bytes_must_be_a_positive_int(tmp_path, max_bytes):
    path = ck.save(tmp_path / "m.npz", {"w": np.ones(1)}, {"kind": "toy"})
    with pytest.raises(ValueError, match="`max_bytes` must be a positive int or None"):
        ck.load(path, max_bytes=max_bytes)


def test_a_header_that_announces_more_data_than_stored_is_refused_without_allocating(tmp_path):
    path = write_zip(tmp_path / "bomb.npz", {
        "params/w.npy": npy_member((10**12,), b"\0" * 16),   # 8 TB announced, 16 bytes stored
        "__metadata__.npy": metadata_member(),
    })
    with pytest.raises(ck.CheckpointError, match=r"bomb\.npz': array 'params/w' cannot be loaded: its header "
                                                 r"announces shape \(1000000000000,\)"):
        ck.load(path)


def test_a_duplicated_member_is_refused(tmp_path):
    with pytest.warns(UserWarning):  # zipfile warns about the duplicate name while writing
        with zipfile.ZipFile(tmp_path / "dup.npz", "w") as archive:
            archive.writestr("params/w.npy", npy_member((1,), b"\0" * 8))
            archive.writestr("params/w.npy", npy_member((1,), b"\0" * 8))
            archive.writestr("__metadata__.npy", metadata_member())
    with pytest.raises(ck.CheckpointError, match="'params/w' appears twice"):
        ck.load(tmp_path / "dup.npz")


def test_a_member_that_is_not_an_array_is_refused(tmp_path):
    path = write_zip(tmp_path / "odd.npz", {"params/w.npy": npy_member((1,), b"\0" * 8), "notes.txt": b"hello",
                                            "__metadata__.npy": metadata_member()})
    with pytest.raises(ck.CheckpointError, match=r"odd\.npz' has an unexpected entry 'notes.txt' \(not an .npy"):
        ck.load(path)


# ================================================================= 1. checkpoints: expected layout


def layout_file(tmp_path):
    params = {"left": {"W": np.ones((5, 8), np.float32), "b": np.zeros(8, np.float32)},
              "out": {"W": np.ones((8, 2), np.float32)}}
    return ck.save(tmp_path / "m.npz", params, {"kind": "toy", "sizes": {"E": 5, "H": 8}},
                   extra={"vocab": np.array(["a", "bb"])})


def spec_tree(W=((5, 8), np.float32), b=((8,), np.float32), out=((8, 2), np.float32)):
    return {"left": {"W": W, "b": b}, "out": {"W": out}}


def test_a_matching_layout_loads(tmp_path):
    path = layout_file(tmp_path)
    struct = jax.tree.map(lambda s: jax.ShapeDtypeStruct(*s), spec_tree(), is_leaf=lambda x: isinstance(x, tuple))
    assert ck.load(path, expect=struct).params["left"]["W"].shape == (5, 8)
    assert ck.load(path, expect=spec_tree()).params["out"]["W"].shape == (8, 2)


@pytest.mark.parametrize("expect, message", [
    ({**spec_tree(), "right": {"W": ((5, 8), np.float32)}}, r"array 'params/right/W' is missing \(expected"),
    ({"left": {"W": ((5, 8), np.float32)}, "out": {"W": ((8, 2), np.float32)}},
     r"array 'params/left/b' is not part of the expected layout"),
    (spec_tree(W=((6, 8), np.float32)), r"array 'params/left/W' has shape \(5, 8\); expected \(6, 8\) float32"),
    (spec_tree(W=((5, 8, 1), np.float32)), r"array 'params/left/W' has shape \(5, 8\); expected \(5, 8, 1\)"),
    (spec_tree(W=((5, 8), np.float64)), r"array 'params/left/W' has dtype float32; expected \(5, 8\) float64"),
    (spec_tree(W=((5, 8), "integer")), r"array 'params/left/W' has dtype float32; expected"),
    (spec_tree(W=(("E", "H"), None), b=(("E",), None)), r"array 'params/left/b' has shape \(8,\), so E = 8; but "
                                                          r"'params/left/W' gives E = 5"),
])
def test_a_layout_mismatch_names_the_file_and_the_array(tmp_path, expect, message):
    path = layout_file(tmp_path)
    with pytest.raises(ck.CheckpointError, match=r"checkpoint '.*m\.npz': " + message):
        ck.load(path, expect=expect)


def test_named_sizes_and_dtype_classes_accept_any_consistent_layout(tmp_path):
    path = layout_file(tmp_path)
    spec = ck.ArraySpec
    expect = {"left": {"W": spec(("E", "H"), "floating"), "b": spec(("H",), (np.float32, np.float64))},
              "out": {"W": spec(("H", None), "floating")}}
    assert ck.load(path, expect=expect, expect_extra={"vocab": spec((2,), "unicode")}).extra["vocab"].tolist() == ["a", "bb"]


def test_a_callable_layout_reads_its_sizes_from_the_metadata(tmp_path):
    path = layout_file(tmp_path)

    def expect(metadata):
        E, H = metadata["sizes"]["E"], metadata["sizes"]["H"]
        return spec_tree(W=((E, H), "floating"), b=((H,), "floating"), out=((H, 2), "floating"))

    assert ck.load(path, expect=expect).params["left"]["b"].shape == (8,)
    with pytest.raises(ck.CheckpointError, match=r"metadata does not describe the expected arrays \(KeyError"):
        ck.load(path, expect=lambda metadata: {"w": ((metadata["missing"],), None)})


def test_expected_extra_arrays_are_checked_and_others_allowed(tmp_path):
    path = layout_file(tmp_path)
    with pytest.raises(ck.CheckpointError, match="array 'extra/ids' is missing"):
        ck.load(path, expect_extra={"ids": ((None,), "integer")})
    with pytest.raises(ck.CheckpointError, match="array 'extra/vocab' has dtype <U2; expected"):
        ck.load(path, expect_extra={"vocab": ((2,), "floating")})
    assert "vocab" in ck.load(path, expect_extra={}).extra


@pytest.mark.parametrize("build, message", [
    (lambda: ck.ArraySpec((2.5,)), "`shape` of ArraySpec holds 2.5"),
    (lambda: ck.ArraySpec((-1,)), "`shape` of ArraySpec holds -1"),
    (lambda: ck.ArraySpec((2,), "no-such-dtype"), "`dtype` of ArraySpec must be None, a dtype"),
    (lambda: ck.ArraySpec(3), "`shape` of ArraySpec must be a tuple"),
])
def test_array_specs_validate_themselves(build, message):
    with pytest.raises(TypeError, match=message):
        build()


def test_a_layout_leaf_that_is_no_spec_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="the entry 'params/w' must be an ArraySpec"):
        ck.load(ck.save(tmp_path / "m.npz", {"w": np.ones(1)}, {"kind": "toy"}), expect={"w": "float32"})


# ================================================= 1. layout checks in the SST model and the experiments


def tampered_sst(tmp_path, change):
    model = tiny_sst()
    params = jax.tree_util.tree_map(np.asarray, model.params)
    change(params)
    meta = {"kind": "sst-bilstm", "embedding_size": 4, "hidden_size": 3, "vocabulary_size": len(model.vocab)}
    return ck.save(tmp_path / "sst.npz", params, meta, extra={"vocab": model.vocab.to_array()})


@pytest.mark.parametrize("change, message", [
    (lambda p: p["model"]["left"].update(W=np.ones((4, 13))), r"'params/model/left/W' has shape \(4, 13\); expected \(4, 12\)"),
    (lambda p: p["model"]["right"].pop("U"), r"'params/model/right/U' is missing"),
    (lambda p: p["model"]["out"].update(W_left=np.ones((3, 5), np.int32)), r"'params/model/out/W_left' has dtype int32"),
    (lambda p: p.update(extra_layer={"W": np.ones(2)}), r"'params/extra_layer/W' is not part of the expected layout"),
    (lambda p: p.update(embed=np.ones((20, 4))), r"'params/embed' has shape \(20, 4\); expected \(12, 4\) floating"),
])
def test_the_sst_model_refuses_a_checkpoint_of_another_layout(tmp_path, change, message):
    with pytest.raises(ck.CheckpointError, match=message):
        SSTModel.load(tampered_sst(tmp_path, change))


def test_the_shipped_checkpoints_match_their_experiments_layouts():
    digits = load_experiment("digits_pixel_flipping")
    model, params, metadata = digits.load_model(str(ROOT / "checkpoints" / "digits_mlp.npz"))
    assert model.widths == (64, 100, 100, 10) and params["out"]["W"].shape == (100, 10)
    markov = load_experiment("markov_reward")
    config, params, _ = markov.load_checkpoint(str(ROOT / "checkpoints" / "markov_lstm.npz"))
    assert params["lstm"]["W"].shape == (4, config.H)
    toy = load_experiment("toy_arithmetic")
    models, info = toy._load_models(str(ROOT / "experiments" / "results" / "toy_arithmetic.models.npz"), "add")
    assert len(models) == 50 and models[0]["lstm"]["W"].shape == (2, 4)


def test_the_experiments_refuse_a_tampered_checkpoint(tmp_path):
    markov = load_experiment("markov_reward")
    saved = ck.load(ROOT / "checkpoints" / "markov_lstm.npz")
    saved.params["lstm"]["U"] = np.ones((8, 9))
    meta = {k: v for k, v in saved.metadata.items() if k not in ("format_version", "lrpjax_version")}
    path = ck.save(tmp_path / "markov.npz", saved.params, meta)
    with pytest.raises(ck.CheckpointError, match=r"markov\.npz': array 'params/lstm/U' has shape \(8, 9\); expected \(8, 8\)"):
        markov.load_checkpoint(path)
    digits = load_experiment("digits_pixel_flipping")
    saved = ck.load(ROOT / "checkpoints" / "digits_mlp.npz")
    del saved.params["dense_1"]["b"]
    meta = {k: v for k, v in saved.metadata.items() if k not in ("format_version", "lrpjax_version")}
    with pytest.raises(ck.CheckpointError, match="array 'params/dense_1/b' is missing"):
        digits.load_model(ck.save(tmp_path / "digits.npz", saved.params, meta))
    toy = load_experiment("toy_arithmetic")
    stack = {"add": {"lstm": {"W": np.ones((3, 2, 4)), "U": np.ones((3, 1, 4)), "b": np.ones((2, 4))},
                     "out": {"W": np.ones((3, 1, 1))}}}
    path = ck.save(tmp_path / "stack.npz", stack, {"kind": "lstm-stack", "training": {"add": {}}})
    with pytest.raises(ck.CheckpointError, match=r"'params/add/lstm/b' has shape \(2, 4\), so N_add = 2; but "
                                                 r"'params/add/lstm/U' gives N_add = 3"):
        toy._load_models(path, "add")


# ========================================================= 2. non-finite results are never written


def write_input(tmp_path, lines, name="in.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("method", ["lrp-all", "gi", "occlusion-f"])
def test_batch_mode_turns_non_finite_results_into_error_records_and_exits_1(tmp_path, capsys, nan_checkpoint, method,
                                                                          monkeypatch):
    # finite weights can give non-finite results too (overflow); NaN weights stand in for them here
    monkeypatch.setattr(ck, "_check_finite", lambda path, arrays: None)
    source = write_input(tmp_path, ["a good film", "a dull film", "", "not fun", "very dull ."])
    out = tmp_path / "out.jsonl"
    status = cli.main(["explain", "--checkpoint", str(nan_checkpoint), "--method", method,
                       "--input", str(source), "--output", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert "lrpjax: error: 3 line(s) could not be explained" in err and ": 2, 3, 5)" in err
    records = [strict_json(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5]
    for r in (records[1], records[4]):
        assert r["failed"] is True and "non-finite scores or relevance" in r["error"] and "relevance" not in r
    assert "error" not in records[0] and "error" not in records[3]
    assert records[2]["error"].startswith("empty sentence") and records[2]["failed"] is True


def test_a_checkpoint_with_non_finite_weights_is_refused_before_anything_is_explained(capsys, nan_checkpoint):
    assert cli.main(["explain", "--checkpoint", str(nan_checkpoint), "a good film"]) == 1
    err = capsys.readouterr().err
    assert "array 'params/embed' holds 4 non-finite value(s)" in err and "Traceback" not in err   # one word, E = 4


def test_single_sentence_mode_refuses_a_non_finite_result(capsys, nan_checkpoint, monkeypatch):
    monkeypatch.setattr(ck, "_check_finite", lambda path, arrays: None)
    status = cli.main(["explain", "--checkpoint", str(nan_checkpoint), "a dull film"])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    assert "lrpjax: error: the model gives non-finite scores or relevance (NaN or infinity)" in captured.err
    assert cli.main(["explain", "--checkpoint", str(nan_checkpoint), "a good film"]) == 0


def test_a_sink_refuses_to_write_nan(tmp_path):
    from lrpjax.io.sinks import JsonlSink

    with JsonlSink(tmp_path / "o.jsonl") as sink:
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            sink.write({"line": 1, "scores": [float("nan")]})
        sink.write({"line": 1, "scores": [0.5]})
    assert (tmp_path / "o.jsonl").read_text() == '{"line": 1, "scores": [0.5]}\n'


def test_sentence_explanations_say_whether_they_are_finite():
    good = tiny_sst().explain_sentence("a good film")
    bad = tiny_sst(nan_word="dull").explain_sentence("a dull film")
    assert good.finite is True and bad.finite is False
    with pytest.raises(ValueError, match="Out of range float"):
        json.dumps(bad.to_json(), allow_nan=False)


# ============================================================== 3. training: checks before the first step


def linear_problem(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5])}


def linear_predict(params, x, mask):
    return (x @ params["w"])[None]


def class_predict(params, x, mask):
    return x @ params["W"]  # (C,) = (4,)


LOSS = tr.make_loss(linear_predict, "mse")
XENT = tr.make_loss(class_predict, "xent")
ACC = tr.make_metric(class_predict, "accuracy")
P0 = {"w": jnp.zeros(3)}
PC = {"W": jnp.zeros((3, 4))}


def class_data(labels):
    labels = np.asarray(labels)
    return {"x": np.random.default_rng(1).normal(size=(len(labels), 3)), "y": labels}


@pytest.mark.parametrize("name, change, message", [
    ("train", lambda d: d["x"].__setitem__((5, 1), np.nan), r"`train\['x'\]` holds 1 non-finite value\(s\) .* at index \(5, 1\)"),
    ("train", lambda d: d["y"].__setitem__(7, np.inf), r"`train\['y'\]` holds 1 non-finite value\(s\) .* at index \(7,\)"),
    ("val", lambda d: d["x"].__setitem__((0, 0), -np.inf), r"`val\['x'\]` holds 1 non-finite value"),
])
def test_non_finite_data_is_refused(name, change, message):
    data = {"train": linear_problem(), "val": linear_problem(16, seed=2)}
    change(data[name])
    with pytest.raises(ValueError, match=message):
        tr.fit(LOSS, P0, data["train"], val=data["val"], metrics={"mse": LOSS}, config=tr.TrainConfig(epochs=1))


@pytest.mark.parametrize("labels, message", [
    ([0, 1, 2, 3] * 8 + [4], r"`train\['y'\]` holds 1 label\(s\) outside \[0, C\) = \[0, 4\) for the loss \('xent'\), "
                             r"the first 4 at index 32"),
    ([-1] + [0, 1, 2, 3] * 8, r"holds 1 label\(s\) outside \[0, C\) = \[0, 4\) for the loss \('xent'\), the first -1 at index 0"),
    ([7, 9] * 20, r"holds 40 label\(s\) outside .* clamp it to a valid class without a word"),
])
def test_class_labels_outside_the_classes_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        tr.fit(XENT, PC, class_data(labels), config=tr.TrainConfig(epochs=1, batch_size=8))


def test_validation_labels_are_checked_for_accuracy_metrics():
    val = class_data([0, 1, 5, 2])
    with pytest.raises(ValueError, match=r"`val\['y'\]` holds 1 label\(s\) .* for the metric 'acc' \('accuracy'\)"):
        tr.fit(XENT, PC, class_data([0, 1, 2, 3] * 8), val=val, metrics={"acc": ACC},
               config=tr.TrainConfig(epochs=1, batch_size=8))


def test_float_labels_and_missing_entries_are_refused():
    data = class_data([0, 1, 2, 3] * 8)
    with pytest.raises(ValueError, match=r"`train\['y'\]` must hold integer class labels for the loss \('xent'\)"):
        tr.fit(XENT, PC, {"x": data["x"], "y": data["y"].astype(float)}, config=tr.TrainConfig(batch_size=8))
    with pytest.raises(ValueError, match=r"`train` has no 'y' entry, which the loss reads \(y_key='y'\); its entries "
                                         r"are \['labels', 'x'\]"):
        tr.fit(XENT, PC, {"x": data["x"], "labels": data["y"]}, config=tr.TrainConfig(batch_size=8))


@pytest.mark.parametrize("optimizer, message", [
    (optax.sgd(float("nan")), "is not finite: a NaN or infinite learning rate"),
    (optax.adam(-1e-3), "goes uphill: a negative learning rate"),
    (optax.sgd(0.0), "is zero in both of the first two steps: a learning rate of 0"),
])
def test_a_nan_negative_or_zero_learning_rate_is_refused(optimizer, message):
    with pytest.raises(ValueError, match="`optimizer`: its update for a gradient of ones " + message):
        tr.fit(LOSS, P0, linear_problem(), optimizer=optimizer, config=tr.TrainConfig(epochs=1))


def test_a_warm_up_from_zero_is_a_valid_learning_rate():
    schedule = optax.linear_schedule(0.0, 0.05, transition_steps=10)
    result = tr.fit(LOSS, P0, linear_problem(), optimizer=optax.sgd(schedule), config=tr.TrainConfig(epochs=2))
    assert result.steps == 4 and not result.interrupted


@pytest.mark.parametrize("kwargs, error, message", [
    ({"min_delta": float("nan")}, ValueError, "`min_delta` must be a finite number >= 0; got nan"),
    ({"min_delta": -1e-3}, ValueError, "`min_delta` must be a finite number >= 0"),
    ({"min_delta": float("inf")}, ValueError, "`min_delta` must be a finite number >= 0; got inf"),
    ({"epochs": True}, ValueError, "`epochs` must be a positive int; got True"),
    ({"seed": 2**31}, ValueError, r"`seed` must fit int32, \[-2147483648, 2147483647\]"),
    ({"seed": "1"}, TypeError, "`seed` must be an int; got str"),
    ({"progress": "yes"}, TypeError, "`progress` must be a bool; got 'yes'"),
    ({"clip_norm": float("nan")}, ValueError, "`clip_norm` must be a number > 0 or None; got nan"),
    ({"monitor": 3}, TypeError, r"`monitor` must be a metric name \(str\) or None"),
])
def test_train_config_refuses_bad_values(kwargs, error, message):
    with pytest.raises(error, match=message):
        tr.TrainConfig(**kwargs)


def test_shuffle_seeds_must_fit_int32():
    with pytest.raises(ValueError, match=r"`shuffle_seeds` must fit int32"):
        tr.fit_many(LOSS, tr.stack([P0, P0]), linear_problem(), shuffle_seeds=[0, 2**40])


# ======================================================= 3. training: divergence and interruption


def test_fit_stops_with_a_clear_error_at_the_step_the_loss_becomes_non_finite():
    data = linear_problem()
    config = tr.TrainConfig(epochs=50, batch_size=8, eval_every=1)  # one step per segment
    with pytest.raises(tr.NonFiniteLossError, match=r"loss became non-finite \(NaN or inf\) at step \d+ \(epoch \d+\); "
                                                    r"lower the learning rate") as info:
        tr.fit(LOSS, P0, data, optimizer=optax.sgd(3.0), config=config)
    error = info.value
    history = error.result.history["train_loss"]
    assert error.step > 2 and len(history) == error.step - 1 and np.isfinite(history).all()
    assert f"at step {error.step} (epoch {(error.step - 1) // 8})" in str(error)
    assert error.result.interrupted and error.result.error is error and error.result.diverged_step == error.step
    assert np.isfinite(np.asarray(error.result.params["w"])).all()
    assert any("are in `error.result`" in note for note in error.__notes__)


def test_fit_many_stops_only_the_diverging_model():
    params = {"w": jnp.stack([jnp.zeros(3), jnp.full(3, 1e200)])}   # model 1 overflows at once
    with pytest.warns(RuntimeWarning, match=r"model\(s\) \[1\] became non-finite at step\(s\) \[1\]"):
        result = tr.fit_many(LOSS, params, linear_problem(), optimizer=optax.sgd(0.05),
                             config=tr.TrainConfig(epochs=20, batch_size=8))
    assert result.diverged_step.tolist() == [-1, 1] and result.stopped_step[1] == 1
    assert result.history["train_loss"][-1, 0] < 1e-3
    np.testing.assert_array_equal(np.asarray(result.params["w"][1]), np.full(3, 1e200))


def test_fit_many_raises_when_every_model_diverges():
    params = {"w": jnp.full((2, 3), 1e200)}
    with pytest.raises(tr.NonFiniteLossError, match="at step 1 .*for every model"):
        tr.fit_many(LOSS, params, linear_problem(), optimizer=optax.sgd(0.05), config=tr.TrainConfig(epochs=2))


def _interrupt_at(evaluation):
    calls = []

    def stop_when(values):
        calls.append(values)
        if len(calls) == evaluation:
            raise KeyboardInterrupt
        return False
    return stop_when


def test_ctrl_c_during_fit_returns_the_best_parameters_so_far(capsys):
    data = linear_problem()
    config = tr.TrainConfig(epochs=50, batch_size=8, eval_every=4)
    result = tr.fit(LOSS, P0, data, val=data, metrics={"mse": LOSS}, optimizer=optax.sgd(0.01), config=config,
                    stop_when=_interrupt_at(3))
    assert result.interrupted and isinstance(result.error, KeyboardInterrupt)
    assert result.steps == 12 and result.best_step == 8 and len(result.history["step"]) == 2
    reference = tr.fit(LOSS, P0, data, val=data, metrics={"mse": LOSS}, optimizer=optax.sgd(0.01),
                       config=tr.TrainConfig(epochs=1, batch_size=8, eval_every=4), stop_when=lambda v: False)
    assert reference.history["step"].tolist() == [4, 8]
    assert "interrupted at step 12 of 400 (epoch 1); returning the best parameters so far (evaluation at step 8)" \
        in capsys.readouterr().err


def test_ctrl_c_with_a_checkpoint_path_saves_what_it_returns(tmp_path, capsys):
    data = linear_problem()
    result = tr.fit(LOSS, P0, data, val=data, metrics={"mse": LOSS}, optimizer=optax.sgd(0.01),
                    config=tr.TrainConfig(epochs=50, batch_size=8), stop_when=_interrupt_at(2),
                    checkpoint=tmp_path / "best", checkpoint_metadata={"kind": "linear", "note": "test"})
    assert result.saved_to == str(tmp_path / "best.npz")
    saved = ck.load(result.saved_to, expect_kind="linear")
    np.testing.assert_array_equal(saved.params["w"], np.asarray(result.params["w"]))
    assert saved.metadata["training"]["interrupted"] is True and saved.metadata["note"] == "test"
    assert saved.metadata["training"]["error"] == "KeyboardInterrupt: "
    assert f"saved to {tmp_path / 'best.npz'}" in capsys.readouterr().err


def test_ctrl_c_during_fit_many_keeps_every_model():
    data = linear_problem()
    result = tr.fit_many(LOSS, tr.stack([P0, P0]), data, val=data, metrics={"mse": LOSS}, optimizer=optax.sgd(0.01),
                         config=tr.TrainConfig(epochs=50, batch_size=8), stop_when=_interrupt_at(3))
    assert result.interrupted and result.steps == 24 and result.best_step.tolist() == [16, 16]
    assert np.asarray(result.params["w"]).shape == (2, 3)


def test_an_exception_during_fit_carries_the_result_and_saves_it(tmp_path):
    data = linear_problem()

    def stop_when(values):
        if values["mse"] < 1.0:
            raise RuntimeError("monitoring failed")
        return False

    with pytest.raises(RuntimeError, match="monitoring failed") as info:
        tr.fit(LOSS, P0, data, val=data, metrics={"mse": LOSS}, optimizer=optax.sgd(0.05),
               config=tr.TrainConfig(epochs=50, batch_size=8), stop_when=stop_when, checkpoint=tmp_path / "c.npz")
    result = info.value.result
    assert result.interrupted and result.steps > 0 and result.saved_to == str(tmp_path / "c.npz")
    assert ck.load(tmp_path / "c.npz").metadata["training"]["error"] == "RuntimeError: monitoring failed"


def test_a_finished_run_saves_its_checkpoint(tmp_path):
    result = tr.fit(LOSS, P0, linear_problem(), optimizer=optax.sgd(0.05), config=tr.TrainConfig(epochs=2),
                    checkpoint=tmp_path / "done.npz")
    saved = ck.load(result.saved_to, expect_kind="trained-params")
    assert not result.interrupted and saved.metadata["training"]["steps"] == 4
    assert saved.metadata["training"]["interrupted"] is False


_TRAIN_SCRIPT = textwrap.dedent('''
    import sys, json
    import numpy as np, jax.numpy as jnp, optax
    from lrpjax import train
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)); data = {"x": x, "y": x @ np.array([1.0, -2.0, 0.5])}
    loss = train.make_loss(lambda p, x, m: (x @ p["w"])[None], "mse")
    def ready(values):
        print("evaluated", flush=True)
        return False
    result = train.fit(loss, {"w": jnp.zeros(3)}, data, val=data, metrics={"mse": loss}, stop_when=ready,
                       optimizer=optax.sgd(1e-4), config=train.TrainConfig(epochs=10**6, batch_size=8),
                       checkpoint=sys.argv[1])
    print(json.dumps({"interrupted": result.interrupted, "steps": result.steps, "saved": result.saved_to,
                      "error": type(result.error).__name__}), flush=True)
''')


def test_a_real_sigint_stops_training_and_keeps_the_parameters(tmp_path):
    script = tmp_path / "train_forever.py"
    script.write_text(_TRAIN_SCRIPT)
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "kept.npz")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for _ in range(3):  # a few evaluations have finished: training is under way
            assert process.stdout.readline().strip() == "evaluated"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["interrupted"] and report["error"] == "KeyboardInterrupt" and report["steps"] >= 24
    assert "lrpjax.train: interrupted at step" in err and "Traceback" not in err
    saved = ck.load(tmp_path / "kept.npz")
    assert saved.metadata["training"]["steps"] == report["steps"] and saved.metadata["training"]["interrupted"]


# ============================================================ 4. batch mode streams and resumes

SENTENCES = [f"a {w} film" if i % 5 else "" for i, w in enumerate(WORDS * 3, start=1)]  # 30 lines, 6 empty (failed records: exit status 1)


def batch(tmp_path, checkpoint, *extra, name="out.jsonl", source=None):
    source = source or write_input(tmp_path, SENTENCES)
    out = tmp_path / name
    status = cli.main(["explain", "--checkpoint", str(checkpoint), "--method", "random", "--seed", "7",
                       "--input", str(source), "--output", str(out), *extra])
    return status, out


@pytest.mark.parametrize("chunk", ["1", "4", "7", "1000"])
def test_chunked_output_equals_the_output_of_one_chunk(tmp_path, capsys, tiny_checkpoint, chunk):
    _, whole = batch(tmp_path, tiny_checkpoint, name="whole.jsonl")
    status, chunked = batch(tmp_path, tiny_checkpoint, "--chunk-size", chunk, "--batch-size", "4", name="c.jsonl")
    _, whole4 = batch(tmp_path, tiny_checkpoint, "--batch-size", "4", name="w4.jsonl")
    assert status == 1 and chunked.read_bytes() == whole4.read_bytes()
    assert [json.loads(l)["line"] for l in whole.read_text().splitlines()] == list(range(1, 31))


def test_resume_after_a_cut_off_last_record_equals_an_uninterrupted_run(tmp_path, capsys, tiny_checkpoint):
    _, full = batch(tmp_path, tiny_checkpoint, name="full.jsonl")
    data = full.read_bytes()
    cut = data[: data.index(b"\n", len(data) // 2) + 25]   # 15-odd whole records and a piece of the next
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(cut)
    status, _ = batch(tmp_path, tiny_checkpoint, "--resume", name="partial.jsonl")
    assert status == 1 and partial.read_bytes() == data
    assert "after 1" in capsys.readouterr().err


def test_resume_of_a_complete_output_changes_nothing(tmp_path, capsys, tiny_checkpoint):
    _, full = batch(tmp_path, tiny_checkpoint)
    before = full.read_bytes()
    status, _ = batch(tmp_path, tiny_checkpoint, "--resume")
    assert status == 1 and full.read_bytes() == before
    assert "wrote 0 record(s) to" in capsys.readouterr().err


def test_resume_without_an_output_starts_afresh(tmp_path, capsys, tiny_checkpoint):
    status, out = batch(tmp_path, tiny_checkpoint, "--resume", name="new.jsonl")
    assert status == 1 and len(out.read_text().splitlines()) == 30


@pytest.mark.parametrize("prepare, message", [
    (lambda out, src: src.write_text("another input\n" * 40), "its record 1 is for 'a good film', but line 1 of .* reads 'another input'"),
    (lambda out, src: out.write_text(out.read_text().replace('"line": 3,', '"line": 9,')),
     r"its line 3 is not the record of input line 3"),
    (lambda out, src: out.write_text(out.read_text().replace('"line": 3,', '{broken', 1)),
     r"line 3 is not a complete JSON record, and more lines follow it"),
    (lambda out, src: src.write_text("a good film\n"), "it holds 5 records, but .* has only 1 line"),
])
def test_resume_refuses_an_output_that_is_not_a_prefix_of_this_run(tmp_path, capsys, tiny_checkpoint, prepare, message):
    source = write_input(tmp_path, SENTENCES)
    out = tmp_path / "out.jsonl"
    out.write_text("".join(l + "\n" for l in batch(tmp_path, tiny_checkpoint, source=source)[1].read_text().splitlines()[:5]))
    prepare(out, source)
    capsys.readouterr()
    status, _ = batch(tmp_path, tiny_checkpoint, "--resume", source=source)
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("lrpjax: error: cannot resume") and err.count("\n") == 1
    assert re.search(message, err), err


def test_resume_refuses_other_options(tmp_path, capsys, tiny_checkpoint):
    source = write_input(tmp_path, SENTENCES)
    out = tmp_path / "out.jsonl"
    cli.main(["explain", "--checkpoint", str(tiny_checkpoint), "--method", "gi", "--input", str(source),
              "--output", str(out)])
    out.write_text("".join(l + "\n" for l in out.read_text().splitlines()[:4]))
    status = cli.main(["explain", "--checkpoint", str(tiny_checkpoint), "--method", "lrp-all", "--input", str(source),
                       "--output", str(out), "--resume"])
    assert status == 1 and "it was written with --method gi" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["explain", "--input", "x.txt", "--resume"], "--resume continues a batch run written to a file"),
    (["explain", "--input", "x.txt", "--output", "-", "--resume"], "--resume continues a batch run"),
    (["explain", "--resume", "a film"], "--resume continues a batch run"),
])
def test_resume_needs_an_input_and_an_output_file(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_an_output_that_is_the_input_or_in_a_missing_directory_is_refused_before_any_work(tmp_path, capsys):
    source = write_input(tmp_path, ["a film"])
    assert cli.main(["explain", "--input", str(source), "--output", str(source)]) == 1
    assert "is the input file; writing it would destroy the input" in capsys.readouterr().err
    assert source.read_text() == "a film\n"
    assert cli.main(["explain", "--input", str(source), "--output", str(tmp_path / "no" / "o.jsonl")]) == 1
    assert re.search(r"cannot write --output '.*o.jsonl': the directory '.*no' does not exist", capsys.readouterr().err)


def test_the_jsonl_sink_scans_trims_and_enforces_order(tmp_path):
    from lrpjax.io.sinks import JsonlSink, SinkError, open_sink

    path = tmp_path / "o.jsonl"
    path.write_bytes(b'{"line": 1, "x": 1}\n{"line": 2, "failed": true}\n{"line": 3, "x"')
    with open_sink(path, resume=True) as sink:
        assert (sink.done, sink.failed, sink.last) == (2, 1, {"line": 2, "failed": True})
        with pytest.raises(SinkError, match="expected line 3, got 5"):
            sink.write({"line": 5})
        sink.write({"line": 3, "x": 3})
    assert path.read_text().splitlines()[-1] == '{"line": 3, "x": 3}'
    with pytest.raises(SinkError, match="cannot resume an output written to stdout"):
        JsonlSink(None, resume=True)


_SIGNAL_LINES = [f"{w} film number {i}" if i % 6 else "" for i, w in enumerate(WORDS * 4, start=1)]  # 40 lines (6 empty: exit 1)


def _interrupted_run(tmp_path, checkpoint, feed, records_before_signal, signals=2):
    """Runs batch mode on stdin, feeds `feed` lines, waits until the output holds `records_before_signal`
    records, sends SIGINT `signals` times while the command waits for more input."""
    env = dict(os.environ, NO_COLOR="1")
    env.pop("JAX_ENABLE_X64", None)
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "lrpjax.app.cli", "explain", "--checkpoint", str(checkpoint),
                                "--method", "random", "--input", "-", "--output", str(out), "--chunk-size", "4"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=ROOT)
    try:
        process.stdin.write("".join(line + "\n" for line in feed))
        process.stdin.flush()
        deadline = time.monotonic() + 240
        while not (out.exists() and out.read_text().count("\n") >= records_before_signal):
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        for _ in range(signals):
            process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    return process.returncode, err, out


def test_sigint_leaves_a_valid_prefix_and_resume_completes_it(tmp_path, tiny_checkpoint):
    source = write_input(tmp_path, _SIGNAL_LINES, name="all.txt")
    status, err, out = _interrupted_run(tmp_path, tiny_checkpoint, _SIGNAL_LINES[:10], 8)
    assert status == 130 and "Traceback" not in err
    assert "lrpjax: interrupted: 8 record(s) written to" in err and "--resume to continue" in err
    assert [strict_json(l)["line"] for l in out.read_text().splitlines()] == list(range(1, 9))
    resumed = run_cli("explain", "--checkpoint", str(tiny_checkpoint), "--method", "random", "--input", str(source),
                      "--output", str(out), "--chunk-size", "4", "--resume")
    assert resumed.returncode == 1, resumed.stderr
    whole = run_cli("explain", "--checkpoint", str(tiny_checkpoint), "--method", "random", "--input", str(source),
                    "--output", str(tmp_path / "whole.jsonl"))
    assert whole.returncode == 1 and out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def test_two_interruptions_then_resume_equal_one_uninterrupted_run(tmp_path, tiny_checkpoint):
    source = write_input(tmp_path, _SIGNAL_LINES, name="all.txt")
    status, err, out = _interrupted_run(tmp_path, tiny_checkpoint, _SIGNAL_LINES[:6], 4, signals=3)
    assert status == 130 and "Traceback" not in err and out.read_text().count("\n") == 4
    # a second run goes on from the same prefix through stdin and is interrupted again, after 12 records
    env = dict(os.environ, NO_COLOR="1")
    env.pop("JAX_ENABLE_X64", None)
    process = subprocess.Popen([sys.executable, "-m", "lrpjax.app.cli", "explain", "--checkpoint", str(tiny_checkpoint),
                                "--method", "random", "--input", "-", "--output", str(out), "--chunk-size", "4",
                                "--resume"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        process.stdin.write("".join(line + "\n" for line in _SIGNAL_LINES[:14]))
        process.stdin.flush()
        deadline = time.monotonic() + 240
        while out.read_text().count("\n") < 12:
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and "12 record(s) written" in err
    resumed = run_cli("explain", "--checkpoint", str(tiny_checkpoint), "--method", "random", "--input", str(source),
                      "--output", str(out), "--chunk-size", "4", "--resume")
    assert resumed.returncode == 1 and "after 12 kept from the previous run" in resumed.stderr
    whole = run_cli("explain", "--checkpoint", str(tiny_checkpoint), "--method", "random", "--input", str(source),
                    "--output", str(tmp_path / "whole.jsonl"), "--chunk-size", "5")
    assert whole.returncode == 1 and out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


# ======================================================================== 5. line splitting


@pytest.mark.parametrize("data, texts", [
    (b"one\ntwo\n", ["one", "two"]),
    (b"one\x0ctwo\nthree\n", ["one\x0ctwo", "three"]),                          # form feed stays in its line
    ("one\u2028two\u2029x\nthree\n".encode(), ["one\u2028two\u2029x", "three"]),  # Unicode separators too
    ("a\x85b\x1cc\x1dd\x1ee\n".encode(), ["a\x85b\x1cc\x1dd\x1ee"]),              # NEL, FS, GS, RS
    (b"one\rtwo\n", ["one\rtwo"]),                                                # a lone CR is no line end
    (b"one\r\ntwo\r\n", ["one", "two"]),                                          # CRLF tolerated
    (b"\xef\xbb\xbfone\ntwo\n", ["one", "two"]),                                  # BOM stripped
    (b"one\ntwo", ["one", "two"]),                                                # last line without '\n'
    (b"\n\n", ["", ""]),
    (b"", []),
])
def test_lines_end_at_newline_only_and_are_numbered_as_by_wc(tmp_path, data, texts):
    from lrpjax.data.lines import LineReader, count_lines

    path = tmp_path / "in.txt"
    path.write_bytes(data)
    with LineReader(path) as reader:
        lines = list(reader)
    assert [line.text for line in lines] == texts and [line.number for line in lines] == list(range(1, len(texts) + 1))
    assert all(line.error is None for line in lines)
    assert count_lines(path) == len(texts) == data.count(b"\n") + (not data.endswith(b"\n") and data != b"")


def test_a_line_that_is_not_utf8_is_reported_alone(tmp_path):
    from lrpjax.data.lines import LineReader

    path = tmp_path / "in.txt"
    path.write_bytes(b"good\nbad \xff byte\nfine\n")
    lines = list(LineReader(path))
    assert [l.error for l in lines] == [None, "line 2 is not valid UTF-8 (byte 0xff at byte 5)", None]
    assert lines[1].text == "bad \ufffd byte" and lines[2].text == "fine"


def test_an_overlong_line_is_reported_and_skipped_without_reading_it_whole(tmp_path):
    from lrpjax.data.lines import LineReader

    path = tmp_path / "in.txt"
    path.write_bytes(b"short\n" + b"x" * 5000 + b"\nafter\n")
    lines = list(LineReader(path, max_line_bytes=1000))
    assert [(l.number, l.text, l.error) for l in lines] == [
        (1, "short", None), (2, "", "line 2 is longer than 1000 bytes"), (3, "after", None)]


def test_batch_records_carry_the_line_numbers_of_the_file(tmp_path, capsys, tiny_checkpoint):
    path = tmp_path / "in.txt"
    path.write_bytes(b"\xef\xbb\xbfa good film\r\nnot\x0cfun\nvery" + "\u2028".encode() + b"dull\n\xffbad\nlast film")
    out = tmp_path / "out.jsonl"
    status = cli.main(["explain", "--checkpoint", str(tiny_checkpoint), "--input", str(path), "--output", str(out)])
    records = [strict_json(l) for l in out.read_text(encoding="utf-8").splitlines()]
    assert status == 1 and [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["tokens"] == ["a", "good", "film"] and records[1]["tokens"] == ["not", "fun"]
    assert records[2]["tokens"] == ["very", "dull"] and records[4]["tokens"] == ["last", "film"]
    assert records[3]["failed"] is True and "line 4 is not valid UTF-8" in records[3]["error"]
    assert records[2]["sentence"] == "very\u2028dull" and "\u2028" not in out.read_text(encoding="utf-8")


def test_treebank_files_with_a_bom_and_crlf_read_as_without(tmp_path):
    plain = "(3 (2 a) (3 (3 lovely) (2 film)))\n(1 (2 not) (1 good))\n"
    (tmp_path / "plain.txt").write_text(plain)
    (tmp_path / "dos.txt").write_bytes(b"\xef\xbb\xbf" + plain.replace("\n", "\r\n").encode())
    assert read_trees(tmp_path / "dos.txt") == read_trees(tmp_path / "plain.txt")
    (tmp_path / "bad.txt").write_bytes(b"(3 (2 a) (3 film))\n(2 (2 \xff))\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: line 2 is not valid UTF-8"):
        read_trees(tmp_path / "bad.txt")


def test_digits_files_with_a_bom_read_and_binary_files_are_refused(tmp_path):
    from lrpjax.data import digits

    row = ",".join(["0"] * 64 + ["3"])
    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbf" + (row + "\r\n" + row + "\n").encode())
    images, labels = digits.load_digits(tmp_path / "d.csv")
    assert images.shape == (2, 64) and labels.tolist() == [3, 3]
    (tmp_path / "bin.csv").write_bytes(b"\x00\xff\xfe" * 10)
    with pytest.raises(ValueError, match=r"bin.csv: not a text file of integers"):
        digits.load_digits(tmp_path / "bin.csv")
    (tmp_path / "cut.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match=r"cut.csv.gz: cannot be read"):
        digits.load_digits(tmp_path / "cut.csv.gz")


# ===================================================================== 6. rule sets checked when built


@pytest.mark.parametrize("kwargs, message", [
    ({"linear": "epsilon"}, r"`linear` of RuleSet must be one of Epsilon, Z, ZPlus, AlphaBeta, Gamma, Flat, WSquare, ZB"),
    ({"linear": rules.Gate("prop", 0.1)}, r"`linear` of RuleSet must be one of .*got Gate\(mode='prop'"),
    ({"gate": rules.Epsilon(0.1)}, r"`gate` of RuleSet must be one of Gate .*got Epsilon\(eps=0.1"),
    ({"gate": "all"}, r"`gate` of RuleSet must be one of Gate"),
    ({"accumulate": rules.Gate()}, r"`accumulate` of RuleSet must be one of Epsilon"),
    ({"accumulate": rules.Z()}, r"`accumulate` of RuleSet must be one of Epsilon .*got Z\(share=False\)"),
    ({"linear": rules.Epsilon}, r"`linear` of RuleSet must be a rule instance .*got the class Epsilon itself"),
    ({"layers": [("out", rules.RuleSet())]}, r"`layers` of RuleSet must be a tuple"),
    ({"layers": (("out",),)}, r"`layers` of RuleSet must hold \(layer name, RuleSet\) pairs"),
])
def test_a_rule_set_field_of_the_wrong_kind_fails_when_built(kwargs, message):
    with pytest.raises(TypeError, match=message):
        rules.RuleSet(**kwargs)


def test_a_user_rule_with_the_right_method_is_accepted_and_an_unhashable_one_refused():
    class Halve:
        def linear(self, xs, Ws, b, z, r):
            return rules.Epsilon().linear(xs, Ws, b, z, 0.5 * r)

    assert isinstance(rules.RuleSet(linear=Halve()).linear, Halve)

    class Unhashable(Halve):
        __hash__ = None

    with pytest.raises(TypeError, match="`linear` of RuleSet must be hashable"):
        rules.RuleSet(linear=Unhashable())


@pytest.mark.parametrize("build", [
    lambda eps: rules.Epsilon(eps),
    lambda eps: rules.Gate("prop", eps),
    lambda eps: rules.Gamma(0.25, eps),
    lambda eps: rules.preset("lrp-abs", eps=eps),
])
def test_a_stabiliser_that_would_overflow_float32_is_refused(build):
    with pytest.raises(ValueError, match=r"must be at most 1e\+30 \(a larger stabiliser overflows float32"):
        build(1e31)
    assert build(1e30) is not None


@pytest.mark.parametrize("eps", [float("nan"), float("inf"), -1e-3])
def test_a_stabiliser_must_be_finite_and_non_negative(eps):
    with pytest.raises(ValueError, match="`eps` of Epsilon must be a finite number >= 0"):
        rules.Epsilon(eps)


# ================================================================ 7. command-line errors, no traceback


@pytest.mark.parametrize("argv, message", [
    (["explain", "--seed", str(2**32), "a film"], r"argument --seed: invalid seed '4294967296': --seed must fit int32 "
                                                  r"or uint32, \[-2147483648, 4294967295\]"),
    (["explain", "--seed", str(-(2**31) - 1), "a film"], "--seed must fit int32 or uint32"),
    (["explain", "--seed", "abc", "a film"], "argument --seed: invalid seed 'abc': expected an integer"),
    (["explain", "--png", "bars.jpg", "a film"], "--figure 'bars.jpg': the file must end in .png, .pdf or .svg"),
    (["explain", "--figure", "bars.gif", "a film"], "--figure 'bars.gif': the file must end in .png, .pdf or .svg"),
    (["explain", "--png", "bars", "a film"], "--figure 'bars': the file must end in .png, .pdf or .svg"),
    (["explain", "--eps", "1e31", "a film"], r"invalid eps '1e31': at most 1e\+30"),
    (["explain", "--chunk-size", "0", "--input", "x.txt"], "argument --chunk-size: invalid value '0'"),
])
def test_option_errors_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("seed", ["4294967295", "-2147483648"])
def test_seeds_at_the_limits_work(seed, capsys, tiny_checkpoint):
    assert cli.main(["explain", "--checkpoint", str(tiny_checkpoint), "--method", "random", "--seed", seed,
                     "a good film"]) == 0


def test_a_png_with_an_upper_case_extension_is_written(tmp_path, capsys, tiny_checkpoint):
    target = tmp_path / "BARS.PNG"
    assert cli.main(["explain", "--checkpoint", str(tiny_checkpoint), "--png", str(target), "a good film"]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG" and leftovers(tmp_path) == []


@pytest.mark.parametrize("change, message", [
    (lambda p: p["model"]["left"].update(W=np.ones((4, 7))), r"cannot load the model: checkpoint .*'params/model/left/W' "
                                                             r"has shape \(4, 7\); expected \(4, 12\)"),
    (lambda p: p.update(embed=np.ones((12, 4), np.int64)), r"cannot load the model: .*'params/embed' has dtype int64"),
])
def test_a_checkpoint_of_the_wrong_layout_is_one_clear_line(tmp_path, capsys, change, message):
    path = tampered_sst(tmp_path, change)
    assert cli.main(["explain", "--checkpoint", str(path), "a film"]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1


def test_an_unexpected_error_prints_one_line_and_a_hint(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(cli, "_explain", broken)
    assert cli.main(["explain", "a film"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["lrpjax: error: RuntimeError: something unforeseen",
                                "lrpjax: hint: this is not an expected failure; run again with LRPJAX_DEBUG=1 to see "
                                "the Python traceback, and report it"]
    monkeypatch.setenv("LRPJAX_DEBUG", "1")
    with pytest.raises(RuntimeError, match="unforeseen"):
        cli.main(["explain", "a film"])


def test_ctrl_c_in_single_sentence_mode_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_explain", interrupted)
    assert cli.main(["explain", "a film"]) == 130
    assert capsys.readouterr().err == "lrpjax: interrupted\n"


def test_no_traceback_reaches_the_terminal_from_a_broken_checkpoint(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    done = run_cli("explain", "--checkpoint", str(path), "a film")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("lrpjax: error: cannot load the model: checkpoint")


# ===================================================================== 8. inputs: dtypes and precision


def small_model(dtype=jnp.float64, sequences=False):
    """A bidirectional LSTM classifier (E=4, H=3, C=3), or a GRU tagger (one output per step); random
    biases (they absorb relevance)."""
    from lrpjax.cells import GRUCell, StandardCell
    from lrpjax.models import Dense, Recurrent, Sequential

    if sequences:
        model = Sequential((Recurrent(GRUCell(), 2, sequences=True), Dense(2)))
    else:
        model = Sequential((Recurrent(StandardCell(), 3, bidirectional=True), Dense(3)))
    params = model.init(jax.random.PRNGKey(0), 4, dtype)
    rng = np.random.default_rng(7)
    return model, {layer: {name: (a + jnp.asarray(0.3 * rng.normal(size=a.shape), dtype) if name == "b" else a)
                           for name, a in leaves.items()} for layer, leaves in params.items()}


ENTRY_POINTS = {
    "call": lambda m, p, x: m(p, x, 1),
    "tokens": lambda m, p, x: m.tokens(p, x, 1),
    "full": lambda m, p, x: m.full(p, x, 1).relevance,
    "all": lambda m, p, x: m.all(p, x),
    "batch": lambda m, p, x: m.batch(p, x[None], 1),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_float64_values_that_overflow_float32_parameters_are_refused_at_every_entry_point(entry):
    import lrpjax

    model, params = small_model(jnp.float32)
    x = np.ones((3, 4))
    x[1, 2] = -1e39
    name = "X" if entry == "batch" else "x"
    with pytest.raises(ValueError, match=rf"^`{name}` has values up to 1e\+39 that overflow float32, the parameters' "
                                         rf"dtype \(`{name}` is float64\); scale the input"):
        ENTRY_POINTS[entry](lrpjax.lrp(model.apply, "lrp-all"), params, x)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float64])
def test_inputs_are_cast_to_the_parameters_dtype(entry, dtype):
    import lrpjax

    model, params = small_model(jnp.float32)
    x = np.asarray(np.random.default_rng(0).normal(size=(3, 4)), np.float32)
    method = lrpjax.lrp(model.apply, "lrp-all")
    given = jnp.asarray(x).astype(dtype)
    got = ENTRY_POINTS[entry](method, params, given)
    want = ENTRY_POINTS[entry](method, params, np.asarray(given.astype(jnp.float32)))
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_float32_inputs_are_cast_up_to_float64_parameters_exactly():
    import lrpjax

    model, params = small_model(jnp.float64)
    x = np.asarray(np.random.default_rng(1).normal(size=(5, 4)), np.float32)
    method = lrpjax.lrp(model.apply, "lrp-prop")
    got = method(params, x, 0)
    assert got.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(got), np.asarray(method(params, x.astype(np.float64), 0)))


def test_inputs_overflowing_float16_parameters_are_refused():
    import lrpjax

    model, params = small_model(jnp.float16)
    with pytest.raises(ValueError, match=r"`x` has values up to 7e\+04 that overflow float16, the parameters' dtype "
                                         r"\(`x` is float32\)"):
        lrpjax.gradient(model.apply)(params, np.full((2, 4), 7e4, np.float32), 0)


@pytest.mark.parametrize("x, name, dtype", [
    (np.ones((3, 4), np.int32), "x", "int32"),
    (np.ones((3, 4), bool), "x", "bool"),
    (np.ones((1, 3, 4), np.int64), "X", "int64"),
])
def test_integer_and_boolean_inputs_name_the_expected_floating_dtype(x, name, dtype):
    import lrpjax

    model, params = small_model(jnp.float64)
    method = lrpjax.lrp(model.apply, "lrp-all")
    hint = "" if dtype == "bool" else (r" Token ids go into a model whose first layer is an Embedding "
                                       r"\(lrpjax.models.Embedding\); this one reads embedded vectors\.")
    with pytest.raises(TypeError, match=rf"^`{name}` must be floating point \(float64, the parameters' dtype\); got "
                                        rf"dtype {dtype}\.{hint}$"):
        method.batch(params, x, 0) if name == "X" else method(params, x, 0)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_values_in_the_input_itself_are_named_as_such_not_as_overflow(bad):
    import lrpjax

    model, params = small_model(jnp.float32)
    x = np.ones((3, 4))
    x[0, 0] = bad
    with pytest.raises(ValueError, match=r"^`x` contains non-finite values \(NaN or inf\)\.$"):
        lrpjax.lrp(model.apply, "lrp-all")(params, x, 0)


def test_the_model_refuses_an_input_narrower_than_its_parameters_with_a_readable_error():
    model, params = small_model(jnp.float32)
    with pytest.raises(TypeError, match=r"^`x` has dtype float16, narrower than the parameters' float32; cast it "
                                        r"\(x.astype\('float32'\)\)"):
        model.apply(params, np.ones((3, 4), np.float16))
    assert model.apply(params, np.ones((3, 4), np.float32)).dtype == jnp.float32


def test_a_traced_half_precision_input_is_cast_under_jit():
    import lrpjax

    model, params = small_model(jnp.float32)
    method = lrpjax.lrp(model.apply, "lrp-half")
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 4)), jnp.bfloat16)
    got = jax.jit(lambda x_: method(params, x_, 2))(x)
    assert got.dtype == jnp.float32
    # Under the outer jit the method's program is compiled into another one (other fusions): equal to
    # float32 rounding, not bit for bit.
    np.testing.assert_allclose(np.asarray(got), np.asarray(method(params, x.astype(jnp.float32), 2)), rtol=1e-5,
                               atol=1e-7)


def test_explain_dataset_casts_sequences_and_refuses_one_that_overflows():
    import lrpjax
    from lrpjax import datasets as scale

    model, params = small_model(jnp.float32)
    method = lrpjax.lrp(model.apply, "lrp-all")
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(t, 4)).astype(np.float32) for t in (2, 5)]
    half = scale.explain_dataset(method, params, [x.astype(np.float16) for x in xs], chunk_size=2)
    want = scale.explain_dataset(method, params, [x.astype(np.float16).astype(np.float32) for x in xs], chunk_size=2)
    assert all(a.dtype == np.float32 and np.array_equal(a, b) for a, b in zip(half.relevance, want.relevance))
    big = [xs[0].astype(np.float64), np.full((3, 4), 5e38)]
    with pytest.raises(ValueError, match=r"^`sequences\[1\]` has values up to 5e\+38 that overflow float32"):
        scale.explain_dataset(method, params, big, chunk_size=2)
    with pytest.raises(TypeError, match=r"^`sequences\[0\]` must be floating point \(float32, the parameters' dtype\)"):
        scale.explain_dataset(method, params, [np.ones((2, 4), np.int32)])


@pytest.mark.parametrize("check_finite", [True, False])
def test_a_streamed_item_that_overflows_is_refused_even_without_the_finiteness_check(check_finite):
    import lrpjax
    from lrpjax.datasets import stream

    model, params = small_model(jnp.float32)
    items = [np.ones((2, 4)), np.full((2, 4), -2e39)]
    with pytest.raises(ValueError, match=r"^`items` \(sequence 1\) has values up to 2e\+39 that overflow float32"):
        list(stream.iter_stream(lrpjax.gradient(model.apply), params, items, chunk_size=2, check_finite=check_finite))


def test_a_batcher_that_refused_an_item_keeps_working():
    import lrpjax
    from lrpjax.datasets import stream

    model, params = small_model(jnp.float32)
    batcher = stream.Batcher(lrpjax.gradient(model.apply), params, chunk_size=2)
    assert batcher.add(0, np.ones((2, 4))) == []
    with pytest.raises(ValueError, match="overflow float32"):
        batcher.add(1, np.full((20, 4), 1e39))     # a new bucket: nothing of it may stay behind
    chunks = batcher.flush()
    assert [c.indices.tolist() for c in chunks] == [[0]]


# ===================================================================== 9. conservation residuals


def residual_data():
    rng = np.random.default_rng(4)
    return [rng.normal(size=(t, 4)) for t in (1, 3, 7, 9, 12)]


# Each preset once, sharing and not in turn (each costs three dataset programs and five `.full` programs;
# conservation under sharing for every preset is the property tests' (tests/core, tests/models)).
@pytest.mark.parametrize("name, share", [("lrp-all", False), ("lrp-prop", True), ("lrp-abs", False),
                                         ("lrp-half", True)])
def test_dataset_residuals_equal_full_per_sequence_whatever_the_padding(name, share):
    import lrpjax
    from lrpjax import datasets as scale

    model, params = small_model()
    method = lrpjax.lrp(model.apply, rules.preset(name, 0.2 if name == "lrp-prop" else 1e-2, share))
    xs = residual_data()
    plain = scale.explain_dataset(method, params, xs, chunk_size=2)
    d = scale.explain_dataset(method, params, xs, chunk_size=2, residual=True)
    wide = scale.explain_dataset(method, params, xs, chunk_size=2, buckets=(16,), residual=True)
    want = np.array([float(method.full(params, x, int(t)).residual) for x, t in zip(xs, d.targets)])
    assert d.residuals.shape == (5,) and d.residuals.dtype == np.float64
    np.testing.assert_allclose(d.residuals, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(wide.residuals, want, rtol=1e-9, atol=1e-12)
    assert plain.residuals is None
    assert all(np.array_equal(a, b) for a, b in zip(plain.relevance, d.relevance))   # relevance unchanged
    if share:
        assert np.abs(d.residuals).max() < 1e-12
    else:
        assert np.abs(d.residuals).min() > 1e-8


def test_dataset_residuals_for_every_class_and_for_a_list_of_methods():
    import lrpjax
    from lrpjax import datasets as scale

    model, params = small_model()
    xs = residual_data()[:3]
    sweep = scale.eps_sweep(model.apply, "lrp-all", (0.0, 0.1))
    d = scale.explain_dataset(sweep, params, xs, "all", chunk_size=2, residual=True)
    assert d.residuals.shape == (3, 2, 3)
    want = np.array([[[float(m.full(params, x, c).residual) for c in range(3)] for m in sweep] for x in xs])
    np.testing.assert_allclose(d.residuals, want, rtol=1e-9, atol=1e-12)
    assert np.abs(d.residuals[:, 0]).max() < 1e-12 < np.abs(d.residuals[:, 1]).min()


def test_dataset_residuals_of_a_per_step_model_are_one_per_step():
    import lrpjax
    from lrpjax import datasets as scale

    model, params = small_model(sequences=True)
    method = lrpjax.lrp(model.apply, rules.preset("lrp-abs", 1e-2))
    xs = residual_data()[:3]
    d = scale.explain_dataset(method, params, xs, chunk_size=2, residual=True)
    assert [r.shape for r in d.residuals] == [(1,), (3,), (7,)]
    for x, r, t in zip(xs, d.residuals, d.targets):
        want = [float(method.full(params, x, (s, int(t[s]))).residual) for s in range(len(x))]
        np.testing.assert_allclose(r, want, rtol=1e-9, atol=1e-12)


def test_streamed_residuals_equal_the_dataset_residuals():
    import lrpjax
    from lrpjax import datasets as scale
    from lrpjax.datasets import stream

    model, params = small_model()
    method = lrpjax.lrp(model.apply, rules.preset("lrp-all", 1e-2))
    xs = residual_data()
    d = scale.explain_dataset(method, params, xs, chunk_size=2, residual=True)
    streamed = np.zeros(len(xs))
    for chunk in stream.iter_stream(method, params, xs, chunk_size=2, residual=True):
        streamed[chunk.indices] = chunk.residuals
    np.testing.assert_array_equal(streamed, d.residuals)


def test_residual_is_none_for_methods_without_one_and_a_mixed_list_is_refused():
    import lrpjax
    from lrpjax import datasets as scale

    model, params = small_model()
    xs = residual_data()[:2]
    assert scale.explain_dataset(lrpjax.gradient(model.apply), params, xs, residual=True).residuals is None
    with pytest.raises(ValueError, match=r"^`residual=True`: the methods \['occlusion-f'\] have no conservation "
                                         r"residual \(only LRP on a model of lrpjax.models has one\)"):
        scale.explain_dataset([lrpjax.lrp(model.apply), lrpjax.occlusion(model.apply)], params, xs, tokens=True,
                              residual=True)
    with pytest.raises(TypeError, match=r"^`residual` must be a bool; got str\.$"):
        scale.explain_dataset(lrpjax.lrp(model.apply), params, xs, residual="yes")


@pytest.mark.parametrize("name", ["lrp-all", "lrp-prop", "lrp-abs", "lrp-half"])
def test_without_a_stabiliser_every_preset_conserves_with_the_bias_shares(name):
    import lrpjax

    model, params = small_model()
    full = lrpjax.lrp(model.apply, rules.preset(name)).full(params, residual_data()[2], 0)
    bias = sum(float(np.sum(leaf)) for leaf in jax.tree_util.tree_leaves(full.params))
    assert abs(bias) > 1e-6                                       # the biases absorb a part
    assert abs(float(full.residual)) < 1e-12 * max(1.0, float(jnp.abs(full.relevance).sum()))


@pytest.mark.parametrize("z, eps", [(0.8, 1e-2), (-0.8, 1e-1), (1e-6, 1e-3)])
def test_the_residual_of_the_epsilon_rule_is_the_stabilisers_share(z, eps):
    import lrpjax
    from lrpjax.models import MLP

    mlp = MLP((3, 2))
    x = np.array([0.5, -1.0, 2.0])
    W = np.array([[0.4, 1.0], [0.2, -1.0], [0.3, 0.5]])
    b = np.array([z - x @ W[:, 0], 0.0])                        # output 0 has pre-activation z
    params = {"out": {"W": W, "b": b}}
    full = lrpjax.lrp(mlp.apply, rules.RuleSet(linear=rules.Epsilon(eps))).full(params, x, 0)
    sign = 1.0 if z >= 0 else -1.0
    # rtol: z = 1e-6 is itself the difference of numbers near 1, good to about 1e-10 relative
    np.testing.assert_allclose(float(full.residual), z * eps * sign / (z + eps * sign), rtol=1e-8)
    if z == 1e-6:   # a denominator small against eps: the stabiliser keeps nearly all of R
        assert float(full.residual) > 0.99 * float(full.target_score)


def test_an_output_without_positive_contributions_loses_its_relevance_under_zplus():
    import lrpjax
    from lrpjax.models import MLP

    mlp = MLP((2, 1))
    params = {"out": {"W": np.array([[-1.0], [-2.0]]), "b": np.array([0.0])}}
    full = lrpjax.lrp(mlp.apply, rules.RuleSet(linear=rules.ZPlus())).full(params, np.array([1.0, 0.5]), 0)
    assert float(full.target_score) == -2.0
    assert float(full.residual) == -2.0 and not np.any(np.asarray(full.relevance))


def test_lrp_prop_shares_are_unbounded_near_cancelling_pre_activations():
    gate = rules.Gate("prop")
    r_g, r_s = gate.split(jnp.array([1.0]), jnp.array([-1.0 + 1e-9]), jnp.array([1.0]))
    assert float(r_g[0]) > 1e8 and float(r_s[0]) < -1e8          # each share far beyond the relevance
    assert abs(float(r_g[0] + r_s[0]) - 1.0) < 1e-6                # they still sum to it, up to rounding


def test_a_full_disk_under_any_atomic_write_names_the_file(tmp_path, monkeypatch):
    from lrpjax.io import files

    target = tmp_path / "page.html"
    target.write_text("before")

    def full(handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"No space left on device: writing '.*page\.html' \(the previous file") as info:
        files.atomic_write(target, full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "before" and leftovers(tmp_path) == []
