"""The SST sentiment model bundle: vocabulary, word embeddings and the BiLSTM classifier.

An :class:`SSTModel` holds everything needed to classify and explain a sentence of the Stanford
Sentiment Treebank (Sec. 11.5.1): the :class:`~lrpjax.data.sst.Vocabulary`, the embedding table
``params["embed"]`` (V, E) and the BiLSTM parameters ``params["model"]`` (see
:mod:`lrpjax.models.bilstm`). It is stored as one ``.npz`` checkpoint (:mod:`lrpjax.io.checkpoints`):
the vocabulary is a numpy unicode array, the metadata (accuracies, training command) JSON.

    model = SSTModel.load()                      # the shipped checkpoints/sst_bilstm.npz
    result = model.explain_sentence("a gorgeous , witty , seductive movie .", "lrp-all")
    result.relevance                             # (T,) word-level relevance

Explanations are with respect to the embedded words (the lookup happens outside the explained
function); word-level relevance is the sum over the embedding dimension (for Sensitivity Analysis
the squared gradient summed, i.e. the squared L2 norm). Many sentences are explained in padded,
jit-compiled batches whose lengths are rounded up to a few bucket sizes (:func:`bucket_length`), so
compilation happens a handful of times, not once per length.
"""

from __future__ import annotations

import html
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import numpy as np

from lrpjax.io import checkpoints
from lrpjax import methods as _explain
from lrpjax.datasets.buckets import assign_buckets
from lrpjax.datasets.driver import ChunkDriver, plan_run
from lrpjax._types import Array, Params
from lrpjax.data.sst import LABEL_NAMES, Vocabulary, label_index, pad_batch, tokenize
from lrpjax.models import bilstm
from lrpjax.core.rules import preset

__all__ = [
    "KIND",
    "METHODS",
    "DEFAULT_EPS",
    "DEFAULT_CHECKPOINT",
    "SSTModel",
    "SentenceExplanation",
    "bucket_length",
    "buckets",
    "check_seed",
    "default_checkpoint",
    "layout",
    "make_method",
    "resolve_target",
]

KIND = "sst-bilstm"
# The shipped model: in the repository's checkpoints/ (editable installs and checkouts).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "sst_bilstm.npz"
# A copy inside the package (lrpjax/_assets/, packaged as package data) is used when the repository
# file is absent, e.g. after a non-editable install.
_PACKAGED_CHECKPOINT = Path(__file__).resolve().parents[1] / "_assets" / "sst_bilstm.npz"


def default_checkpoint() -> Path:
    """The checkpoint ``SSTModel.load()`` reads: ``$LRPJAX_SST_CHECKPOINT`` if set, else the
    repository's ``checkpoints/sst_bilstm.npz``, else the copy in ``lrpjax/_assets/``."""
    if os.environ.get("LRPJAX_SST_CHECKPOINT"):
        return Path(os.environ["LRPJAX_SST_CHECKPOINT"])
    if not DEFAULT_CHECKPOINT.exists() and _PACKAGED_CHECKPOINT.exists():
        return _PACKAGED_CHECKPOINT
    return DEFAULT_CHECKPOINT

METHODS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half", "gradient", "sa", "gi",
           "occlusion-f", "occlusion-p", "cd", "ig", "smoothgrad", "random")
# Integrated Gradients: the all-zero embedding as baseline (what occlusion puts in), midpoint rule with
# IG_STEPS points; SmoothGrad: noise of 0.15 times each sentence's value range, SMOOTHGRAD_SAMPLES copies.
IG_STEPS = 64
SMOOTHGRAD_SAMPLES = 32
# Stabiliser defaults: 0.001 is the reference implementation's eps (Arras et al. 2017); LRP-prop
# needs a larger one to stay numerically stable, the chapter takes 0.2 (Sec. 11.5.1, footnote 9).
DEFAULT_EPS = {"lrp-all": 0.001, "lrp-prop": 0.2, "lrp-abs": 0.001, "lrp-half": 0.001}
SEEDED = ("random", "smoothgrad")
"""The methods whose results depend on ``seed``."""

