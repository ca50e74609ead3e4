"""Contextual Decomposition (CD) for the standard LSTM (Murdoch, Liu, Yu 2018, "Beyond word importance").

CD splits every state of the standard cell (Eqs. 11.1-11.6) into a *relevant* part ``beta`` (what the
positions of a chosen set contribute) and an *irrelevant* part ``gamma`` (everything else, biases
included), so that ``beta + gamma`` is the true state at every step. Following the authors' code
(``sent_util.CD``):

* every gate pre-activation splits linearly into ``beta`` (``W x_t`` if t is relevant, plus
  ``U beta^y_{t-1}``), ``gamma`` (``W x_t`` if t is irrelevant, plus ``U gamma^y_{t-1}``) and the bias ``b``;
* a sigmoid/tanh of the three is linearised by averaging the relevant and irrelevant terms' marginal
  effects over the two orderings, the bias always entering first (:func:`lrpjax.core.cells.linearise`):
  ``L(beta) = [act(beta + b) - act(b) + act(beta + gamma + b) - act(gamma + b)] / 2``, ``L(b) = act(b)``;
* the products ``i * z`` and ``f * c_{t-1}`` are expanded term by term; a product goes to ``beta`` if one
  factor is relevant and the other relevant or bias, all others to ``gamma``, except the bias-times-bias
  term ``L(b_i) L(b_z)``, which goes where ``bias_product`` says (below);
* the output ``y = o * tanh(c)`` keeps the whole gate ``o`` and splits ``tanh(beta^c + gamma^c)`` by the
  two-term average.

Every split above is complete (the parts of each pre-activation, gate and state sum to its true value),
so only ``beta`` is propagated: ``gamma`` is the true value minus ``beta``, and the true forward pass is
computed once and shared by all the relevant sets explained at once (one matrix product per step and
relevant set, instead of two).

The relevance of position t is the relevant part of the final score of the target class when only t is
relevant, ``W_out[:, target] . beta^y_T``; all positions are computed at once with ``vmap``. In the
bidirectional model both directions are decomposed (the right one reads the valid prefix reversed) and
their relevant scores are summed, the output layer being linear without bias.

Words and phrases: the bias-times-bias product
----------------------------------------------

The authors' ``sent_util.CD(batch, model, start, stop)`` treats one term differently for a word and
for a phrase, and this is the only place where the two differ. The input of step ``i`` is relevant
when ``start <= i <= stop`` (``stop`` inclusive), but ``L(b_i) L(b_z)`` goes to ``beta`` only when
``start <= i < stop``. A single word (``start == stop``) therefore never has it relevant, while a
phrase of several words has it relevant at every one of its steps except the last. In this module
spans are half-open, ``[start, stop)`` (the authors' ``stop + 1``), and ``bias_product`` chooses:

* ``"authors"`` (the default of :func:`phrase` and :func:`cd`): relevant at step t when t and the
  step read after it are both relevant -- for a span, every step of it but the last read; for one
  word, never (identical to the single-word CD);
* ``"inside"``: relevant at every relevant step (the step lies inside the phrase);
* ``"gamma"``: never (the single-word treatment for every span; the default of :func:`decompose`).

"Read after" is in each direction's own reading order: the right encoder of a bidirectional layer
reads a span last at its first position, so under ``"authors"`` its product is irrelevant there. A
stacked layer applies the same rule at the same positions. :func:`phrase` gives the relevant part of
a span's target score; :func:`cd` with ``ngram = n`` the relevance of every n-gram starting at each
position.

Beyond the reference BiLSTM, CD runs through every composition of standard-cell LSTM layers (stacked,
uni- or bidirectional; the next layer reads the decomposed outputs, so ``W beta_in`` is relevant and
``W gamma_in`` irrelevant), dense layers and pooling: a dense layer splits its linear part exactly, its
bias is irrelevant, and a nonlinear activation is linearised like the gates (``linearise``, the bias
first); sum and mean pooling are linear; max pooling takes both parts at the step that is maximal in
their sum. GRUs and the LRP-friendly cells have no CD in the literature this follows, and are refused.

Each layer decomposes itself (:class:`lrpjax.models.layers.Decomposable`): a recurrent layer takes the
true states from its cell's own forward pass (``cells.unroll_record``) and reads each direction in the
order its ``apply`` does, and the cell (``StandardCell.decompose``) splits its own stacked weights; this
module only walks the layers. A layer without a decomposition is refused by name.

Encoder-decoders
----------------

A model that is not a chain of layers decomposes itself as a whole (:class:`DecomposableModel`): the
encoder-decoder :class:`~lrpjax.models.seq2seq.Seq2Seq` (standard cells; a GRU is refused) splits every
computation with the rules above (``Seq2Seq.decompose``): the encoder as a recurrent layer over the source
part of the packed pair, the decoder cell step by step with the relevant part of its input (the target token
when its position is relevant and, with input feeding, the fed attentional state's relevant part), the
attention weights from the true states (relevant context ``sum_s alpha_ts beta_k_s`` of the encoder states'
relevant parts, as :class:`~lrpjax.models.attention.AttentionPool` decomposes), the combine mapping linear
with its ``tanh`` linearised, the output mapping linear. Positions are the S + T packed ones:
``target=(t, v)`` explains step t's score of token v, ``every_step`` gives the (T x (S + T)) matrix, a span
of :func:`phrase` may cover source and target positions (``"authors"``' bias product follows each part's
reading order). A model that takes token ids is decomposed on their embedded vectors, as every method explains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, ClassVar, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.methods.base import Method, model_of
from lrpjax.methods.program import ids_network
from lrpjax.methods.targets import check_target, check_targets, select
from lrpjax.models.embedding import check_ids
from lrpjax.models.layers import Decomposable, concat
from lrpjax.models.sequential import Sequential, check_inputs, check_prefix, network_of

__all__ = ["ContextualDecomposition", "cd", "decompose", "phrase", "phrase_batch", "Decomposition", "BIAS_PRODUCTS",
           "DecomposableModel"]

BIAS_PRODUCTS = ("authors", "inside", "gamma")
"""Where the bias-times-bias product ``L(b_i) L(b_z)`` of a relevant step goes (module docstring)."""


class Decomposition(NamedTuple):
    """Relevant (beta) and irrelevant (gamma) parts of a model's states and scores.

    Attributes:
        beta_y, gamma_y, beta_c, gamma_c: ``{layer: (T, H)}``, the parts of the output ``y_t`` and the
            cell state ``c_t`` after the step that read position t (original positions for the right
            encoder too; padded steps repeat the last valid state). A model that decomposes itself
            (:class:`DecomposableModel`) records its own parts (``Seq2Seq.decompose``).
        beta, gamma: relevant and irrelevant parts of the scores, (C,); ``beta + gamma`` = scores.
    """

    beta_y: dict[str, Array]
    gamma_y: dict[str, Array]
    beta_c: dict[str, Array]
    gamma_c: dict[str, Array]
    beta: Array
    gamma: Array


@runtime_checkable
class DecomposableModel(Protocol):
    """A model that decomposes itself as a whole instead of layer by layer (an encoder-decoder,
    :class:`~lrpjax.models.seq2seq.Seq2Seq`, whose decoder reads two sequences): CD asks it, as it asks
    each layer of a :class:`~lrpjax.models.Sequential` (:class:`~lrpjax.models.layers.Decomposable`)."""

    def check_decomposable(self) -> None:
        """Raises TypeError, naming what has no decomposition; does nothing otherwise."""
        ...

    def decompose(self, params: Params, x: Array, relevant: Array, mask: Array, bias_product: str,
                  record: dict[str, dict[str, Array]]) -> tuple[Array, Array]:
        """``(beta, scores)``: the relevant part of the output and the output, for the embedded input ``x``
        and the relevant positions ``relevant`` (traceable, unchecked); the states' parts go to ``record``."""
        ...

    def input_size(self, params: Params) -> int:
        """E, the size of an input position (checks ``params``)."""
        ...

    def check_inputs(self, x: Any, mask: Any = None, E: int | None = None, dtype: Any = None) -> None:
        """Static checks of one input and its mask."""
        ...

    def output_shape(self, params: Params, positions: int) -> tuple[int, ...]:
        """The output's shape for an input of ``positions`` positions."""
        ...


