"""An encoder-decoder checkpoint as an application: a source text in, its output and the relevance matrix out.

:class:`EncoderDecoderModel` is what the command line runs (``lrpjax info|explain --checkpoint pairs.npz``)
for a checkpoint of a :class:`~lrpjax.models.Seq2Seq` over token ids written by
:func:`lrpjax.io.checkpoints.save_model` with a vocabulary and a decoding (the word the decoder reads first)::

    checkpoints.save_model("pairs.npz", seq2seq, params, vocab=words, decoding={"bos": "<bos>"})
    bundle = load("pairs.npz")                       # an EncoderDecoderModel (lrpjax.app.bundle.load)
    result = bundle.explain_pair("3 5 7 2")          # the output decoded greedily, then explained
    result.output, result.relevance                  # T output tokens; (T, L + T) relevance

Output step t produces the token ``y_t`` after the decoder has read ``<bos>, y_1, ..., y_{t-1}``
(teacher forcing on the output, Sec. "Encoder-decoders" of the attention guide). The explained score of
step t is that of ``y_t``: of the token the model chose when the output is decoded greedily, of the given
token when a target text is given. Row t of the relevance matrix covers the L source tokens and then the
T tokens the decoder reads (``<bos>, y_1, ..., y_{T-1}``); the positions after the t-th of these get exactly
0 (the decoder is causal; the random baseline alone draws every cell; the printed rows and the table's sums
leave those cells out). Relevance is summed over the embedding (word level), for every method of
:data:`lrpjax.app.model.METHODS` the model supports, all T steps in one compiled program
(:class:`~lrpjax.methods.program.Program` with ``"per_step"`` targets).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax.app.model import DEFAULT_EPS, SEEDED, make_method
from lrpjax.io import checkpoints
from lrpjax.methods.program import Program, explain_chunk

__all__ = ["EncoderDecoderModel", "PairExplanation", "format_pair", "pair_figure", "pair_table", "summary"]

_SCORES = {"general": "general scores h W k (Luong)", "dot": "dot-product scores h . k (Luong)",
           "additive": "additive scores v . tanh(W k + U h + b) (Bahdanau)"}
_CELLS = {"standard": "LSTM", "gru": "GRU"}


def summary(model: Any, params: Any) -> str:
    """Lines describing an encoder-decoder and its sizes (checks ``params``): its parts, S, the score kind."""
    sizes = model.sizes(params)
    cell = _CELLS.get(model.cell.kind, f"recurrent ({model.cell.kind} cell)")
    per = sizes.D // (2 if model.bidirectional else 1)
    count = sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(params))
    reads = (f"token ids (V = {sizes.V}), embedded E = {sizes.E} (a table per side)" if sizes.V is not None
             else f"embedded vectors E = {sizes.E}")
    feeding = (f", input feeding (it also reads the previous attentional state, M = {sizes.M})"
               if model.input_feeding else "")
    return "\n".join([
        f"encoder-decoder (Seq2Seq) with attention, {count} parameters; input: {reads}",
        f"  source: up to S = {model.source_steps} tokens",
        f"  encoder: {'bidirectional' if model.bidirectional else 'forward'} {cell}, {per} units"
        f"{' per direction' if model.bidirectional else ''}: states D = {sizes.D} per source step",
        f"  decoder: {cell}, H = {sizes.H}, zero initial state{feeding}",
        f"  attention: {_SCORES[model.score]}"
        f"{f', A = {model.attention_units}' if model.score == 'additive' else ''}, softmax over the valid source steps",
        f"  attentional state: M = {sizes.M} (tanh of the context and the decoder state); output: scores over "
        f"{model.output_size(params)} ids per step",
    ])


@dataclass
class PairExplanation:
    """The explanation of one source (and its output) by an :class:`EncoderDecoderModel`.

    Attributes:
        source: the source tokens (L,); ``unknown`` those outside the vocabulary (read as its unknown word).
        output: the output tokens (T,): decoded greedily (``greedy``) or given.
        inputs: the tokens the decoder reads (T,): the first is the decoding's ``bos``, then ``output[:-1]``.
        scores: the model's scores (T, V) at every output step.
        predictions: each step's highest-scoring token (T,) (equal to ``output`` when decoded greedily).
        probabilities: the softmax probability of each explained output token (T,).
        target_scores: the score of each explained output token (T,), what the relevance of its row explains.
        relevance: (T, L + T): row t over the source tokens, then over ``inputs``.
        residual: the LRP conservation residual of each step (T,): its token's score minus the relevance of
            the row, minus ``bias``; None for other methods.
        bias: what the biases absorbed and what reached the initial states, per step (T,) (LRP; else None):
            ``target_scores == relevance.sum(-1) + bias + residual`` (the padded source positions get none).
        method, eps, seed: as :class:`lrpjax.app.model.SentenceExplanation`.
    """

    source: list[str]
    output: list[str]
    inputs: list[str]
    greedy: bool
    scores: np.ndarray
    predictions: list[str]
    probabilities: np.ndarray
    target_scores: np.ndarray
    relevance: np.ndarray
    residual: np.ndarray | None
    bias: np.ndarray | None
    method: str
    eps: float | None
    seed: int | None
    unknown: list[str]

    @property
    def columns(self) -> list[str]:
        """The tokens of the relevance matrix's columns: the source, then the decoder's inputs."""
        return self.source + self.inputs

    @property
    def finite(self) -> bool:
        """Whether scores and relevance are all finite."""
        return bool(np.isfinite(self.scores).all() and np.isfinite(self.relevance).all())

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``source``, ``output``, ``inputs``, ``greedy``, ``predictions``, ``probabilities``,
        ``relevance`` as nested lists, ``method``, ``eps``, and ``residual``/``bias``/``seed`` where they apply)."""
        record: dict[str, Any] = {
            "source": list(self.source), "output": list(self.output), "inputs": list(self.inputs),
            "greedy": self.greedy, "predictions": list(self.predictions),
            "probabilities": np.asarray(self.probabilities, np.float64).tolist(),
            "target_scores": np.asarray(self.target_scores, np.float64).tolist(),
            "relevance": np.asarray(self.relevance, np.float64).tolist(), "method": self.method, "eps": self.eps,
            "unknown": list(self.unknown)}
        if self.residual is not None and self.bias is not None:
            record["residual"] = np.asarray(self.residual, np.float64).tolist()
            record["bias"] = np.asarray(self.bias, np.float64).tolist()
        if self.seed is not None:
            record["seed"] = self.seed
        return record


