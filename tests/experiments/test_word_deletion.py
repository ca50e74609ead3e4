"""The SST word-deletion study (Fig. 11.5): deletion logic against a slow per-sentence oracle."""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.data.sst import PAD, UNK, Vocabulary
from lrpjax.models import bilstm
from lrpjax.app.model import SSTModel

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("sst_word_deletion", ROOT / "experiments" / "sst_word_deletion.py")
deletion = importlib.util.module_from_spec(spec)
spec.loader.exec_module(deletion)

WORDS = [f"w{i}" for i in range(12)]


def tiny_model(seed=1):
    vocab = Vocabulary([PAD, UNK, *WORDS])
    key_m, key_e = jax.random.split(jax.random.PRNGKey(seed))
    params = {"embed": np.asarray(2.0 * jax.random.normal(key_e, (len(vocab), 5), jnp.float64)),
              "model": jax.tree_util.tree_map(np.asarray, bilstm.init(key_m, 5, 4, 5, jnp.float64))}
    for layer in ("W_left", "W_right"):
        params["model"]["out"][layer] = 4.0 * params["model"]["out"][layer]  # sharper, varied predictions
    return SSTModel(vocab, params)


def oracle_curves(model, sentences, labels, relevance, max_delete):
    """Word by word on Python lists: rank once, then remove the next word of the ranking from the
    current (already shortened) sentence and classify it alone."""
    hits = {"correct": [], "false": []}
    for words, label, r in zip(sentences, labels, relevance):
        correct = int(np.argmax(model.predict([words])[0])) == label
        ranked = sorted(range(len(words)), key=lambda t: (-r[t] if correct else r[t], t))
        current = list(enumerate(words))  # (original position, word)
        row = [correct]
        for position in ranked[:max_delete]:
            current = [(p, w) for p, w in current if p != position]
            row.append(int(np.argmax(model.predict([[w for _, w in current]])[0])) == label)
        hits["correct" if correct else "false"].append(row)
    return {key: np.mean(np.asarray(rows, dtype=np.float64), axis=0) for key, rows in hits.items() if rows}


def test_deletion_order_most_relevant_first_when_correct_least_when_false_ties_stable():
    r = np.array([0.5, -1.0, 2.0, 0.5, -1.0])
    np.testing.assert_array_equal(deletion.deletion_order(r, True), [2, 0, 3, 1, 4])
    np.testing.assert_array_equal(deletion.deletion_order(r, False), [1, 4, 0, 3, 2])


def test_delete_words_removes_and_concatenates():
    ids = np.array([10, 11, 12, 13, 14])
    np.testing.assert_array_equal(deletion.delete_words(ids, np.array([3, 0, 4]), 2), [11, 12, 14])
    np.testing.assert_array_equal(deletion.delete_words(ids, np.array([3, 0]), 0), ids)


def test_deletion_accuracy_matches_slow_per_sentence_oracle():
    model = tiny_model()
    rng = np.random.default_rng(0)
    sentences = [list(rng.choice(WORDS, size=rng.integers(7, 14))) for _ in range(24)]
    ids_list = [model.vocab.encode(s)[0] for s in sentences]
    predictions = model.predict(sentences).argmax(axis=1)
    # Labels: half agree with the model, half do not, so both groups are populated.
    labels = np.where(np.arange(24) % 2 == 0, predictions, (predictions + 1 + np.arange(24) % 4) % 5)
    correct = predictions == labels
    relevance = [rng.standard_normal(len(s)) for s in sentences]
    relevance[0][:3] = 0.25  # ties
    got = deletion.deletion_accuracy(model, ids_list, labels, correct, relevance, max_delete=5, batch_size=8)
    expected = oracle_curves(model, sentences, labels, relevance, 5)
    for key in ("correct", "false"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-12)
    assert got["correct"][0] == 1.0 and got["false"][0] == 0.0
    assert not np.all(got["correct"] == 1.0)  # deletions change some predictions


def test_deletion_accuracy_refuses_too_short_sentences():
    model = tiny_model()
    ids = [np.array([2, 3, 4], dtype=np.int32)]
    with pytest.raises(ValueError, match="more than 5 words"):
        deletion.deletion_accuracy(model, ids, np.array([0]), np.array([True]), [np.zeros(3)])


def test_random_relevance_is_seeded():
    a = deletion.random_relevance([3, 5], seed=2)
    b = deletion.random_relevance([3, 5], seed=2)
    assert [x.shape for x in a] == [(3,), (5,)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(deletion.random_relevance([5], seed=3)[0], b[1])


def test_markdown_table_lists_every_method_and_random_std():
    results = {"max_delete": 2, "initially_correct": 3, "initially_false": 1,
               "accuracy": {"LRP-all": {"correct": [1, 0.5, 0.25], "false": [0, 0.5, 1]},
                            "random": {"correct": [1, 0.9, 0.8], "false": [0, 0.1, 0.2]}},
               "random_std": {"correct": [0, 0.01, 0.02], "false": [0, 0.03, 0.04]}}
    text = deletion.markdown(results)
    assert "| LRP-all | 1.000 | 0.500 | 0.250 |" in text
    assert "| random | 1.000 ± 0.000 | 0.900 ± 0.010 | 0.800 ± 0.020 |" in text
    assert "(3 sentences)" in text and "(1 sentences)" in text


@pytest.mark.slow
def test_quick_experiment_run_writes_json_table_and_png(tmp_path, capsys):
    assert deletion.main(["--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "sst_word_deletion.json").read_text())
    assert results["quick"] is True and results["sentences"] == 48
    expected = [label for label, _, _ in deletion.METHODS] + ["random"]
    assert list(results["accuracy"]) == expected
    for curves in results["accuracy"].values():
        assert len(curves["correct"]) == len(curves["false"]) == 6
        assert curves["correct"][0] == 1.0 and curves["false"][0] == 0.0
    assert (tmp_path / "sst_word_deletion.png").read_bytes()[:4] == b"\x89PNG"
    assert "| LRP-all |" in (tmp_path / "sst_word_deletion.md").read_text()
    assert "Initially correct" in capsys.readouterr().out