def _decompose(model: Any, params: Params, x: Array, relevant: Array, mask: Array,
               bias_product: str = "gamma") -> Decomposition:
    """Unchecked :func:`decompose` (x (T, E), relevant and mask (T,) bool); traceable.

    Only the relevant parts are propagated; the true values (computed once whatever the relevant set,
    so a ``vmap`` over relevant sets shares them) give the irrelevant parts as ``total - beta``."""
    record: dict = {"beta_y": {}, "gamma_y": {}, "beta_c": {}, "gamma_c": {}}
    if isinstance(model, DecomposableModel):
        beta_scores, scores = model.decompose(params, x, relevant, mask, bias_product, record)
        return Decomposition(record["beta_y"], record["gamma_y"], record["beta_c"], record["gamma_c"],
                             beta_scores, scores - beta_scores)
    beta, total = (jnp.where(relevant[:, None], x, jnp.zeros((), x.dtype)),), (x,)
    for k, (layer, spec) in enumerate(zip(model.layers, model.specs(params))):
        beta, total = layer.decompose(params, spec, beta, total, mask, relevant & mask, bias_product, k == 0, record)
    beta_scores, scores = concat(beta), concat(total)
    return Decomposition(record["beta_y"], record["gamma_y"], record["beta_c"], record["gamma_c"],
                         beta_scores, scores - beta_scores)


