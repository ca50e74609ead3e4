"""Checkpoints of encoder-decoders (lrpjax.io.checkpoints.save_model / load_model with a Seq2Seq): bit-exact
float64 round trips for LSTM/GRU, every score kind, input feeding, ids and vectors; arrays that do not fit the
stored config refused naming the array; the shipped checkpoints/seq2seq_reversal.npz reads as a model whose
greedy decoding reverses the study's test sources."""

import json
import pathlib

import jax
import numpy as np
import pytest

from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.io import checkpoints as ck
from lrpjax.models import Seq2Seq, Sequential, Dense, Recurrent

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORDS = ["<pad>", "<s>", "</s>", "a", "b", "c", "d"]

CONFIGS = {
    "lstm-bi-general-ids": Seq2Seq(4, StandardCell(), encoder_units=3, units=5),
    "gru-dot-feeding-ids": Seq2Seq(3, GRUCell(), encoder_units=3, units=6, combine_units=4, score="dot",
                                   input_feeding=True),
    "lstm-forward-additive-vectors": Seq2Seq(4, StandardCell(), encoder_units=2, units=5, bidirectional=False,
                                             score="additive", attention_units=3, reads_ids=False),
    "gru-bi-additive-feeding-ids": Seq2Seq(2, GRUCell(), encoder_units=2, units=3, score="additive",
                                           attention_units=2, input_feeding=True),
}


def numpy_params(model, key, V=len(WORDS), E=3):
    return jax.tree_util.tree_map(np.array, model.init(key, V, E, np.float64))   # writable copies


def assert_bit_equal(a, b, where=""):
    assert isinstance(b, dict) and set(a) == set(b), where
    for name in a:
        if isinstance(a[name], dict):
            assert_bit_equal(a[name], b[name], f"{where}/{name}")
        else:
            assert b[name].dtype == a[name].dtype == np.float64 and b[name].shape == a[name].shape, where + name
            assert b[name].tobytes() == a[name].tobytes(), where + name


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_is_bit_exact_and_rebuilds_the_model(tmp_path, key, name):
    model = CONFIGS[name]
    params = numpy_params(model, key)
    vocab = WORDS if model.reads_ids else None
    decoding = {"bos": "<s>", "eos": "</s>"} if model.reads_ids else None
    path = ck.save_model(tmp_path / "pairs", model, params, {"note": name}, vocab=vocab, decoding=decoding)
    loaded = ck.load_model(path, "seq2seq")
    assert loaded.model == model and type(loaded.model) is Seq2Seq
    assert_bit_equal(params, loaded.params)
    assert loaded.metadata[ck.MODEL_CONFIG] == json.loads(json.dumps(model.config()))
    assert loaded.metadata["note"] == name and loaded.beside == {}
    if model.score == "dot":     # no attention parameters: an empty dict, named in the metadata, put back
        assert loaded.params["attention"] == {} and loaded.metadata[ck.EMPTY_PARAMS] == ["attention"]
        with np.load(path, allow_pickle=False) as archive:
            assert not any(entry.startswith("params/attention") for entry in archive.files)
    else:
        assert ck.EMPTY_PARAMS not in loaded.metadata
    if model.reads_ids:
        assert loaded.extra["vocab"].tolist() == WORDS
        assert loaded.metadata["decoding"] == {"bos": "<s>", "eos": "</s>", "steps": "source"}


def test_the_loaded_model_computes_what_the_saved_one_does(tmp_path, key):
    model = CONFIGS["gru-dot-feeding-ids"]
    params = numpy_params(model, key)
    loaded = ck.load_model(ck.save_model(tmp_path / "m.npz", model, params, key="model",
                                         beside={"scale": np.float64(2.0)}))
    assert loaded.metadata[ck.MODEL_KEY] == "model" and loaded.beside["scale"] == 2.0
    x, mask = model.pack([[3, 4]], [[1, 5, 6]])
    expected = np.asarray(model.apply(params, x[0], mask=mask[0]))
    np.testing.assert_array_equal(np.asarray(loaded.model.apply(loaded.params, x[0], mask=mask[0])), expected)


def save_with_config(path, params, config):
    """A checkpoint whose metadata states `config`, written with the plain `save` (to tamper with it)."""
    return ck.save(path, params, {"kind": "custom", ck.MODEL_CONFIG: config})


@pytest.mark.parametrize("change, message", [
    (lambda p: p["combine"].update(W_context=np.ones((6, 4))),
     r"'params/'.*params\['combine'\].*'W_context'.*shape \(6, 5\); got \(6, 4\)"),
    (lambda p: p["decoder"].update(W=np.ones((4, 20))), r"params\['decoder'\]"),
    (lambda p: p["target_embedding"].update(table=np.ones((6, 3))), r"params\['target_embedding'\].*\(7, 3\)"),
    (lambda p: p["out"].update(W=np.ones((5, 6)), b=np.ones(6)), r"params\['out'\]\['W'\].*V = 7"),
    (lambda p: p.pop("attention"), r"missing \['attention'\]"),
    (lambda p: p.update(stray={"W": np.ones(2)}), r"unexpected \['stray'\]"),
    (lambda p: p["out"].update(b=np.ones(7, np.int32)), r"array 'params/out/b' has dtype int32"),
    (lambda p: p["out"]["W"].__setitem__((0, 0), np.nan), r"array 'params/out/W' holds 1 non-finite value"),
])
def test_arrays_that_do_not_fit_the_config_are_refused_naming_the_array(tmp_path, key, change, message):
    model = CONFIGS["lstm-bi-general-ids"]
    params = numpy_params(model, key)
    change(params)
    with pytest.raises(ck.CheckpointError, match=r"checkpoint '.*m\.npz'.*" + message):
        ck.load_model(save_with_config(tmp_path / "m.npz", params, model.config()))


