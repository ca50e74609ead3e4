"""Attention over the steps of a sequence: pooling with learned queries, self-attention, cross-attention.

Two layers and a cross-attention, written only with the elementary computations (:mod:`lrpjax.core.ops`,
:mod:`lrpjax.core.attention`), so every rule set, the gradient, masks, ``jit``/``vmap``, ``.full()``
and dataset explanation work for every composition:

* :class:`AttentionPool` -- ``(T, D) -> (K * D,)``: K learned queries (heads) each score every valid
  step, a softmax over the valid steps weighs them, the context ``c_k = sum_t alpha_tk h_t`` (Bahdanau
  et al. 2015 / Luong et al. 2015 scores; several heads as in Lin et al. 2017). The classifier pattern
  "BiLSTM over all steps, attention, dense head".
* :class:`SelfAttention` -- ``(T, D) -> (T, D)``: every step ``s`` queries the sequence with its own
  state, ``c_s = sum_t alpha_st h_t`` over valid steps (``t <= s`` when ``causal``); what Keras'
  ``Attention()([x, x])`` and ``AdditiveAttention()([x, x])`` compute.
* :class:`CrossAttention` -- queries (T, D_q) over another sequence's keys (S, D_k) -> (T, D_k): the
  decoder-over-encoder attention of encoder-decoder RNNs (:mod:`lrpjax.models.seq2seq`), softmax over
  the valid key steps (not a layer of a ``Sequential``: it reads two sequences).

Scores (``h_t`` a step, ``q`` the query: a learned vector, or the querying step's state):

* ``"additive"`` (Bahdanau): ``e_t = v . tanh(W h_t + U q + b)`` (pooling: ``v . tanh(W h_t + b)``,
  the learned query folded into ``b``);
* ``"dot"`` (Luong): ``e_t = q . h_t``;
* ``"general"`` (Luong): ``e_t = q . (h_t W)``.

**Relevance.** The scores are linear mappings (relevance by ``rules.linear``; the ``tanh`` passes it
unchanged), or, when the query is itself a state, bilinear products. The context
``c_d = sum_t alpha_t h_td`` is an accumulation (Sec. 11.3.3, ``rules.accumulate``) of the products
``alpha_t h_td``, gated interactions (Sec. 11.3.2) whose gate is the weight and whose signal is the
value. Following the chapter's argument for LSTM gates, the default (``rules.attention`` =
``AttentionRule("gate")``, the mode of every preset) is signal-take-all: the weights act as gates, all
of a product's relevance goes to the value and none to the scores (Table 11.1, LRP-all; CP-LRP of Ali et
al. 2022). The deep Taylor argument of Sec. 11.3.2 carries over when the weight is seen as a constant of
the product: ``p = alpha h`` is then linear in ``h`` and the first-order expansion at ``h`` has no
remainder. As options (:class:`~lrpjax.core.rules.AttentionRule`), relevance also reaches the scores:
Table 11.1's ``prop``/``abs``/``half`` splits of each product between weight and value (the weight's
share passing the softmax unchanged, as an activation passes it), or AttnLRP (Achtibat et al., ICML 2024:
the uniform rule for products and their Taylor rule for the softmax). With ``share=True`` relevance is
conserved in every mode.

**Contextual Decomposition.** Both layers decompose (:class:`~lrpjax.models.layers.Decomposable`): the
weights are computed from the true input (they act as gates), and the relevant part of a context is
``sum_t alpha_t beta_t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from lrpjax._types import Array, Params
from lrpjax.core import ops
from lrpjax.core.attention import attend, bilinear, softmax
from lrpjax.core.rules import RuleSet
from lrpjax.models.layers import Spec, concat, register_layer

__all__ = ["SCORES", "AttentionPool", "SelfAttention", "CrossAttention"]

SCORES = ("additive", "dot", "general")
"""The score functions of the attention layers."""


def _check_common(layer: str, score: Any, units: Any, name: Any) -> None:
    if score not in SCORES:
        raise ValueError(f"`score` of {layer} must be one of {SCORES}; got {score!r}.")
    if units is not None and (not isinstance(units, int) or isinstance(units, bool) or units < 1):
        raise ValueError(f"`units` of {layer} must be a positive int or None; got {units!r}.")
    if score != "additive" and units is not None:
        raise ValueError(f"`units` of {layer} is the size of additive scores' hidden layer; score {score!r} has "
                         "none (leave units None).")
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"`name` of {layer} must be a non-empty string without '/'; got {name!r}.")


def _check_shapes(where: str, layer: Any, expected: dict[str, tuple]) -> None:
    """``layer`` (a dict) has exactly ``expected``'s keys with those shapes (None: any size there)."""
    if not isinstance(layer, dict):
        raise TypeError(f"`{where}` must be a dict of arrays; got {type(layer).__name__}.")
    if set(layer) != set(expected):
        raise ValueError(f"`{where}` must have exactly the keys {sorted(expected)}; got {sorted(layer)}.")
    for key, shape in expected.items():
        got = tuple(jnp.shape(layer[key]))
        if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
            letters = ", ".join("?" if s is None else str(s) for s in shape)
            raise ValueError(f"`{where}[{key!r}]` must have shape ({letters}); got {got}.")


