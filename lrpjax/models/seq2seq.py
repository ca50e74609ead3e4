"""Encoder-decoder RNNs with attention (Luong et al. 2015), written with the elementary computations.

A source sentence of S steps is read by a (bi)directional LSTM or GRU encoder into states ``k_s``
(S, D); a unidirectional decoder reads the target tokens under teacher forcing (``y_0`` = BOS, then
the reference tokens) and at every step t:

1. ``h_t = cell([e(y_t); [h~_{t-1}]], state_{t-1})``  -- the decoder cell (input feeding: the previous
   attentional state enters too);
2. ``c_t = sum_s alpha_ts k_s``, ``alpha_t = softmax_s(score(h_t, k_s))`` over the valid source steps
   (:class:`~lrpjax.models.attention.CrossAttention`, Luong's global attention);
3. ``h~_t = tanh(c_t W_c + h_t W_h + b_c)``  -- the attentional state, one linear mapping of two inputs;
4. ``o_t = h~_t W_o + b_o``  -- the scores (V,) of the next target token.

The output is (T, V), one score vector per target step. Initial states are zero (Sec. 11.4.1, A9), so
the source reaches the decoder through the attention only.

**One input, one mask.** The methods of :mod:`lrpjax.methods` explain one array and pass one mask, so a
pair is *packed*: ``x`` = the source ids padded to ``source_steps`` = S, then the target ids (S + T,);
``mask`` (S + T,) bool marks the valid source steps (a prefix of the first S) and the valid target steps
(a prefix of the last T). :meth:`Seq2Seq.pack` builds both from lists of pairs. Explaining output step
t (``target=(t, v)``) gives relevance over all S + T packed positions: the source tokens and the target
tokens the decoder has read (positions after ``S + t`` get exactly 0: the decoder is causal).
``method.every_step(params, x, classes, mask=mask)`` gives every step at once, (T, S + T, E): the
(target x (source + target)) relevance matrix, summed over E.

**Relevance.** Every line above is an elementary computation: the cells as in :mod:`lrpjax.core.cells`,
the attention as in :mod:`lrpjax.core.attention` (``rules.attention``: weights as gates by default,
AttnLRP and Table 11.1's splits as options), the two mappings by ``rules.linear``, ``tanh`` passes
relevance unchanged. Rules are overridden by part with ``rules.composite(by_layer=...)``: ``"encoder"``
(or one direction, ``"encoder_forward"``/``"encoder_backward"``), ``"decoder"``, ``"attention"``,
``"combine"``, ``"out"``.

Parameters (a plain dict): ``source_embedding``/``target_embedding`` ``{"table": (V, E)}`` (one
vocabulary of V ids, a table per side), ``encoder`` (or ``encoder_forward``, ``encoder_backward``) the
cell's dict for inputs (E,), ``decoder`` the cell's dict for inputs (E,) (E + M with input feeding),
``attention`` the cross-attention's (queries (H,), keys (D,)), ``combine`` ``{"W_context": (D, M),
"W_state": (H, M), "b": (M,)}``, ``out`` ``{"W": (M, V), "b": (V,)}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.core import ops
from lrpjax.core.cells import CELLS, StandardCell, all_valid, check_cell_params, linearise
from lrpjax.core.rules import RuleSet
from lrpjax.models.attention import SCORES, CrossAttention
from lrpjax.models.embedding import check_ids
from lrpjax.models.layers import Recurrent, Spec, _bias_steps, concat
from lrpjax.models.sequential import check_prefix

__all__ = ["Seq2Seq", "Sizes"]


@dataclass(frozen=True)
class Sizes:
    """The sizes read off a model's parameters: V (vocabulary), E (embedding), D (encoder states), H (decoder
    state), M (attentional state)."""

    V: int | None
    E: int
    D: int
    H: int
    M: int


def _positive(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"`{name}` of Seq2Seq must be a positive int or None; got {value!r}.")


def _shape_of(where: str, layer: Any, key: str, shape: tuple) -> None:
    if not isinstance(layer, dict) or key not in layer:
        raise ValueError(f"`{where}` must be a dict with {key!r}.")
    got = tuple(jnp.shape(layer[key]))
    if got != shape:
        raise ValueError(f"`{where}[{key!r}]` must have shape {shape}; got {got}.")


@dataclass(frozen=True)
class Seq2Seq:
    """An encoder-decoder RNN with attention over a packed pair (module docstring).

    Attributes:
        source_steps: S, the padded source length of the packed input (its first S positions).
        cell: the encoder's and decoder's cell (``StandardCell()`` or ``GRUCell()``, any cell of
            :mod:`lrpjax.core.cells`).
        encoder_units: H_enc per direction (D = 2 H_enc when bidirectional); needed by :meth:`init`.
        units: H, the decoder's state size; needed by :meth:`init`.
        combine_units: M, the attentional state's size (None: H).
        bidirectional: a bidirectional encoder.
        score: the attention's scores, ``"general"``, ``"dot"`` (D = H) or ``"additive"``.
        attention_units: A, the hidden size of additive scores.
        input_feeding: the decoder also reads the previous attentional state (Luong et al. 2015, Sec. 3.3).
        reads_ids: the input is token ids (S + T,); False: embedded vectors (S + T, E)
            (:meth:`vector_model`, what the methods explain).
    """

    source_steps: int
    cell: Any = StandardCell()
    encoder_units: int | None = None
    units: int | None = None
    combine_units: int | None = None
    bidirectional: bool = True
    score: str = "general"
    attention_units: int | None = None
    input_feeding: bool = False
    reads_ids: bool = True

    def __post_init__(self):
        if not isinstance(self.source_steps, int) or isinstance(self.source_steps, bool) or self.source_steps < 1:
            raise ValueError(f"`source_steps` of Seq2Seq must be a positive int (S, the padded source length); got "
                             f"{self.source_steps!r}.")
        if type(self.cell) not in CELLS.values():
            raise TypeError(f"`cell` of Seq2Seq must be a cell of lrpjax.core.cells; got {type(self.cell).__name__}.")
        for name in ("encoder_units", "units", "combine_units", "attention_units"):
            _positive(name, getattr(self, name))
        for name in ("bidirectional", "input_feeding", "reads_ids"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` of Seq2Seq must be a bool; got {type(getattr(self, name)).__name__}.")
        if self.score not in SCORES:
            raise ValueError(f"`score` of Seq2Seq must be one of {SCORES}; got {self.score!r}.")
        self.attention   # checks the attention's own configuration

    # --- parts ---------------------------------------------------------------------------------------

    @property
    def encoder(self) -> Recurrent:
        """The encoder: a recurrent layer named ``"encoder"`` giving every step's state (S, D)."""
        return Recurrent(self.cell, self.encoder_units, self.bidirectional, sequences=True, name="encoder")

    @property
    def attention(self) -> CrossAttention:
        """The decoder-over-encoder attention."""
        return CrossAttention(self.score, self.attention_units if self.score == "additive" else None)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of ``params``."""
        embeddings = ("source_embedding", "target_embedding") if self.reads_ids else ()
        return embeddings + self.encoder.keys() + ("decoder", "attention", "combine", "out")

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a rule override (``rules.composite(by_layer=...)``) may use."""
        return ("encoder",) + self.encoder.keys() * self.bidirectional + ("decoder", "attention", "combine", "out")

    def check_rules(self, rules: RuleSet | None) -> None:
        """Every override in ``rules.layers`` must name a part of this model (:attr:`names`).

        Raises:
            ValueError: an unknown part, listing the model's parts.
        """
        unknown = [] if rules is None else [name for name, _ in rules.layers if name not in self.names]
        if unknown:
            raise ValueError(f"the rule set overrides part(s) {unknown} that this Seq2Seq does not have; its parts "
                             f"are {list(self.names)}.")

    @property
    def takes_ids(self) -> bool:
        """Whether the input is token ids (the methods then explain the embedded vectors)."""
        return self.reads_ids

    @property
    def masked(self) -> bool:
        """A Seq2Seq takes a mask (of its packed pair)."""
        return True

    # --- parameters ----------------------------------------------------------------------------------

    def sizes(self, params: Params) -> Sizes:
        """Checks every parameter's shape; the sizes.

        Raises:
            TypeError: ``params`` not a dict.
            ValueError: a missing or unexpected key, or a shape that does not fit, named.
        """
        if not isinstance(params, dict):
            raise TypeError(f"`params` must be a dict with the keys {list(self.keys)}; got {type(params).__name__}.")
        missing, unexpected = [k for k in self.keys if k not in params], sorted(set(params) - set(self.keys))
        if missing or unexpected:
            raise ValueError(f"`params` must have exactly the keys {list(self.keys)}; missing {missing}, unexpected "
                             f"{unexpected}.")
        V = None
        if self.reads_ids:
            V, E = (int(n) for n in jnp.shape(_table(params, "source_embedding")))
            _shape_of("params['target_embedding']", params["target_embedding"], "table", (V, E))
        else:
            E = int(jnp.shape(_entry(params, self.encoder.keys()[0], "W"))[0])
        D = self.encoder.output_spec(params, Spec(("input",), (E,), True)).size
        H = int(jnp.shape(_entry(params, "decoder", "U"))[0])
        M = int(jnp.shape(_entry(params, "combine", "b"))[0])
        check_cell_params(self.cell, params["decoder"], E + (M if self.input_feeding else 0), "params['decoder']")
        self.attention.check("params['attention']", params["attention"], H, D)
        for key, shape in (("W_context", (D, M)), ("W_state", (H, M)), ("b", (M,))):
            _shape_of("params['combine']", params["combine"], key, shape)
        V_out = int(jnp.shape(_entry(params, "out", "W"))[-1])
        for key, shape in (("W", (M, V_out)), ("b", (V_out,))):
            _shape_of("params['out']", params["out"], key, shape)
        if V is not None and V_out != V:
            raise ValueError(f"`params['out']['W']` must score the V = {V} ids of the vocabulary; got {V_out} outputs.")
        for name, size, value in (("encoder_units", D // (2 if self.bidirectional else 1), self.encoder_units),
                                  ("units", H, self.units), ("combine_units", M, self.combine_units)):
            if value is not None and size != value:
                raise ValueError(f"`params` have {name} = {size}; the model has {name} = {value}.")
        return Sizes(V, E, D, H, M)

    def input_size(self, params: Params) -> int:
        """V (token ids) or E (vectors): what an input position holds."""
        sizes = self.sizes(params)
        return sizes.E if sizes.V is None else sizes.V

    def output_size(self, params: Params) -> int:
        """V, the size of each target step's scores (checks ``params``, as :meth:`sizes`)."""
        self.sizes(params)
        return int(jnp.shape(params["out"]["b"])[0])

    def init(self, key: Array, vocab_size: int, embed_size: int, dtype=jnp.float32) -> Params:
        """Random parameters (embeddings N(0, 1/E), the cells' and attention's own initialisations, Glorot
        mappings, zero biases) for a vocabulary of V = ``vocab_size`` ids embedded in E = ``embed_size``.

        Raises:
            ValueError: ``encoder_units`` or ``units`` (or additive ``attention_units``) not set.
        """
        if self.encoder_units is None or self.units is None:
            raise ValueError("Seq2Seq.init needs `encoder_units` and `units` (the state sizes).")
        V, E, H = vocab_size, embed_size, self.units
        M = self.combine_units or H
        D = self.encoder_units * (2 if self.bidirectional else 1)
        k = jax.random.split(key, 7)
        params = {} if not self.reads_ids else {
            "source_embedding": {"table": jax.random.normal(k[0], (V, E), dtype) / E ** 0.5},
            "target_embedding": {"table": jax.random.normal(k[1], (V, E), dtype) / E ** 0.5}}
        params.update(self.encoder.init(k[2], Spec(("input",), (E,), True), dtype))
        params["decoder"] = self.cell.init(k[3], E + (M if self.input_feeding else 0), H, dtype)
        params["attention"] = self.attention.init(k[4], H, D, dtype)
        params["combine"] = {"W_context": _glorot(k[5], (D, M), dtype), "W_state": _glorot(k[6], (H, M), dtype),
                             "b": jnp.zeros((M,), dtype)}
        params["out"] = {"W": _glorot(jax.random.fold_in(key, 1), (M, V), dtype), "b": jnp.zeros((V,), dtype)}
        return params

    # --- inputs --------------------------------------------------------------------------------------

    def check_mask(self, mask: Any) -> None:
        """A concrete mask (..., S + T) must mark a prefix of the source part and one of the target part,
        each with at least one valid step; traced masks are not checked.

        Raises:
            ValueError: naming the part and the row.
        """
        if isinstance(mask, jax.core.Tracer):
            return
        m = np.asarray(mask, bool)
        S = self.source_steps
        for part, name in ((m[..., :S], "source"), (m[..., S:], "target")):
            check_prefix(part, f"mask ({name} part)")
            empty = np.flatnonzero(~part.reshape(-1, part.shape[-1]).any(axis=1))
            if empty.size:
                raise ValueError(f"`mask` marks no valid {name} step (row {int(empty[0])}): every pair needs one.")

    def check_inputs(self, x: Any, mask: Any = None, E: int | None = None, dtype: Any = None) -> None:
        """Static checks of one packed pair and its mask.

        Raises:
            TypeError: ids that are not integers (or vectors that are), a mask that is not boolean.
            ValueError: fewer than S + 1 positions, ids outside the vocabulary, a bad mask.
        """
        shape = tuple(jnp.shape(x))
        if self.reads_ids:
            check_ids("x", x, E)
        else:
            if len(shape) != 2 or (E is not None and shape[1] != E):
                raise ValueError(f"`x` must be a packed pair of embedded vectors (S + T, E) with E = {E or 'E'}; "
                                 f"got shape {shape}.")
            if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
                raise TypeError(f"`x` must be floating point (embedded vectors); got dtype {jnp.result_type(x)}.")
        if shape[0] <= self.source_steps:
            raise ValueError(f"`x` must be a packed pair (S + T,) with S = {self.source_steps} source steps and T >= 1 "
                             f"target steps (Seq2Seq.pack); got {shape[0]} positions.")
        if mask is not None:
            if tuple(jnp.shape(mask)) != shape[:1]:
                raise ValueError(f"`mask` must have shape (S + T,) = ({shape[0]},) to match `x`; got {jnp.shape(mask)}.")
            if jnp.result_type(mask) != jnp.bool_:
                raise TypeError(f"`mask` must be boolean; got dtype {jnp.result_type(mask)}.")
            self.check_mask(mask)

    def output_mask(self, mask: Array) -> Array:
        """The valid output steps (..., T) of the valid input positions ``mask`` (..., S + T): the target part."""
        return mask[..., self.source_steps:]

    def pack(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
             target_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Packs pairs of id sequences into ``X`` (B, S + T) int32 and ``mask`` (B, S + T) bool: each source
        padded to S, each target (decoder input, BOS first) padded to T (the longest, or ``target_steps``).

        Raises:
            ValueError: different numbers of sources and targets, an empty sequence, a source longer than S or
                a target longer than ``target_steps``.
        """
        if len(sources) != len(targets) or not len(sources):
            raise ValueError(f"`sources` and `targets` must be non-empty lists of one length; got {len(sources)} and "
                             f"{len(targets)}.")
        S = self.source_steps
        T = max(len(t) for t in targets) if target_steps is None else target_steps
        X = np.zeros((len(sources), S + T), np.int32)
        mask = np.zeros((len(sources), S + T), bool)
        for b, (s, t) in enumerate(zip(sources, targets)):
            if not 1 <= len(s) <= S:
                raise ValueError(f"`sources[{b}]` must have 1 to S = {S} ids; got {len(s)}.")
            if not 1 <= len(t) <= T:
                raise ValueError(f"`targets[{b}]` must have 1 to T = {T} ids; got {len(t)}.")
            X[b, :len(s)], X[b, S:S + len(t)] = s, t
            mask[b, :len(s)], mask[b, S:S + len(t)] = True, True
        return X, mask

    # --- token ids -----------------------------------------------------------------------------------

    def embed(self, params: Params, ids: ArrayLike) -> Array:
        """The embedded vectors of packed ids (..., S + T) -> (..., S + T, E): the source part from the source
        table, the target part from the target table; what the methods explain."""
        if not self.reads_ids:
            raise TypeError("embed() is for a Seq2Seq that reads token ids; this one reads embedded vectors.")
        ids = jnp.asarray(ids)
        S = self.source_steps
        source = jnp.take(_table(params, "source_embedding"), ids[..., :S], axis=0)
        target = jnp.take(_table(params, "target_embedding"), ids[..., S:], axis=0)
        return jnp.concatenate([source, target], axis=-2)

    def vector_model(self, params: Params) -> tuple[Seq2Seq, Params]:
        """``(inner, inner_params)``: the same model reading embedded vectors (S + T, E), and its parameters
        without the tables."""
        if not self.reads_ids:
            raise TypeError("vector_model() is for a Seq2Seq that reads token ids; this one reads vectors already.")
        inner = dataclasses.replace(self, reads_ids=False)
        return inner, {k: v for k, v in params.items() if k not in ("source_embedding", "target_embedding")}

    # --- the model -----------------------------------------------------------------------------------

    def apply(self, params: Params, x: ArrayLike, rules: RuleSet | None = None, *, mask: ArrayLike | None = None,
              taps: Params | None = None) -> Array:
        """The scores (T, V) of the next target token at every target step (padded steps 0).

        Args:
            params: the parameters (module docstring).
            x: a packed pair (S + T,) of ids (embedded (S + T, E) with ``reads_ids=False``).
            rules: rule set (relevance backward; ``rules.at(part)``) or None (gradients).
            mask: valid positions (S + T,) bool (:meth:`pack`), or None: all valid.
            taps: zero probes from :meth:`zero_taps` (relevance at the initial states and encoder states).
        """
        sizes = self.sizes(params)
        x = x if hasattr(x, "dtype") else np.asarray(x)
        self.check_inputs(x, mask, sizes.V if self.reads_ids else sizes.E)
        x = self.embed(params, x) if self.reads_ids else jnp.asarray(x)
        mask = all_valid(x.shape[0]) if mask is None else jnp.asarray(mask)
        S = self.source_steps
        keys = self.encode(params, x[:S], mask[:S], rules, taps)
        return self._decode(params, keys, mask[:S], x[S:], mask[S:], rules, taps)

    def encode(self, params: Params, source: Array, source_mask: Array, rules: RuleSet | None = None,
               taps: Params | None = None) -> Array:
        """The encoder states (S, D) of embedded source steps (S, E); padded steps 0."""
        spec = Spec(("input",), (source.shape[-1],), True)
        return concat(self.encoder.apply(params, (source,), spec, source_mask, rules, taps))

    def _decode(self, params: Params, keys: Array, source_mask: Array, target: Array, target_mask: Array,
                rules: RuleSet | None, taps: Params | None) -> Array:
        """The decoder under teacher forcing over embedded target steps (T, E): scores (T, V)."""
        attention_rules = None if rules is None else rules.at("attention")
        prepared = self.attention.prepare(params["attention"], keys, attention_rules)
        carry0 = self._initial(params, target.dtype, taps)

        def step(carry, inputs):
            """``((state, h~_{t-1}), (e(y_t), m_t)) -> ((state', h~_t), o_t)``; padded steps keep the carry."""
            x_t, m_t = inputs
            new, hidden, scores = self.step(params, rules, carry, x_t, keys, prepared, source_mask)
            new = tuple(jnp.where(m_t, n, old) for n, old in zip(new, carry[0]))
            hidden = jnp.where(m_t, hidden, carry[1])
            return (new, hidden), jnp.where(m_t, scores, jnp.zeros((), scores.dtype))

        _, scores = lax.scan(step, carry0, (target, target_mask))
        return scores

    def _initial(self, params: Params, dtype, taps: Params | None) -> tuple:
        """The decoder's zero initial states and attentional state (with their probes)."""
        H, M = params["decoder"]["U"].shape[0], params["combine"]["b"].shape[0]
        zeros = {name: jnp.zeros((H,), dtype) for name in self.cell.state_names}
        zeros["feed"] = jnp.zeros((M,), dtype)
        if taps is not None:
            zeros = {k: v + taps["initial"]["decoder"][k] for k, v in zeros.items()}
        return tuple(zeros[name] for name in self.cell.state_names), zeros["feed"]

    def step(self, params: Params, rules: RuleSet | None, carry: tuple, x_t: Array, keys: Array, prepared: Array,
             source_mask: Array) -> tuple[tuple[Array, ...], Array, Array]:
        """One decoder step (module docstring, 1-4): ``(state, h~_{t-1}), e(y_t)`` -> ``(state', h~_t, o_t)``.

        Args:
            carry: the decoder cell's states (H,) each and the previous attentional state (M,).
            x_t: the embedded target token (E,).
            keys: the encoder states (S, D); ``prepared``: the attention's :meth:`CrossAttention.prepare`.
            source_mask: valid source steps (S,).
        """
        state, feed = carry
        r_dec, r_att, r_comb, r_out = (None if rules is None else rules.at(name)
                                       for name in ("decoder", "attention", "combine", "out"))
        x_in = jnp.concatenate([x_t, feed]) if self.input_feeding else x_t
        state = self.cell.step(params["decoder"], r_dec, state, x_in)
        h = state[0]
        context, _ = self.attention.context(params["attention"], h, keys, prepared, source_mask, r_att)
        comb = params["combine"]
        z = ops.linear(r_comb, (context, h), (comb["W_context"], comb["W_state"]), comb["b"])
        hidden = ops.activation(r_comb, ops.TANH, z)
        scores = ops.linear(r_out, (hidden,), (params["out"]["W"],), params["out"]["b"])
        return state, hidden, scores

    def weights(self, params: Params, x: ArrayLike, mask: ArrayLike | None = None) -> Array:
        """The attention weights (T, S) of every target step over the source steps (0 at padded ones and at
        padded target steps)."""
        sizes = self.sizes(params)
        x = x if hasattr(x, "dtype") else np.asarray(x)
        self.check_inputs(x, mask, sizes.V if self.reads_ids else sizes.E)
        return _weights(self, params, x, None if mask is None else jnp.asarray(mask))

    def zero_taps(self, params: Params, x: ArrayLike) -> Params:
        """Zero probes: ``{"initial": {encoder key: {...}, "decoder": {state names, "feed"}}, "states":
        {encoder key: {...}}}``; under ``Method.full`` their cotangents are the relevance at the initial
        states (the conservation residual counts it) and at the encoder's states."""
        sizes = self.sizes(params)
        dtype = jnp.result_type(x) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else params["out"]["W"].dtype
        spec = Spec(("input",), (sizes.E,), True)
        initial, states = self.encoder.zero_taps(params, spec, self.source_steps, dtype)
        initial["decoder"] = {name: jnp.zeros((sizes.H,), dtype) for name in self.cell.state_names}
        initial["decoder"]["feed"] = jnp.zeros((sizes.M,), dtype)
        return {"initial": initial, "states": states}

    # --- contextual decomposition --------------------------------------------------------------------

    def check_decomposable(self) -> None:
        """Raises TypeError when the cell has no Contextual Decomposition (only ``StandardCell`` has one;
        the GRU and the LRP-friendly cells are refused, as in :class:`~lrpjax.models.layers.Recurrent`)."""
        if not getattr(self.cell, "decomposable", False):
            raise TypeError(f"Contextual Decomposition cannot decompose this Seq2Seq: its cell {type(self.cell).__name__} "
                            f"(kind {self.cell.kind!r}) has no decomposition; it is defined for the standard LSTM "
                            "cell (StandardCell).")

    def output_shape(self, params: Params, positions: int) -> tuple[int, int]:
        """(T, V): the output's shape for a packed pair of ``positions`` = S + T positions (checks ``params``)."""
        self.sizes(params)
        return (positions - self.source_steps, int(jnp.shape(params["out"]["b"])[0]))

    def decompose(self, params: Params, x: Array, relevant: Array, mask: Array, bias_product: str = "gamma",
                  record: dict[str, dict[str, Array]] | None = None) -> tuple[Array, Array]:
        """Contextual Decomposition (Murdoch et al. 2018) of the packed pair ``x`` (S + T, E), embedded, for
        the relevant positions ``relevant`` (S + T,) bool: ``(beta, scores)``, the relevant part of the
        scores (T, V) and the true scores (the irrelevant part is their difference). Unchecked and
        traceable; :func:`lrpjax.methods.decomposition.decompose` is the checked entry.

        Each computation of the module docstring is split by the CD rule of its kind
        (:mod:`lrpjax.methods.decomposition`); every split is complete, so only ``beta`` is propagated and
        ``gamma`` = true - ``beta`` at every state:

        * the encoder is a :class:`~lrpjax.models.layers.Recurrent` layer over the source part and is
          decomposed as one (``Recurrent.decompose``: the relevant positions among the S source steps,
          each direction in its reading order): the keys' relevant parts ``beta_k_s`` (S, D);
        * the decoder cell (1.) is decomposed step by step (``StandardCell.decompose_step``) on the true
          step's records; its input ``[e(y_t); h~_{t-1}]`` has the relevant part ``[e(y_t) if target position
          t is relevant, else 0; beta_h~_{t-1}]`` (the fed attentional state's relevant part with input
          feeding); the bias-bias product of step t is relevant as ``bias_product`` says, over the target
          positions in reading order;
        * the attention (2.) weighs by ``alpha_ts`` computed from the TRUE decoder state and keys (the weights
          act as gates, as in ``AttentionPool.decompose``): ``beta_c_t = sum_s alpha_ts beta_k_s``
          (:meth:`CrossAttention.decompose`);
        * the combine mapping (3.) is linear in its two inputs, ``beta_z = beta_c W_c + beta_h W_h``, its bias
          irrelevant; the ``tanh`` is linearised with the bias first (:func:`~lrpjax.core.cells.linearise`):
          ``beta_h~ = [tanh(beta_z + b_c) - tanh(b_c) + h~ - tanh(z - beta_z)] / 2``;
        * the output mapping (4.) is linear: ``beta_o = beta_h~ W_o``, the bias ``b_o`` irrelevant.

        Args:
            params: the parameters (the embedding tables, if any, are not read).
            x: the embedded packed pair (S + T, E).
            relevant: the relevant positions (S + T,) bool (only valid ones count).
            mask: the valid positions (S + T,) bool.
            bias_product: where a relevant step's bias-bias product goes (``decomposition.BIAS_PRODUCTS``).
            record: None, or ``{"beta_y": {}, "gamma_y": {}, "beta_c": {}, "gamma_c": {}}`` to receive the
                parts of every state: the encoder directions' ``y`` and ``c`` (S, H_enc) under their keys (as
                a Recurrent layer records them), the decoder's ``y`` and ``c`` (T, H) under ``"decoder"`` and,
                under ``beta_y``/``gamma_y`` only, the contexts (T, D) under ``"attention"`` and the
                attentional states (T, M) under ``"combine"``. At padded target steps the decoder's states
                and attentional state repeat the last valid ones; the contexts and scores are 0.
        """
        record = {"beta_y": {}, "gamma_y": {}, "beta_c": {}, "gamma_c": {}} if record is None else record
        S = self.source_steps
        relevant = relevant & mask
        zero = jnp.zeros((), x.dtype)
        source = x[:S]
        spec = Spec(("input",), (x.shape[-1],), True)
        beta_states, states = self.encoder.decompose(params, spec, (jnp.where(relevant[:S, None], source, zero),),
                                                     (source,), mask[:S], relevant[:S], bias_product, True, record)
        beta_keys, keys = concat(beta_states), concat(states)
        prepared = self.attention.prepare(params["attention"], keys, None)
        carry0 = self._initial(params, x.dtype, None)
        beta0 = jax.tree_util.tree_map(jnp.zeros_like, carry0)
        bias_steps = _bias_steps(relevant[S:], bias_product)

        def step(carry, inputs):
            """``((carry, beta), inputs_t) -> ((carry', beta'), parts_t)``; a padded step keeps both."""
            x_t, relevant_t, bias_t, m_t = inputs
            new, new_beta, parts = self.decompose_step(params, carry[0], carry[1], x_t, relevant_t, bias_t, keys,
                                                       beta_keys, prepared, mask[:S])
            new, new_beta = (jax.tree_util.tree_map(lambda n, o: jnp.where(m_t, n, o), n_, o_)
                             for n_, o_ in ((new, carry[0]), (new_beta, carry[1])))
            parts = {k: jnp.where(m_t, v, jnp.zeros((), v.dtype)) for k, v in parts.items()}
            parts.update(zip(("y", "c"), new[0]), hidden=new[1])
            parts.update(zip(("beta_y", "beta_c"), new_beta[0]), beta_hidden=new_beta[1])
            return (new, new_beta), parts

        _, parts = lax.scan(step, (carry0, beta0), (x[S:], relevant[S:], bias_steps, mask[S:]))
        for name in self.cell.state_names:
            record[f"beta_{name}"]["decoder"] = parts[f"beta_{name}"]
            record[f"gamma_{name}"]["decoder"] = parts[name] - parts[f"beta_{name}"]
        for key, part in (("attention", "context"), ("combine", "hidden")):
            record["beta_y"][key] = parts[f"beta_{part}"]
            record["gamma_y"][key] = parts[part] - parts[f"beta_{part}"]
        return parts["beta_scores"], parts["scores"]

    def decompose_step(self, params: Params, carry: tuple, beta: tuple, x_t: Array, relevant_t: Array,
                       bias_t: Array, keys: Array, beta_keys: Array, prepared: Array,
                       source_mask: Array) -> tuple[tuple, tuple, dict[str, Array]]:
        """One decoder step of :meth:`step` and its Contextual Decomposition (:meth:`decompose`).

        Args:
            carry: the true ``(state, h~_{t-1})`` (as :meth:`step`); ``beta`` their relevant parts.
            x_t: the embedded target token (E,); ``relevant_t`` whether its position is relevant.
            bias_t: whether the decoder cell's bias-bias product is relevant at this step.
            keys, beta_keys: the encoder states (S, D) and their relevant parts; ``prepared``:
                :meth:`CrossAttention.prepare` of the keys; ``source_mask`` the valid source steps (S,).

        Returns:
            ``(carry', beta', parts)``: the true and relevant new carries, and ``parts`` with the true and
            relevant context (``"context"``, ``"beta_context"``, (D,)) and scores (``"scores"``,
            ``"beta_scores"``, (V,)).
        """
        (state, feed), (beta_state, beta_feed) = carry, beta
        decoder, comb, out = params["decoder"], params["combine"], params["out"]
        x_rel = jnp.where(relevant_t, x_t, jnp.zeros((), x_t.dtype))
        x_in, x_rel_in = ((jnp.concatenate([x_t, feed]), jnp.concatenate([x_rel, beta_feed])) if self.input_feeding
                          else (x_t, x_rel))
        state, step_record = self.cell.step_record(decoder, None, state, x_in)
        beta_state = self.cell.decompose_step(decoder, beta_state, x_rel_in @ decoder["W"], step_record, state[1],
                                              bias_t)
        h, beta_h = state[0], beta_state[0]
        beta_context, context, _ = self.attention.decompose(params["attention"], h, keys, beta_keys, prepared,
                                                            source_mask)
        z = ops.linear(None, (context, h), (comb["W_context"], comb["W_state"]), comb["b"])
        hidden = ops.activation(None, ops.TANH, z)
        beta_z = beta_context @ comb["W_context"] + beta_h @ comb["W_state"]
        beta_hidden = linearise(beta_z, z - beta_z, comb["b"], hidden, ops.TANH)
        scores = ops.linear(None, (hidden,), (out["W"],), out["b"])
        parts = {"context": context, "beta_context": beta_context, "scores": scores,
                 "beta_scores": beta_hidden @ out["W"]}
        return (state, hidden), (beta_state, beta_hidden), parts

    # --- decoding ------------------------------------------------------------------------------------

    def greedy(self, params: Params, source: ArrayLike, bos: int, steps: int) -> Array:
        """Greedy decoding of one source (L,) ids (L <= S): ``steps`` tokens, each the argmax of the scores
        given the tokens before it, starting from ``bos``. Returns (steps,) int32.

        Raises:
            TypeError: a model that reads vectors.
            ValueError: a bad source, ``bos`` or ``steps``.
        """
        padded, source_mask, _ = self._decoding("greedy", params, source, bos, steps)
        return _greedy(self, params, padded, source_mask, int(bos), steps)

    def beam(self, params: Params, source: ArrayLike, bos: int, steps: int, width: int, eos: int | None = None,
             length_penalty: float = 0.0) -> tuple[Array, Array]:
        """Beam search over one source (L,) ids (L <= S): the ``width`` best continuations of ``bos`` found
        by keeping, after every step, the ``width`` best of all one-token extensions of the kept hypotheses.

        A hypothesis's log-probability is the sum of its tokens' ``log softmax`` of the scores (the model
        reads its own earlier tokens, as in :meth:`greedy`). Hypotheses are ranked by
        ``log p / n ** length_penalty``, n their length (tokens up to and including ``eos``; Wu et al.
        2016's normalisation in its simple form; 0, the default, ranks by ``log p``). A hypothesis that
        emits ``eos`` is finished: it keeps its log-probability and length and is continued by ``eos``
        only. Ties go to the lower (hypothesis, token) index; ``width = 1`` is :meth:`greedy` (up to
        ``eos``). Compiled once per model, ``steps``, ``width``, ``eos`` and ``length_penalty``.

        Args:
            params: the parameters.
            source: the source ids (L,), 1 <= L <= S.
            bos: the first decoder input.
            steps: the number of tokens decoded.
            width: the beam width, 1 <= width <= V.
            eos: the end-of-sequence id, or None (every hypothesis has ``steps`` tokens).
            length_penalty: the exponent of the length normalisation (a finite number).

        Returns:
            ``(tokens, log_prob)``: (width, steps) int32 and (width,), best first.

        Raises:
            TypeError: a model that reads vectors.
            ValueError: a bad source, ``bos``, ``steps``, ``width``, ``eos`` or ``length_penalty``, named.
        """
        padded, source_mask, V = self._decoding("beam", params, source, bos, steps)
        if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or not 1 <= width <= V:
            raise ValueError(f"`width` must be an int in [1, V] = [1, {V}]; got {width!r}.")
        if eos is not None and (not isinstance(eos, (int, np.integer)) or isinstance(eos, bool) or not 0 <= eos < V):
            raise ValueError(f"`eos` must be None or a token id in [0, {V}); got {eos!r}.")
        if not isinstance(length_penalty, (int, float, np.floating, np.integer)) or isinstance(length_penalty, bool) \
                or not np.isfinite(length_penalty):
            raise ValueError(f"`length_penalty` must be a finite number; got {length_penalty!r}.")
        return _beam(self, params, padded, source_mask, int(bos), steps, int(width), None if eos is None else int(eos),
                     float(length_penalty))

    def _decoding(self, caller: str, params: Params, source: ArrayLike, bos: int, steps: int
                  ) -> tuple[Array, Array, int]:
        """Checks a decoding call's source, ``bos`` and ``steps``: ``(padded source (S,), its mask, V)``."""
        if not self.reads_ids:
            raise TypeError(f"{caller}() decodes token ids; this Seq2Seq reads embedded vectors.")
        V = self.input_size(params)
        source = np.asarray(source)
        if source.ndim == 1 and source.size == 0:
            raise ValueError(f"`source` must have 1 to S = {self.source_steps} ids; got none.")
        check_ids("source", source, V)
        if len(source) > self.source_steps:
            raise ValueError(f"`source` must have 1 to S = {self.source_steps} ids; got {len(source)}.")
        if not isinstance(bos, (int, np.integer)) or isinstance(bos, bool) or not 0 <= bos < V:
            raise ValueError(f"`bos` must be a token id in [0, {V}); got {bos!r}.")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"`steps` must be a positive int; got {steps!r}.")
        padded = np.zeros((self.source_steps,), np.int32)
        padded[:len(source)] = source
        return jnp.asarray(padded), jnp.arange(self.source_steps) < len(source), V

    # --- datasets ------------------------------------------------------------------------------------

    def dataset_layout(self) -> Any:
        """What an item of a dataset is for this model, and how :mod:`lrpjax.datasets` packs it: a pair
        ``(source (S_i, E), target (T_i, E))`` of embedded vectors (1 <= S_i <= S), bucketed by T_i and
        packed as :meth:`pack` packs ids (source padded to S, target padded to the bucket length L);
        relevance cropped to (T_i, S_i + T_i[, E]), source positions first
        (:class:`lrpjax.datasets.layouts.Pairs`).

        Raises:
            TypeError: a Seq2Seq that reads token ids (datasets take the embedded pairs of
                :meth:`vector_model`).
        """
        if self.reads_ids:
            raise TypeError("datasets of pairs take embedded vectors: explain `inner.apply` of `inner, inner_params "
                            "= model.vector_model(params)` with pairs of vectors (the rows of params['source_embedding']"
                            "['table'] and params['target_embedding']['table'] for each part's ids); this Seq2Seq "
                            "reads token ids.")
        from lrpjax.datasets.layouts import Pairs   # the datasets build on the models: imported when asked

        return Pairs(self.source_steps)

    # --- description ---------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """A JSON-able description (:meth:`from_config` inverts it)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["cell"] = {"kind": self.cell.kind, **dataclasses.asdict(self.cell)}
        return {"type": "seq2seq", **fields}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Seq2Seq:
        """The model of :meth:`config`.

        Raises:
            ValueError: not a Seq2Seq description, or an unknown cell kind.
        """
        if not isinstance(config, dict) or config.get("type") != "seq2seq":
            raise ValueError(f"`config` must describe a Seq2Seq (type 'seq2seq'); got {config!r}.")
        fields = {k: v for k, v in config.items() if k != "type"}
        cell = dict(fields.pop("cell", {"kind": "standard"}))
        kind = cell.pop("kind", None)
        if kind not in CELLS:
            raise ValueError(f"unknown cell kind {kind!r}; known: {sorted(CELLS)}.")
        return cls(cell=CELLS[kind](**cell), **fields)


@partial(jax.jit, static_argnums=(0,))
def _weights(model: Seq2Seq, params: Params, x: Array, mask: Array | None) -> Array:
    x = model.embed(params, x) if model.reads_ids else x
    mask = jnp.ones((x.shape[0],), bool) if mask is None else mask
    S = model.source_steps
    keys = model.encode(params, x[:S], mask[:S])
    prepared = model.attention.prepare(params["attention"], keys, None)
    carry0 = model._initial(params, x.dtype, None)

    def step(carry, inputs):
        """``(carry, (e(y_t), m_t)) -> (carry', alpha_t)``."""
        x_t, m_t = inputs
        state, hidden, _ = model.step(params, None, carry, x_t, keys, prepared, mask[:S])
        alpha = model.attention.context(params["attention"], state[0], keys, prepared, mask[:S], None)[1]
        state = tuple(jnp.where(m_t, n, o) for n, o in zip(state, carry[0]))
        return (state, jnp.where(m_t, hidden, carry[1])), jnp.where(m_t, alpha, jnp.zeros((), alpha.dtype))

    return lax.scan(step, carry0, (x[S:], mask[S:]))[1]


@partial(jax.jit, static_argnums=(0, 4, 5))
def _greedy(model: Seq2Seq, params: Params, source: Array, source_mask: Array, bos: int, steps: int) -> Array:
    table = params["target_embedding"]["table"]
    keys = model.encode(params, jnp.take(params["source_embedding"]["table"], source, axis=0), source_mask)
    prepared = model.attention.prepare(params["attention"], keys, None)

    def step(carry, _):
        """``(carry, token) -> ((carry', next token), next token)``."""
        decoder, token = carry
        state, hidden, scores = model.step(params, None, decoder, table[token], keys, prepared, source_mask)
        token = jnp.argmax(scores).astype(jnp.int32)
        return ((state, hidden), token), token

    carry0 = (model._initial(params, table.dtype, None), jnp.int32(bos))
    return lax.scan(step, carry0, None, length=steps)[1]


@partial(jax.jit, static_argnums=(0, 4, 5, 6, 7, 8))
def _beam(model: Seq2Seq, params: Params, source: Array, source_mask: Array, bos: int, steps: int, width: int,
          eos: int | None, alpha: float) -> tuple[Array, Array]:
    table = params["target_embedding"]["table"]
    keys = model.encode(params, jnp.take(params["source_embedding"]["table"], source, axis=0), source_mask)
    prepared = model.attention.prepare(params["attention"], keys, None)
    V = table.shape[0]
    dtype = table.dtype
    decoder = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (width,) + a.shape),
                                     model._initial(params, dtype, None))
    step_all = jax.vmap(lambda carry, token: model.step(params, None, carry, table[token], keys, prepared,
                                                        source_mask))
    ninf = jnp.array(-jnp.inf, dtype)
    # only the first hypothesis is live before the first step: the others would repeat it
    log_p0 = jnp.where(jnp.arange(width) == 0, jnp.zeros((), dtype), ninf)
    carry0 = (decoder, jnp.full((width,), bos, jnp.int32), jnp.zeros((width, steps), jnp.int32), log_p0,
              jnp.zeros((width,), bool), jnp.zeros((width,), jnp.int32))

    def step(carry, t):
        """Extends every hypothesis by every token and keeps the ``width`` best."""
        decoder, last, tokens, log_p, done, length = carry
        state, hidden, scores = step_all(decoder, last)
        log_q = jax.nn.log_softmax(scores, axis=-1)
        if eos is None:
            extended = log_p[:, None] + log_q
            lengths = jnp.full((width, V), t + 1, jnp.int32)
        else:
            # a finished hypothesis continues by eos alone, its log-probability and length unchanged
            only_eos = jnp.where(jnp.arange(V) == eos, jnp.zeros((), dtype), ninf)
            extended = log_p[:, None] + jnp.where(done[:, None], only_eos, log_q)
            lengths = jnp.where(done[:, None], length[:, None], t + 1) + jnp.zeros((1, V), jnp.int32)
        rank = extended if alpha == 0.0 else extended / lengths.astype(dtype) ** alpha
        _, best = lax.top_k(rank.reshape(-1), width)
        parent, token = best // V, (best % V).astype(jnp.int32)
        decoder = jax.tree_util.tree_map(lambda a: a[parent], (state, hidden))
        tokens = tokens[parent].at[:, t].set(token)
        log_p = extended.reshape(-1)[best]
        length = lengths.reshape(-1)[best]
        done = done[parent] | (token == eos) if eos is not None else done
        return (decoder, token, tokens, log_p, done, length), None

    (_, _, tokens, log_p, _, _), _ = lax.scan(step, carry0, jnp.arange(steps, dtype=jnp.int32))
    return tokens, log_p


def _table(params: Params, key: str) -> Array:
    table = _entry(params, key, "table")
    if len(jnp.shape(table)) != 2:
        raise ValueError(f"`params[{key!r}]['table']` must have shape (V, E); got {tuple(jnp.shape(table))}.")
    return table


def _entry(params: Params, key: str, leaf: str) -> Any:
    layer = params.get(key) if isinstance(params, dict) else None
    if not isinstance(layer, dict) or leaf not in layer:
        raise ValueError(f"`params[{key!r}]` must be a dict with {leaf!r}.")
    return layer[leaf]


def _glorot(key: Array, shape: tuple[int, int], dtype) -> Array:
    bound = (6.0 / (shape[0] + shape[1])) ** 0.5
    return jax.random.uniform(key, shape, dtype, -bound, bound)