# Padded lengths: sentences are rounded up to the next of these, then to a multiple of 64.
_BUCKETS = (8, 16, 24, 32, 48, 64)


def bucket_length(T: int, grid: Sequence[int] = _BUCKETS) -> int:
    """The padded length for a sequence of T tokens (the package's bucketing rule,
    :func:`lrpjax.datasets.assign_buckets`): the smallest grid value >= T, beyond the grid the next
    multiple of its last value.

    Raises:
        ValueError: if ``T < 1``.
    """
    if T < 1:
        raise ValueError(f"`T` must be >= 1; got {T}.")
    return int(assign_buckets([T], grid)[0])


def buckets(lengths: Sequence[int], batch_size: int, grid: Sequence[int] = _BUCKETS) -> list[tuple[int, np.ndarray]]:
    """Groups sequence indices into batches of equal padded length.

    Args:
        lengths: the length of each sequence, (N,).
        batch_size: at most this many sequences per batch.
        grid: bucket lengths (see :func:`bucket_length`).

    Returns:
        ``(padded length, indices)`` pairs covering every index exactly once, in order of length.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    padded = assign_buckets(lengths, grid) if len(lengths) else np.zeros((0,), np.int64)
    groups = {int(L): np.flatnonzero(padded == L).tolist() for L in np.unique(padded)}
    out = []
    for length in sorted(groups):
        members = np.asarray(groups[length], dtype=np.int64)
        for start in range(0, len(members), batch_size):
            out.append((length, members[start:start + batch_size]))
    return out


def layout(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The arrays an SST checkpoint's metadata announces (:class:`lrpjax.io.checkpoints.ArraySpec` leaves,
    floating point): ``embed`` (V, E) and under ``model`` the BiLSTM's parameters for E, H and C classes,
    derived from the model (``bilstm.init``), with V, E and H from the metadata written by
    :meth:`SSTModel.save` ("vocabulary_size", "embedding_size", "hidden_size"). None where the metadata
    lacks them: the checkpoint's model itself still checks its parameters (:func:`checkpoints.load_model`).
    """
    sizes: list[Any] = [metadata.get(name) for name in ("vocabulary_size", "embedding_size", "hidden_size")]
    if not all(isinstance(size, int) and not isinstance(size, bool) for size in sizes):
        return None
    V, E, H = sizes
    shapes = jax.eval_shape(lambda: bilstm.init(jax.random.PRNGKey(0), E, H, len(LABEL_NAMES)))
    return {"embed": checkpoints.ArraySpec((V, E), "floating"),
            "model": jax.tree_util.tree_map(lambda s: checkpoints.ArraySpec(s.shape, "floating"), shapes)}