def _glorot(key: Array, shape: tuple[int, int], dtype) -> Array:
    bound = (6.0 / (shape[0] + shape[1])) ** 0.5
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _with_tap(h: Array, taps: Params | None, label: str) -> Array:
    """Adds the zero probe on the layer's input (its cotangent is the relevance there)."""
    return h if taps is None else h + taps["states"][label]


def _valid(mask: Array | None, T: int) -> Array:
    return jnp.ones((T,), bool) if mask is None else mask


class _Attention:
    """What both attention layers share: name, parameter keys, taps, configuration."""

    name: str | None
    score: str
    units: int | None

    kind: ClassVar[str]
    needs_sequence: ClassVar[bool] = True
    default_output: ClassVar[bool] = False
    default_name: ClassVar[str] = "attention"

    @property
    def label(self) -> str:
        """The layer's name.

        Raises:
            ValueError: an unnamed layer outside a model (``Sequential`` names its layers).
        """
        if self.name is None:
            raise ValueError(f"this {type(self).__name__} layer has no name: give it name=... or use it inside a "
                             "Sequential, which names its layers.")
        return self.name

    def keys(self) -> tuple[str, ...]:
        return (self.label,)

    def rule_names(self) -> tuple[str, ...]:
        return (self.label,)

    def input_size(self, params: Params) -> int:
        """D read off the parameters (``W``, or ``q`` for dot scores).

        Raises:
            ValueError: parameters without them (a dot self-attention has none).
        """
        layer = params.get(self.label) if isinstance(params, dict) else None
        for key in ("W", "q"):
            if isinstance(layer, dict) and key in layer:
                return int(jnp.shape(layer[key])[0])
        raise ValueError(f"layer {self.label!r} ({type(self).__name__}) has no weights to read the input size off; "
                         "a model cannot start with it.")

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({}, {name: zeros (T, D)})``: a probe on the attended sequence."""
        return {}, {self.label: jnp.zeros((T, spec.size), dtype)}

    def _needs_sequence(self, spec: Spec) -> None:
        if not spec.sequence:
            raise ValueError(f"layer {self.label!r} ({type(self).__name__}) needs a sequence input; the layer "
                             "before it outputs a vector (use a recurrent layer with sequences=True).")

    def check_decomposable(self) -> None:
        """Every attention layer decomposes (module docstring)."""


def _additive(rules: RuleSet | None, layer: Params, h: Array, query: Array | None) -> Array:
    """``v . tanh(W h + [U q] + b)`` for one step: (K,)."""
    xs, Ws = ((h,), (layer["W"],)) if query is None else ((h, query), (layer["W"], layer["U"]))
    a = ops.activation(rules, ops.TANH, ops.linear(rules, xs, Ws, layer["b"]))
    return ops.linear(rules, (a,), (layer["v"],))


@register_layer
@dataclass(frozen=True)
class AttentionPool(_Attention):
    """Attention pooling with learned queries: a sequence (T, D) becomes K contexts (K * D,).

    For each head k: scores ``e_tk`` of every step (``"additive"``: ``v_k . tanh(W h_t + b)``;
    ``"dot"``: ``q_k . h_t``; ``"general"``: ``q_k . (h_t W)``), weights ``alpha_.k`` = softmax over the
    valid steps, context ``c_k = sum_t alpha_tk h_t``; the output is ``[c_0, ..., c_{K-1}]``. Relevance:
    module docstring.

    Parameters ``params[name]``: additive ``W`` (D, A), ``b`` (A,), ``v`` (A, K); dot ``q`` (D, K);
    general ``W`` (D, D), ``q`` (D, K).

    Attributes:
        score: ``"additive"``, ``"dot"`` or ``"general"``.
        units: A, the hidden size of additive scores (needed by :meth:`init`); None for the others.
        heads: K, the number of learned queries.
        name: the layer's name (None: chosen by the model, ``"attention_k"``).
    """

    score: str = "additive"
    units: int | None = None
    heads: int = 1
    name: str | None = None

    kind: ClassVar[str] = "attention_pool"

    def __post_init__(self):
        _check_common("AttentionPool", self.score, self.units, self.name)
        if not isinstance(self.heads, int) or isinstance(self.heads, bool) or self.heads < 1:
            raise ValueError(f"`heads` of AttentionPool must be a positive int; got {self.heads!r}.")

    def sequence_output(self, sequence_input: bool) -> bool:
        """A vector: the steps are pooled."""
        return False

    def describe(self) -> str:
        """``AttentionPool(<score>[, K heads])``."""
        return f"AttentionPool({self.score}{f', {self.heads} heads' if self.heads > 1 else ''})"

    def _expected(self, D: int, A: int | None) -> dict[str, tuple]:
        K = self.heads
        if self.score == "additive":
            return {"W": (D, A), "b": (A,), "v": (A, K)}
        if self.score == "dot":
            return {"q": (D, K)}
        return {"W": (D, D), "q": (D, K)}

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]`` against the input ``spec``; the output's spec, (K * D,).

        Raises:
            ValueError: a vector input, a missing layer or key, a shape that does not fit.
        """
        self._needs_sequence(spec)
        if not isinstance(params, dict) or self.label not in params:
            raise ValueError(f"`params` must have key {self.label!r} (layer {self.label!r}).")
        layer = params[self.label]
        A = self.units
        if self.score == "additive" and A is None and isinstance(layer, dict) and "W" in layer:
            A = int(jnp.shape(layer["W"])[-1])
        _check_shapes(f"params[{self.label!r}]", layer, self._expected(spec.size, A))
        return Spec((self.label,), (self.heads * spec.size,), False)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """Glorot-uniform weights and queries, zero bias."""
        D, K = spec.size, self.heads
        k1, k2 = jax.random.split(key)
        if self.score == "additive":
            if self.units is None:
                raise ValueError(f"layer {self.label!r} (AttentionPool, additive) needs `units` to be initialised.")
            A = self.units
            return {self.label: {"W": _glorot(k1, (D, A), dtype), "b": jnp.zeros((A,), dtype),
                                 "v": _glorot(k2, (A, K), dtype)}}
        layer = {"q": _glorot(k2, (D, K), dtype)}
        if self.score == "general":
            layer["W"] = _glorot(k1, (D, D), dtype)
        return {self.label: layer}

    def scores(self, params: Params, h: Array, rules: RuleSet | None) -> Array:
        """The scores (T, K) of the steps ``h`` (T, D)."""
        layer = params[self.label]

        def one(h_t):
            if self.score == "additive":
                return _additive(rules, layer, h_t, None)
            if self.score == "general":
                h_t = ops.linear(rules, (h_t,), (layer["W"],))
            return ops.linear(rules, (h_t,), (layer["q"],))

        return jax.vmap(one)(h)

    def weights(self, params: Params, h: Array, mask: Array | None = None) -> Array:
        """The attention weights (T, K) of the steps ``h`` (T, D) (0 at padded steps)."""
        return softmax(None, self.scores(params, h, None), _valid(mask, h.shape[0]))

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """The contexts of every head, one part (K * D,)."""
        h = _with_tap(concat(parts), taps, self.label)
        valid = _valid(mask, h.shape[0])
        layer_rules = None if rules is None else rules.at(self.label)
        alpha = softmax(layer_rules, self.scores(params, h, layer_rules), valid)
        return (attend(layer_rules, alpha, h, valid),)

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "score": self.score, "units": self.units, "heads": self.heads, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> AttentionPool:
        return cls(**fields)

    def decompose(self, params: Params, spec: Spec, beta: tuple[Array, ...], total: tuple[Array, ...],
                  mask: Array, relevant: Array, bias_product: str, reads_input: bool,
                  record: dict[str, dict[str, Array]]) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        """CD (:class:`~lrpjax.models.layers.Decomposable`): weights from the true input, the relevant
        context ``sum_t alpha_t beta_t``."""
        h = concat(total)
        alpha = self.weights(params, h, mask)
        return (attend(None, alpha, concat(beta), mask),), (attend(None, alpha, h, mask),)


