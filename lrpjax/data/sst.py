"""Stanford Sentiment Treebank (Socher et al. 2013): tree reader, vocabulary, tokenizer, batching.

The treebank comes as Penn-Treebank-style trees, one sentence a line, a label 0..4 on every node::

    (3 (2 It) (4 (4 (2 's) (4 (3 (2 a) (4 (3 lovely) (2 film))) ...)) (2 .)))

Tokens are kept exactly as the treebank writes them, only lower-cased: the escapes ``-LRB-``,
``-RRB-``, ``\\/`` and ``\\*`` are *not* undone, because the reference implementation (Arras et al.)
does not undo them either -- its vocabulary holds ``-lrb-``, ``and\\/or`` and ``\\*\\*\\*`` -- and the
lower-cased test sentences must equal its ``sequence_test.txt``. Leaves are separated by ASCII spaces
only: a few leaves contain a no-break space (``8\\xa01\\/2``) and are one token, as in the reference
vocabulary.

Only numpy is used here; arrays become jax arrays at the model's edge.
"""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lrpjax.data.lines import LineReader

__all__ = [
    "LABEL_NAMES",
    "NEUTRAL",
    "PAD",
    "SPLITS",
    "UNK",
    "Example",
    "Tree",
    "Vocabulary",
    "binary_accuracy",
    "binary_predictions",
    "five_class_accuracy",
    "label_index",
    "load_sst",
    "pad_batch",
    "parse_tree",
    "read_trees",
    "tokenize",
]

LABEL_NAMES = ("very negative", "negative", "neutral", "positive", "very positive")
NEUTRAL = 2
SPLITS = ("train", "dev", "test")
PAD = "<pad>"
UNK = "<unk>"

# Known defects of the distributed files, repaired before parsing. Each entry is
# (file name, 1-based line number) -> (exact defective text, replacement); a line that does not
# contain the defective text is parsed as it is, so a corrected file makes the entry a no-op.
# - train.txt:1 reads "(2 R  ock)": a leaf with a space inside, malformed PTB. The reference
#   vocabulary lists the lower-cased words of train, test, dev in order of first appearance and
#   starts "the", "rock", "is", "destined" (no "ock"), so the original leaf is "Rock"; with this
#   repair the words of the three splits reproduce that vocabulary exactly (tests/loaders/test_sst_data.py).
_ERRATA = {("train.txt", 1): ("(2 R  ock)", "(2 Rock)")}

# ASCII whitespace separates atoms; a no-break space (U+00A0) is part of a token, as in the file.
_ATOM = re.compile(r"[()]|[^() \t\n\r\f\v]+")


class Example(NamedTuple):
    """One labelled sentence or phrase: `tokens` (lower-cased words) and `label` in 0..4."""

    tokens: tuple[str, ...]
    label: int


class Tree(NamedTuple):
    """A parsed sentence tree, flattened.

    Attributes:
        tokens: the leaves left to right, as written in the file (case kept), length T.
        label: the root label (the sentence label), in 0..4.
        spans: every labelled node as (start, end, label) over `tokens[start:end]`, children
            before their parent (post-order); the root span (0, T, label) is last.
    """

    tokens: tuple[str, ...]
    label: int
    spans: tuple[tuple[int, int, int], ...]


def _lex(text: str) -> list[str]:
    """Splits a tree line into "(", ")" and atoms (maximal runs of other non-separator chars)."""
    return _ATOM.findall(text)