def check_seed(seed: Any) -> int:
    """The seed of the random baseline as an int, refusing what ``jax.random.PRNGKey`` cannot hold.

    Raises:
        TypeError: not an integer.
        ValueError: outside [-2**31, 2**32 - 1] (it must fit int32 or uint32).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"`seed` must be an int; got {type(seed).__name__}.")
    if not -(2**31) <= int(seed) <= 2**32 - 1:
        raise ValueError(f"`seed` must fit int32 or uint32, [{-(2**31)}, {2**32 - 1}], as jax's PRNGKey needs; "
                         f"got {seed}.")
    return int(seed)


def make_method(name: str, eps: float | None = None, seed: int = 0,
                apply: Callable | None = None) -> _explain.Method:
    """The explanation method called ``name`` (one of :data:`METHODS`) for the BiLSTM (or ``apply``).

    Args:
        name: ``lrp-all``, ``lrp-prop``, ``lrp-abs``, ``lrp-half`` (LRP with that product rule,
            epsilon rule elsewhere), ``gradient`` (d score / dx), ``sa`` (squared gradient),
            ``gi`` (gradient x input), ``occlusion-f`` / ``occlusion-p`` (score / probability
            difference when the word's embedding is zeroed), ``cd`` (Contextual Decomposition),
            ``ig`` (Integrated Gradients from the all-zero input, :data:`IG_STEPS` points), ``smoothgrad``
            (the mean gradient over :data:`SMOOTHGRAD_SAMPLES` noisy copies, noise 0.15 of the
            sentence's value range, seeded by ``seed`` and the sentence's number), ``random`` (seeded
            normal noise).
        eps: LRP stabiliser; None takes :data:`DEFAULT_EPS`. Ignored by the other methods.
        seed: seed of the random baseline and of SmoothGrad (see :func:`check_seed`).
        apply: the model's ``apply`` (None: the BiLSTM's, ``bilstm.apply``); for a model over token ids
            the methods act on the embedded vectors (:mod:`lrpjax.models.embedding`).

    Raises:
        ValueError: an unknown name (listing the valid ones), a negative or too large ``eps`` (see
            :data:`lrpjax.core.rules.MAX_EPS`) or a seed outside the range of :func:`check_seed`.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    seed = check_seed(seed)
    apply = bilstm.apply if apply is None else apply
    if name.startswith("lrp-"):
        eps = DEFAULT_EPS[name] if eps is None else float(eps)
        if not eps >= 0:
            raise ValueError(f"`eps` must be >= 0; got {eps}.")
        return _explain.lrp(apply, preset(name, eps=eps))
    if name == "gradient":
        return _explain.gradient(apply)
    if name == "sa":
        return _explain.sensitivity(apply)
    if name == "gi":
        return _explain.gradient_x_input(apply)
    if name.startswith("occlusion-"):
        return _explain.occlusion(apply, name[-1])
    if name == "cd":
        from lrpjax.methods.decomposition import cd  # written alongside; imported late so the rest works without it
        return cd(apply)
    if name == "ig":
        return _explain.integrated_gradients(apply, IG_STEPS)
    if name == "smoothgrad":
        return _explain.smoothgrad(apply, 0.15, SMOOTHGRAD_SAMPLES, seed)
    return _explain.random_baseline(apply, seed)


def resolve_target(target: int | np.integer | str, n_classes: int = len(LABEL_NAMES)) -> int | None:
    """``"pred"`` -> None (the predicted class); an index (int or digit string) or a class name
    (``"positive"``, ``"very negative"``, ``"very_negative"``) -> its index.

    Raises:
        ValueError: anything else, listing the valid values.
    """
    if isinstance(target, str) and target.strip().lower() in ("pred", "prediction", "predicted"):
        return None
    try:
        index = label_index(target)
    except ValueError:
        names = ", ".join(repr(n) for n in LABEL_NAMES)
        raise ValueError(f"`target` must be 'pred', a class index 0..{n_classes - 1} or a class name "
                         f"({names}); got {target!r}.") from None
    return index