@register_layer
@dataclass(frozen=True)
class SelfAttention(_Attention):
    """Self-attention over a sequence: every step queries all valid steps with its own state, (T, D) -> (T, D).

    For each step s: scores ``e_st`` of every valid step t (``t <= s`` with ``causal``), with the query
    ``h_s`` (``"additive"``: ``v . tanh(W h_t + U h_s + b)``; ``"dot"``: ``h_s . h_t``; ``"general"``:
    ``h_s . (h_t W)``), weights softmax over t, output ``c_s = sum_t alpha_st h_t``; padded steps output
    0. Keras' ``Attention(use_scale=s)([x, x])`` is ``"general"`` with ``W = s I`` (``"dot"`` without
    scale), ``AdditiveAttention()([x, x])`` is ``"additive"`` with ``W = U = I``, ``b = 0``, ``v`` its scale.
    Relevance: module docstring (the bilinear scores split their products by ``rules.attention``).

    Parameters ``params[name]``: additive ``W`` (D, A), ``U`` (D, A), ``b`` (A,), ``v`` (A, 1); general
    ``W`` (D, D); dot scores have none (no key).

    Attributes:
        score: ``"additive"``, ``"dot"`` or ``"general"``.
        units: A, the hidden size of additive scores (needed by :meth:`init`); None for the others.
        causal: step s attends to steps ``t <= s`` only (decoders, forecasting).
        name: the layer's name (None: chosen by the model, ``"attention_k"``).
    """

    score: str = "dot"
    units: int | None = None
    causal: bool = False
    name: str | None = None

    kind: ClassVar[str] = "self_attention"

    def __post_init__(self):
        _check_common("SelfAttention", self.score, self.units, self.name)
        if not isinstance(self.causal, bool):
            raise TypeError(f"`causal` of SelfAttention must be a bool; got {type(self.causal).__name__}.")

    def sequence_output(self, sequence_input: bool) -> bool:
        """A sequence: one context per step."""
        return True

    def describe(self) -> str:
        """``SelfAttention(<score>[, causal])``."""
        return f"SelfAttention({self.score}{', causal' if self.causal else ''})"

    def keys(self) -> tuple[str, ...]:
        """The parameter key: the layer's name; none for dot scores, which have no parameters."""
        return () if self.score == "dot" else (self.label,)

    def _expected(self, D: int, A: int | None) -> dict[str, tuple]:
        if self.score == "additive":
            return {"W": (D, A), "U": (D, A), "b": (A,), "v": (A, 1)}
        return {"W": (D, D)}

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]`` against the input ``spec``; the output's spec, (T, D).

        Raises:
            ValueError: a vector input, a missing layer or key, a shape that does not fit.
        """
        self._needs_sequence(spec)
        if self.score == "dot":
            return Spec((self.label,), (spec.size,), True)
        if not isinstance(params, dict) or self.label not in params:
            raise ValueError(f"`params` must have key {self.label!r} (layer {self.label!r}).")
        layer = params[self.label]
        A = self.units
        if self.score == "additive" and A is None and isinstance(layer, dict) and "W" in layer:
            A = int(jnp.shape(layer["W"])[-1])
        _check_shapes(f"params[{self.label!r}]", layer, self._expected(spec.size, A))
        return Spec((self.label,), (spec.size,), True)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """Glorot-uniform weights, zero bias (no parameters for dot scores)."""
        D = spec.size
        keys = jax.random.split(key, 3)
        if self.score == "dot":
            return {}
        if self.score == "general":
            return {self.label: {"W": _glorot(keys[0], (D, D), dtype)}}
        if self.units is None:
            raise ValueError(f"layer {self.label!r} (SelfAttention, additive) needs `units` to be initialised.")
        A = self.units
        return {self.label: {"W": _glorot(keys[0], (D, A), dtype), "U": _glorot(keys[1], (D, A), dtype),
                             "b": jnp.zeros((A,), dtype), "v": _glorot(keys[2], (A, 1), dtype)}}

    def _attended(self, valid: Array) -> Array:
        """(T, T) bool: row s marks the steps step s attends to."""
        T = valid.shape[0]
        rows = jnp.broadcast_to(valid[None, :], (T, T))
        return rows & jnp.tril(jnp.ones((T, T), bool)) if self.causal else rows

    def scores(self, params: Params, h: Array, rules: RuleSet | None) -> Array:
        """The scores (T, T) of every query step s (rows) over every step t (columns) of ``h`` (T, D)."""
        layer = params.get(self.label, {})
        if self.score == "additive":
            return jax.vmap(lambda q: jax.vmap(lambda h_t: _additive(rules, layer, h_t, q)[0])(h))(h)
        keys = h if self.score == "dot" else jax.vmap(lambda h_t: ops.linear(rules, (h_t,), (layer["W"],)))(h)
        return jax.vmap(lambda q: bilinear(rules, q, keys))(h)

    def weights(self, params: Params, h: Array, mask: Array | None = None) -> Array:
        """The attention weights (T, T) (row s: step s's weights over the steps t; 0 where not attended)."""
        attended = self._attended(_valid(mask, h.shape[0]))
        e = self.scores(params, h, None)
        return jax.vmap(lambda e_s, a_s: softmax(None, e_s[:, None], a_s)[:, 0])(e, attended)

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """One context per step, one part (T, D); padded steps 0."""
        h = _with_tap(concat(parts), taps, self.label)
        valid = _valid(mask, h.shape[0])
        layer_rules = None if rules is None else rules.at(self.label)
        e = self.scores(params, h, layer_rules)

        def context(e_s, attended_s):
            return attend(layer_rules, softmax(layer_rules, e_s[:, None], attended_s), h, attended_s)

        out = jax.vmap(context)(e, self._attended(valid))
        return (jnp.where(valid[:, None], out, jnp.zeros((), out.dtype)),)

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "score": self.score, "units": self.units, "causal": self.causal,
                "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> SelfAttention:
        return cls(**fields)

    def decompose(self, params: Params, spec: Spec, beta: tuple[Array, ...], total: tuple[Array, ...],
                  mask: Array, relevant: Array, bias_product: str, reads_input: bool,
                  record: dict[str, dict[str, Array]]) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        """CD (:class:`~lrpjax.models.layers.Decomposable`): weights from the true input, the relevant
        context of step s ``sum_t alpha_st beta_t``; padded steps 0."""
        h, b = concat(total), concat(beta)
        alpha = self.weights(params, h, mask)
        keep = mask[:, None]
        zero = jnp.zeros((), h.dtype)
        return (jnp.where(keep, alpha @ b, zero),), (jnp.where(keep, alpha @ h, zero),)


@dataclass(frozen=True)
class CrossAttention:
    """Attention of queries over another sequence: ``c_t = sum_s alpha_ts k_s`` over the valid key steps s.

    The decoder-over-encoder attention of encoder-decoder RNNs (Bahdanau et al. 2015; Luong et al. 2015):
    a query ``q_t`` (D_q,) -- a decoder state -- scores every key ``k_s`` (D_k,) -- an encoder state --, a
    softmax over the valid key steps weighs them, and the context is their weighted sum (the keys are also
    the values). Scores:

    * ``"dot"`` (Luong): ``e_ts = q_t . k_s`` (D_q = D_k), a bilinear product of two inputs;
    * ``"general"`` (Luong): ``e_ts = q_t . (k_s W)``, ``W`` (D_k, D_q): a linear mapping of the key, then a
      bilinear product with the query;
    * ``"additive"`` (Bahdanau): ``e_ts = v . tanh(k_s W + q_t U + b)``, ``W`` (D_k, A), ``U`` (D_q, A),
      ``b`` (A,), ``v`` (A, 1): one linear mapping of key and query (one shared denominator), a ``tanh``
      that passes relevance unchanged, a linear mapping.

    Relevance (module docstring): the context is an accumulation (``rules.accumulate``) of the gated
    products ``alpha_ts k_sd``; under ``rules.attention`` mode ``"gate"`` all of a product's relevance goes
    to the key, none to the weights (so none to the query); the other modes send the weights' share through
    the softmax (``rules.attention.softmax``) into the scores, and from there to query and key by the
    scores' own computations (bilinear products split by ``rules.attention.product``).

    Unlike the layers above, this is not a layer of a :class:`~lrpjax.models.Sequential` (it reads two
    sequences); models such as :class:`~lrpjax.models.seq2seq.Seq2Seq` call it. Its parameters are one dict
    (``W``, ``U``, ``b``, ``v`` as above; ``{}`` for dot scores).

    Attributes:
        score: ``"additive"``, ``"dot"`` or ``"general"``.
        units: A, the hidden size of additive scores (needed by :meth:`init`); None for the others.
    """

    score: str = "general"
    units: int | None = None

    def __post_init__(self):
        _check_common("CrossAttention", self.score, self.units, None)

    def expected(self, D_q: int, D_k: int, A: int | None = None) -> dict[str, tuple]:
        """The parameter shapes for queries (D_q,) and keys (D_k,) (A: additive units, None: any)."""
        if self.score == "additive":
            A = self.units if A is None else A
            return {"W": (D_k, A), "U": (D_q, A), "b": (A,), "v": (A, 1)}
        if self.score == "general":
            return {"W": (D_k, D_q)}
        return {}

    def check(self, where: str, params: Params, D_q: int, D_k: int) -> None:
        """Checks the parameters ``params`` (named ``where`` in errors) for queries (D_q,) and keys (D_k,).

        Raises:
            ValueError: a missing or unexpected key, a shape that does not fit, or dot scores of queries
                and keys of different sizes.
        """
        if self.score == "dot" and D_q != D_k:
            raise ValueError(f"`{where}`: dot scores need queries and keys of one size; got D_q = {D_q} and "
                             f"D_k = {D_k} (use score 'general' or 'additive').")
        A = None
        if self.score == "additive" and isinstance(params, dict) and "W" in params:
            A = int(jnp.shape(params["W"])[-1])
        _check_shapes(where, params, self.expected(D_q, D_k, A))

    def init(self, key: Array, D_q: int, D_k: int, dtype=jnp.float32) -> Params:
        """Glorot-uniform weights, zero bias (``{}`` for dot scores)."""
        if self.score == "dot":
            return {}
        keys = jax.random.split(key, 3)
        if self.score == "general":
            return {"W": _glorot(keys[0], (D_k, D_q), dtype)}
        if self.units is None:
            raise ValueError("CrossAttention with additive scores needs `units` to be initialised.")
        A = self.units
        return {"W": _glorot(keys[0], (D_k, A), dtype), "U": _glorot(keys[1], (D_q, A), dtype),
                "b": jnp.zeros((A,), dtype), "v": _glorot(keys[2], (A, 1), dtype)}

    def prepare(self, params: Params, keys: Array, rules: RuleSet | None) -> Array:
        """What the scores read of the keys (S, D_k), computed once for every query: ``k_s W`` (S, D_q) for
        general scores (a linear mapping of each key; the epsilon rule is linear in the relevance arriving,
        so one backward for the sum over queries equals one per query), else the keys themselves."""
        if self.score != "general":
            return keys
        return jax.vmap(lambda k: ops.linear(rules, (k,), (params["W"],)))(keys)

    def scores(self, params: Params, query: Array, keys: Array, prepared: Array, rules: RuleSet | None) -> Array:
        """The scores (S,) of one query (D_q,) over the keys (S, D_k) (``prepared``: :meth:`prepare`)."""
        if self.score == "additive":
            return jax.vmap(lambda k: _additive(rules, params, k, query)[0])(keys)
        return bilinear(rules, query, prepared)

    def context(self, params: Params, query: Array, keys: Array, prepared: Array, valid: Array,
                rules: RuleSet | None) -> tuple[Array, Array]:
        """``(c, alpha)`` of one query (D_q,): the context (D_k,) and the weights (S,) (0 at invalid keys)."""
        alpha = softmax(rules, self.scores(params, query, keys, prepared, rules)[:, None], valid)
        return attend(rules, alpha, keys, valid), alpha[:, 0]

    def decompose(self, params: Params, query: Array, keys: Array, beta_keys: Array, prepared: Array,
                  valid: Array) -> tuple[Array, Array, Array]:
        """Contextual Decomposition of one query's context: ``(beta_c, c, alpha)``.

        As :meth:`AttentionPool.decompose`: the weights ``alpha`` (S,) are computed from the TRUE query and
        keys (they act as gates, as the LSTM's output gate in CD), and the context, linear in the keys
        given the weights, splits exactly: ``beta_c = sum_s alpha_s beta_s`` with ``beta_keys`` (S, D_k)
        the keys' relevant parts; the query's parts enter only through the weights, so none of them.
        """
        c, alpha = self.context(params, query, keys, prepared, valid, None)
        return attend(None, alpha[:, None], beta_keys, valid), c, alpha

    def apply(self, params: Params, queries: Array, keys: Array, valid: Array | None = None,
              rules: RuleSet | None = None) -> Array:
        """The contexts (T, D_k) of every query (T, D_q) over the keys (S, D_k), ``valid`` (S,) bool the valid
        key steps (None: all)."""
        valid = _valid(valid, keys.shape[0])
        prepared = self.prepare(params, keys, rules)
        return jax.vmap(lambda q: self.context(params, q, keys, prepared, valid, rules)[0])(queries)

    def weights(self, params: Params, queries: Array, keys: Array, valid: Array | None = None) -> Array:
        """The attention weights (T, S) of every query over the keys (row t: query t's weights)."""
        valid = _valid(valid, keys.shape[0])
        prepared = self.prepare(params, keys, None)
        return jax.vmap(lambda q: self.context(params, q, keys, prepared, valid, None)[1])(queries)
