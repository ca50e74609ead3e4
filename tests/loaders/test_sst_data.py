"""Tests for lrpjax.data.sst: tree parser, splits, vocabulary, tokenizer, batching, accuracy rules."""

import json
from pathlib import Path

import numpy as np
import pytest

from lrpjax.data import sst

REF_VOCAB = Path(__file__).parents[1] / "data" / "ref_vocab.json"


@pytest.fixture(scope="module")
def splits():
    """Every split parsed once for the module (about two seconds)."""
    return {split: sst.load_sst(split) for split in sst.SPLITS}


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- tree parser -------------------------------------------------------------------------------


def test_parse_nested_tree_gives_leaves_and_post_order_spans():
    tree = sst.parse_tree("(3 (2 It) (4 (2 's) (4 (3 lovely) (2 film))))")
    assert tree.tokens == ("It", "'s", "lovely", "film")
    assert tree.label == 3
    assert tree.spans == ((0, 1, 2), (1, 2, 2), (2, 3, 3), (3, 4, 2), (2, 4, 4), (1, 4, 4), (0, 4, 3))


def test_parse_keeps_escapes_and_no_break_space_tokens():
    tree = sst.parse_tree("(2 (2 -LRB-) (2 (2 and\\/or) (2 (2 8\xa01\\/2) (2 (2 \\*\\*) (2 -RRB-)))))\n")
    assert tree.tokens == ("-LRB-", "and\\/or", "8\xa01\\/2", "\\*\\*", "-RRB-")
    assert len(tree.spans) == 9


def test_parse_single_leaf_tree():
    assert sst.parse_tree("  (0 awful)  ") == sst.Tree(("awful",), 0, ((0, 1, 0),))


@pytest.mark.parametrize(
    "line, reason",
    [
        ("(2 (2 a) (2 b)", "not closed"),
        ("(2 (2 a) (2 b)))", "after the end of the root"),
        ("(2 a) (2 b)", "after the end of the root"),
        ("(5 (2 a) (2 b))", "bad label '5'"),
        ("(2 (x a) (2 b))", "bad label 'x'"),
        ("(2 ((2 a) (2 b)))", "missing label"),
        ("(2 (2 a) (2 ))", "empty leaf"),
        ("(2 (2 R  ock) (2 b))", "several words"),
        ("(2 (2 a) b)", "mixes child nodes"),
        ("(2 a (2 b))", "mixes the word"),
        ("just words", "outside any node"),
    ],
)
def test_malformed_line_error_names_file_and_line(tmp_path, line, reason):
    path = _write(tmp_path, "test.txt", ["(3 (2 fine) (3 line))", "", line])
    with pytest.raises(ValueError, match=rf"test\.txt:3: malformed tree: .*{reason}"):
        sst.read_trees(path)
    with pytest.raises(ValueError, match=rf"test\.txt:3: .*{reason}"):
        sst.load_sst("test", root=tmp_path)


def test_parse_tree_rejects_non_string():
    with pytest.raises(TypeError, match="text"):
        sst.parse_tree(b"(2 a)")


# --- splits ----------------------------------------------------------------------------------


def test_split_sizes(splits):
    assert {split: len(examples) for split, examples in splits.items()} == {"train": 8544, "dev": 1101, "test": 2210}


def test_test_sentences_with_at_least_ten_words(splits):
    assert sum(len(example.tokens) >= 10 for example in splits["test"]) == 1849


def test_examples_are_lower_cased_with_labels_in_range(splits):
    for examples in splits.values():
        assert all(example.tokens == tuple(t.lower() for t in example.tokens) for example in examples)
        assert {example.label for example in examples} == {0, 1, 2, 3, 4}
    first = splits["test"][0]
    assert first == sst.Example(("effective", "but", "too-tepid", "biopic"), 2)


def test_tokens_match_reference_vocabulary_exactly(splits):
    # The reference vocabulary lists the lower-cased words of train, test, dev in order of first
    # appearance: equality checks lower-casing, escapes kept, no-break-space tokens kept whole and
    # the repaired first training sentence ("the rock is destined ...").
    reference = json.loads(REF_VOCAB.read_text(encoding="utf-8"))
    ordered = [e.tokens for split in ("train", "test", "dev") for e in splits[split]]
    assert list(sst.Vocabulary.build(ordered).words[2:]) == reference
    assert splits["train"][0].tokens[:4] == ("the", "rock", "is", "destined")