class EncoderDecoderModel:
    """An encoder-decoder over token ids with its vocabulary, tokenizer and decoding (module docstring).

    Args:
        model: a :class:`~lrpjax.models.Seq2Seq` that reads token ids.
        params: its parameters.
        vocab: one word per id.
        metadata: the checkpoint's metadata (``tokenizer``, ``decoding``: see
            :func:`lrpjax.io.checkpoints.save_model`).

    Raises:
        TypeError: a model that is not an encoder-decoder over token ids.
        ValueError: a vocabulary of another size than the model's, or metadata that does not fit it.
    """

    def __init__(self, model: Any, params: dict, vocab: Sequence[str], metadata: dict[str, Any] | None = None):
        if not callable(getattr(model, "greedy", None)) or not model.takes_ids:
            raise TypeError("`model` must be an encoder-decoder (Seq2Seq) over token ids; the command line explains "
                            "text through the model's vocabulary.")
        metadata = dict(metadata or {})
        described = checkpoints.describe_text(model, model.input_size(params), model.output_size(params), list(vocab),
                                              None, metadata.get("tokenizer"), None, decoding=metadata.get("decoding"))
        self.model, self.params, self.metadata = model, params, metadata
        self.vocab = list(vocab)
        self._ids = {word: i for i, word in enumerate(self.vocab)}
        self.tokenizer: dict[str, Any] = described.get("tokenizer", {"split": "whitespace", "lowercase": False,
                                                                     "unknown": None})
        self.decoding: dict[str, Any] | None = described.get("decoding")   # {'bos', 'eos', 'steps'}, all stated

    @classmethod
    def load(cls, path: str | os.PathLike) -> EncoderDecoderModel:
        """Reads a checkpoint of an encoder-decoder written by :func:`lrpjax.io.checkpoints.save_model` with a
        vocabulary.

        Raises:
            lrpjax.io.checkpoints.CheckpointError: an unreadable file, a model that is not an encoder-decoder
                over token ids, no vocabulary ('extra/vocab'), or metadata that does not fit the model (named).
        """
        path = os.fspath(path)
        saved = checkpoints.load_model(path)
        if not callable(getattr(saved.model, "greedy", None)):
            raise checkpoints.CheckpointError(f"checkpoint {path!r} holds no encoder-decoder (its model has no "
                                              "decoder).")
        if not saved.model.takes_ids:
            raise checkpoints.CheckpointError(
                f"checkpoint {path!r} holds an encoder-decoder over embedded vectors; the command line reads text "
                "through token ids (a Seq2Seq with reads_ids=True, saved with vocab=words).")
        if "vocab" not in saved.extra:
            raise checkpoints.CheckpointError(
                f"checkpoint {path!r} holds no vocabulary ('extra/vocab'): an encoder-decoder reads a source text "
                "through it; write it with checkpoints.save_model(..., vocab=words, decoding={'bos': ...}).")
        try:
            return cls(saved.model, saved.params, [str(w) for w in saved.extra["vocab"]], saved.metadata)
        except (TypeError, ValueError) as error:
            raise checkpoints.CheckpointError(f"checkpoint {path!r}: {error}") from error

    def describe(self) -> str:
        """Lines for ``lrpjax info``: the parts and sizes, the vocabulary, the decoding, recorded numbers."""
        t = self.tokenizer
        lines = [summary(self.model, self.params),
                 f"vocabulary: {len(self.vocab)} words, tokenizer {t['split']}"
                 f"{', lower-cased' if t['lowercase'] else ''}"
                 f"{', unknown words as ' + repr(t['unknown']) if t['unknown'] else ''}"]
        if self.decoding is None:
            lines.append("decoding: none stated (no 'bos' word): the command line cannot decode or explain it")
        else:
            d = self.decoding
            steps = "as many tokens as the source has" if d["steps"] == "source" else f"at most {d['steps']} tokens"
            end = f"ends at {d['eos']!r}" if d["eos"] is not None else "no end token"
            lines.append(f"decoding: greedy from {d['bos']!r}, {steps}, {end}")
        recorded = {k: v for k, v in self.metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and k not in ("format_version",)}
        if recorded:
            lines.append("recorded: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in sorted(recorded.items())))
        return "\n".join(lines)

    # --- inputs --------------------------------------------------------------------------------

    def encode(self, text: str | Sequence[str]) -> tuple[list[str], list[int], list[str]]:
        """(tokens, ids, unknown tokens) of a text (split by the checkpoint's tokenizer) or a token list.

        Raises:
            ValueError: a token outside the vocabulary when the tokenizer has no unknown word.
        """
        from lrpjax.app.bundle import tokens_of

        tokens, ids, unknown = tokens_of(text, self.tokenizer, self._ids)
        return tokens, ids.tolist(), unknown

    def _decoding(self) -> dict[str, Any]:
        if self.decoding is None:
            raise ValueError("this checkpoint states no decoding (the word the decoder reads first); write it with "
                             "checkpoints.save_model(..., decoding={'bos': word}).")
        return self.decoding

    def decode(self, source: Sequence[int]) -> list[int]:
        """Greedy decoding of source ids (L,) by the checkpoint's decoding: from ``bos``, ``steps`` tokens (the
        source's length for ``"source"``), cut after the first ``eos``.

        Raises:
            ValueError: no decoding stated, an empty source or one longer than S.
        """
        decoding = self._decoding()
        self._check_source(source)
        steps = len(source) if decoding["steps"] == "source" else int(decoding["steps"])
        ids = np.asarray(self.model.greedy(self.params, np.asarray(source, np.int32), self._ids[decoding["bos"]],
                                           steps)).tolist()
        eos = decoding["eos"]
        if eos is not None and self._ids[eos] in ids:
            ids = ids[:ids.index(self._ids[eos]) + 1]
        return ids

    def _check_source(self, source: Sequence[int]) -> None:
        S = self.model.source_steps
        if not 1 <= len(source) <= S:
            raise ValueError(f"the source has {len(source)} tokens; this model reads 1 to S = {S}.")

    # --- explanation ---------------------------------------------------------------------------

    def explain_pair(self, source: str | Sequence[str], target: str | Sequence[str] | None = None,
                     method: str = "lrp-all", eps: float | None = None, seed: int = 0) -> PairExplanation:
        """Explains every output step of one source: the output decoded greedily (``target=None``) or the
        given target text, each step's score of its output token explained over the source and the tokens
        the decoder read (module docstring).

        Args:
            source: the source text (tokenised by the checkpoint's tokenizer) or its tokens.
            target: the output text or tokens (T >= 1), or None to decode greedily.
            method: one of :data:`lrpjax.app.model.METHODS`.
            eps: LRP stabiliser (None: :data:`lrpjax.app.model.DEFAULT_EPS`).
            seed: seed of the random baseline and SmoothGrad.

        Raises:
            ValueError: an empty source or target, a source longer than S, a word outside the vocabulary
                (without an unknown word), no decoding stated, an unknown method, or a method that does not
                explain this model (named).
        """
        make_method(method, eps, seed, apply=self.model.apply)       # the name, eps and seed checked first
        try:
            source_tokens, source_ids, unknown = self.encode(source)
        except ValueError as error:
            raise ValueError(f"the source: {error}") from None
        if not source_tokens:
            raise ValueError("the source is empty: nothing to explain")
        self._check_source(source_ids)
        bos = self._ids[self._decoding()["bos"]]
        if target is None:
            output_ids = self.decode(source_ids)
        else:
            try:
                _, output_ids, more = self.encode(target)
            except ValueError as error:
                raise ValueError(f"the target: {error}") from None
            unknown = unknown + more
            if not output_ids:
                raise ValueError("the target is empty: nothing to explain")
        T = len(output_ids)
        inputs = [bos] + output_ids[:-1]
        X, mask = self.model.pack([source_ids], [inputs], T)
        try:
            out = _explain(self.model, method, None if eps is None else float(eps), seed, self.params,
                           jnp.asarray(X), jnp.asarray(mask), jnp.asarray([output_ids], jnp.int32),
                           jnp.zeros((1,), jnp.int32))
        except (TypeError, ValueError) as error:
            raise ValueError(f"method {method!r} cannot explain this encoder-decoder: {error}") from error
        L, S = len(source_ids), self.model.source_steps
        columns = np.concatenate([np.arange(L), S + np.arange(T)])
        scores = np.asarray(out.scores[0], np.float64)
        z = scores - scores.max(axis=-1, keepdims=True)
        probabilities = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        target_scores = scores[np.arange(T), output_ids]
        relevance = np.asarray(out.relevance[0])                                   # (T, S + T): padding included
        residual = bias = None
        if out.residual is not None:    # score = relevance of every position + biases and initial states + residual
            residual = np.asarray(out.residual[0])
            bias = target_scores - relevance.astype(np.float64).sum(axis=-1) - residual
        used_eps = (DEFAULT_EPS[method] if eps is None else float(eps)) if method.startswith("lrp-") else None
        return PairExplanation(
            source=source_tokens, output=[self.vocab[i] for i in output_ids], inputs=[self.vocab[i] for i in inputs],
            greedy=target is None, scores=scores, predictions=[self.vocab[i] for i in scores.argmax(-1).tolist()],
            probabilities=probabilities[np.arange(T), output_ids], target_scores=target_scores,
            relevance=relevance[:, columns], residual=residual, bias=bias, method=method, eps=used_eps,
            seed=seed if method in SEEDED else None, unknown=unknown)

    def __repr__(self) -> str:
        return f"EncoderDecoderModel(V={len(self.vocab)}, S={self.model.source_steps})"


# --- text, tables and figures of pair explanations (the command line's output) --------------------------


def format_pair(results: Sequence[PairExplanation], colour: bool = False) -> str:
    """The command line's text: the source, the output (and what the model predicts where a given output
    differs), then for each method one line per output step: its token, the model's probability of it, and
    the relevance over the source and the decoder's inputs read so far (``<bos>``, ``y_1``, ..., ``y_{t-1}``;
    the later ones are exactly 0 and left out). With ``colour``, each row on its own scale."""
    from lrpjax.viz import plot

    first = results[0]
    lines = [f"source: {' '.join(first.source)}"]
    if first.greedy:
        lines.append(f"output (greedy from {first.inputs[0]!r}): {' '.join(first.output)}")
    else:
        lines.append(f"output (given): {' '.join(first.output)}")
        if first.predictions != first.output:
            lines.append(f"  the model's best token at each step: {' '.join(first.predictions)}")
    L = len(first.source)
    for result in results:
        eps = f", eps {result.eps:g}" if result.eps is not None else ""
        lines.append(f"relevance of each output token, method: {result.method}{eps}  (source | decoder inputs)")
        for t, (token, p, row) in enumerate(zip(result.output, result.probabilities, result.relevance)):
            seen = row[:L + t + 1]
            scale = float(np.max(np.abs(seen))) or None
            parts = [(result.source, seen[:L]), (result.inputs[:t + 1], seen[L:])]
            text = " | ".join(plot.ansi_sentence(tokens, values, scale) if colour
                              else plot.plain_sentence(tokens, values) for tokens, values in parts)
            lines.append(f"  step {t + 1} -> {token} (p {p:.3f}): {text}")
    return "\n".join(lines)


def pair_table(result: PairExplanation, width: int = 9) -> str:
    """A fixed-width table of the relevance matrix: one row per output step, one column per source token and
    decoder input (cells the decoder had not read are blank), the row's sum and, for LRP, what the biases and
    initial states absorbed and the conservation residual (the three add up to the next column), then the
    explained token's score (:class:`PairExplanation`)."""
    def cell(text: str) -> str:
        return text[:width].rjust(width)

    L, T = len(result.source), len(result.output)
    bias, residual = result.bias, result.residual
    head = "step  output    " + "".join(cell(w) for w in result.source) + "  |" + \
        "".join(cell(w) for w in result.inputs) + cell("sum") + \
        (cell("bias") + cell("residual") if bias is not None and residual is not None else "") + \
        cell("score")
    lines = [head]
    for t in range(T):
        row = result.relevance[t]
        values = [cell(f"{v:+.3g}") for v in row[:L]] + ["  |"] + \
            [cell(f"{v:+.3g}") if k <= t else cell("") for k, v in enumerate(row[L:])]
        tail = cell(f"{row[:L + t + 1].sum():+.3g}")
        if bias is not None and residual is not None:
            tail += cell(f"{bias[t]:+.3g}") + cell(f"{residual[t]:+.2g}")
        tail += cell(f"{result.target_scores[t]:+.3g}")
        lines.append(f"{t + 1:>4}  {result.output[t][:8]:<8}  " + "".join(values) + tail)
    return "\n".join(lines)


def pair_figure(results: Sequence[PairExplanation], path: str | os.PathLike, title: str | None = None,
                dpi: float = 130) -> None:
    """The relevance matrix of each result as a heatmap panel (rows: output steps; columns: the source tokens,
    a line, the decoder's inputs), each panel on its own symmetric colour scale (red for the explained token,
    blue against it, white 0; the cells the decoder had not read are exactly 0); PNG, PDF or SVG by the
    extension, written atomically.

    Raises:
        ValueError: a path without one of those extensions.
    """
    from matplotlib.figure import Figure

    from lrpjax.viz.plot import _cmap, _figure_format, _save

    _figure_format(path)
    first = results[0]
    L, T = len(first.source), len(first.output)
    fig = Figure(figsize=(max(3.6, 0.42 * (L + T) + 1.8) * len(results), 0.42 * T + 1.9))
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, result in zip(axes, results):
        scale = float(np.max(np.abs(result.relevance))) or 1.0
        image = ax.imshow(result.relevance, cmap=_cmap(), vmin=-scale, vmax=scale, aspect="equal",
                          interpolation="nearest")
        ax.axvline(L - 0.5, color="black", lw=1.0)
        ax.set_xticks(range(L + T))
        ax.set_xticklabels(result.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(T))
        ax.set_yticklabels([f"{t + 1}: {w}" for t, w in enumerate(result.output)], fontsize=7)
        ax.set_xlabel("source  |  decoder inputs", fontsize=7)
        eps = f", eps {result.eps:g}" if result.eps is not None else ""
        ax.set_title(f"{result.method}{eps}", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
    axes[0].set_ylabel("output step: token", fontsize=7)
    fig.suptitle(title or f"relevance of each output token ({'greedy' if first.greedy else 'given'} output)",
                 fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _explain(model: Any, method: str, eps: float | None, seed: int, params, ids, mask, targets, index):
    """The named method's scores, per-step relevance and residuals (:func:`explain_chunk`), compiled once per
    model *value* and method: a checkpoint loaded twice (an equal model) reuses the program, which a method
    bound to one model object would not (bound methods compare their object by identity)."""
    m = make_method(method, eps, seed, apply=model.apply)
    program = Program((m,), "per_step", tokens=True, residual=m.has_residual)
    return explain_chunk(program, params, ids, mask, targets, index)