@dataclass
class SentenceExplanation:
    """The explanation of one sentence.

    Attributes:
        text: the sentence as given.
        tokens: its tokens (T,), lower-cased treebank style.
        unknown: the tokens not in the vocabulary (mapped to ``<unk>``), in order.
        scores: class scores before softmax, (C,).
        probabilities: softmax of ``scores``, (C,).
        prediction: index of the largest score.
        target: the explained class.
        method: the method's name; ``eps``: its stabiliser (LRP) or None.
        relevance: word-level relevance, (T,).
        seed: the seed of a method that draws (random, SmoothGrad), else None.
        method_id: the fingerprint of the method with all its options (:meth:`lrpjax.methods.Method.digest`),
            by which a resumed run recognises the method it continues.
        conservation: the LRP bookkeeping when known (``lrpjax.app.report.conservation``):
            ``{"target_score", "relevance_sum", "bias", "initial", "residual"}``, else None.

    In a notebook it shows as coloured words with their numbers (``_repr_html_``); ``repr`` gives
    the prediction, the target and each word's relevance.
    """

    text: str
    tokens: list[str]
    unknown: list[str]
    scores: np.ndarray
    probabilities: np.ndarray
    prediction: int
    target: int
    method: str
    eps: float | None
    relevance: np.ndarray
    conservation: dict[str, float] | None = None
    seed: int | None = None
    method_id: str | None = None

    def __repr__(self) -> str:
        from lrpjax.viz.plot import plain_sentence

        eps = f", eps {self.eps:g}" if self.eps is not None else ""
        lines = [f"SentenceExplanation(prediction: {LABEL_NAMES[self.prediction]} ({self.prediction}), "
                 f"p {float(self.probabilities[self.prediction]):.3f}; explained: {LABEL_NAMES[self.target]} "
                 f"({self.target}), score {float(self.scores[self.target]):+.4g}; method: {self.method}{eps})",
                 "  " + plain_sentence(self.tokens, self.relevance)]
        if self.conservation:
            c = self.conservation
            lines.append(f"  sum of relevance {c['relevance_sum']:+.4g}, biases {c['bias']:+.4g}, "
                         f"residual {c['residual']:+.4g}")
        if self.unknown:
            lines.append("  not in the vocabulary: " + ", ".join(self.unknown))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from lrpjax.viz.plot import HTML_CSS, html_legend, html_sentence, shared_scale
        from lrpjax.viz.render import value_kind

        kind = value_kind(self.method)

        scale = shared_scale(self.relevance) or 1.0
        eps = f", eps {self.eps:g}" if self.eps is not None else ""
        head = (f"prediction: <b>{LABEL_NAMES[self.prediction]}</b> (p {float(self.probabilities[self.prediction]):.3f})"
                f" &middot; explained: <b>{LABEL_NAMES[self.target]}</b> (score "
                f"{float(self.scores[self.target]):+.4g}) &middot; {html.escape(self.method)}{eps}")
        extra = ""
        if self.conservation:
            c = self.conservation
            extra = (f'<div class="lrp-meta">sum of relevance {c["relevance_sum"]:+.4g} &middot; biases '
                     f'{c["bias"]:+.4g} &middot; residual {c["residual"]:+.4g}</div>')
        return (f"<div><style>{HTML_CSS}</style><div class=\"lrp-meta\">{head} &nbsp; {html_legend(scale, kind=kind)}</div>"
                f"<div>{html_sentence(self.tokens, self.relevance, scale, unknown=self.unknown, kind=kind)}</div>"
                f"{extra}</div>")

    @property
    def finite(self) -> bool:
        """Whether scores, probabilities and relevance are all finite (no NaN or infinity: weights that
        overflow on this sentence, or NaN weights, give non-finite results, which JSON cannot hold)."""
        return bool(np.isfinite(self.scores).all() and np.isfinite(self.probabilities).all()
                    and np.isfinite(self.relevance).all())

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (lists of floats, class names beside indices); check :attr:`finite` first,
        since NaN and infinity are not JSON."""
        return {
            "sentence": self.text,
            "tokens": list(self.tokens),
            "unknown": list(self.unknown),
            "prediction": int(self.prediction),
            "prediction_name": LABEL_NAMES[self.prediction],
            "probabilities": [float(p) for p in self.probabilities],
            "scores": [float(s) for s in self.scores],
            "target": int(self.target),
            "target_name": LABEL_NAMES[self.target],
            "method": self.method,
            "eps": self.eps,
            "relevance": [float(r) for r in self.relevance],
            **({"conservation": dict(self.conservation)} if self.conservation else {}),
            **({"seed": self.seed} if self.seed is not None else {}),
            **({"method_id": self.method_id} if self.method_id is not None else {}),
        }


# --- compiled kernels (module level so that equal calls share compiled code) ----------------------

@jax.jit
def _scores(params: Params, ids: Array, mask: Array) -> Array:
    """Class scores of a padded batch: ids, mask (B, T) -> (B, C)."""
    X = params["embed"][ids]
    return jax.vmap(lambda x, m: bilstm.apply(params["model"], x, mask=m))(X, mask)


class SSTModel:
    """Vocabulary + embeddings + BiLSTM, with prediction and explanation of raw sentences.

    Args:
        vocab: the word table; ``params["embed"]`` has one row per word.
        params: ``{"embed": (V, E), "model": BiLSTM params}`` (numpy or jax arrays).
        metadata: free JSON-able information (accuracies, training command, ...).

    Raises:
        ValueError: if the embedding table does not match the vocabulary or the BiLSTM's input size.
    """

    def __init__(self, vocab: Vocabulary, params: Params, metadata: dict[str, Any] | None = None):
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"`vocab` must be a Vocabulary; got {type(vocab).__name__}.")
        if not isinstance(params, dict) or set(params) != {"embed", "model"}:
            raise ValueError("`params` must be a dict with keys 'embed' (V, E) and 'model' (BiLSTM params).")
        E, H, C = bilstm.model.sizes(params["model"])
        shape = tuple(np.shape(params["embed"]))
        if shape != (len(vocab), E):
            raise ValueError(f"`params['embed']` must have shape (V, E) = ({len(vocab)}, {E}); got {shape}.")
        if C != len(LABEL_NAMES):
            raise ValueError(f"the BiLSTM must have C = {len(LABEL_NAMES)} classes; got {C}.")
        self.vocab = vocab
        self.params = params
        self.metadata = dict(metadata or {})
        self.sizes = (E, H, C)
        self.labels = list(LABEL_NAMES)
        """The class names, in the order of the scores."""

    # --- storage -----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> SSTModel:
        """Reads a checkpoint written by :meth:`save`; default :func:`default_checkpoint`.

        The model is the one the checkpoint states (:func:`lrpjax.io.checkpoints.load_model`: its
        config, or for checkpoints written before configs were stored, its kind), and must be the BiLSTM;
        its parameters are under "params/model/", the embeddings beside them ("params/embed"). Before any
        weight is read, the arrays are checked against the model and against the sizes the metadata
        announces (:func:`layout`), so a damaged or foreign file fails naming the array.

        Raises:
            lrpjax.io.checkpoints.CheckpointError: a missing or damaged file, another kind of model or a
                model other than the BiLSTM, no vocabulary ('extra/vocab') in it, or an array that is
                missing, unexpected, of another shape or not floating point ("... array
                'params/model/left/W' has shape ...").
        """
        path = default_checkpoint() if path is None else Path(path)
        saved = checkpoints.load_model(path, expect_kind=KIND, expect=layout,
                                       expect_extra={"vocab": checkpoints.ArraySpec((None,), "unicode")})
        if saved.model != bilstm.model.network:
            layers = ", ".join(" ".join(line.split()) for line in saved.model.summary().splitlines())
            raise checkpoints.CheckpointError(f"checkpoint {str(path)!r} holds the model [{layers}]; the SST bundle "
                                              "explains the BiLSTM (lrpjax.models.bilstm).")
        try:
            return cls(Vocabulary.from_array(saved.extra["vocab"]), {**saved.beside, "model": saved.params},
                       saved.metadata)
        except (ValueError, TypeError, KeyError) as error:
            raise checkpoints.CheckpointError(f"checkpoint {str(path)!r}: {error}") from error

    def save(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> str:
        """Writes weights (as stored, e.g. float32), vocabulary and ``metadata`` to one ``.npz``, with the
        BiLSTM's config (:func:`lrpjax.io.checkpoints.save_model`, its parameters under "model", the
        embeddings beside them)."""
        written = ("format_version", "lrpjax_version", checkpoints.MODEL_CONFIG, checkpoints.MODEL_KEY)
        meta = {k: v for k, v in {**self.metadata, **(metadata or {})}.items() if k not in written}
        E, H, C = self.sizes
        meta.update(kind=KIND, embedding_size=E, hidden_size=H, classes=list(LABEL_NAMES),
                    vocabulary_size=len(self.vocab))
        params = jax.tree_util.tree_map(np.asarray, self.params)
        return checkpoints.save_model(path, bilstm.model, params["model"], meta, key="model",
                                      beside={"embed": params["embed"]}, extra={"vocab": self.vocab.to_array()})

    # --- inputs ------------------------------------------------------------------------------

    def encode(self, sentence: str | Sequence[str]) -> tuple[list[str], np.ndarray, list[str]]:
        """Tokenises (if a str) and maps to ids: (tokens, ids (T,), unknown words)."""
        tokens = tokenize(sentence) if isinstance(sentence, str) else list(sentence)
        ids, unknown = self.vocab.encode(tokens)
        return tokens, ids, unknown

    def embed(self, tokens: str | Sequence[str]) -> np.ndarray:
        """The embedded sentence x (T, E) that the BiLSTM reads (and explanations refer to), a numpy
        array (a host gather: nothing is compiled or copied to a device per sentence).

        Raises:
            ValueError: a sentence without tokens.
        """
        _, ids, _ = self.encode(tokens)
        if ids.shape[0] == 0:
            raise ValueError("the sentence has no tokens.")
        return self._embedding_table()[ids]

    def _embedding_table(self) -> np.ndarray:
        """``params["embed"]`` as a host array, converted once (and again if the table is replaced)."""
        table = self.params["embed"]
        if getattr(self, "_table_source", None) is not table:
            self._table, self._table_source = np.asarray(table), table
        return self._table

    # --- prediction --------------------------------------------------------------------------

    def scores_ids(self, ids_list: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Class scores (N, C) of id sequences, in padded bucketed batches.

        Raises:
            ValueError: an empty sequence.
        """
        out = np.zeros((len(ids_list), self.sizes[2]), dtype=np.asarray(self.params["embed"]).dtype)
        for length, index in buckets([len(ids) for ids in ids_list], batch_size):
            ids, mask = pad_batch([ids_list[i] for i in index], length)
            ids, mask = _pad_rows(ids, mask, _rows(len(ids_list), batch_size))
            out[index] = np.asarray(_scores(self.params, ids, mask))[: len(index)]
        return out

    def predict(self, sentences: str | Sequence[str | Sequence[str]]) -> np.ndarray:
        """Class scores before softmax: (C,) for one sentence, (N, C) for a list of sentences.

        Raises:
            ValueError: an empty sentence.
        """
        single = isinstance(sentences, str)
        items = [sentences] if isinstance(sentences, str) else list(sentences)
        ids_list = []
        for number, sentence in enumerate(items):
            _, ids, _ = self.encode(sentence)
            if ids.shape[0] == 0:
                raise ValueError(f"sentence {number} is empty.")
            ids_list.append(ids)
        scores = self.scores_ids(ids_list)
        return scores[0] if single else scores

    # --- explanation -------------------------------------------------------------------------

    def explain_sentence(self, text: str | Sequence[str], method: str = "lrp-all", target: int | str = "pred",
                         eps: float | None = None, seed: int = 0) -> SentenceExplanation:
        """Explains one sentence; see :meth:`explain_many` for the arguments.

        Raises:
            ValueError: an empty sentence, an unknown method or a bad target.
        """
        result = self.explain_many([text], method, target, eps, seed=seed)[0]
        if isinstance(result, str):
            raise ValueError(result)
        return result

    def explain_many(self, sentences: Sequence[str | Sequence[str]], method: str = "lrp-all",
                     target: int | str | Sequence[int] = "pred", eps: float | None = None, *,
                     batch_size: int = 64, seed: int = 0, first_index: int = 0, full_batches: bool = False,
                     progress: Callable[[int], None] | None = None) -> list[SentenceExplanation | str]:
        """Explains many sentences in jit-compiled padded batches (one compilation per bucket length).

        Args:
            sentences: raw strings (tokenised here) or token lists.
            method: one of :data:`METHODS`.
            target: ``"pred"``, a class index or name for all sentences, or one index per sentence.
            eps: LRP stabiliser (None: :data:`DEFAULT_EPS`).
            batch_size: sentences per compiled call.
            seed: seed of the random baseline.
            first_index: the number of ``sentences[0]`` in a longer stream: sentence ``i`` is number
                ``first_index + i``, which fixes its draw of the random baseline, so a file explained in
                chunks (or resumed) gives the same result as in one call.
            full_batches: pad every compiled batch to `batch_size` rows. By default a call on fewer
                sentences than `batch_size` uses a smaller batch (quicker for one sentence), and a
                different batch shape can change the last bits of float32 results; with full batches a
                sentence's result depends only on its own length, so chunks and resumed runs of a file
                reproduce a single run bit for bit.
            progress: called with the number of sentences finished after each batch.

        Returns:
            One :class:`SentenceExplanation` per sentence, or, for an empty one, an error message.
            Results whose scores or relevance are NaN or infinite are returned as they are; see
            :attr:`SentenceExplanation.finite`.

        Raises:
            ValueError: an unknown method, a bad target or seed, or numbers beyond int32.
        """
        if not isinstance(first_index, (int, np.integer)) or first_index < 0 or \
                first_index + len(sentences) > 2**31 - 1:
            raise ValueError(f"`first_index` must be an int >= 0 with first_index + len(sentences) < 2**31; "
                             f"got {first_index!r} for {len(sentences)} sentence(s).")
        m = make_method(method, eps, seed)
        used_eps = (DEFAULT_EPS[method] if eps is None else float(eps)) if method.startswith("lrp-") else None
        used_seed, method_id = (seed if method in SEEDED else None), m.digest()
        targets = self._targets(target, len(sentences))
        encoded = [self.encode(s) for s in sentences]
        results: list[SentenceExplanation | str] = ["empty sentence: nothing to explain"] * len(sentences)
        valid = [i for i, (tokens, _, _) in enumerate(encoded) if tokens]
        embed = self._embedding_table()
        rows = batch_size if full_batches else _rows(len(valid), batch_size)
        run = plan_run(m, self.params["model"], embed.shape[1], embed.dtype, False, _BUCKETS, rows, 1, True, False)
        driver = ChunkDriver(run, finite=False)

        def finished(chunks) -> None:
            for _, chunk in chunks:
                for row, number in enumerate(chunk.indices.tolist()):
                    i = number - first_index
                    tokens, _, unknown = encoded[i]
                    scores = chunk.scores[row]
                    results[i] = SentenceExplanation(
                        text=sentences[i] if isinstance(sentences[i], str) else " ".join(sentences[i]),
                        tokens=tokens, unknown=unknown, scores=scores, probabilities=_softmax(scores),
                        prediction=int(np.argmax(scores)), target=int(chunk.targets[row]), method=method,
                        eps=used_eps, relevance=chunk.relevance[row, :len(tokens)], seed=used_seed,
                        method_id=method_id)
                if progress is not None:
                    progress(len(chunk.indices))

        # Bucket by bucket (shortest first), each bucket's sentences in input order: the chunks of
        # lrpjax.datasets.explain_dataset for these sentences.
        padded = assign_buckets([len(encoded[i][0]) for i in valid], _BUCKETS) if valid else np.zeros(0, np.int64)
        for L in np.unique(padded):
            for i in np.asarray(valid)[np.asarray(padded) == L].tolist():
                finished(driver.add(first_index + i, embed[encoded[i][1]], int(targets[i])))
            finished(driver.close(int(L)))
        finished(driver.flush())
        return results

    def explain_stream(self, sentences: Iterable[tuple[int, str | Sequence[str]]], method: str = "lrp-all",
                       target: int | str = "pred", eps: float | None = None, *, batch_size: int = 64,
                       seed: int = 0, window: int = 4096,
                       devices=None) -> Iterator[tuple[int, SentenceExplanation | str]]:
        """Explains a stream of numbered sentences, yielding the results in input order.

        The sentences go through :class:`lrpjax.datasets.stream.Batcher` (length buckets :data:`_BUCKETS`, then
        multiples of 64; compiled batches of ``batch_size``); memory is bounded by the window, whatever
        the number of sentences. A sentence's result depends only on the sentence and its index, not on
        the batch it lands in, so a stream explained in pieces (or resumed) gives the same results.

        Args:
            sentences: ``(index, sentence)`` pairs, indices increasing; the random baseline draws by
                the index (the batch mode of the command line numbers a file's lines 0, 1, ...).
            method, target, eps, seed: as :meth:`explain_many` (one target for all sentences).
            batch_size: sentences per compiled call.
            window: after every sentence whose ``index + 1`` is a multiple of ``window``, the partly
                filled batches run, so everything up to it is yielded before the next sentence is read.
            devices: this process's devices to shard each batch over (None: all of them).

        Yields:
            ``(index, result)``: a :class:`SentenceExplanation`, or for an empty sentence an error
            message. Non-finite results are yielded as they are (see :attr:`SentenceExplanation.finite`).

        Raises:
            ValueError: an unknown method, a bad target, seed or window, or indices that do not increase.
        """
        from lrpjax.datasets import stream

        if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
            raise ValueError(f"`window` must be an int >= 1; got {window!r}.")
        m = make_method(method, eps, seed)
        used_eps = (DEFAULT_EPS[method] if eps is None else float(eps)) if method.startswith("lrp-") else None
        used_seed, method_id = (seed if method in SEEDED else None), m.digest()
        if not isinstance(target, (str, int, np.integer)) or isinstance(target, bool):
            raise ValueError(f"`target` must be 'pred', a class index or a class name; got {target!r}.")
        index_of_target = resolve_target(target)
        embed = np.asarray(self.params["embed"])
        embed = embed.astype(jax.dtypes.canonicalize_dtype(embed.dtype), copy=False)
        batcher = stream.Batcher(m, self.params["model"], "pred" if index_of_target is None else index_of_target,
                                 buckets=_BUCKETS, chunk_size=batch_size, devices=devices, tokens=True,
                                 check_finite=False)
        order: deque[int] = deque()
        inputs: dict[int, tuple[str, list[str], list[str]]] = {}
        ready: dict[int, SentenceExplanation | str] = {}

        def finished(chunks) -> Iterator[tuple[int, SentenceExplanation | str]]:
            for chunk in chunks:
                for row, index in enumerate(chunk.indices.tolist()):
                    text, tokens, unknown = inputs.pop(index)
                    scores = chunk.scores[row]
                    ready[index] = SentenceExplanation(
                        text=text, tokens=tokens, unknown=unknown, scores=scores, probabilities=_softmax(scores),
                        prediction=int(np.argmax(scores)), target=int(chunk.targets[row]), method=method,
                        eps=used_eps, relevance=chunk.relevance[row, :len(tokens)], seed=used_seed,
                        method_id=method_id)
            while order and order[0] in ready:
                index = order.popleft()
                yield index, ready.pop(index)

        for index, sentence in sentences:
            tokens, ids, unknown = self.encode(sentence)
            order.append(index)
            if tokens:
                inputs[index] = (sentence if isinstance(sentence, str) else " ".join(sentence), tokens, unknown)
                done = batcher.add(index, embed[ids])
            else:
                ready[index], done = "empty sentence: nothing to explain", []
            if (index + 1) % window == 0:
                done += batcher.flush()
            yield from finished(done)
        yield from finished(batcher.flush())

    def _targets(self, target, n: int) -> np.ndarray:
        if isinstance(target, (str, int, np.integer)):
            index = resolve_target(target)
            return np.full((n,), -1 if index is None else index, dtype=np.int32)
        targets = np.asarray(target)
        if targets.shape != (n,) or not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"`target` must be 'pred', a class, or ({n},) integer indices; got {targets.shape}.")
        if targets.size and (targets.min() < 0 or targets.max() >= self.sizes[2]):
            raise ValueError(f"`target` indices must lie in 0..{self.sizes[2] - 1}.")
        return targets.astype(np.int32)

    def __repr__(self) -> str:
        E, H, C = self.sizes
        return f"SSTModel(V={len(self.vocab)}, E={E}, H={H}, C={C})"


def _rows(n_total: int, batch_size: int) -> int:
    """Rows of every compiled batch of a call on ``n_total`` sequences: ``batch_size`` for large calls
    (one compilation per bucket length), the next power of two for small ones (a single sentence
    does not pay for a full batch)."""
    return batch_size if n_total >= batch_size else min(batch_size, 1 << max(n_total - 1, 0).bit_length())


def _pad_rows(ids: np.ndarray, mask: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads a batch (B, T) to ``rows`` rows: dummy rows hold one ``<pad>`` token marked valid, so no
    row is empty; their results are dropped."""
    B, T = ids.shape
    if rows <= B:
        return ids, mask
    full_ids = np.zeros((rows, T), ids.dtype)
    full_mask = np.zeros((rows, T), bool)
    full_ids[:B], full_mask[:B] = ids, mask
    full_mask[B:, 0] = True
    return full_ids, full_mask


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = np.asarray(scores, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()