def parse_tree(text: str, source: str = "<string>", line: int | None = None) -> Tree:
    """Parses one PTB sentiment tree such as ``(3 (2 a) (3 (3 lovely) (2 film)))``.

    A node is ``(label leaf)`` with exactly one leaf word, or ``(label child child ...)`` with one
    or more nodes as children; labels are single digits 0..4. The parser is an explicit stack, so
    deep trees need no recursion.

    Args:
        text: one tree; surrounding whitespace is ignored.
        source: file name used in error messages.
        line: 1-based line number used in error messages.

    Returns:
        The flattened `Tree`, tokens in their original case.

    Raises:
        ValueError: on unbalanced parentheses, a missing or bad label, an empty leaf, a leaf of
            several words, words beside child nodes, or text after the root; the message starts
            with ``source:line``.
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str; got {type(text).__name__}.")
    builder = _TreeBuilder(f"{source}:{line}" if line is not None else source)
    atoms = _lex(text)
    if not atoms:
        raise builder.error("empty line")
    position = 0
    while position < len(atoms):
        if atoms[position] == "(":
            builder.open(atoms[position + 1] if position + 1 < len(atoms) else None)
            position += 2
        elif atoms[position] == ")":
            builder.close()
            position += 1
        else:
            builder.word(atoms[position])
            position += 1
    return builder.finish()


class _TreeBuilder:
    """Stack of open nodes while reading a tree's atoms; each check raises a located ValueError."""

    def __init__(self, where: str):
        self.where = where
        self.tokens: list[str] = []
        self.spans: list[tuple[int, int, int]] = []
        self.stack: list[list] = []  # open nodes: [label, first token index, leaf words, children]

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.where}: malformed tree: {message}")

    def _check_inside(self, what: str) -> None:
        if not self.stack:
            after = "after the end of the root node" if self.spans else "outside any node"
            raise self.error(f"unbalanced parentheses: {what} {after}")

    def open(self, label: str | None) -> None:
        if self.spans and not self.stack:
            raise self.error("unbalanced parentheses: '(' after the end of the root node")
        if label is None or label in ("(", ")"):
            raise self.error("missing label after '('")
        if label not in ("0", "1", "2", "3", "4"):
            raise self.error(f"bad label {label!r}; expected one of 0, 1, 2, 3, 4")
        if self.stack:
            parent = self.stack[-1]
            if parent[2]:
                raise self.error(f"node with label {parent[0]} mixes the word {parent[2][0]!r} with child nodes")
            parent[3] += 1
        self.stack.append([int(label), len(self.tokens), [], 0])

    def word(self, atom: str) -> None:
        self._check_inside(f"word {atom!r}")
        node = self.stack[-1]
        if node[3]:
            raise self.error(f"node with label {node[0]} mixes child nodes with the word {atom!r}")
        node[2].append(atom)

    def close(self) -> None:
        self._check_inside("')'")
        label, start, words, children = self.stack.pop()
        if not children:
            if not words:
                raise self.error(f"empty leaf in node with label {label}")
            if len(words) > 1:
                raise self.error(f"leaf with label {label} holds several words {' '.join(words)!r}")
            self.tokens.append(words[0])
        self.spans.append((start, len(self.tokens), label))

    def finish(self) -> Tree:
        if self.stack:
            raise self.error(f"unbalanced parentheses: {len(self.stack)} node(s) not closed")
        return Tree(tuple(self.tokens), self.spans[-1][2], tuple(self.spans))


def read_trees(path: str | os.PathLike) -> list[Tree]:
    """Parses a treebank file, one tree a line (blank lines are skipped).

    Args:
        path: a PTB tree file such as ``data/sst/test.txt`` (UTF-8, a byte order mark allowed; lines
            end with ``"\n"``, CRLF tolerated).

    Returns:
        The trees in file order.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: on the first malformed line, naming ``file:line``, or bytes that are not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"treebank file not found: {path}")
    trees = []
    # Lines end at "\n" only (a lone "\r" or U+2028 is no line break), numbered as by wc -l.
    with LineReader(path) as lines:
        for number, text, error in lines:
            if error is not None:
                raise ValueError(f"{path}:{number}: {error}")
            if not text.strip():
                continue
            erratum = _ERRATA.get((path.name, number))
            if erratum is not None:
                text = text.replace(*erratum)
            trees.append(parse_tree(text, source=str(path), line=number))
    return trees


def _default_root() -> Path:
    """The directory of the treebank: $LRPJAX_DATA/sst if set, else the repository's data/sst."""
    if os.environ.get("LRPJAX_DATA"):
        return Path(os.environ["LRPJAX_DATA"]) / "sst"
    return Path(__file__).resolve().parents[2] / "data" / "sst"


