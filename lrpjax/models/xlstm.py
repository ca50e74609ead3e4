"""xLSTM blocks as layers: the residual pre-norm blocks of the ``xlstm`` package (Beck et al., NeurIPS 2024).

* :class:`MLSTMBlock` -- ``x + down(SiLU(z) * (GN(mLSTM(q, k, v)) + skip * a))`` with ``a = SiLU(conv(u))``,
  ``(u, z) = up(LN(x))``, ``q, k`` head-wise projections of ``a``, ``v`` of ``u``; the mLSTM cell of
  :mod:`lrpjax.core.xlstm` (parallel form for the forward pass and gradients, recurrent form under rules);
* :class:`SLSTMBlock` -- ``x + GN(sLSTM(i, f from SiLU(conv(LN(x))); z, o from LN(x)))``, then the gated
  feed-forward ``x + down(act(g) * u)``, ``(g, u) = up(LN(x))``;
* :class:`LayerNorm` -- the stack's post-blocks norm.

A stack is a :class:`~lrpjax.models.Sequential` of these (an :class:`~lrpjax.models.embedding.Embedding`
first for token ids, a :class:`~lrpjax.models.Dense` head last); :func:`xlstm_stack` builds one.

Relevance, derived from the elementary computations (:mod:`lrpjax.core.ops`, :mod:`lrpjax.core.xlstm`):
projections, head-wise projections and the causal convolution are linear mappings (``rules.linear``);
SiLU after the convolution is an element-wise activation (passes relevance); the output gate
``SiLU(z) * h`` and the feed-forward's ``act(g) * u`` are gated interactions (``rules.gate``: under
signal-take-all all to ``h`` and ``u``); the residual sums and ``GN(h̃) + skip * a`` are accumulations
(``rules.accumulate``); norms treat their denominator as a constant and the learnable skip is a constant
scale (both pass relevance unchanged, :func:`lrpjax.core.xlstm.scale`). Conservation holds with
``share=True``; with ``share=False`` the biases and stabilisers absorb the residual ``.full()`` reports.

:func:`xlstm_lrp` is the xLSTM analogue of MambaLRP's rules (:func:`lrpjax.models.mamba.mamba_lrp`): the
cells' gates, query and key get nothing, the blocks' gated interactions split half and half.

Parameters of the package's layers map one to one (:mod:`lrpjax.interop.xlstm` imports them); a norm's
``scale`` is the effective weight (the package's ``1 + weight``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from lrpjax._types import Array, Params
from lrpjax.core import ops
from lrpjax.core.cells import unroll, zero_layer_taps
from lrpjax.core.rules import Epsilon, Gate, RuleSet
from lrpjax.core.xlstm import GELU, FORGET_GATES, SLSTMCell, XLSTMRuleSet, block_diagonal, group_norm, \
    mlstm_parallel, mlstm_recurrent, scale
from lrpjax.models.conv import conv1d
from lrpjax.models.layers import Dense, Pool, Spec, _check_name, _Named, concat, register_layer
from lrpjax.models.sequential import Sequential

__all__ = ["MLSTMBlock", "SLSTMBlock", "LayerNorm", "FFN_ACTIVATIONS", "xlstm_stack", "xlstm_lrp"]

FFN_ACTIVATIONS = {"gelu": GELU, "swish": ops.SILU, "relu": ops.RELU, "sigmoid": ops.SIGMOID}
"""The feed-forward gate activations (the package's names)."""

NORM_EPS = 1e-5
"""The variance stabiliser of the package's layer and group norms."""


# --- the preset ------------------------------------------------------------------------------------------

def xlstm_lrp(eps: float = 0.0, share: bool = False) -> XLSTMRuleSet:
    """The xLSTM analogue of MambaLRP's rules (Jafari et al., NeurIPS 2024; :func:`~lrpjax.models.mamba.mamba_lrp`).

    Derived from the elementary computations as MambaLRP derives its rules for Mamba:

    * **Gates get no relevance** (signal-take-all, Table 11.1, ``cell_gate = Gate("all")``): inside the
      cells the exponential input gate ``exp(ĩ - m)``, the forget gate, the sLSTM's output gate
      ``sigmoid(õ)`` and the mLSTM's query and key. Query and key are to the mLSTM what C and B are to
      Mamba's scan (``h̃_t = sum_s (q_t · k_s) D_ts v_s / normaliser``, ``y_t = sum_s C_t B_s ... x_s``):
      they decide what is written and read, and MambaLRP detaches them; given them (and the gates) the
      memory is linear in the values ``v``, which receive all the relevance.
    * **Normaliser and stabiliser are constants**: ``c_t / n_t`` and the mLSTM's division by
      ``max(|n_tᵀ q_t|, exp(-m_t))`` pass relevance unchanged; ``n`` and ``m`` get none (as in every preset,
      :mod:`lrpjax.core.xlstm`). So do the layer and group norms' standard deviations (MambaLRP's and
      AttnLRP's rule for norms), and SiLU's sigmoid after the convolution (an activation).
    * **The blocks' gated interactions split half and half** (``gate = Gate("half")``): the mLSTM block's
      ``SiLU(z) * (GN(h̃) + skip * a)`` and the sLSTM block's feed-forward ``act(g) * u`` multiply two
      projections of the same normalised input, both information: AttnLRP's uniform rule, which MambaLRP
      applies to Mamba's ``y * SiLU(z)``.
    * **Linear mappings and accumulations take epsilon** (``eps = 0``: the z-rule, MambaLRP's choice): the
      projections, the causal convolution, the gate pre-activations, the state sums ``f C + i v kᵀ``, the
      read-out's sum over key units, the residuals and ``GN(h̃) + skip * a``.

    On a model without blocks (a ``Recurrent(SLSTMCell(...))`` read at its last step) there is no block gate,
    and the rule set is LRP-all (``preset("lrp-all", eps, share)``) exactly.

    Conservation: with ``share=True`` every rule above conserves (epsilon spreads the biases' and
    stabilisers' shares over its inputs; signal-take-all and the half rule conserve by construction), so a
    block's input relevance (with the mLSTM's initial memory) sums to its output relevance. With
    ``share=False`` the biases that carry relevance absorb their share, what ``.full()`` reports as the
    residual: the convolution's bias, the sLSTM cell's bias of ``z̃``, the projections' biases (``bias=True``);
    the gate biases carry none, their pre-activations get no relevance. With ``eps > 0`` the stabilisers
    absorb too.

    Args:
        eps: the stabiliser of linear mappings and accumulations (0: the z-rule).
        share: spread the biases' and stabilisers' shares over the inputs (exact conservation).

    Returns:
        an :class:`~lrpjax.core.xlstm.XLSTMRuleSet` (a ``RuleSet``; usable as ``composite``'s default).
    """
    linear = Epsilon(eps, share)
    return XLSTMRuleSet(linear=linear, gate=Gate("half", eps, share), accumulate=linear,
                        cell_gate=Gate("all", eps, share))


# --- helpers ----------------------------------------------------------------------------------------------

def _positive_int(layer: str, field: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{field}` of {layer} must be an int >= {minimum}; got {value!r}.")


def _shape(params: Params, path: tuple[str, ...], expected: tuple[int, ...], where: str) -> None:
    node: Any = params
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"`{where}` is missing {'/'.join(path)!r} (shape {expected}).")
        node = node[key]
    got = tuple(jnp.shape(node))
    if got != expected:
        raise ValueError(f"`{where}[{']['.join(repr(k) for k in path)}]` must have shape {expected}; got {got}.")


def _norm(rules: RuleSet | None, x: Array, weight: Array, groups: int = 1) -> Array:
    """Layer (or group) norm of every step of ``x`` (T, D)."""
    return jax.vmap(lambda x_t: group_norm(rules, x_t, weight, groups, NORM_EPS))(x)


def _dense(rules: RuleSet | None, xs: tuple[Array, ...], Ws: tuple[Array, ...], b: Array | None) -> Array:
    """One linear mapping at every step: inputs (T, D_k), weights (D_k, M) -> (T, M)."""
    return jax.vmap(lambda *x_t: ops.linear(rules, x_t, Ws, b))(*xs)


def _headwise(rules: RuleSet | None, x: Array, layer: Params) -> Array:
    """The package's ``LinearHeadwiseExpand``: block ``W[h]`` (DI, DO) on head h's units, (T, NH DI) -> (T, NH DO)."""
    return _dense(rules, (x,), (block_diagonal(layer["W"]),), layer.get("b"))


def _zero_padding(x: Array, mask: Array | None) -> Array:
    return x if mask is None else jnp.where(mask[:, None], x, jnp.zeros((), x.dtype))


def _normal(key: Array, shape: tuple[int, ...], dim: int, dtype) -> Array:
    """The package's small init: normal with std sqrt(2 / (5 dim))."""
    return jax.random.normal(key, shape, dtype) * (2.0 / (5.0 * dim)) ** 0.5


def _draw(shapes: dict[tuple[str, ...], tuple[int, ...]], D: int, K: int, dtype: Any, key: Array,
          ones: tuple[str, ...]) -> dict[str, Any]:
    """Parameters of the given paths and shapes: ones for norm weights and skips (``ones``), zeros for biases,
    uniform(+-1/sqrt(K)) convolution kernels, the small init elsewhere; two random draws in all."""
    normal = [p for p in shapes if p[-1] not in ones + ("b",) and p != ("conv", "W")]
    k_n, k_u = jax.random.split(key)
    noise = _normal(k_n, (sum(math.prod(shapes[p]) for p in normal),), D, dtype)
    layer: dict[str, Any] = {}
    offset = 0
    for path, shape in shapes.items():
        if path[-1] in ones:
            value = jnp.ones(shape, dtype)
        elif path[-1] == "b":
            value = jnp.zeros(shape, dtype)
        elif path == ("conv", "W"):
            value = jax.random.uniform(k_u, shape, dtype, -1.0, 1.0) / K ** 0.5
        else:
            size = math.prod(shape)
            value = noise[offset:offset + size].reshape(shape)
            offset += size
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return layer


def _compiled_init(block: Any, D: int, dtype: Any):
    """The block's ``_init_layer(D, dtype, key)`` as one compiled program (one compilation instead of one
    per random draw)."""
    return jax.jit(lambda key: block._init_layer(D, dtype, key))


class _Block(_Named):
    """What both blocks share: a sequence in, a sequence of the same size out, a probe on the input."""

    name: str | None
    needs_sequence: ClassVar[bool] = True
    default_output: ClassVar[bool] = False

    def sequence_output(self, sequence_input: bool) -> bool:
        """A sequence: one output per step."""
        return True

    def keys(self) -> tuple[str, ...]:
        return (self.label,)

    def rule_names(self) -> tuple[str, ...]:
        return (self.label,)

    def input_size(self, params: Params) -> int:
        """D, read off the pre-norm's scale."""
        layer = params.get(self.label) if isinstance(params, dict) else None
        if not isinstance(layer, dict) or not isinstance(layer.get("norm"), dict) or "scale" not in layer["norm"]:
            raise ValueError(f"`params[{self.label!r}]` must be a dict with 'norm': {{'scale': (D,)}}.")
        return int(jnp.shape(layer["norm"]["scale"])[0])

    def _input(self, params: Params, spec: Spec) -> Params:
        if not spec.sequence:
            raise ValueError(f"layer {self.label!r} ({type(self).__name__}) needs a sequence input; the layer before "
                             "it outputs a vector.")
        if not isinstance(params, dict) or not isinstance(params.get(self.label), dict):
            raise ValueError(f"`params` must have key {self.label!r} (layer {self.label!r}), a dict of arrays.")
        return params[self.label]

    def _read(self, params: Params, parts: tuple[Array, ...], rules: RuleSet | None, taps: Params | None):
        x = concat(parts)
        if taps is not None:
            x = x + taps["states"][self.label]["input"]
        return params[self.label], x, None if rules is None else rules.at(self.label)


# --- the mLSTM block -------------------------------------------------------------------------------------

@register_layer
@dataclass(frozen=True)
class MLSTMBlock(_Block):
    """The package's mLSTM block (``mLSTMBlock`` = pre-norm ``mLSTMLayer`` + residual), per step t::

        (u, z) = LN(x) W_up (+ b)              up-projection to 2 I units
        a = SiLU(causal depthwise conv(u))     kernel K
        q, k = headwise(a), v = headwise(u)    blocks of ``qkv_blocksize`` units
        ĩ, f̃ = [q, k, v] W_i + b_i, [q, k, v] W_f + b_f     (NH each)
        h̃ = mLSTM(q, k, v, ĩ, f̃)             NH heads of I / NH units
        y = x + (SiLU(z) * (GN(h̃) + skip * a)) W_down (+ b)

    Parameters ``params[name]``: ``norm/scale (D,)``, ``proj_up/W (D, 2I)``, ``conv/W (K, I)``, ``conv/b (I,)``,
    ``q/W``, ``k/W``, ``v/W`` ``(I / bs, bs, bs)``, ``igate/W``, ``fgate/W`` ``(3I, NH)`` with ``/b (NH,)``,
    ``outnorm/scale (I,)``, ``skip (I,)``, ``proj_down/W (I, D)``; with ``bias`` also ``proj_up/b (2I,)``,
    ``q/b``, ``k/b``, ``v/b`` ``(I,)``, ``proj_down/b (D,)``.

    Attributes:
        heads: NH, the mLSTM's heads.
        inner: I, the up-projection's size (needed by :meth:`init`; read off the parameters otherwise).
        conv_kernel: K >= 1.
        qkv_blocksize: the head-wise projections' block size (dividing I).
        bias: the projections have biases (the package's ``bias``).
        parallel: run the mLSTM in its parallel form when no rules are given (the recurrent form
            otherwise; both give the same result to rounding).
        name: the layer's name (None: ``"mlstm_k"``).
    """

    heads: int = 4
    inner: int | None = None
    conv_kernel: int = 4
    qkv_blocksize: int = 4
    bias: bool = False
    parallel: bool = True
    name: str | None = None

    kind: ClassVar[str] = "mlstm_block"
    default_name: ClassVar[str] = "mlstm"

    def __post_init__(self):
        _positive_int("MLSTMBlock", "heads", self.heads)
        if self.inner is not None:
            _positive_int("MLSTMBlock", "inner", self.inner)
        _positive_int("MLSTMBlock", "conv_kernel", self.conv_kernel)
        _positive_int("MLSTMBlock", "qkv_blocksize", self.qkv_blocksize)
        for field in ("bias", "parallel"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"`{field}` of MLSTMBlock must be a bool; got {type(getattr(self, field)).__name__}.")
        _check_name("MLSTMBlock", self.name)

    def describe(self) -> str:
        """``MLSTMBlock(heads=NH, conv=K)``."""
        return f"MLSTMBlock(heads={self.heads}, conv={self.conv_kernel}{', bias' if self.bias else ''})"

    def _shapes(self, D: int, I: int) -> dict[tuple[str, ...], tuple[int, ...]]:
        bs, NH = self.qkv_blocksize, self.heads
        shapes = {("norm", "scale"): (D,), ("proj_up", "W"): (D, 2 * I), ("conv", "W"): (self.conv_kernel, I),
                  ("conv", "b"): (I,), ("q", "W"): (I // bs, bs, bs), ("k", "W"): (I // bs, bs, bs),
                  ("v", "W"): (I // bs, bs, bs), ("igate", "W"): (3 * I, NH), ("igate", "b"): (NH,),
                  ("fgate", "W"): (3 * I, NH), ("fgate", "b"): (NH,), ("outnorm", "scale"): (I,), ("skip",): (I,),
                  ("proj_down", "W"): (I, D)}
        if self.bias:
            shapes.update({("proj_up", "b"): (2 * I,), ("q", "b"): (I,), ("k", "b"): (I,), ("v", "b"): (I,),
                           ("proj_down", "b"): (D,)})
        return shapes

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]`` against the input ``spec``; the output has the input's size.

        Raises:
            ValueError: a vector input, a missing parameter, a shape that does not fit, or an inner size
                that ``heads`` and ``qkv_blocksize`` do not divide.
        """
        layer = self._input(params, spec)
        D = spec.size
        up = layer.get("proj_up", {}).get("W") if isinstance(layer.get("proj_up"), dict) else None
        if up is None or len(jnp.shape(up)) != 2:
            raise ValueError(f"`params[{self.label!r}]['proj_up']['W']` must have shape (D, 2I) = ({D}, 2I).")
        I = int(jnp.shape(up)[1]) // 2
        if I % self.heads or I % self.qkv_blocksize:
            raise ValueError(f"layer {self.label!r}: the inner size I = {I} must be a multiple of heads = {self.heads} "
                             f"and of qkv_blocksize = {self.qkv_blocksize}.")
        if self.inner is not None and I != self.inner:
            raise ValueError(f"`params[{self.label!r}]['proj_up']['W']` has I = {I}; layer {self.label!r} has "
                             f"inner = {self.inner}.")
        for path, shape in self._shapes(D, I).items():
            _shape(layer, path, shape, f"params[{self.label!r}]")
        return Spec((self.label,), (D,), True)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """The package's initialisation: small-init projections, forget biases linearly in [3, 6], input
        gate biases normal(0, 0.1), unit norm weights and skip; but gate weights small and random (the
        package starts them at 0), so that gradients reach them from the first step too."""
        return {self.label: _compiled_init(self, spec.size, jnp.dtype(dtype))(key)}

    def _init_layer(self, D: int, dtype: Any, key: Array) -> Params:
        I = self.inner if self.inner is not None else 2 * D
        k_draw, k_gate = jax.random.split(key)
        layer = _draw(self._shapes(D, I), D, self.conv_kernel, dtype, k_draw, ones=("scale", "skip"))
        layer["fgate"]["b"] = jnp.linspace(3.0, 6.0, self.heads, dtype=dtype)
        layer["igate"]["b"] = 0.1 * jax.random.normal(k_gate, (self.heads,), dtype)
        return layer

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """The block at every step (class docstring); padded steps output 0."""
        layer, x, r = self._read(params, parts, rules, taps)
        T = x.shape[0]
        I = layer["proj_up"]["W"].shape[1] // 2
        up = _dense(r, (_norm(r, x, layer["norm"]["scale"]),), (layer["proj_up"]["W"],), layer["proj_up"].get("b"))
        u, z = up[:, :I], up[:, I:]
        a = ops.activation(r, ops.SILU, conv1d(r, u, layer["conv"]["W"], layer["conv"]["b"], mask, depthwise=True))
        q, k, v = _headwise(r, a, layer["q"]), _headwise(r, a, layer["k"]), _headwise(r, u, layer["v"])
        gate_ws = {g: tuple(jnp.split(layer[g]["W"], 3, axis=0)) for g in ("igate", "fgate")}
        z_i = _dense(r, (q, k, v), gate_ws["igate"], layer["igate"]["b"])
        z_f = _dense(r, (q, k, v), gate_ws["fgate"], layer["fgate"]["b"])
        heads = lambda a_: a_.reshape(T, self.heads, I // self.heads)
        if r is None and self.parallel and taps is None:
            h = mlstm_parallel(heads(q), heads(k), heads(v), z_i, z_f, mask)
        else:
            C0 = None if taps is None else taps["initial"][self.label]["C0"]
            h = mlstm_recurrent(r, heads(q), heads(k), heads(v), z_i, z_f, mask, C0)
        h = _norm(r, h.reshape(T, I), layer["outnorm"]["scale"], self.heads)
        skip = scale(r, a, jnp.broadcast_to(layer["skip"], a.shape))
        gated = ops.gated(r, z, ops.accumulate(r, h, skip), ops.SILU, ops.IDENTITY)
        y = _dense(r, (gated,), (layer["proj_down"]["W"],), layer["proj_down"].get("b"))
        return (_zero_padding(ops.accumulate(r, x, y), mask),)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({name: {"C0": (NH, DH, DH)}}, {name: {"input": (T, D)}})``: probes on the initial memory and
        on the block's input."""
        I = params[self.label]["proj_up"]["W"].shape[1] // 2
        DH = I // self.heads
        return ({self.label: {"C0": jnp.zeros((self.heads, DH, DH), dtype)}},
                {self.label: {"input": jnp.zeros((T, spec.size), dtype)}})

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "heads": self.heads, "inner": self.inner, "conv_kernel": self.conv_kernel,
                "qkv_blocksize": self.qkv_blocksize, "bias": self.bias, "parallel": self.parallel, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> MLSTMBlock:
        return cls(**fields)


# --- the sLSTM block -------------------------------------------------------------------------------------

@register_layer
@dataclass(frozen=True)
class SLSTMBlock(_Block):
    """The package's sLSTM block (``sLSTMBlock`` = pre-norm ``sLSTMLayer`` + residual + gated feed-forward)::

        n = LN(x);  a = SiLU(causal depthwise conv(n))   (a = n without a convolution, K = 0)
        ĩ, f̃ = headwise(a);  z̃, õ = headwise(n)          (the package's ``fgate`` module computes ĩ and
                                                            its ``igate`` module f̃, in that order)
        h = sLSTM(ĩ, f̃, z̃, õ)                            (:class:`~lrpjax.core.xlstm.SLSTMCell`, NH heads)
        x' = x + GN(h)                                     per-head group norm
        y = x' + (act(g) * u) W_down,  (g, u) = LN(x') W_up   (without ``ffn``: y = x')

    The cell reads ``[a_t, n_t]`` (2D) with one input matrix (2D, 4D) whose zero blocks keep the gates
    on their inputs, so its pre-activations are one linear mapping of ``(a_t, n_t, y_{t-1})``.

    Parameters ``params[name]``: ``norm/scale (D,)``; with ``conv_kernel > 0`` ``conv/W (K, D)``, ``conv/b (D,)``;
    ``W_i``, ``W_f``, ``W_z``, ``W_o`` ``(NH, DH, DH)`` (head blocks, input x output); ``R (NH, DH, 4 DH)`` and
    ``b (4D,)`` of the cell; ``group_norm/scale (D,)``; with ``ffn``: ``ffn_norm/scale (D,)``,
    ``ffn_up/W (D, 2F)``, ``ffn_down/W (F, D)`` (with ``bias``: ``ffn_up/b``, ``ffn_down/b``).

    Attributes:
        heads: NH (dividing D).
        conv_kernel: K, 0 for none.
        forget: the cell's forget gate, ``"sigmoid"`` (the package's) or ``"exp"``.
        ffn: with the gated feed-forward (the package's default ``feedforward``).
        ffn_inner: F (needed by :meth:`init` with ``ffn``; read off the parameters otherwise).
        ffn_activation: the gate's activation, one of :data:`FFN_ACTIVATIONS` (``"gelu"``, the package's).
        bias: the feed-forward's projections have biases.
        name: the layer's name (None: ``"slstm_k"``).
    """

    heads: int = 4
    conv_kernel: int = 4
    forget: str = "sigmoid"
    ffn: bool = True
    ffn_inner: int | None = None
    ffn_activation: str = "gelu"
    bias: bool = False
    name: str | None = None

    kind: ClassVar[str] = "slstm_block"
    default_name: ClassVar[str] = "slstm"

    def __post_init__(self):
        _positive_int("SLSTMBlock", "heads", self.heads)
        _positive_int("SLSTMBlock", "conv_kernel", self.conv_kernel, 0)
        if self.forget not in FORGET_GATES:
            raise ValueError(f"`forget` of SLSTMBlock must be one of {FORGET_GATES}; got {self.forget!r}.")
        for field in ("ffn", "bias"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"`{field}` of SLSTMBlock must be a bool; got {type(getattr(self, field)).__name__}.")
        if self.ffn_inner is not None:
            _positive_int("SLSTMBlock", "ffn_inner", self.ffn_inner)
        if self.ffn_activation not in FFN_ACTIVATIONS:
            raise ValueError(f"`ffn_activation` of SLSTMBlock must be one of {tuple(FFN_ACTIVATIONS)}; "
                             f"got {self.ffn_activation!r}.")
        _check_name("SLSTMBlock", self.name)

    @property
    def cell(self) -> SLSTMCell:
        """The block's sLSTM cell."""
        return SLSTMCell(self.heads, self.forget)

    def describe(self) -> str:
        """``SLSTMBlock(heads=NH, conv=K, ffn)``."""
        return f"SLSTMBlock(heads={self.heads}, conv={self.conv_kernel}{', ffn' if self.ffn else ''})"

    def _shapes(self, D: int, F: int) -> dict[tuple[str, ...], tuple[int, ...]]:
        NH, DH = self.heads, D // self.heads
        shapes: dict[tuple[str, ...], tuple[int, ...]] = {("norm", "scale"): (D,)}
        if self.conv_kernel:
            shapes.update({("conv", "W"): (self.conv_kernel, D), ("conv", "b"): (D,)})
        shapes.update({(w,): (NH, DH, DH) for w in ("W_i", "W_f", "W_z", "W_o")})
        shapes.update({("R",): (NH, DH, 4 * DH), ("b",): (4 * D,), ("group_norm", "scale"): (D,)})
        if self.ffn:
            shapes.update({("ffn_norm", "scale"): (D,), ("ffn_up", "W"): (D, 2 * F), ("ffn_down", "W"): (F, D)})
            if self.bias:
                shapes.update({("ffn_up", "b"): (2 * F,), ("ffn_down", "b"): (D,)})
        return shapes

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]`` against the input ``spec``; the output has the input's size.

        Raises:
            ValueError: a vector input, D not a multiple of ``heads``, a missing parameter or a shape that
                does not fit.
        """
        layer = self._input(params, spec)
        D = spec.size
        if D % self.heads:
            raise ValueError(f"layer {self.label!r}: the input size D = {D} must be a multiple of heads = {self.heads}.")
        F = 0
        if self.ffn:
            down = layer.get("ffn_down", {}).get("W") if isinstance(layer.get("ffn_down"), dict) else None
            if down is None or len(jnp.shape(down)) != 2:
                raise ValueError(f"`params[{self.label!r}]['ffn_down']['W']` must have shape (F, D) = (F, {D}).")
            F = int(jnp.shape(down)[0])
            if self.ffn_inner is not None and F != self.ffn_inner:
                raise ValueError(f"`params[{self.label!r}]['ffn_down']['W']` has F = {F}; layer {self.label!r} has "
                                 f"ffn_inner = {self.ffn_inner}.")
        for path, shape in self._shapes(D, F).items():
            _shape(layer, path, shape, f"params[{self.label!r}]")
        return Spec((self.label,), (D,), True)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """Small-init projections, the cell's :meth:`~lrpjax.core.xlstm.SLSTMCell.init` recurrence and biases,
        unit norm weights; F = ``ffn_inner``, or ceil(1.3 D) (the package's factor, without its rounding to
        multiples of 64).

        Raises:
            ValueError: D not a multiple of ``heads``.
        """
        D = spec.size
        if D % self.heads:
            raise ValueError(f"layer {self.label!r}: the input size D = {D} must be a multiple of heads = {self.heads}.")
        return {self.label: _compiled_init(self, D, jnp.dtype(dtype))(key)}

    def _init_layer(self, D: int, dtype: Any, key: Array) -> Params:
        shapes = self._shapes(D, self.ffn_inner if self.ffn_inner is not None else -(-13 * D // 10))
        k_cell, k_draw = jax.random.split(key)
        cell = self.cell.init(k_cell, D, D, dtype)
        layer = _draw({p: s for p, s in shapes.items() if p not in (("R",), ("b",))}, D, self.conv_kernel, dtype,
                      k_draw, ones=("scale",))
        layer.update({"R": cell["R"], "b": cell["b"]})
        return layer

    def cell_params(self, layer: Params) -> Params:
        """The cell's parameters: ``W (2D, 4D)`` over ``[a_t, n_t]`` (zero where a gate does not read an
        input), ``R``, ``b``."""
        W_i, W_f, W_z, W_o = (block_diagonal(layer[w]) for w in ("W_i", "W_f", "W_z", "W_o"))
        zero = jnp.zeros_like(W_i)
        W = jnp.concatenate([jnp.concatenate([W_i, W_f, zero, zero], axis=1),
                             jnp.concatenate([zero, zero, W_z, W_o], axis=1)], axis=0)
        return {"W": W, "R": layer["R"], "b": layer["b"]}

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """The block at every step (class docstring); padded steps output 0."""
        layer, x, r = self._read(params, parts, rules, taps)
        n = _norm(r, x, layer["norm"]["scale"])
        if self.conv_kernel:
            a = ops.activation(r, ops.SILU, conv1d(r, n, layer["conv"]["W"], layer["conv"]["b"], mask,
                                                   depthwise=True))
        else:
            a = n
        cell_taps = None
        if taps is not None:
            cell_taps = {**taps["initial"][self.label],
                         **{k: v for k, v in taps["states"][self.label].items() if k != "input"}}
        _, h = unroll(self.cell, self.cell_params(layer), jnp.concatenate([a, n], axis=1), r, mask, cell_taps)
        x = ops.accumulate(r, x, _norm(r, h, layer["group_norm"]["scale"], self.heads))
        if self.ffn:
            F = layer["ffn_down"]["W"].shape[0]
            up = _dense(r, (_norm(r, x, layer["ffn_norm"]["scale"]),), (layer["ffn_up"]["W"],),
                        layer["ffn_up"].get("b"))
            gated = ops.gated(r, up[:, :F], up[:, F:], FFN_ACTIVATIONS[self.ffn_activation], ops.IDENTITY)
            x = ops.accumulate(r, x, _dense(r, (gated,), (layer["ffn_down"]["W"],), layer["ffn_down"].get("b")))
        return (_zero_padding(x, mask),)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({name: {"y0", "c0", "n0", "m0"}}, {name: {"input": (T, D), "y", "c", "n", "m": (T, D)}})``: probes
        on the cell's initial and per-step states (:func:`lrpjax.core.cells.zero_layer_taps`) and on the
        block's input."""
        taps = zero_layer_taps(T, spec.size, dtype, SLSTMCell.state_names)
        return ({self.label: {k: v for k, v in taps.items() if k.endswith("0")}},
                {self.label: {"input": jnp.zeros((T, spec.size), dtype),
                              **{k: v for k, v in taps.items() if not k.endswith("0")}}})

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "heads": self.heads, "conv_kernel": self.conv_kernel, "forget": self.forget,
                "ffn": self.ffn, "ffn_inner": self.ffn_inner, "ffn_activation": self.ffn_activation,
                "bias": self.bias, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> SLSTMBlock:
        return cls(**fields)


# --- the post-blocks norm ---------------------------------------------------------------------------------

@register_layer
@dataclass(frozen=True)
class LayerNorm(_Named):
    """Layer norm without bias at every step, ``LN(x) = (x - mean) / sqrt(var + 1e-5) * scale`` (the xLSTM
    stack's ``post_blocks_norm``); relevance passes through as in :func:`lrpjax.core.xlstm.group_norm`
    (the standard deviation is a constant, the centring a linear mapping).

    Parameters ``params[name]``: ``{"scale": (D,)}``.

    Attributes:
        name: the layer's name (None: ``"norm_k"``).
    """

    name: str | None = None

    kind: ClassVar[str] = "layer_norm"
    default_name: ClassVar[str] = "norm"
    needs_sequence: ClassVar[bool] = False
    default_output: ClassVar[bool] = False

    def __post_init__(self):
        _check_name("LayerNorm", self.name)

    def sequence_output(self, sequence_input: bool) -> bool:
        """Per step on a sequence, a vector on a vector."""
        return sequence_input

    def describe(self) -> str:
        return "LayerNorm"

    def keys(self) -> tuple[str, ...]:
        return (self.label,)

    def rule_names(self) -> tuple[str, ...]:
        return (self.label,)

    def input_size(self, params: Params) -> int:
        return int(jnp.shape(self.own_entry(params, "scale", "'scale' (D,)"))[0])

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]['scale']`` (D,).

        Raises:
            ValueError: a missing or misshapen scale.
        """
        if not isinstance(params, dict) or not isinstance(params.get(self.label), dict):
            raise ValueError(f"`params` must have key {self.label!r} (layer {self.label!r}), a dict with 'scale'.")
        _shape(params[self.label], ("scale",), (spec.size,), f"params[{self.label!r}]")
        return Spec((self.label,), (spec.size,), spec.sequence)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        return {self.label: {"scale": jnp.ones((spec.size,), dtype)}}

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        x = concat(parts)
        if taps is not None:
            x = x + taps["states"][self.label]
        r = None if rules is None else rules.at(self.label)
        weight = params[self.label]["scale"]
        if not spec.sequence:
            return (group_norm(r, x, weight, 1, NORM_EPS),)
        return (_zero_padding(_norm(r, x, weight), mask),)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({}, {name: zeros})``: a probe on the layer's input, (D,) or (T, D)."""
        return {}, {self.label: jnp.zeros((T, spec.size) if spec.sequence else (spec.size,), dtype)}

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> LayerNorm:
        return cls(**fields)


def xlstm_stack(blocks: str, classes: int, *, heads: int = 4, inner: int | None = None, ffn_inner: int | None = None,
                conv_kernel: int = 4, qkv_blocksize: int = 4, pool: str | None = "mean",
                prefix: tuple = ()) -> Sequential:
    """A stack of xLSTM blocks with the post-blocks norm and a head.

    Args:
        blocks: one letter per block, input side first: ``"m"`` an :class:`MLSTMBlock`, ``"s"`` an
            :class:`SLSTMBlock` (with the feed-forward), e.g. ``"msm"``.
        classes: the head's outputs C.
        heads, inner, ffn_inner, conv_kernel, qkv_blocksize: the blocks' settings (``inner`` I of the
            mLSTM blocks, ``ffn_inner`` F of the sLSTM blocks' feed-forward).
        pool: ``"mean"``, ``"sum"`` or ``"max"``: pool the steps before the head (one output (C,) per
            sequence); None: a head at every step (T, C), as a language model's.
        prefix: layers before the blocks (an :class:`~lrpjax.models.embedding.Embedding` for token ids).

    Raises:
        ValueError: ``blocks`` empty or with a letter other than ``m`` and ``s``.
    """
    if not isinstance(blocks, str) or not blocks or set(blocks) - {"m", "s"}:
        raise ValueError(f"`blocks` must be a non-empty string of 'm' (mLSTM) and 's' (sLSTM); got {blocks!r}.")
    layers: list = list(prefix)
    for letter in blocks:
        if letter == "m":
            layers.append(MLSTMBlock(heads, inner, conv_kernel, qkv_blocksize))
        else:
            layers.append(SLSTMBlock(heads, conv_kernel, ffn_inner=ffn_inner))
    layers.append(LayerNorm())
    if pool is not None:
        layers.append(Pool(pool))
    layers.append(Dense(classes, bias=pool is not None))
    return Sequential(tuple(layers))