def test_erratum_applies_only_to_its_exact_defect(tmp_path):
    path = _write(tmp_path, "train.txt", ["(3 (2 (2 The) (2 R  ock)) (2 .))"])
    assert sst.read_trees(path)[0].tokens == ("The", "Rock", ".")
    with pytest.raises(ValueError, match=r"dev\.txt:1: .*several words 'R ock'"):
        sst.read_trees(_write(tmp_path, "dev.txt", ["(3 (2 (2 The) (2 R  ock)) (2 .))"]))


def test_phrases_extend_sentences_without_duplicates(splits):
    examples = sst.load_sst("dev", phrases=True)
    sentences = splits["dev"]
    assert len(examples) > 20 * len(sentences)
    assert examples[: len(sentences)] == sentences
    phrases = examples[len(sentences):]
    assert len(set(phrases)) == len(phrases) and not set(phrases) & set(sentences)
    assert {example.label for example in phrases} == {0, 1, 2, 3, 4}
    assert all(len(example.tokens) >= 1 for example in phrases)
    # Every sub-phrase of the first sentence is there with its tree label.
    tree = sst.read_trees(sst._default_root() / "dev.txt")[0]
    listed = set(examples)
    for start, end, label in tree.spans:
        assert sst.Example(tuple(t.lower() for t in tree.tokens[start:end]), label) in listed


def test_root_argument_and_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "sst").mkdir()
    _write(tmp_path / "sst", "dev.txt", ["(4 (4 Great) (2 .))", "(1 (2 Not) (1 good))"])
    assert sst.load_sst("dev", root=tmp_path / "sst") == [sst.Example(("great", "."), 4), sst.Example(("not", "good"), 1)]
    monkeypatch.setenv("LRPJAX_DATA", str(tmp_path))
    assert len(sst.load_sst("dev")) == 2
    with pytest.raises(FileNotFoundError, match="test"):
        sst.load_sst("test")


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="split"):
        sst.load_sst("validation")


# --- vocabulary ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocab(splits):
    return sst.Vocabulary.build(example.tokens for example in splits["train"])


def test_vocabulary_specials_and_lookup(vocab):
    assert vocab.words[:2] == ("<pad>", "<unk>")
    assert len(vocab) == 16583
    assert "film" in vocab and "-lrb-" in vocab
    assert "<pad>" not in vocab and "<unk>" not in vocab and "zzzyzx" not in vocab


def test_vocabulary_min_count_drops_rare_words():
    vocab = sst.Vocabulary.build([("a", "b", "a"), ("c", "a", "b")], min_count=2)
    assert vocab.words == ("<pad>", "<unk>", "a", "b")
    with pytest.raises(ValueError, match="min_count"):
        sst.Vocabulary.build([("a",)], min_count=0)


def test_vocabulary_round_trips_through_json_and_array(vocab, tmp_path):
    restored = sst.Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))
    assert restored == vocab and restored.words == vocab.words
    assert sst.Vocabulary.from_json(json.dumps(vocab.to_json())) == vocab
    array = vocab.to_array()
    assert array.dtype.kind == "U" and array.shape == (len(vocab),)
    np.savez(tmp_path / "v.npz", vocab=array)
    with np.load(tmp_path / "v.npz", allow_pickle=False) as stored:
        assert sst.Vocabulary.from_array(stored["vocab"]).words == vocab.words


def test_encode_reports_unknown_words_and_decode_inverts(vocab):
    ids, unknown = vocab.encode(("a", "zzzyzx", "film", "<pad>", "qqq", "zzzyzx"))
    assert ids.dtype == np.int32 and ids.shape == (6,)
    assert unknown == ["zzzyzx", "<pad>", "qqq", "zzzyzx"]
    assert ids[1] == ids[3] == ids[4] == 1
    assert vocab.decode(ids) == ["a", "<unk>", "film", "<unk>", "<unk>", "<unk>"]
    sentence = ("it", "'s", "a", "lovely", "film", ".")
    assert tuple(vocab.decode(vocab.encode(sentence)[0])) == sentence


def test_vocabulary_errors(vocab):
    with pytest.raises(ValueError, match="<pad>"):
        sst.Vocabulary(["<unk>", "<pad>", "a"])
    with pytest.raises(ValueError, match="unique"):
        sst.Vocabulary(["<pad>", "<unk>", "a", "a"])
    with pytest.raises(TypeError, match="tokens"):
        vocab.encode("a lovely film")
    with pytest.raises(ValueError, match="ids"):
        vocab.decode(np.array([0, len(vocab)]))
    with pytest.raises(TypeError, match="array"):
        sst.Vocabulary.from_array(np.array([1, 2]))


# --- tokenizer -------------------------------------------------------------------------------