def _model_of(apply: Callable) -> Any:
    """The model CD walks: the :class:`Sequential` behind ``apply`` (its layers checked), or a model that
    decomposes itself (:class:`DecomposableModel`, checked)."""
    owner = model_of(apply)
    model = network_of(owner)
    if model is None and isinstance(owner, DecomposableModel):
        owner.check_decomposable()
        return owner
    if model is None or not model.sequence_input:
        raise TypeError("Contextual Decomposition needs `apply` to be the apply method of a sequence model of "
                        f"lrpjax.models (lstm.apply, bilstm.apply, a Sequential with LSTM layers); got {apply!r}.")
    for layer in model.layers[1:] if model.takes_ids else model.layers:   # CD runs on the embedded vectors
        if not isinstance(layer, Decomposable):
            raise TypeError(f"Contextual Decomposition cannot decompose layer {layer.name!r} ({type(layer).__name__}): "
                            "it has no decomposition (no `decompose` method, lrpjax.models.layers.Decomposable).")
        layer.check_decomposable()
    return model


def _input_size(model: Any, params: Params) -> int:
    """E, the size of an embedded input position (checks ``params``)."""
    return model.input_size(params) if isinstance(model, DecomposableModel) else model.specs(params)[0].size


def _check_example(model: Any, x: Any, mask: Any, E: int) -> None:
    (model.check_inputs if isinstance(model, DecomposableModel) else check_inputs)(x, mask, E)


def _span_limit(model: Any, mask: Any) -> np.ndarray:
    """L (one per row of ``mask`` (..., T)), the end of the positions a span may cover: the valid length of a sequence (its valid prefix), or
    every position of a self-decomposing model's input (an encoder-decoder's packed pair has its padding
    inside; padded positions in a span are not relevant)."""
    mask = np.asarray(mask)
    if isinstance(model, DecomposableModel):
        return np.full(mask.shape[:-1], mask.shape[-1])
    return np.asarray(np.sum(mask, axis=-1))


def _vectors(apply: Callable, params: Params, x: Any, mask: Any, name: str = "x") -> tuple[Callable, Params, Any]:
    """``(apply, params, x)`` on embedded vectors, as the methods explain a model that takes token ids
    (:func:`lrpjax.methods.program.on_vectors`): integer ids ``x`` (checked; a batch (B, T) with
    ``name = "X"``) become ``table[ids]`` and the model its vector model; anything else unchanged."""
    network = ids_network(model_of(apply))
    x = x if hasattr(x, "dtype") else np.asarray(x)
    if network is None or not jnp.issubdtype(jnp.result_type(x), jnp.integer):
        return apply, params, x
    if name == "x":
        network.check_inputs(x, mask, network.input_size(params))
    else:
        check_ids(name, x, network.input_size(params), ndim=2)
    inner, inner_params = network.vector_model(params)
    return inner.apply, inner_params, network.embed(params, jnp.asarray(x))