def test_a_config_that_disagrees_with_the_arrays_or_cannot_be_built_is_refused(tmp_path, key):
    model = CONFIGS["lstm-bi-general-ids"]
    params = numpy_params(model, key)
    wider = dict(model.config(), units=6)                       # the arrays hold H = 5
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*units = 5; the model has units = 6"):
        ck.load_model(save_with_config(tmp_path / "m.npz", params, wider))
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*cannot be rebuilt.*`score` of Seq2Seq.*'cosine'"):
        ck.load_model(save_with_config(tmp_path / "m.npz", params, dict(model.config(), score="cosine")))
    gru = dict(model.config(), cell={"kind": "gru"})            # LSTM arrays (4 H gates) under a GRU config
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*do not fit the model of its config"):
        ck.load_model(save_with_config(tmp_path / "m.npz", params, gru))
    dot = CONFIGS["gru-dot-feeding-ids"]
    dot_params = numpy_params(dot, key)
    stored = {k: v for k, v in dot_params.items() if k != "attention"}
    path = ck.save(tmp_path / "e.npz", stored, {"kind": "custom", ck.MODEL_CONFIG: dot.config(),
                                                ck.EMPTY_PARAMS: ["attention", "decoder"]})
    with pytest.raises(ck.CheckpointError, match=r"e\.npz.*'empty_params' names 'decoder' as empty"):
        ck.load_model(path)
    path = ck.save(tmp_path / "e.npz", stored, {"kind": "custom", ck.MODEL_CONFIG: dot.config(),
                                                ck.EMPTY_PARAMS: "attention"})
    with pytest.raises(ck.CheckpointError, match=r"e\.npz.*'empty_params' must be a list"):
        ck.load_model(path)


def test_save_model_refuses_what_would_not_load_or_not_decode(tmp_path, key):
    model = CONFIGS["lstm-bi-general-ids"]
    params = numpy_params(model, key)
    target = tmp_path / "x.npz"
    with pytest.raises(ValueError, match=r"params\['combine'\]"):
        ck.save_model(target, model, {**params, "combine": {**params["combine"], "b": np.ones(4)}})
    with pytest.raises(ValueError, match=r"`vocab` has 3 words; the model's embedding table has V = 7"):
        ck.save_model(target, model, params, vocab=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"`decoding` names words of the vocabulary: give `vocab`"):
        ck.save_model(target, model, params, decoding={"bos": "<s>"})
    with pytest.raises(ValueError, match=r"`decoding\['bos'\]` must be a word of `vocab`; got '<go>'"):
        ck.save_model(target, model, params, vocab=WORDS, decoding={"bos": "<go>"})
    with pytest.raises(ValueError, match=r"`decoding\['eos'\]`"):
        ck.save_model(target, model, params, vocab=WORDS, decoding={"bos": "<s>", "eos": "<end>"})
    with pytest.raises(ValueError, match=r"`decoding\['steps'\]` must be a positive int or 'source'"):
        ck.save_model(target, model, params, vocab=WORDS, decoding={"bos": "<s>", "steps": 0})
    with pytest.raises(ValueError, match=r"`decoding` must be a dict with 'bos'"):
        ck.save_model(target, model, params, vocab=WORDS, decoding={"eos": "</s>"})
    with pytest.raises(ValueError, match=r"empty_params"):
        ck.save_model(target, model, params, {ck.EMPTY_PARAMS: []})
    vectors = CONFIGS["lstm-forward-additive-vectors"]
    with pytest.raises(ValueError, match=r"`vocab` is for a model that takes token ids"):
        ck.save_model(target, vectors, numpy_params(vectors, key), vocab=WORDS)
    classifier = Sequential((Recurrent(units=2), Dense(2)))
    with pytest.raises(ValueError, match=r"`decoding` is for an encoder-decoder"):
        ck.save_model(target, classifier, classifier.init(key, 3), decoding={"bos": "a"})
    with pytest.raises(TypeError, match=r"Seq2Seq"):
        ck.save_model(target, model.apply, params)
    assert not target.exists()


def test_the_shipped_reversal_checkpoint_loads_and_reverses(key):
    path = ROOT / "checkpoints" / "seq2seq_reversal.npz"
    loaded = ck.load_model(path, "seq2seq-reversal")
    assert loaded.model == Seq2Seq(8, StandardCell(), encoder_units=16, units=32, score="general")
    sizes = loaded.model.sizes(loaded.params)
    assert (sizes.V, sizes.E, sizes.D, sizes.H, sizes.M) == (12, 16, 32, 32, 32)
    assert all(leaf.dtype == np.float64 for leaf in jax.tree_util.tree_leaves(loaded.params))
    assert loaded.extra["vocab"].tolist() == ["<pad>", "<bos>"] + [str(i) for i in range(2, 12)]
    assert loaded.metadata["decoding"] == {"bos": "<bos>", "eos": None, "steps": "source"}
    assert loaded.metadata["experiment"]["steps"] == 1500 and loaded.metadata["exact_reversal"] == 1.0
    # The study's first two test sources (reversal_pairs(Config(), 200, data_seed + 1)); greedy decoding from
    # BOS (id 1) reverses them, as the study reports for all 200.
    for source in ([7, 9, 11, 2, 3, 10], [4, 5, 10, 6, 4, 10, 4, 6]):
        output = np.asarray(loaded.model.greedy(loaded.params, np.asarray(source), 1, len(source)))
        assert output.tolist() == source[::-1]