def load_sst(split: str, root: str | os.PathLike | None = None, phrases: bool = False) -> list[Example]:
    """Loads one split of the treebank as lower-cased examples.

    With ``phrases=False`` there is one example per sentence, in file order (train 8544, dev 1101,
    test 2210; a sentence that occurs twice in a file is kept twice). With ``phrases=True`` the same
    sentences come first, in the same order, followed by every labelled sub-phrase (single words
    included), lower-cased, in order of first appearance, except those equal -- tokens and label --
    to an example already listed for this split (train 157411, dev 24458, test 46067 in all).

    The treebank labels each distinct phrase once, by its text with case, so a phrase always
    carries the same label; after lower-casing, case variants such as "Splash" and "splash" can
    disagree (583 token sequences in train). Such a sequence is kept once per label rather than
    relabelled, since both labels are annotations of the treebank.

    Args:
        split: "train", "dev" or "test".
        root: directory holding ``<split>.txt``; default $LRPJAX_DATA/sst when that variable is set,
            else ``data/sst`` of the repository.
        phrases: also return the deduplicated sub-phrases.

    Returns:
        A list of `Example` (tokens tuple, label int).

    Raises:
        ValueError: for an unknown `split`, or a malformed line (naming ``file:line``).
        FileNotFoundError: if the split's file is missing.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}; got {split!r}.")
    directory = Path(root) if root is not None else _default_root()
    path = directory / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"SST split {split!r} not found at {path}; pass `root` or set LRPJAX_DATA.")
    trees = read_trees(path)
    examples = []
    for tree in trees:
        examples.append(Example(tuple(token.lower() for token in tree.tokens), tree.label))
    if not phrases:
        return examples
    seen = set(examples)
    for tree, sentence in zip(trees, examples[: len(trees)]):
        for start, end, label in tree.spans:
            phrase = Example(sentence.tokens[start:end], label)
            if phrase not in seen:
                seen.add(phrase)
                examples.append(phrase)
    return examples


def label_index(label: int | np.integer | str) -> int:
    """Maps a class index (0..4, also as a digit string) or a name in `LABEL_NAMES` to its index.

    Raises:
        ValueError: if `label` is neither; the message lists the names.
    """
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if 0 <= int(label) < len(LABEL_NAMES):
            return int(label)
    elif isinstance(label, str):
        name = label.strip().lower().replace("_", " ").replace("-", " ")
        if name in LABEL_NAMES:
            return LABEL_NAMES.index(name)
        if name.isdigit() and int(name) < len(LABEL_NAMES):
            return int(name)
    raise ValueError(f"`label` must be an index 0..4 or one of {LABEL_NAMES}; got {label!r}.")


class Vocabulary:
    """Word <-> id table: id 0 is the padding word "<pad>", id 1 the unknown word "<unk>".

    Build one from the training tokens with `Vocabulary.build`; store it without pickle as a plain
    list of words (`to_json`) or a numpy unicode array (`to_array`, fit for an ``.npz``). A word's id
    is its position in that list, so both round trips are exact.

    Args:
        words: all words, ``words[0] == "<pad>"`` and ``words[1] == "<unk>"``, no repeats, no empty
            word, no NUL character (numpy unicode arrays would drop trailing NULs).

    Raises:
        TypeError: if a word is not a str.
        ValueError: if the special words are missing or misplaced, or a word is repeated or invalid.
    """

    def __init__(self, words: Sequence[str]):
        words = list(words)
        for position, word in enumerate(words):
            if not isinstance(word, str):
                raise TypeError(f"`words[{position}]` must be a str; got {type(word).__name__}.")
            if not word or "\x00" in word:
                raise ValueError(f"`words[{position}]` must be non-empty and free of NUL; got {word!r}.")
        if words[:2] != [PAD, UNK]:
            raise ValueError(f"`words` must start with {PAD!r}, {UNK!r}; got {words[:2]!r}.")
        index = {word: position for position, word in enumerate(words)}
        if len(index) != len(words):
            repeated = [word for word, count in collections.Counter(words).items() if count > 1]
            raise ValueError(f"`words` must be unique; repeated: {repeated[:10]!r}.")
        self._words = tuple(words)
        self._index = index

    @classmethod
    def build(cls, token_sequences: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        """Collects every word seen at least `min_count` times, in order of first appearance.

        Args:
            token_sequences: tokenised sentences, e.g. ``[ex.tokens for ex in load_sst("train")]``.
            min_count: words seen fewer times map to "<unk>".

        Raises:
            ValueError: if `min_count` < 1, or a sequence holds "<pad>" or "<unk>".
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"`min_count` must be an int >= 1; got {min_count!r}.")
        counts: collections.Counter[str] = collections.Counter()
        for tokens in token_sequences:
            if isinstance(tokens, str):
                raise TypeError("`token_sequences` must hold sequences of words, not strings.")
            counts.update(tokens)  # Counter keeps first-insertion order.
        for special in (PAD, UNK):
            if special in counts:
                raise ValueError(f"`token_sequences` must not contain the special word {special!r}.")
        return cls([PAD, UNK] + [word for word, count in counts.items() if count >= min_count])

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        """True for words with their own id ("<pad>" and "<unk>" are not words of the text)."""
        return isinstance(word, str) and self._index.get(word, 0) > 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._words == other._words

    def __hash__(self) -> int:
        return hash(self._words)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    @property
    def words(self) -> tuple[str, ...]:
        """All words, id order."""
        return self._words

    def encode(self, tokens: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Maps words to ids; unknown words (and literal "<pad>"/"<unk>") become id 1.

        Words are matched exactly: lower-case them first (`tokenize` and `load_sst` do).

        Args:
            tokens: a tokenised sentence of length T.

        Returns:
            ids of shape (T,), int32, and the unknown words in sentence order (repeats kept).

        Raises:
            TypeError: if `tokens` is a str or holds a non-str.
        """
        if isinstance(tokens, str):
            raise TypeError("`tokens` must be a sequence of words, not a str; call tokenize() first.")
        ids, unknown = [], []
        for position, word in enumerate(tokens):
            if not isinstance(word, str):
                raise TypeError(f"`tokens[{position}]` must be a str; got {type(word).__name__}.")
            if word in self:
                ids.append(self._index[word])
            else:
                ids.append(1)
                unknown.append(word)
        return np.asarray(ids, dtype=np.int32), unknown

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Maps ids of shape (T,) back to words (0 gives "<pad>", 1 gives "<unk>").

        Raises:
            TypeError: if `ids` is not integer.
            ValueError: if `ids` is not 1-D or an id is outside 0..len(self)-1.
        """
        array = np.asarray(ids)
        if array.size == 0:
            return []
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"`ids` must be integers; got dtype {array.dtype}.")
        if array.ndim != 1:
            raise ValueError(f"`ids` must have shape (T,); got {array.shape}.")
        if array.min() < 0 or array.max() >= len(self):
            raise ValueError(f"`ids` must lie in 0..{len(self) - 1}; got {array.min()}..{array.max()}.")
        return [self._words[i] for i in array.tolist()]

    def to_json(self) -> list[str]:
        """The words in id order, a plain JSON-able list (``json.dumps`` it to store)."""
        return list(self._words)

    @classmethod
    def from_json(cls, data: Sequence[str] | str) -> Vocabulary:
        """Rebuilds from `to_json`'s list, or from that list dumped as JSON text."""
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, list):
            raise TypeError(f"`data` must be a list of words; got {type(data).__name__}.")
        return cls(data)

    def to_array(self) -> np.ndarray:
        """The words as a numpy unicode array of shape (V,), storable in an ``.npz`` without pickle."""
        return np.asarray(self._words, dtype=np.str_)

    @classmethod
    def from_array(cls, array: np.ndarray) -> Vocabulary:
        """Rebuilds from `to_array`'s array (e.g. read back from an ``.npz``).

        Raises:
            TypeError: if `array` is not a unicode array.
            ValueError: if it is not 1-D.
        """
        array = np.asarray(array)
        if array.dtype.kind != "U":
            raise TypeError(f"`array` must be a numpy unicode array; got dtype {array.dtype}.")
        if array.ndim != 1:
            raise ValueError(f"`array` must have shape (V,); got {array.shape}.")
        return cls([str(word) for word in array.tolist()])