def _check_bias_product(bias_product) -> str:
    if bias_product not in BIAS_PRODUCTS:
        raise ValueError(f"`bias_product` must be one of {BIAS_PRODUCTS}; got {bias_product!r}.")
    return bias_product


def decompose(apply: Callable, params: Params, x: ArrayLike, relevant: ArrayLike, *,
              mask: ArrayLike | None = None, bias_product: str = "gamma") -> Decomposition:
    """Contextual Decomposition of every state for a set of relevant positions.

    Args:
        apply: the apply method of a standard-cell ``LSTM`` (uni- or bidirectional), a composition with
            such layers, or an encoder-decoder ``Seq2Seq`` (standard cells).
        params: the model's parameters.
        x: embedded sequence, shape (T, E); token ids (T,) for a model that takes them (decomposed on
            their embedded vectors); a Seq2Seq's packed pair (S + T, E) or ids (S + T,).
        relevant: the positions in the relevant set, shape (T,) bool.
        mask: valid steps, shape (T,) bool; None means all valid.
        bias_product: where the bias-bias product of the relevant steps goes, one of
            :data:`BIAS_PRODUCTS` (module docstring); ``"gamma"`` (the default) keeps it irrelevant.

    Returns:
        A :class:`Decomposition`; ``beta + gamma`` equals each true state and the scores.

    Raises:
        TypeError: ``apply`` is not a standard-cell LSTM, or ``relevant``/``mask`` not boolean.
        ValueError: bad shapes, an unknown ``bias_product``.
    """
    _model_of(apply)
    apply, params, x = _vectors(apply, params, x, mask)
    model = _model_of(apply)
    _check_example(model, x, mask, _input_size(model, params))
    _check_bias_product(bias_product)
    if tuple(jnp.shape(relevant)) != (jnp.shape(x)[0],):
        raise ValueError(f"`relevant` must have shape (T,) = ({jnp.shape(x)[0]},); got {jnp.shape(relevant)}.")
    if jnp.result_type(relevant) != jnp.bool_:
        raise TypeError(f"`relevant` must be boolean; got dtype {jnp.result_type(relevant)}.")
    x = jnp.asarray(x)
    mask = jnp.ones((x.shape[0],), bool) if mask is None else jnp.asarray(mask)
    return _decompose_jit(model, params, x, jnp.asarray(relevant), mask, bias_product)


_decompose_jit = jax.jit(_decompose, static_argnums=(0, 5))


def _span_scores(model: Sequential, params: Params, x: Array, spans: Array, target, mask: Array,
                 bias_product: str) -> Array:
    """Relevant part of the target score for each span ``[start, stop)`` of ``spans`` (S, 2): (S,)."""
    steps = jnp.arange(x.shape[0], dtype=spans.dtype)

    def one(span):
        relevant = (steps >= span[0]) & (steps < span[1])
        return select(target, _decompose(model, params, x, relevant, mask, bias_product).beta)

    return jax.vmap(one)(spans)


@partial(jax.jit, static_argnums=(0, 6))
def _phrase_jit(model, params, x, spans, target, mask, bias_product):
    return _span_scores(model, params, x, spans, target, mask, bias_product)


@partial(jax.jit, static_argnums=(0, 6))
def _phrase_batch_jit(model, params, X, spans, targets, mask, bias_product):
    return jax.vmap(lambda x, s, t, k: _span_scores(model, params, x, s, t, k, bias_product))(X, spans, targets, mask)