# Natural spellings of test sentences (line numbers of data/sst/test.txt) and their treebank tokens.
TOKENIZE_CASES = [
    ("Madonna still can't act a lick.", 1757),
    ("Director Nalin Pan doesn't do much to weigh any arguments one way or the other.", 634),
    ("One of (Herzog's) least inspired works.", 493),
    ("Anyone who can count to five (the film's target market?)", 1539),
    ("No wonder they're talking about \"Talk to Her.\"", 677),
    ("It's a movie -- and an album -- you won't want to miss.", 371),
    ("Maguire is a surprisingly effective Peter/Spider-Man.", 484),
    ("Don't expect any surprises in this checklist of teamwork cliches...", 645),
    ("\"Antwone Fisher\" is an earnest, by-the-numbers effort by Washington.", 575),
]


@pytest.mark.parametrize("text, line", TOKENIZE_CASES)
def test_tokenize_matches_treebank(splits, text, line):
    assert tuple(sst.tokenize(text)) == splits["test"][line - 1].tokens


def test_tokenize_keeps_abbreviations_and_handles_blank_text():
    assert sst.tokenize("Mr. Smith, go!") == ["mr.", "smith", ",", "go", "!"]
    assert sst.tokenize("  \n ") == []
    with pytest.raises(TypeError, match="text"):
        sst.tokenize(None)


# --- batching and labels -------------------------------------------------------------------


def test_pad_batch_pads_right_with_mask():
    ids, mask = sst.pad_batch([np.array([5, 6, 7]), np.array([8], dtype=np.int64)])
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(mask, [[True, True, True], [True, False, False]])
    assert ids.dtype == np.int32 and mask.dtype == np.bool_
    ids, mask = sst.pad_batch([np.array([5, 6])], length=4)
    assert ids.shape == mask.shape == (1, 4) and mask.sum() == 2


@pytest.mark.parametrize(
    "sequences, length, error, match",
    [
        ([], None, ValueError, "at least one"),
        ([np.array([1]), np.array([], dtype=np.int32)], None, ValueError, r"sequences\[1\]` is empty"),
        ([np.array([1, 2, 3])], 2, ValueError, "length 3 > `length` = 2"),
        ([np.array([[1, 2]])], None, ValueError, r"shape \(T,\)"),
        ([np.array([1.0, 2.0])], None, TypeError, "integer"),
        ([np.array([1])], 0, ValueError, "length"),
    ],
)
def test_pad_batch_errors(sequences, length, error, match):
    with pytest.raises(error, match=match):
        sst.pad_batch(sequences, length)


def test_label_names_and_index():
    assert sst.LABEL_NAMES == ("very negative", "negative", "neutral", "positive", "very positive")
    assert sst.label_index("very positive") == 4 and sst.label_index("Very_Negative") == 0
    assert sst.label_index(3) == 3 and sst.label_index("2") == 2
    with pytest.raises(ValueError, match="neutral"):
        sst.label_index("great")
    with pytest.raises(ValueError, match="label"):
        sst.label_index(5)


def test_binary_rule_ignores_neutral_scores_and_neutral_sentences():
    scores = np.array(
        [
            [0.0, 0.1, 9.0, 0.3, 0.2],  # neutral score largest, but 3 beats 0, 1, 4: positive
            [0.5, 0.1, 9.0, 0.3, 0.2],  # among non-neutral, class 0 is largest: negative
            [0.0, 0.0, 0.0, 0.0, 1.0],  # positive
            [0.0, 2.0, 0.0, 1.0, 0.0],  # negative
            [5.0, 0.0, 0.0, 0.0, 0.0],  # negative, but the true label is neutral: not counted
        ]
    )
    np.testing.assert_array_equal(sst.binary_predictions(scores), [True, False, True, False, False])
    labels = np.array([4, 0, 1, 1, 2])
    assert sst.binary_accuracy(scores, labels) == 0.75  # rows 0, 1, 3 right; row 2 wrong; row 4 skipped
    assert sst.five_class_accuracy(scores, labels) == 0.2  # only row 3's argmax is its label


def test_accuracy_helpers_check_their_inputs():
    with pytest.raises(ValueError, match="non-neutral"):
        sst.binary_accuracy(np.zeros((2, 5)), np.array([2, 2]))
    with pytest.raises(ValueError, match=r"`scores` must have shape \(B, C\)"):
        sst.binary_accuracy(np.zeros((2, 3)), np.array([0, 4]))
    with pytest.raises(ValueError, match="labels"):
        sst.five_class_accuracy(np.zeros((2, 5)), np.array([0, 1, 2]))
