"""Mamba (selective state spaces, Gu & Dao 2023) as layers of elementary computations, with MambaLRP's rules.

One residual block, :class:`MambaBlock`, computes for a sequence ``x`` (T, D) (I = expand * D inner
channels, N state size, R the rank of Delta, K the convolution's width)::

    n_t  = x_t / sqrt(mean(x_t^2) + eps) * w                   RMSNorm
    [s_t, z_t] = n_t W_in (+ b_in)                            in-projection, (2I,)
    c = SiLU(causal depthwise conv(s) + b_conv)               (T, I)
    [d_t, B_t, C_t] = c_t W_x;  Delta_t = softplus(d_t W_dt + b_dt)      (I,), B_t, C_t (N,)
    h_t = exp(Delta_t A) * h_{t-1} + Delta_t B_t c_t           A = -exp(A_log) (I, N); h_t (I, N)
    y_t = C_t h_t + D * c_t                                   (I,)
    g_t = y_t * SiLU(z_t)                                     the gate
    out_t = x_t + g_t W_out (+ b_out)                         residual

with a sequential scan or a parallel associative scan (``scan``; :func:`lrpjax.core.ssm.linear_recurrence`),
equal to rounding. :class:`RMSNorm` is the final norm of a Mamba model.

Relevance, derived from the elementary computations (:mod:`lrpjax.core.ops`):

* **In-, out-projection, convolution** are linear mappings: ``rules.linear``. The convolution is
  :func:`lrpjax.models.conv.conv1d` (causal, depthwise, with bias).
* **SiLU** ``c = s * sigmoid(s)`` as an activation: relevance passes unchanged (``ops.activation``). As
  a product ``s * sigmoid(s)`` of the signal and a gate read off the same value, signal-take-all gives
  the same (MambaLRP's "detach the sigmoid").
* **RMSNorm**: ``n_t = x_t * (w / rms_t)``; the denominator is a constant (the rule AttnLRP and MambaLRP
  use): a product whose factor ``w / rms_t`` acts as a gate, so ``x_t`` receives all of ``R(n_t)``.
* **Delta, A, B, C** are the coefficients of a linear time-varying system: given them the scan is linear
  in ``c``. They act as gates -- they decide what is kept and read, they are not information -- and
  receive no relevance: ``exp(Delta_t A) h_{t-1}`` and ``C_t h_t`` give all of their relevance to the
  state, ``Delta_t B_t c_t`` to ``c_t``, ``D c_t`` to ``c_t`` (signal-take-all, Table 11.1, whatever
  the rule set's product rule: the chapter's product rules are defined for two pre-activations, and a
  share for ``Delta_t B_t`` or ``C_t`` would leave the scan's linear structure, which MambaLRP keeps).
* **The state** ``h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t c_t`` and the read-out
  ``y_t = sum_n C_tn h_tn + D c_t`` (N + 1 terms) are accumulations: ``rules.accumulate``.
* **The gate** ``g_t = y_t * SiLU(z_t)`` is a gated interaction: ``rules.gate`` on the pre-activations
  ``(z_t, y_t)`` -- signal-take-all gives all to ``y_t``, LRP-prop, -abs and -half split it with
  ``z_t``, whose share flows through the in-projection to the input.
* **The residual** ``x_t + o_t`` is an accumulation: ``rules.accumulate``.

:func:`mamba_lrp` is the rule set of MambaLRP (Jafari et al., NeurIPS 2024) -- Gradient x Input with
the sigmoid of SiLU, the norm's scale and Delta, A, B, C detached and the gate split half and half:
the z-rule (epsilon 0) on linear mappings and accumulations (Gradient x Input on a mapping whose
nonlinear factors are constants is exactly the z-rule), ``Gate("half")`` for the SiLU gate. The
chapter's presets (``lrpjax.rules.preset("lrp-all" | "lrp-prop" | "lrp-abs" | "lrp-half", eps, share)``)
are the alternatives.

Conservation: with ``share=True`` (epsilon's bias and stabiliser shares and the product rules' absorbed
shares spread over the inputs) every computation above conserves, so the input relevance of a block sums
to its output relevance, for every preset. Without sharing the biases of the convolution and of the
projections absorb their shares, and with ``eps > 0`` the stabilisers do (what ``.full()`` reports as
the residual); MambaLRP itself (``eps = 0``, no sharing) conserves up to the convolution's bias (and the
projections' biases, when the model has them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from lrpjax._types import Array, Params
from lrpjax.core import ops
from lrpjax.core.rules import Epsilon, Gate, RuleSet
from lrpjax.core.ssm import SCANS, linear_recurrence
from lrpjax.models.conv import conv1d
from lrpjax.models.layers import Spec, _check_name, _Named, register_layer

__all__ = ["MambaBlock", "RMSNorm", "mamba_lrp", "rms_norm", "mamba_mixer", "BLOCK_KEYS"]

BLOCK_KEYS = ("norm", "in_proj", "conv_W", "x_proj", "dt_proj", "dt_bias", "A_log", "D", "out_proj")
"""The parameters every block has (plus ``in_proj_b``/``out_proj_b`` with ``bias``, ``conv_b`` with
``conv_bias``)."""


def mamba_lrp() -> RuleSet:
    """MambaLRP's rules (Jafari et al., NeurIPS 2024): the z-rule on linear mappings and accumulations,
    the SiLU gate split half and half (module docstring)."""
    z_rule = Epsilon(0.0)
    return RuleSet(linear=z_rule, gate=Gate("half"), accumulate=z_rule)


def _gates_take_none(rules: RuleSet | None) -> RuleSet | None:
    """The rule set with signal-take-all for the products whose factor acts as a gate."""
    return None if rules is None else rules.replace(gate=Gate("all"))


def _times(rules: RuleSet | None, factor: Array, signal: Array) -> Array:
    """``factor * signal`` with ``factor`` a gate: all relevance to ``signal`` (same shapes)."""
    return ops.gated(_gates_take_none(rules), factor, signal, ops.IDENTITY, ops.IDENTITY)


def rms_norm(rules: RuleSet | None, x: Array, weight: Array, eps: float) -> Array:
    """``x_t / sqrt(mean(x_t^2) + eps) * weight`` per step; the denominator as a constant (a gate).

    Args:
        rules: rule set, or None (true gradients, through the denominator too).
        x: sequence (T, D).
        weight: (D,).
        eps: the norm's epsilon.
    """
    inverse = jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + jnp.asarray(eps, x.dtype))
    return _times(rules, inverse * weight[None, :], x)


def _project(rules: RuleSet | None, x: Array, W: Array, b: Array | None) -> Array:
    """``x_t W + b`` at every step, one linear mapping per step: (T, D) -> (T, M)."""
    return jax.vmap(lambda x_t: ops.linear(rules, (x_t,), (W,), b))(x)


def mamba_mixer(rules: RuleSet | None, p: Params, n: Array, mask: Array | None, scan: str = "sequential") -> Array:
    """The mixer of a block (module docstring), from the normalised input ``n`` (T, D) to ``g W_out`` (T, D).

    Args:
        rules: rule set, or None.
        p: the block's parameters (:class:`MambaBlock`).
        n: normalised sequence (T, D).
        mask: valid steps (T,) bool, or None: a padded step leaves the state untouched.
        scan: ``"sequential"`` or ``"parallel"``.
    """
    I, N = p["A_log"].shape
    R = p["dt_proj"].shape[0]
    T = n.shape[0]
    sz = _project(rules, n, p["in_proj"], p.get("in_proj_b"))
    s, z = sz[:, :I], sz[:, I:]
    c = conv1d(rules, s, p["conv_W"], p.get("conv_b"), mask, padding="causal", depthwise=True)
    c = ops.activation(rules, ops.SILU, c)
    # The scan's coefficients: computed from c, they act as gates and carry no relevance back.
    dbc = c @ p["x_proj"]
    delta = jax.nn.softplus(dbc[:, :R] @ p["dt_proj"] + p["dt_bias"][None, :])
    B, C = dbc[:, R:R + N], dbc[:, R + N:]
    if rules is not None:
        delta, B, C = ops.no_relevance(delta), ops.no_relevance(B), ops.no_relevance(C)
    A = -jnp.exp(p["A_log"])
    a = jnp.exp(delta[:, :, None] * A[None, :, :])                                     # (T, I, N)
    u = _times(rules, delta[:, :, None] * B[:, None, :], jnp.broadcast_to(c[:, :, None], (T, I, N)))
    if mask is not None:   # a padded step keeps the state: a = 1, u = 0
        a = jnp.where(mask[:, None, None], a, jnp.ones((), a.dtype))
        u = jnp.where(mask[:, None, None], u, jnp.zeros((), u.dtype))
    h = linear_recurrence(rules, a, u, scan)                                             # (T, I, N)
    read = _times(rules, jnp.broadcast_to(C[:, None, :], (T, I, N)), h)                # C_tn h_tin
    skip = _times(rules, jnp.broadcast_to(p["D"], (T, I)), c)                           # D c_t
    # y_t = sum_n C_tn h_tn + D c_t: one accumulation of N + 1 terms per channel and step.
    terms = jnp.concatenate([jnp.moveaxis(read, 2, 1), skip[:, None, :]], axis=1)       # (T, N + 1, I)
    ones = jnp.ones((N + 1,), terms.dtype)
    y = jax.vmap(lambda terms_t: ops.pool(rules, terms_t, ones))(terms)                  # (T, I)
    g = ops.gated(rules, z, y, ops.SILU, ops.IDENTITY)
    return _project(rules, g, p["out_proj"], p.get("out_proj_b"))


def _zero_padding(value: Array, mask: Array | None) -> Array:
    return value if mask is None else jnp.where(mask[:, None], value, jnp.zeros((), value.dtype))


def _check_shape(where: str, value: Any, expected: tuple, letters: str) -> None:
    shape = tuple(jnp.shape(value))
    if shape != expected:
        raise ValueError(f"`{where}` must have shape {letters} = {expected}; got {shape}.")


@register_layer
@dataclass(frozen=True)
class MambaBlock(_Named):
    """A Mamba residual block: RMSNorm, mixer, residual (module docstring); (T, D) -> (T, D).

    Parameters under ``params[name]`` (the names of PyTorch's ``MambaMixer``, weights transposed):
    ``"norm"`` (D,), ``"in_proj"`` (D, 2I) (columns: the scan's input s, then the gate z), ``"conv_W"``
    (K, I) (``W[K-1]`` reads the current step), ``"conv_b"`` (I,) with ``conv_bias``, ``"x_proj"``
    (I, R + 2N) (columns: Delta's R, then B's N, then C's N), ``"dt_proj"`` (R, I), ``"dt_bias"`` (I,),
    ``"A_log"`` (I, N), ``"D"`` (I,), ``"out_proj"`` (I, D); ``"in_proj_b"`` (2I,) and ``"out_proj_b"``
    (D,) with ``bias``. Padded steps output 0 and leave the state untouched.

    Attributes:
        d_state: N (for :meth:`init`; checked against the parameters).
        expand: I = expand * D (for :meth:`init`).
        d_conv: K, the convolution's width (for :meth:`init`; checked).
        dt_rank: R (for :meth:`init`), or None for ``ceil(D / 16)``.
        norm_eps: the RMSNorm's epsilon.
        scan: ``"sequential"`` (``lax.scan``) or ``"parallel"`` (associative scan); same results to rounding.
        bias: in- and out-projection with biases.
        conv_bias: the convolution with a bias.
        name: the layer's name (None: chosen by the model, ``"mamba_k"``).
    """

    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int | None = None
    norm_eps: float = 1e-5
    scan: str = "sequential"
    bias: bool = False
    conv_bias: bool = True
    name: str | None = None

    kind: ClassVar[str] = "mamba"
    default_name: ClassVar[str] = "mamba"
    needs_sequence: ClassVar[bool] = True
    default_output: ClassVar[bool] = False

    def __post_init__(self):
        for field in ("d_state", "expand", "d_conv") + (("dt_rank",) if self.dt_rank is not None else ()):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{field}` of MambaBlock must be a positive int; got {value!r}.")
        if not isinstance(self.norm_eps, (int, float)) or isinstance(self.norm_eps, bool) or not self.norm_eps >= 0:
            raise ValueError(f"`norm_eps` of MambaBlock must be a float >= 0; got {self.norm_eps!r}.")
        object.__setattr__(self, "norm_eps", float(self.norm_eps))
        if self.scan not in SCANS:
            raise ValueError(f"`scan` of MambaBlock must be one of {SCANS}; got {self.scan!r}.")
        for field in ("bias", "conv_bias"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"`{field}` of MambaBlock must be a bool; got {type(getattr(self, field)).__name__}.")
        _check_name("MambaBlock", self.name)

    def sequence_output(self, sequence_input: bool) -> bool:
        """A sequence (T, D)."""
        return True

    def describe(self) -> str:
        """``MambaBlock(N=<n>, K=<k>, <scan> scan)``."""
        return f"MambaBlock(N={self.d_state}, K={self.d_conv}, {self.scan} scan)"

    def keys(self) -> tuple[str, ...]:
        return (self.label,)

    def rule_names(self) -> tuple[str, ...]:
        return (self.label,)

    def param_keys(self) -> tuple[str, ...]:
        """The keys of ``params[name]`` for this configuration."""
        return (BLOCK_KEYS + (("in_proj_b", "out_proj_b") if self.bias else ())
                + (("conv_b",) if self.conv_bias else ()))

    def input_size(self, params: Params) -> int:
        """D read off ``norm``."""
        return int(jnp.shape(self.own_entry(params, "norm", "the norm's weight 'norm' (D,)"))[0])

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]`` against the input ``spec``; the output's spec (T, D).

        Raises:
            ValueError: a vector input, missing or unexpected keys, a shape that does not fit, N or K
                other than ``d_state``/``d_conv``.
        """
        where = f"params[{self.label!r}]"
        if not spec.sequence:
            raise ValueError(f"layer {self.label!r} (MambaBlock) needs a sequence input; the layer before it "
                             "outputs a vector.")
        if not isinstance(params, dict) or self.label not in params:
            raise ValueError(f"`params` must have key {self.label!r} (layer {self.label!r}); got "
                             f"{sorted(params) if isinstance(params, dict) else type(params).__name__}.")
        p = params[self.label]
        expected = set(self.param_keys())
        if not isinstance(p, dict) or set(p) != expected:
            got = set(p) if isinstance(p, dict) else set()
            raise ValueError(f"`{where}` must have exactly the keys {sorted(expected)} (bias={self.bias}, "
                             f"conv_bias={self.conv_bias}); missing {sorted(expected - got)}, unexpected "
                             f"{sorted(got - expected)}.")
        D = spec.size
        A_shape = tuple(jnp.shape(p["A_log"]))
        if len(A_shape) != 2:
            raise ValueError(f"`{where}['A_log']` must have shape (I, N); got {A_shape}.")
        I, N = A_shape
        if N != self.d_state:
            raise ValueError(f"`{where}['A_log']` has N = {N}; layer {self.label!r} has d_state = {self.d_state}.")
        K = int(jnp.shape(p["conv_W"])[0]) if jnp.ndim(p["conv_W"]) == 2 else -1
        if K != self.d_conv:
            raise ValueError(f"`{where}['conv_W']` must have shape (K, I) = ({self.d_conv}, {I}); got "
                             f"{tuple(jnp.shape(p['conv_W']))}.")
        R = int(jnp.shape(p["dt_proj"])[0]) if jnp.ndim(p["dt_proj"]) == 2 else 0
        shapes = {"norm": ((D,), "(D,)"), "in_proj": ((D, 2 * I), "(D, 2I)"), "conv_W": ((K, I), "(K, I)"),
                  "x_proj": ((I, R + 2 * N), "(I, R + 2N)"), "dt_proj": ((R, I), "(R, I)"),
                  "dt_bias": ((I,), "(I,)"), "D": ((I,), "(I,)"), "out_proj": ((I, D), "(I, D)"),
                  "A_log": ((I, N), "(I, N)"), "in_proj_b": ((2 * I,), "(2I,)"), "out_proj_b": ((D,), "(D,)"), "conv_b": ((I,), "(I,)")}
        for key in self.param_keys():
            _check_shape(f"{where}[{key!r}]", p[key], *shapes[key])
        return Spec((self.label,), (D,), True)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """Parameters initialised as ``mamba_ssm`` does: ``A_log = log(1 .. N)``, ``D = 1``, Delta's bias the
        inverse softplus of values log-uniform in [1e-3, 1e-1], uniform weights, unit norm weight."""
        D = spec.size
        I, N, K = self.expand * D, self.d_state, self.d_conv
        R = self.dt_rank or math.ceil(D / 16)
        keys = jax.random.split(key, 6)

        def uniform(k, shape, fan_in):
            bound = (1.0 / fan_in) ** 0.5
            return jax.random.uniform(k, shape, dtype, -bound, bound)

        dt = jnp.exp(jax.random.uniform(keys[5], (I,), dtype) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
        p = {"norm": jnp.ones((D,), dtype), "in_proj": uniform(keys[0], (D, 2 * I), D),
             "conv_W": uniform(keys[1], (K, I), K), "x_proj": uniform(keys[2], (I, R + 2 * N), I),
             "dt_proj": uniform(keys[3], (R, I), R), "dt_bias": dt + jnp.log(-jnp.expm1(-dt)),
             "A_log": jnp.log(jnp.broadcast_to(jnp.arange(1, N + 1, dtype=dtype), (I, N))),
             "D": jnp.ones((I,), dtype), "out_proj": uniform(keys[4], (I, D), I)}
        if self.bias:
            p["in_proj_b"] = jnp.zeros((2 * I,), dtype)
            p["out_proj_b"] = jnp.zeros((D,), dtype)
        if self.conv_bias:
            p["conv_b"] = jnp.zeros((I,), dtype)
        return {self.label: p}

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        """``x + mixer(RMSNorm(x))`` over the concatenated input parts (T, D)."""
        p = params[self.label]
        x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
        if taps is not None:
            x = x + taps["states"][self.label]
        block_rules = None if rules is None else rules.at(self.label)
        n = rms_norm(block_rules, x, p["norm"], self.norm_eps)
        out = mamba_mixer(block_rules, p, n, mask, self.scan)
        return (_zero_padding(ops.accumulate(block_rules, x, out), mask),)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        """``({}, {name: zeros (T, D)})``: a probe on the block's input."""
        return {}, {self.label: jnp.zeros((T, spec.size), dtype)}

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "d_state": self.d_state, "expand": self.expand, "d_conv": self.d_conv,
                "dt_rank": self.dt_rank, "norm_eps": self.norm_eps, "scan": self.scan, "bias": self.bias,
                "conv_bias": self.conv_bias, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> MambaBlock:
        return cls(**fields)


@register_layer
@dataclass(frozen=True)
class RMSNorm(_Named):
    """``x_t / sqrt(mean(x_t^2) + eps) * w`` at every step, the denominator a constant for relevance
    (all of ``R(n_t)`` goes to ``x_t``); the final norm of a Mamba model. Parameters: ``params[name] =
    {"weight": (D,)}``.

    Attributes:
        eps: the norm's epsilon.
        name: the layer's name (None: chosen by the model, ``"norm_k"``).
    """

    eps: float = 1e-5
    name: str | None = None

    kind: ClassVar[str] = "rmsnorm"
    default_name: ClassVar[str] = "norm"
    needs_sequence: ClassVar[bool] = True
    default_output: ClassVar[bool] = False

    def __post_init__(self):
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or not self.eps >= 0:
            raise ValueError(f"`eps` of RMSNorm must be a float >= 0; got {self.eps!r}.")
        object.__setattr__(self, "eps", float(self.eps))
        _check_name("RMSNorm", self.name)

    def sequence_output(self, sequence_input: bool) -> bool:
        return True

    def describe(self) -> str:
        return f"RMSNorm(eps={self.eps:g})"

    def keys(self) -> tuple[str, ...]:
        return (self.label,)

    def rule_names(self) -> tuple[str, ...]:
        return (self.label,)

    def input_size(self, params: Params) -> int:
        return int(jnp.shape(self.own_entry(params, "weight", "'weight' (D,)"))[0])

    def output_spec(self, params: Params, spec: Spec) -> Spec:
        """Checks ``params[name]['weight']`` (D,); the output's spec.

        Raises:
            ValueError: a vector input, a missing key or a weight of the wrong shape.
        """
        if not spec.sequence:
            raise ValueError(f"layer {self.label!r} (RMSNorm) needs a sequence input.")
        if not isinstance(params, dict) or not isinstance(params.get(self.label), dict) \
                or set(params[self.label]) != {"weight"}:
            raise ValueError(f"`params[{self.label!r}]` must be a dict with exactly the key 'weight' (D,).")
        _check_shape(f"params[{self.label!r}]['weight']", params[self.label]["weight"], (spec.size,), "(D,)")
        return Spec((self.label,), (spec.size,), True)

    def init(self, key: Array, spec: Spec, dtype=jnp.float32) -> Params:
        """A unit weight."""
        return {self.label: {"weight": jnp.ones((spec.size,), dtype)}}

    def apply(self, params: Params, parts: tuple[Array, ...], spec: Spec, mask: Array | None,
              rules: RuleSet | None, taps: Params | None) -> tuple[Array, ...]:
        x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
        if taps is not None:
            x = x + taps["states"][self.label]
        layer_rules = None if rules is None else rules.at(self.label)
        return (_zero_padding(rms_norm(layer_rules, x, params[self.label]["weight"], self.eps), mask),)

    def zero_taps(self, params: Params, spec: Spec, T: int, dtype) -> tuple[Params, Params]:
        return {}, {self.label: jnp.zeros((T, spec.size), dtype)}

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "eps": self.eps, "name": self.name}

    @classmethod
    def from_config(cls, fields: dict[str, Any]) -> RMSNorm:
        return cls(**fields)