# Contractions and clitics the treebank writes as separate tokens: "don't" -> "do n't",
# "can't" -> "ca n't", "film's" -> "film 's", "they're" -> "they 're".
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_TRAILING = ".,!?;:"
_BRACKETS = {"(": "-lrb-", ")": "-rrb-"}


def _split_word(word: str, last: bool) -> list[str]:
    """Tokenises one whitespace-delimited, lower-cased word; `last` marks the text's final word."""
    head: list[str] = []
    while word and (word[0] in _BRACKETS or word[0] == '"'):
        head.append("``" if word[0] == '"' else _BRACKETS[word[0]])
        word = word[1:]
    tail: list[str] = []
    while word:
        if word.endswith("..."):
            tail.insert(0, "...")
            word = word[:-3]
        elif word[-1] in _BRACKETS or word[-1] == '"':
            tail.insert(0, "''" if word[-1] == '"' else _BRACKETS[word[-1]])
            word = word[:-1]
        elif word[-1] in _TRAILING and (word[-1] != "." or last):
            # A period stays on abbreviations ("mr.", "u.s.") unless it ends the text.
            tail.insert(0, word[-1])
            word = word[:-1]
        else:
            break
    for clitic in _CLITICS:
        if word.endswith(clitic) and len(word) > len(clitic):
            tail.insert(0, clitic)
            word = word[: -len(clitic)]
            break
    middle = [word] if word else []
    return head + middle + tail