def _check_spans(spans, lengths: np.ndarray, name: str = "spans") -> np.ndarray:
    """Spans as int32 (..., S, 2), each ``0 <= start < stop <= L`` of its sequence (lengths (...,))."""
    array = np.asarray(spans)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integer (start, stop) pairs; got dtype {array.dtype}.")
    if array.ndim < 1 or array.shape[-1] != 2:
        raise ValueError(f"`{name}` must have a last axis of 2 (start, stop); got shape {array.shape}.")
    start, stop = array[..., 0], array[..., 1]
    limit = np.reshape(lengths, lengths.shape + (1,) * (start.ndim - lengths.ndim))
    bad = ~((0 <= start) & (start < stop) & (stop <= limit))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        L = int(np.broadcast_to(limit, start.shape)[where])
        raise ValueError(f"`{name}` entry {where} is (start, stop) = ({int(start[where])}, {int(stop[where])}); "
                         f"a span [start, stop) needs 0 <= start < stop <= L = {L}, the valid length.")
    return array.astype(np.int32)


def phrase(apply: Callable, params: Params, x: ArrayLike, spans: ArrayLike, target, *,
           mask: ArrayLike | None = None, bias_product: str = "authors") -> Array:
    """Contextual Decomposition of phrases: the relevant part ``beta`` of the target's score when the
    positions ``[start, stop)`` are relevant (Murdoch et al. 2018; module docstring).

    Args:
        apply: the apply method of a sequence model with standard-cell LSTM layers, or a ``Seq2Seq``
            (see :func:`cd`).
        params: the model's parameters.
        x: embedded sequence, shape (T, E), or token ids (T,) for a model that takes them.
        spans: one span ``(start, stop)``, shape (2,), or S spans, shape (S, 2); half-open, within the
            valid steps (``0 <= start < stop <= L``); for a Seq2Seq within the S + T packed positions
            (``L = S + T``; its padded positions in a span are not relevant).
        target: what is explained (a class index, weights, ...; :mod:`lrpjax.methods`).
        mask: valid steps, shape (T,) bool; None means all valid.
        bias_product: ``"authors"`` (the authors' ``sent_util.CD``), ``"inside"`` or ``"gamma"``.

    Returns:
        The relevant score, shape () for one span, (S,) for S spans.

    Raises:
        TypeError: a model CD does not cover, non-integer spans.
        ValueError: bad shapes, a span outside ``[0, L]`` or empty, an unknown ``bias_product``.
    """
    _model_of(apply)
    apply, params, x = _vectors(apply, params, x, mask)
    model = _model_of(apply)
    _check_example(model, x, mask, _input_size(model, params))
    _check_bias_product(bias_product)
    x = jnp.asarray(x)
    mask = np.ones((x.shape[0],), bool) if mask is None else mask
    array = _check_spans(spans, _span_limit(model, mask))
    target = check_target(target, model.output_shape(params, x.shape[0]))
    if callable(target):
        raise TypeError("`target` of phrase() must be a class index, an index tuple or weights; give "
                        "weights `w` for the linear combination sum(w * output).")
    scores = _phrase_jit(model, params, x, jnp.atleast_2d(array), target, jnp.asarray(mask), bias_product)
    return scores[0] if array.ndim == 1 else scores


def phrase_batch(apply: Callable, params: Params, X: ArrayLike, spans: ArrayLike, targets, *,
                 mask: ArrayLike | None = None, bias_product: str = "authors") -> Array:
    """:func:`phrase` for a padded batch in one vmapped call.

    Args:
        X: padded batch, shape (B, T, E) (token ids (B, T) for a model that takes them); ``mask`` (B, T)
            bool (None: all valid).
        spans: one span per sequence (B, 2), or S spans per sequence (B, S, 2), within each valid length.
        targets: class indices (B,) (or one for all), or weights (B, *output shape).

    Returns:
        (B,) or (B, S).

    Raises:
        TypeError: as :func:`phrase`; ``targets`` given as a function.
        ValueError: as :func:`phrase`.
    """
    _model_of(apply)
    apply, params, X = _vectors(apply, params, X, mask, "X")
    model = _model_of(apply)
    _check_bias_product(bias_product)
    X = jnp.asarray(X)
    if X.ndim != 3 or X.shape[0] == 0:
        raise ValueError(f"`X` must be a padded batch of shape (B, T, E) with B >= 1; got {X.shape}.")
    B, T = X.shape[:2]
    mask = np.ones((B, T), bool) if mask is None else mask
    if tuple(np.shape(mask)) != (B, T):
        raise ValueError(f"`mask` must have shape (B, T) = ({B}, {T}); got {np.shape(mask)}.")
    getattr(model, "check_mask", check_prefix)(mask)
    _check_example(model, X[0], np.asarray(mask)[0], _input_size(model, params))
    shape = np.shape(spans)
    if len(shape) not in (2, 3) or shape[0] != B:
        raise ValueError(f"`spans` must have shape (B, 2) or (B, S, 2) with B = {B}; got {shape}.")
    array = _check_spans(spans, _span_limit(model, mask))
    targets = check_targets(targets, B, model.output_shape(params, T))
    if callable(targets):
        raise TypeError("`targets` of phrase_batch() must be class indices or weights, not a function.")
    scores = _phrase_batch_jit(model, params, X, array.reshape(B, -1, 2), targets, jnp.asarray(mask), bias_product)
    return scores[:, 0] if array.ndim == 2 else scores


