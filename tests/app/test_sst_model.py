"""The SST model bundle: shipped checkpoint, vocabulary, prediction and batched explanation."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.io import checkpoints
from lrpjax.data.sst import LABEL_NAMES, PAD, UNK, Vocabulary
from lrpjax.models import bilstm
from lrpjax.app.model import (DEFAULT_CHECKPOINT, DEFAULT_EPS, KIND, METHODS, SSTModel, bucket_length, buckets,
                        make_method, resolve_target)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped():
    return SSTModel.load()


def tiny_model(seed=0, words=("good", "bad", "movie", "not", "a", "film", "very", "dull", "fun", ".")):
    vocab = Vocabulary([PAD, UNK, *words])
    key_m, key_e = jax.random.split(jax.random.PRNGKey(seed))
    params = {"embed": np.asarray(jax.random.normal(key_e, (len(vocab), 4), jnp.float64)),
              "model": jax.tree_util.tree_map(np.asarray, bilstm.init(key_m, 4, 3, 5, jnp.float64))}
    return SSTModel(vocab, params, {"note": "tiny"})


def test_shipped_checkpoint_loads_with_metadata_and_vocabulary(shipped):
    assert DEFAULT_CHECKPOINT == ROOT / "checkpoints" / "sst_bilstm.npz"
    assert DEFAULT_CHECKPOINT.stat().st_size < 8_000_000
    assert shipped.sizes == (60, 60, 5)
    meta = shipped.metadata
    assert meta["kind"] == KIND and meta["classes"] == list(LABEL_NAMES)
    assert meta["vocabulary_size"] == len(shipped.vocab) > 10_000
    for split in ("dev_accuracy", "test_accuracy"):
        assert 0.0 <= meta[split]["five_class"] <= 1.0 and 0.0 <= meta[split]["binary"] <= 1.0
    assert meta["command"].startswith("python experiments/train_sst.py")
    assert shipped.vocab.words[:2] == (PAD, UNK)
    assert "movie" in shipped.vocab and "-lrb-" in shipped.vocab
    leaves = jax.tree_util.tree_leaves(shipped.params)
    assert all(leaf.dtype == np.float32 for leaf in leaves)
    assert shipped.params["embed"].shape == (len(shipped.vocab), 60)


def test_shipped_checkpoint_raw_layout_has_vocabulary_array():
    ckpt = checkpoints.load(DEFAULT_CHECKPOINT, expect_kind=KIND)
    assert ckpt.extra["vocab"].dtype.kind == "U"
    assert set(ckpt.params) == {"embed", "model"}


def test_prediction_shapes_and_batch_equals_single(shipped):
    sentences = ["a gorgeous , witty , seductive movie .", "it 's a dull , boring mess",
                 "the acting is fine but the plot drags on and on for far too long ."]
    scores = shipped.predict(sentences)
    assert scores.shape == (3, 5)
    for n, sentence in enumerate(sentences):
        single = shipped.predict(sentence)
        assert single.shape == (5,)
        np.testing.assert_allclose(single, scores[n], rtol=1e-5, atol=1e-6)


def test_embed_looks_up_rows_and_maps_unknown_words(shipped):
    x = shipped.embed("a zzzunknownzzz movie")
    assert x.shape == (3, 60)
    np.testing.assert_array_equal(np.asarray(x[1]), shipped.params["embed"][1])
    tokens, ids, unknown = shipped.encode("A zzzunknownzzz movie")
    assert tokens == ["a", "zzzunknownzzz", "movie"] and unknown == ["zzzunknownzzz"] and ids[1] == 1


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = tiny_model()
    path = model.save(tmp_path / "m.npz", {"extra_info": 3})
    back = SSTModel.load(path)
    assert back.vocab == model.vocab
    assert back.metadata["extra_info"] == 3 and back.metadata["note"] == "tiny"
    for a, b in zip(jax.tree_util.tree_leaves(model.params), jax.tree_util.tree_leaves(back.params)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        SSTModel.load(tmp_path / "missing.npz")
    other = checkpoints.save(tmp_path / "other.npz", {"w": np.zeros(2)}, {"kind": "lstm"})
    with pytest.raises(checkpoints.CheckpointError, match="kind"):
        SSTModel.load(other)
    no_vocab = checkpoints.save(tmp_path / "novocab.npz", tiny_model().params, {"kind": KIND})
    with pytest.raises(checkpoints.CheckpointError, match="'extra/vocab' is missing"):
        SSTModel.load(no_vocab)


def test_a_new_save_holds_the_bilstm_config_and_saves_again(tmp_path):
    model = tiny_model()
    path = model.save(tmp_path / "m.npz")
    saved = checkpoints.load_model(path, KIND)
    assert saved.metadata[checkpoints.MODEL_CONFIG] == bilstm.model.network.config()
    assert saved.metadata[checkpoints.MODEL_KEY] == "model" and set(saved.beside) == {"embed"}
    again = SSTModel.load(SSTModel.load(path).save(tmp_path / "again.npz"))   # the config is written anew
    for a, b in zip(jax.tree_util.tree_leaves(model.params), jax.tree_util.tree_leaves(again.params)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_a_checkpoint_written_before_configs_loads_the_same(tmp_path):
    model = tiny_model()
    meta = {"kind": KIND, "embedding_size": 4, "hidden_size": 3, "vocabulary_size": len(model.vocab)}
    old = checkpoints.save(tmp_path / "old.npz", jax.tree_util.tree_map(np.asarray, model.params), meta,
                           extra={"vocab": model.vocab.to_array()})   # what SSTModel.save wrote before
    back = SSTModel.load(old)
    assert checkpoints.MODEL_CONFIG not in back.metadata and back.vocab == model.vocab
    for a, b in zip(jax.tree_util.tree_leaves(model.params), jax.tree_util.tree_leaves(back.params)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_the_shipped_checkpoint_loads_as_the_bilstm(shipped):
    plain = checkpoints.load(DEFAULT_CHECKPOINT)
    assert checkpoints.MODEL_CONFIG not in plain.metadata   # recognised by its kind
    for a, b in zip(jax.tree_util.tree_leaves(plain.params), jax.tree_util.tree_leaves(shipped.params)):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(shipped.vocab.to_array(), plain.extra["vocab"])


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    model = tiny_model()
    lstm = lrpjax.models.LSTM()
    path = checkpoints.save_model(tmp_path / "uni.npz", lstm, lstm.init(jax.random.PRNGKey(0), 4, 3, 5),
                                  {"kind": KIND}, key="model", beside={"embed": model.params["embed"]},
                                  extra={"vocab": model.vocab.to_array()})
    with pytest.raises(checkpoints.CheckpointError, match=r"uni\.npz.*BiLSTM"):
        SSTModel.load(path)


def test_constructor_checks_embedding_shape():
    model = tiny_model()
    with pytest.raises(ValueError, match="embed"):
        SSTModel(model.vocab, {"embed": model.params["embed"][:-1], "model": model.params["model"]})
    with pytest.raises(TypeError, match="vocab"):
        SSTModel(list(model.vocab.words), model.params)


@pytest.mark.parametrize("method", ["lrp-all", "sa", "occlusion-p", "cd", "random"])
def test_explain_many_matches_single_engine_call(method):
    model = tiny_model()
    # Equal lengths (one compilation of the engine call), padded to the bucket length 8 in the batch.
    sentences = ["good movie , fun", "not a good film", "a very dull film", "bad bad bad ."]
    results = model.explain_many(sentences, method, target=3, eps=None if not method.startswith("lrp") else 0.01)
    m = make_method(method, 0.01 if method.startswith("lrp") else None)
    for n, (sentence, result) in enumerate(zip(sentences, results)):
        x = model.embed(sentence)
        if method == "random":
            continue  # drawn per sentence index; checked below
        expected = np.asarray(lrpjax.per_token(m(model.params["model"], x, 3), 2))
        if method == "sa":
            expected = np.asarray((m(model.params["model"], x, 3)).sum(-1))
        assert result.relevance.shape == (len(result.tokens),)
        np.testing.assert_allclose(result.relevance, expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.scores, np.asarray(bilstm.apply(model.params["model"], x)), rtol=1e-12)
        assert result.target == 3 and result.method == method


def test_random_baseline_is_per_sentence_and_independent_of_batching():
    model = tiny_model()
    sentences = ["good movie", "not a good film .", "a very dull , very bad movie"]
    together = model.explain_many(sentences, "random", seed=4)
    alone = model.explain_many(sentences[:1], "random", seed=4)
    np.testing.assert_array_equal(together[0].relevance, alone[0].relevance)
    assert not np.allclose(together[1].relevance[:2], together[0].relevance[:2])


def test_target_pred_explains_the_prediction_and_empty_sentences_are_reported():
    model = tiny_model()
    results = model.explain_many(["good movie", "   ", "bad film"], "gi", target="pred")
    assert isinstance(results[1], str) and "empty" in results[1]
    for result in (results[0], results[2]):
        assert result.target == result.prediction == int(np.argmax(result.scores))
        np.testing.assert_allclose(result.probabilities.sum(), 1.0)
    with pytest.raises(ValueError, match="empty"):
        model.explain_sentence("", "gi")


def test_lrp_eps_defaults_and_json_record():
    model = tiny_model()
    result = model.explain_sentence("not a good film", "lrp-prop", "negative")
    assert result.eps == DEFAULT_EPS["lrp-prop"] == 0.2 and result.target == 1
    record = result.to_json()
    assert record["target_name"] == "negative" and len(record["relevance"]) == 4
    assert model.explain_sentence("not a good film", "gi").eps is None


def test_resolve_target_and_method_errors():
    assert resolve_target("pred") is None
    assert resolve_target("very negative") == 0 and resolve_target("very_positive") == 4
    assert resolve_target(2) == 2 and resolve_target("3") == 3
    with pytest.raises(ValueError, match="target"):
        resolve_target("happy")
    with pytest.raises(ValueError, match="target"):
        resolve_target(7)
    with pytest.raises(ValueError, match="lrp-all"):
        make_method("lrp-everything")
    with pytest.raises(ValueError, match="eps"):
        make_method("lrp-all", -1.0)
    assert set(METHODS) >= {"lrp-all", "cd", "occlusion-p"}


def test_buckets_cover_every_index_once():
    lengths = [1, 9, 8, 17, 64, 65, 3, 30]
    batches = buckets(lengths, 2)
    seen = np.concatenate([index for _, index in batches])
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    for length, index in batches:
        assert len(index) <= 2 and all(lengths[i] <= length for i in index)
    assert [bucket_length(t) for t in (1, 8, 9, 64, 65, 130)] == [8, 8, 16, 64, 128, 192]
    with pytest.raises(ValueError, match="T"):
        bucket_length(0)


@pytest.mark.slow
def test_quick_training_run_writes_a_loadable_checkpoint(tmp_path):
    spec = importlib.util.spec_from_file_location("train_sst", ROOT / "experiments" / "train_sst.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "quick.npz"
    assert module.main(["--quick", "--out", str(out)]) == 0
    model = SSTModel.load(out)
    assert model.sizes == (60, 60, 5) and model.metadata["quick"] is True
    assert model.metadata["steps"] > 0 and "five_class" in model.metadata["test_accuracy"]


def test_default_checkpoint_follows_the_environment(monkeypatch, tmp_path):
    from lrpjax.app import model as sst

    monkeypatch.delenv("LRPJAX_SST_CHECKPOINT", raising=False)
    assert sst.default_checkpoint() == DEFAULT_CHECKPOINT
    monkeypatch.setenv("LRPJAX_SST_CHECKPOINT", str(tmp_path / "other.npz"))
    assert sst.default_checkpoint() == tmp_path / "other.npz"
    with pytest.raises(checkpoints.CheckpointError, match="other.npz"):
        SSTModel.load()


def test_integrated_gradients_and_smoothgrad_methods():
    from lrpjax.app.model import IG_STEPS, SMOOTHGRAD_SAMPLES
    from lrpjax.methods import IntegratedGradients, SmoothGrad

    ig = make_method("ig")
    assert isinstance(ig, IntegratedGradients) and ig.steps == IG_STEPS and ig.baseline == 0.0
    smooth = make_method("smoothgrad", seed=4)
    assert isinstance(smooth, SmoothGrad) and smooth.seed == 4
    assert smooth.samples == SMOOTHGRAD_SAMPLES and smooth.noise == "relative"
    model = SSTModel.load()
    sentence = "a gorgeous , witty , seductive movie ."
    result = model.explain_sentence(sentence, "ig")
    assert result.eps is None and result.relevance.shape == (8,)
    # Completeness: the word relevances sum to score - score of the all-zero input, up to the midpoint rule.
    ids = model.vocab.encode(sentence.split())[0]
    x = np.asarray(model.params["embed"])[ids]
    zero = np.asarray(bilstm.apply(model.params["model"], np.zeros_like(x)))[result.target]
    assert float(np.sum(result.relevance)) == pytest.approx(float(result.scores[result.target]) - float(zero), abs=5e-3)
    first = model.explain_sentence(sentence, "smoothgrad", seed=1).relevance
    np.testing.assert_array_equal(first, model.explain_sentence(sentence, "smoothgrad", seed=1).relevance)
    assert not np.allclose(first, model.explain_sentence(sentence, "smoothgrad", seed=2).relevance)