def tokenize(text: str) -> list[str]:
    """Splits user text into lower-cased treebank-style tokens.

    Rules (a small subset of the Penn Treebank tokenizer that produced the SST, covering the common
    cases): lower-case; split on whitespace; "(" and ")" become "-lrb-" and "-rrb-"; a double quote
    becomes "``" at the start of a word and "''" at its end; "..." and trailing ``, ! ? ; :`` are
    split off, and a trailing "." only on the last word (so "mr." stays one token); the clitics
    n't 's 're 've 'll 'd 'm are split off ("don't" -> "do n't", "can't" -> "ca n't", "film's" ->
    "film 's"); "/" and "*" are escaped as "\\/" and "\\*" as in the treebank ("and/or" ->
    "and\\/or"). Hyphenated words stay whole, as in the treebank ("coming-of-age").

    Args:
        text: a sentence as a person would type it.

    Returns:
        The tokens (an empty list for blank text).

    Raises:
        TypeError: if `text` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str; got {type(text).__name__}.")
    text = text.lower().replace("\\/", "/").replace("\\*", "*").replace("/", "\\/").replace("*", "\\*")
    words = text.split()
    tokens: list[str] = []
    for position, word in enumerate(words):
        tokens.extend(_split_word(word, last=position == len(words) - 1))
    return tokens


def pad_batch(sequences: Sequence[np.ndarray], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stacks id sequences into a right-padded batch with a validity mask.

    Args:
        sequences: B integer arrays of shape (T_b,), each T_b >= 1.
        length: the padded length T; default the longest T_b.

    Returns:
        ids of shape (B, T), int32, padded with 0 ("<pad>"), and mask of shape (B, T), bool, True on
        the first T_b positions of row b.

    Raises:
        TypeError: if a sequence is not integer.
        ValueError: if `sequences` is empty, a sequence is empty or not 1-D, or longer than `length`.
    """
    arrays = [np.asarray(sequence) for sequence in sequences]
    if not arrays:
        raise ValueError("`sequences` must hold at least one sequence; got none.")
    for b, array in enumerate(arrays):
        if array.ndim != 1:
            raise ValueError(f"`sequences[{b}]` must have shape (T,); got {array.shape}.")
        if array.shape[0] == 0:
            raise ValueError(f"`sequences[{b}]` is empty; every sequence needs at least one token.")
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"`sequences[{b}]` must hold integer ids; got dtype {array.dtype}.")
    longest = max(array.shape[0] for array in arrays)
    if length is None:
        length = longest
    elif isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"`length` must be a positive int or None; got {length!r}.")
    ids = np.zeros((len(arrays), int(length)), dtype=np.int32)
    mask = np.zeros((len(arrays), int(length)), dtype=bool)
    for b, array in enumerate(arrays):
        if array.shape[0] > length:
            raise ValueError(f"`sequences[{b}]` has length {array.shape[0]} > `length` = {length}.")
        ids[b, : array.shape[0]] = array
        mask[b, : array.shape[0]] = True
    return ids, mask


def _check_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or scores.shape[1] != len(LABEL_NAMES):
        raise ValueError(f"`scores` must have shape (B, C) = (B, {len(LABEL_NAMES)}); got {scores.shape}.")
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"`labels` must have shape (B,) = ({scores.shape[0]},); got {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"`labels` must be integers; got dtype {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(LABEL_NAMES)):
        raise ValueError(f"`labels` must lie in 0..{len(LABEL_NAMES) - 1}.")
    return scores, labels


def binary_predictions(scores: np.ndarray) -> np.ndarray:
    """Positive (True) when the largest of the four non-neutral scores is class 3 or 4.

    Args:
        scores: class scores or probabilities, shape (B, C) with C = 5.

    Returns:
        Shape (B,), bool.
    """
    scores, _ = _check_scores(scores, np.zeros(np.shape(scores)[:1], dtype=np.int64))
    non_neutral = np.asarray([0, 1, 3, 4])
    return non_neutral[np.argmax(scores[:, non_neutral], axis=1)] >= 3


def binary_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Binary accuracy of Li et al. (2016): over the sentences whose true label is not neutral (2),
    the fraction where `binary_predictions` agrees with ``label >= 3``.

    Args:
        scores: class scores or probabilities, shape (B, C) with C = 5.
        labels: true labels in 0..4, shape (B,).

    Raises:
        ValueError: on bad shapes or labels, or if every label is neutral.
    """
    scores, labels = _check_scores(scores, labels)
    counted = labels != NEUTRAL
    if not counted.any():
        raise ValueError("`labels` must hold at least one non-neutral label for binary accuracy.")
    correct = binary_predictions(scores)[counted] == (labels[counted] >= 3)
    return float(correct.mean())


def five_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows where the largest score is the true label; scores (B, C), labels (B,).

    Raises:
        ValueError: on bad shapes or labels, or an empty batch.
    """
    scores, labels = _check_scores(scores, labels)
    if labels.size == 0:
        raise ValueError("`labels` must not be empty.")
    return float((np.argmax(scores, axis=1) == labels).mean())
