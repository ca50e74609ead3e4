"""Any model checkpoint over token ids as an application: text in, an explanation per token out.

:class:`TextModel` is what the command line (``lrpjax explain|info|report --checkpoint mine.npz``) and
the report run for a checkpoint written by :func:`lrpjax.io.checkpoints.save_model` with a model that
starts with an :class:`~lrpjax.models.Embedding` and a vocabulary::

    checkpoints.save_model("mine.npz", model, params, vocab=words, labels=["negative", "positive"],
                           tokenizer={"split": "whitespace", "lowercase": True, "unknown": "<unk>"})
    bundle = load("mine.npz")                         # a TextModel (the shipped SST model: an SSTModel)
    result = bundle.explain_sentence("a fine film", "lrp-all")
    result.relevance                                  # (T,) per token; (L, T) for a per-step output

Text becomes tokens by the checkpoint's tokenizer description (whitespace or the treebank tokenizer of
:func:`lrpjax.data.sst.tokenize`, optionally lower-cased), tokens become ids by the vocabulary (a word
outside it is the tokenizer's ``"unknown"`` word, or an error when it has none). The outputs are class
scores (prediction: the largest; probabilities by softmax), regression values (``outputs="regression"``)
or one output vector per step (T, C), explained step by step: the relevance of one class at every step is
a (step x token) matrix. Sentences are explained in padded batches of a few bucket lengths
(:func:`lrpjax.app.model.bucket_length`), every sentence by its number in the input (the random methods
draw by it), so chunks and resumed runs reproduce one run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax.app.model import DEFAULT_EPS, KIND, SEEDED, SSTModel, bucket_length, default_checkpoint, make_method
from lrpjax.data.sst import tokenize
from lrpjax.io import checkpoints
from lrpjax.methods.program import Program, explain_chunk
from lrpjax.models import Sequential

__all__ = ["TextModel", "TextExplanation", "load", "tokens_of"]


def load(path: str | os.PathLike | None = None) -> Any:
    """The application for a checkpoint: an :class:`~lrpjax.app.model.SSTModel` for the SST bundle
    (kind ``"sst-bilstm"``, and ``path=None``: the shipped one), an
    :class:`~lrpjax.app.pairs.EncoderDecoderModel` for an encoder-decoder (a stored config of type
    ``"seq2seq"``), else a :class:`TextModel`.

    Raises:
        lrpjax.io.checkpoints.CheckpointError: an unreadable checkpoint, or one no application can run
            (naming what is missing).
    """
    from lrpjax.app.pairs import EncoderDecoderModel

    path = default_checkpoint() if path is None else Path(path)
    metadata = checkpoints.read_metadata(path)
    if metadata.get("kind") == KIND:
        return SSTModel.load(path)
    config = metadata.get(checkpoints.MODEL_CONFIG)
    if isinstance(config, dict) and config.get("type") == "seq2seq":
        return EncoderDecoderModel.load(path)
    return TextModel.load(path)


def tokens_of(text: str | Sequence[str], tokenizer: dict[str, Any],
              ids: dict[str, int]) -> tuple[list[str], np.ndarray, list[str]]:
    """(tokens, ids (T,) int32, unknown tokens) of a text split by a checkpoint's ``tokenizer`` description
    (:func:`lrpjax.io.checkpoints.save_model`), or of a token list; ``ids`` maps the vocabulary's words.

    Raises:
        ValueError: a token outside the vocabulary when the tokenizer has no unknown word.
    """
    if isinstance(text, str):
        tokens = tokenize(text) if tokenizer["split"] == "sst" else text.split()
    else:
        tokens = list(text)
    if tokenizer["lowercase"]:
        tokens = [t.lower() for t in tokens]
    unknown = [t for t in tokens if t not in ids]
    if unknown and tokenizer["unknown"] is None:
        words = list(dict.fromkeys(unknown))
        named = (f"the word {words[0]!r} is" if len(words) == 1 else
                 f"the words {', '.join(repr(w) for w in words[:10])}{', ...' if len(words) > 10 else ''} are")
        raise ValueError(f"{named} not in the vocabulary, and this checkpoint's tokenizer has no unknown word.")
    fallback = ids.get(tokenizer["unknown"], -1)
    return tokens, np.asarray([ids.get(t, fallback) for t in tokens], np.int32), unknown


@dataclass
class TextExplanation:
    """The explanation of one text by a :class:`TextModel`.

    Attributes:
        text: the text as given; ``tokens`` its tokens (T,); ``unknown`` the tokens outside the vocabulary.
        scores: the model's output, (C,) or (L, C) for a per-step output.
        probabilities: softmax of the scores over the classes (None for regression outputs).
        prediction: the largest score's index (per step for a per-step output; None for regression).
        target: the explained output (a class; for a per-step output the class explained at every step,
            or -1 when each step's own prediction is).
        labels: the names of the outputs.
        method, eps, seed, method_id: as :class:`lrpjax.app.model.SentenceExplanation`.
        relevance: per token (T,), or (L, T) for a per-step output (row l: the output at step l).
    """

    text: str
    tokens: list[str]
    unknown: list[str]
    scores: np.ndarray
    probabilities: np.ndarray | None
    prediction: Any
    target: int
    labels: list[str]
    method: str
    eps: float | None
    relevance: np.ndarray
    seed: int | None = None
    method_id: str | None = None
    conservation: dict[str, float] | None = None

    @property
    def per_step(self) -> bool:
        """Whether the model has one output per step (relevance (L, T))."""
        return np.ndim(self.scores) == 2

    @property
    def finite(self) -> bool:
        """Whether scores and relevance are all finite (JSON holds no NaN or infinity)."""
        return bool(np.isfinite(self.scores).all() and np.isfinite(self.relevance).all())

    def _name(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else str(index)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with the fields of the SST records (``sentence``, ``tokens``, ``prediction``,
        ``prediction_name``, ``probabilities``, ``scores``, ``target``, ``target_name``, ``method``, ``eps``,
        ``relevance``, ...); a per-step output adds ``"per_step": true`` with nested lists."""
        record: dict[str, Any] = {
            "sentence": self.text, "tokens": list(self.tokens), "unknown": list(self.unknown),
            "prediction": np.asarray(self.prediction).tolist() if self.prediction is not None else None,
            "prediction_name": (None if self.prediction is None else
                                [self._name(int(p)) for p in np.ravel(self.prediction)] if self.per_step
                                else self._name(int(self.prediction))),
            "probabilities": None if self.probabilities is None else np.asarray(self.probabilities).tolist(),
            "scores": np.asarray(self.scores, np.float64).tolist(),
            "target": int(self.target), "target_name": "pred" if self.target < 0 else self._name(int(self.target)),
            "labels": list(self.labels), "method": self.method, "eps": self.eps,
            "relevance": np.asarray(self.relevance, np.float64).tolist(),
        }
        if self.per_step:
            record["per_step"] = True
        if self.conservation:
            record["conservation"] = dict(self.conservation)
        if self.seed is not None:
            record["seed"] = self.seed
        if self.method_id is not None:
            record["method_id"] = self.method_id
        return record

    def __repr__(self) -> str:
        from lrpjax.viz.plot import plain_sentence

        head = f"TextExplanation(method: {self.method}; explained: {self._name(self.target) if self.target >= 0 else 'pred'})"
        if self.per_step:
            rows = [f"  step {l} ({self.tokens[l] if l < len(self.tokens) else l}): "
                    + plain_sentence(self.tokens, self.relevance[l]) for l in range(len(self.relevance))]
            return "\n".join([head, *rows])
        return head + "\n  " + plain_sentence(self.tokens, self.relevance)


@partial(jax.jit, static_argnums=(0,))
def _chunk(program: Program, params, ids, mask, targets, index):
    return explain_chunk(program, params, ids, mask, targets, index)


class TextModel:
    """A model over token ids with its vocabulary, tokenizer and output names (module docstring).

    Args:
        model: a :class:`~lrpjax.models.Sequential` whose first layer is an Embedding.
        params: its parameters.
        vocab: one word per embedding row.
        metadata: the checkpoint's metadata (``labels``, ``tokenizer``, ``outputs``: see
            :func:`lrpjax.io.checkpoints.save_model`).

    Raises:
        TypeError: a model that does not take token ids.
        ValueError: a vocabulary of another size than the embedding table, or metadata that does not fit.
    """

    def __init__(self, model: Sequential, params: dict, vocab: Sequence[str], metadata: dict[str, Any] | None = None):
        if not isinstance(model, Sequential) or not model.takes_ids:
            raise TypeError("`model` must be a Sequential that starts with an Embedding (it reads token ids); the "
                            "command line explains text through the model's vocabulary.")
        metadata = dict(metadata or {})
        specs = model.specs(params)
        checkpoints.describe_text(model, specs[0].size, specs[-1].size, list(vocab), metadata.get("labels"),
                                  metadata.get("tokenizer"), metadata.get("outputs"))
        self.model, self.params, self.metadata = model, params, metadata
        self.vocab = list(vocab)
        self._ids = {word: i for i, word in enumerate(self.vocab)}
        C = specs[-1].size
        self.labels = list(metadata.get("labels") or [str(c) for c in range(C)])
        self.tokenizer = {"split": "whitespace", "lowercase": False, "unknown": None, **metadata.get("tokenizer", {})}
        self.outputs = metadata.get("outputs", "classes")
        self.per_step = model.sequence_output

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextModel:
        """Reads a checkpoint written by :func:`lrpjax.io.checkpoints.save_model` with a vocabulary.

        Raises:
            lrpjax.io.checkpoints.CheckpointError: an unreadable file, a model that does not take token ids,
                no vocabulary ('extra/vocab'), or metadata that does not fit the model (named).
        """
        path = os.fspath(path)
        saved = checkpoints.load_model(path)
        if not saved.model.takes_ids:
            raise checkpoints.CheckpointError(
                f"checkpoint {path!r} holds a model that reads embedded vectors, not token ids; the command line "
                "needs a model that starts with an Embedding (lrpjax.models.Embedding) and a vocabulary "
                "(checkpoints.save_model(..., vocab=...)).")
        if "vocab" not in saved.extra:
            raise checkpoints.CheckpointError(f"checkpoint {path!r} holds no vocabulary ('extra/vocab'); write it "
                                              "with checkpoints.save_model(..., vocab=words).")
        try:
            return cls(saved.model, saved.params, [str(w) for w in saved.extra["vocab"]], saved.metadata)
        except (TypeError, ValueError) as error:
            raise checkpoints.CheckpointError(f"checkpoint {path!r}: {error}") from error

    @classmethod
    def from_sst(cls, sst: SSTModel) -> TextModel:
        """The SST bundle as a model over token ids: its embedding table as the first layer
        (``Embedding(E, name="embed")``) before the BiLSTM, its vocabulary, the treebank tokenizer
        (lower-cased, unknown words as ``"<unk>"``) and its five class names. It explains as the bundle does
        (the same methods on the same embedded words); :meth:`save` writes it as a checkpoint of any model."""
        from lrpjax.data.sst import LABEL_NAMES, UNK
        from lrpjax.models import bilstm
        from lrpjax.models.embedding import with_embedding

        model, params = with_embedding(bilstm.model.network, dict(sst.params["model"]), sst.params["embed"],
                                       name="embed")
        metadata = {k: v for k, v in sst.metadata.items() if k in ("command", "dev_accuracy", "test_accuracy")}
        metadata.update(labels=list(LABEL_NAMES), tokenizer={"split": "sst", "lowercase": True, "unknown": UNK})
        return cls(model, params, list(sst.vocab.words), metadata)

    def save(self, path: str | os.PathLike) -> str:
        """Writes the model, its parameters, vocabulary, tokenizer and labels
        (:func:`lrpjax.io.checkpoints.save_model`); :meth:`load` (and ``lrpjax --checkpoint``) read it."""
        extra = {k: v for k, v in self.metadata.items() if k not in ("labels", "tokenizer", "outputs", "kind")
                 and k not in (checkpoints.MODEL_CONFIG, checkpoints.MODEL_KEY, "format_version", "lrpjax_version")}
        return checkpoints.save_model(path, self.model, jax.tree_util.tree_map(np.asarray, self.params), extra,
                                      vocab=self.vocab, labels=self.labels, tokenizer=self.tokenizer,
                                      outputs=self.outputs)

    def describe(self) -> str:
        """Lines for ``lrpjax info``: the model's layers, the vocabulary, the outputs."""
        lines = [f"model over token ids: vocabulary {len(self.vocab)} words, tokenizer {self.tokenizer['split']}"
                 f"{', lower-cased' if self.tokenizer['lowercase'] else ''}"
                 f"{', unknown words as ' + repr(self.tokenizer['unknown']) if self.tokenizer['unknown'] else ''}",
                 f"outputs: {self.outputs}{' per step' if self.per_step else ''}: {', '.join(self.labels)}",
                 self.model.summary(self.params)]
        return "\n".join(lines)

    # --- inputs --------------------------------------------------------------------------------

    def encode(self, sentence: str | Sequence[str]) -> tuple[list[str], np.ndarray, list[str]]:
        """(tokens, ids (T,), unknown tokens) of a text (tokenised) or a token list.

        Raises:
            ValueError: a token outside the vocabulary when the tokenizer has no unknown word.
        """
        return tokens_of(sentence, self.tokenizer, self._ids)

    def resolve_target(self, target: int | str) -> int:
        """``"pred"`` -> -1 (the prediction; for a regression model with one output, that output); an index
        or a label -> the index.

        Raises:
            ValueError: anything else, listing the labels.
        """
        text = str(target).strip()
        if text.lower() in ("pred", "prediction", "predicted"):
            if self.outputs == "regression":
                if len(self.labels) == 1:
                    return 0
                raise ValueError(f"`target`: a regression model has no prediction to explain; name one of its "
                                 f"outputs ({', '.join(self.labels)}) or give its index.")
            return -1
        if text.isdigit() and int(text) < len(self.labels):
            return int(text)
        names = [n.lower() for n in self.labels]
        normal = text.lower().replace("_", " ")
        if normal in names:
            return names.index(normal)
        raise ValueError(f"`target` must be 'pred', an output index 0..{len(self.labels) - 1} or a label "
                         f"({', '.join(repr(n) for n in self.labels)}); got {target!r}.")

    # --- explanation ---------------------------------------------------------------------------

    def explain_sentence(self, text: str | Sequence[str], method: str = "lrp-all", target: int | str = "pred",
                         eps: float | None = None, seed: int = 0) -> TextExplanation:
        """Explains one text; see :meth:`explain_many`.

        Raises:
            ValueError: an empty text, a word outside the vocabulary (without an unknown word), an unknown
                method or a bad target.
        """
        result = self.explain_many([text], method, target, eps, seed=seed)[0]
        if isinstance(result, str):
            raise ValueError(result)
        return result

    def explain_many(self, sentences: Sequence[str | Sequence[str]], method: str = "lrp-all",
                     target: int | str = "pred", eps: float | None = None, *, batch_size: int = 64, seed: int = 0,
                     first_index: int = 0, full_batches: bool = False,
                     progress: Callable[[int], None] | None = None) -> list[TextExplanation | str]:
        """Explains many texts in padded, jit-compiled batches (one compilation per bucket length).

        Args:
            sentences: texts (tokenised here) or token lists.
            method: one of :data:`lrpjax.app.model.METHODS`.
            target: ``"pred"``, an output index or a label, for every text.
            eps: LRP stabiliser (None: :data:`lrpjax.app.model.DEFAULT_EPS`).
            batch_size: texts per compiled call.
            seed: seed of the random baseline and SmoothGrad.
            first_index: the number of ``sentences[0]``; text ``i`` is number ``first_index + i`` (random
                draws depend on it).
            full_batches: pad every compiled batch to ``batch_size`` rows (results then depend only on a
                text and its number, whatever the call).
            progress: called with the number of texts finished after each batch.

        Returns:
            A :class:`TextExplanation` per text, or an error message for an empty text or one with a word
            outside the vocabulary.
        """
        numbered = [(first_index + i, s) for i, s in enumerate(sentences)]
        results = dict(self._explain(numbered, method, target, eps, batch_size, seed, full_batches, progress))
        return [results[first_index + i] for i in range(len(sentences))]

    def explain_stream(self, sentences: Iterable[tuple[int, str | Sequence[str]]], method: str = "lrp-all",
                       target: int | str = "pred", eps: float | None = None, *, batch_size: int = 64,
                       seed: int = 0, window: int = 4096, devices=None) -> Iterator[tuple[int, TextExplanation | str]]:
        """Explains numbered texts, yielding ``(index, result)`` in input order; every ``window`` texts (by
        ``index + 1``) the texts read so far are explained and yielded, so memory is bounded by the window.
        Batches are always full (``full_batches``), so a stream explained in pieces or resumed gives the
        results of one run. ``devices`` is accepted for the command line's sake; one device runs it.

        Raises:
            ValueError: a bad method, target or window.
        """
        if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
            raise ValueError(f"`window` must be an int >= 1; got {window!r}.")
        pending: list[tuple[int, Any]] = []
        for index, sentence in sentences:
            pending.append((index, sentence))
            if (index + 1) % window == 0:
                yield from self._explain(pending, method, target, eps, batch_size, seed, True, None)
                pending = []
        if pending:
            yield from self._explain(pending, method, target, eps, batch_size, seed, True, None)

    def _explain(self, numbered: list[tuple[int, Any]], method: str, target: int | str, eps: float | None,
                 batch_size: int, seed: int, full_batches: bool,
                 progress: Callable[[int], None] | None) -> list[tuple[int, TextExplanation | str]]:
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size!r}.")
        m = make_method(method, eps, seed, apply=self.model.apply)
        used_eps = (DEFAULT_EPS[method] if eps is None else float(eps)) if method.startswith("lrp-") else None
        used_seed, method_id = (seed if method in SEEDED else None), m.digest()
        target_index = self.resolve_target(target)
        program = Program((m,), "per_step" if self.per_step else "index", tokens=True)
        results: dict[int, TextExplanation | str] = {}
        encoded: dict[int, tuple[str, list[str], np.ndarray, list[str]]] = {}
        for index, sentence in numbered:
            text = sentence if isinstance(sentence, str) else " ".join(sentence)
            try:
                tokens, ids, unknown = self.encode(sentence)
            except ValueError as error:
                results[index] = str(error)
                continue
            if not tokens:
                results[index] = "empty sentence: nothing to explain"
                continue
            encoded[index] = (text, tokens, ids, unknown)
        valid = list(encoded)
        rows = batch_size if full_batches or len(valid) >= batch_size else \
            min(batch_size, 1 << max(len(valid) - 1, 0).bit_length())      # a power of two for a small call
        by_length: dict[int, list[int]] = {}
        for index in valid:
            by_length.setdefault(bucket_length(len(encoded[index][2])), []).append(index)
        for L in sorted(by_length):
            members = by_length[L]
            for start in range(0, len(members), rows):
                chunk = members[start:start + rows]
                ids = np.zeros((rows, L), np.int32)
                mask = np.zeros((rows, L), bool)
                mask[:, 0] = True                  # dummy rows: one valid step, results dropped
                numbers = np.zeros((rows,), np.int32)
                for r, index in enumerate(chunk):
                    n = len(encoded[index][2])
                    ids[r, :n], mask[r, :n], numbers[r] = encoded[index][2], True, index
                out = _chunk(program, self.params, jnp.asarray(ids), jnp.asarray(mask),
                             jnp.full((rows,), target_index, jnp.int32), jnp.asarray(numbers))
                scores, targets, relevance = (np.asarray(a) for a in (out.scores, out.targets, out.relevance))
                for r, index in enumerate(chunk):
                    text, tokens, _, unknown = encoded[index]
                    n = len(tokens)
                    results[index] = self._result(text, tokens, unknown, scores[r], targets[r], relevance[r], n,
                                                  target_index, method, used_eps, used_seed, method_id)
                if progress is not None:
                    progress(len(chunk))
        return [(index, results[index]) for index, _ in numbered]

    def _result(self, text, tokens, unknown, scores, targets, relevance, n, target_index, method, eps, seed,
                method_id) -> TextExplanation:
        if self.per_step:
            scores, relevance = scores[:n], relevance[:n, :n]
            prediction = np.argmax(scores, axis=-1) if self.outputs == "classes" else None
            target = int(target_index)
        else:
            relevance = relevance[:n]
            prediction = int(np.argmax(scores)) if self.outputs == "classes" else None
            target = int(targets)
        probabilities = None
        if self.outputs == "classes":
            z = np.asarray(scores, np.float64)
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            probabilities = e / e.sum(axis=-1, keepdims=True)
        return TextExplanation(text, tokens, unknown, scores, probabilities, prediction, target, self.labels, method,
                               eps, relevance, seed, method_id)

    def conservation(self, result: TextExplanation) -> dict[str, float] | None:
        """The LRP bookkeeping of one explained text (``.full()`` on its ids, padded to its bucket length):
        ``{"target_score", "relevance_sum", "bias", "initial", "residual"}``; None for a method without a
        conservation residual, or a per-step output (one explanation per step)."""
        from lrpjax.viz import render

        method = make_method(result.method, result.eps, result.seed or 0, apply=self.model.apply)
        if not method.has_residual or result.per_step or result.target < 0:
            return None
        _, ids, _ = self.encode(result.tokens)
        T = ids.shape[0]
        length = bucket_length(T)
        padded = np.zeros((length,), np.int32)
        padded[:T] = ids
        full = method.full(self.params, padded, int(result.target), mask=np.arange(length) < T)
        summary = render.explanation_summary(full, int(result.target))
        return {key: summary[key] for key in ("target_score", "relevance_sum", "bias", "initial", "residual")}

    def __repr__(self) -> str:
        return f"TextModel(V={len(self.vocab)}, outputs={self.labels}{', per step' if self.per_step else ''})"