@dataclass(frozen=True)
class ContextualDecomposition(Method):
    """Contextual Decomposition (Murdoch et al. 2018) as an explanation method, one relevance per
    position (T,).

    ``R_t`` is the relevant part of the target's score when only position t is relevant (module
    docstring) or, with ``ngram = n``, the n positions ``[t, t + n)``; an n-gram that would run past
    the last valid step is cut there (the last ``n - 1`` positions explain the shorter phrases that end
    the sequence). Computed for every position in one vmapped call; padded positions get 0.

    Attributes:
        apply: the apply method of a sequence model of :mod:`lrpjax.models` whose layers all decompose
            (standard-cell LSTM layers, dense layers, pooling, attention), or of a model that decomposes
            itself (:class:`DecomposableModel`: a standard-cell ``Seq2Seq``).
        ngram: phrase length n, ``>= 1``.
        bias_product: ``"authors"``, ``"inside"`` or ``"gamma"`` (module docstring); for single words
            ``"authors"`` and ``"gamma"`` coincide.
    """

    ngram: int = 1
    bias_product: str = "authors"

    per_position: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        _model_of(self.apply)
        _check_bias_product(self.bias_product)
        if not isinstance(self.ngram, (int, np.integer)) or isinstance(self.ngram, bool) or self.ngram < 1:
            raise ValueError(f"`ngram` must be an int >= 1; got {self.ngram!r}.")
        object.__setattr__(self, "ngram", int(self.ngram))

    @property
    def name(self) -> str:
        return "cd" if self.ngram == 1 else f"cd-{self.ngram}gram"

    def relevance(self, params, x, target, mask, index):
        model = _model_of(self.apply)
        T = x.shape[0]
        mask = jnp.ones((T,), bool) if mask is None else mask
        steps = jnp.arange(T)

        def one(t):
            relevant = steps == t if self.ngram == 1 else (steps >= t) & (steps < t + self.ngram)
            return select(target, _decompose(model, params, x, relevant, mask, self.bias_product).beta)

        relevance = jax.vmap(one)(jnp.arange(T))
        return jnp.where(mask, relevance, jnp.zeros_like(relevance))


def cd(apply: Callable, ngram: int = 1, bias_product: str = "authors") -> ContextualDecomposition:
    """Contextual Decomposition (Murdoch et al. 2018), one relevance per position (T,); see
    :class:`ContextualDecomposition`.

    Args:
        apply: the apply method of a standard-cell ``LSTM`` (``lstm.apply``, ``bilstm.apply``,
            ``LSTM(StandardCell(), ...).apply``), a composition with such layers, or a standard-cell
            encoder-decoder (``Seq2Seq(...).apply``; module docstring).
        ngram: phrase length n, ``>= 1``.
        bias_product: ``"authors"``, ``"inside"`` or ``"gamma"`` (module docstring).

    Raises:
        TypeError: another model, or a layer that does not decompose (a cell other than ``StandardCell``).
        ValueError: ``ngram`` < 1, an unknown ``bias_product``.
    """
    return ContextualDecomposition(apply, ngram, bias_product)
