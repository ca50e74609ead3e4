"""Explanation methods: LRP, Gradient, Sensitivity, Gradient x Input, Occlusion, Integrated Gradients,
SmoothGrad, random baseline.

Every method is a :class:`Method`: a small hashable value naming a per-example relevance function,
the model's ``apply`` and the method's options. Calling it explains one sequence; :meth:`Method.batch`
explains a padded batch in one jit-compiled, vmapped call; :meth:`Method.tokens` sums relevance over
the embedding dimension (word-level relevance). Inputs are checked in Python first (shapes always;
values such as finiteness and the target's range when they are concrete, i.e. outside ``jit``).

Every entry point casts the input to the parameters' floating dtype (when their floating leaves share
one), so that relevance has the parameters' dtype: half precision (float16, bfloat16) is cast up, which
is exact; float64 is cast down to float32 parameters (the default without ``jax_enable_x64``), and a
value that the cast would turn into infinity is an error naming the input and both dtypes, as are NaN
or infinity in the input itself. Integer and boolean inputs are a ``TypeError`` naming the expected
dtype.

LRP and the gradient share one mechanism: ``jax.vjp`` of the model seeded at the target class. Under
a rule set the cotangent is relevance and the seed is the target's score (Sec. 11.2.2); with
``rules=None`` it is the gradient and the seed is 1.

What is explained (``target``) is a linear combination ``sum(w * output)`` of the model's outputs:

* a class index ``c`` (w one-hot at c), for a model with output (C,);
* a tuple of indices, e.g. ``(t, c)``: the output of step t, class c, of a per-step model (T, C);
* an array ``w`` of the output's shape (a seed vector: any linear combination of outputs);
* a function of the output, ``target(output) -> scalar``, e.g. ``lambda s: s[-1, 0]`` or
  ``lambda s: s[:, 2].sum()``; its gradient at the output is ``w`` (exact for linear functions, the
  linearisation otherwise). A function is static under ``jit``: pass the same function object to
  reuse compiled code.

The gradient is seeded with ``w``, LRP with ``w * output`` (for a one-hot ``w`` the target's score),
occlusion compares ``sum(w * output)`` (of scores, or of softmax probabilities over the last axis)
with and without the position. Integrated Gradients and SmoothGrad average the gradient of
``sum(w * output)`` (``w`` fixed at the explained input) over points near ``x``.

Differentiating explanations
----------------------------

An explanation is an ordinary JAX function of the parameters and the input: ``jax.grad``, ``jax.jvp``,
``jax.jacfwd``/``jax.jacrev`` and ``jax.hessian`` of any functional of ``method.fn(method, params, x,
target, mask, index)`` (or of ``method(...)``, ``method.batch(...)``, ``method.full(...)``) give its true
derivatives, for every method here and :func:`lrpjax.methods.decomposition.cd`. The relevance rules are the backward
passes of the ``custom_vjp`` ops, but their forward passes compute the primal with plain ``jnp``
code and the rules themselves are ``jnp`` code, so an outer derivative differentiates the forward
pass and the rule as written (it never follows a relevance rule); gates under LRP-all pass through
``ops.no_relevance`` (derivative one, relevance zero). Explanation-guided training
(:func:`lrpjax.train.explanation_penalty`) relies on this.

The explanations are smooth functions of ``params`` and ``x`` except where a rule, or the model,
switches branch. There JAX returns the derivative of one branch, never NaN:

* the stabiliser ``z + eps * sign(z)`` (Epsilon, Gamma, the accumulation rule, LRP-prop's product
  rule): at ``z = 0`` the quotient ``r / (z + eps sign(z))`` jumps from ``-r / eps`` to ``+r / eps``; the
  value and the derivative there are those of the ``z >= 0`` side (``sign(0) = +1``), and ``sign``
  itself contributes 0;
* :func:`lrpjax.core.rules.safe_divide` (every rule's division): where a denominator is exactly 0 the
  share is 0 and so is its derivative, with respect to numerator and denominator;
* ``|.|`` (LRP-abs): JAX's derivative of ``abs`` at 0 is +1;
* ``max(., 0)``, ``min(., 0)`` (z+, alpha-beta, zB, the positive weights of Gamma): at a tie JAX
  gives each side half the derivative (0.5); ``relu`` in a model's dense layer: 0 at 0;
* ``argmax`` (max pooling in a model and in CD; ``targets="pred"`` and the predicted class in
  :mod:`lrpjax.datasets`): the selection is piecewise constant; the derivative follows the selected
  element (the first maximal one at a tie) and ignores the jump;
* SmoothGrad with ``noise="relative"``: the noise scale is ``sigma * (max(x) - min(x))`` over the valid
  steps, differentiated like ``max``/``min`` above; the noise draw itself is fixed by the seed;
* occlusion and the random baseline have no branch; the random baseline does not depend on
  ``params`` or ``x`` (derivative 0).

For a random input and random parameters none of these points is hit with probability one; finite
differences agree with ``jax.grad`` and ``jax.jvp`` to about 1e-8 relative in float64
(``tests/test_differentiable.py``). What has no forward mode is the *model* under a rule set,
``apply(params, x, rules)``: its ops are ``custom_vjp`` functions, so ``jax.jvp`` of it raises JAX's
``TypeError: can't apply forward-mode autodiff (jvp) to a custom_vjp function`` (its reverse mode is
the relevance itself); an explanation built from it has all derivatives, ``jax.hessian`` included.
The dataset driver :func:`lrpjax.datasets.explain_dataset` returns NumPy arrays and is not for
differentiation; differentiate ``method.batch`` or ``method.fn`` under ``jax.vmap`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple, Sequence, cast

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.models.sequential import check_inputs, check_prefix, floating_dtype, network_of
from lrpjax.core.rules import RuleSet, preset

__all__ = ["Method", "Explanation", "Attribution", "IntegratedGradients", "SmoothGrad", "lrp", "gradient",
           "sensitivity", "gradient_x_input", "occlusion", "integrated_gradients", "smoothgrad",
           "random_baseline", "pad", "per_token", "target_weights"]


@dataclass(frozen=True)
class Method:
    """An explanation method bound to a model.

    Attributes:
        name: a short label (``"lrp-all"``, ``"gradient"``, ...).
        fn: ``fn(method, params, x, target, mask, index) -> relevance`` for one example; a
            module-level function, so that equal methods share compiled code.
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        rules: the rule set (LRP only).
        option: a method option (occlusion ``"f"`` or ``"p"``).
        seed: random seed (random baseline, SmoothGrad).
        config: further settings, a hashable value (:class:`IntegratedGradients`, :class:`SmoothGrad`).
    """

    name: str
    fn: Callable
    apply: Callable
    rules: RuleSet | None = None
    option: str = ""
    seed: int = 0
    config: object = None

    def __call__(self, params: Params, x: ArrayLike, target, *, mask: ArrayLike | None = None) -> Array:
        """Relevance for one sequence ``x`` (T, E) (or one vector (D,)) and ``target`` (module
        docstring): (T, E), or (T,) for position-wise methods (occlusion, random, CD)."""
        x, mask, target = _check_example(self, params, x, target, mask)
        if callable(target):
            return _single_function(self, target, params, x, mask)
        return _single(self, params, x, target, mask)

    def batch(self, params: Params, X: ArrayLike, targets, *, mask: ArrayLike | None = None) -> Array:
        """Relevance for a padded batch ``X`` (B, T, E), ``mask`` (B, T) bool.

        ``targets``: class indices (B,) (or one for all), index tuples (B, k) for multi-axis outputs,
        weights (B, *output shape), or one function of the output shared by the batch.

        Returns:
            (B, T, E), or (B, T) for position-wise methods; padded steps get 0.
        """
        X, targets, mask = _check_batch(self, params, X, targets, mask)
        if callable(targets):
            return _batched_function(self, targets, params, X, mask)
        return _batched(self, params, X, targets, mask)

    def tokens(self, params: Params, x: ArrayLike, target, *, mask: ArrayLike | None = None) -> Array:
        """Word-level relevance (T,): the sum over the embedding dimension (Sec. 11.5.1)."""
        return per_token(self(params, x, target, mask=mask), jnp.ndim(x))

    def all(self, params: Params, x: ArrayLike, *, mask: ArrayLike | None = None) -> Array:
        """Relevance of every output at once, in one vmapped call: (*output shape, *relevance shape).

        For a classifier (C, T, E): one explanation per class; for a per-step model (T_out, C, T, E),
        whose word-level sums (``per_token(..., 4)``) form the (T_out, C, T) relevance matrix. Gradient
        and LRP share one forward pass (the pullbacks are vmapped).
        """
        x, mask, _ = _check_example(self, params, x, None, mask)
        return _all(self, params, x, mask)

    def full(self, params: Params, x: ArrayLike, target, *,
             mask: ArrayLike | None = None) -> Explanation | Attribution:
        """LRP with the relevance at every state, the biases and the conservation residual
        (:class:`Explanation`); for Integrated Gradients the attributions with the completeness gap
        (:class:`Attribution`).

        LRP needs a model of :mod:`lrpjax.models` (``apply`` bound to an object with ``zero_taps``).
        """
        if self.fn is _ig_fn:
            x, mask, target = _check_example(self, params, x, target, mask)
            if callable(target):
                return _ig_full_function(self, target, params, x, mask)
            return _ig_full(self, params, x, target, mask)
        if self.fn is not _lrp_fn:
            raise TypeError(f"full() is defined for LRP methods and Integrated Gradients; {self.name!r} is "
                            "neither.")
        model = getattr(self.apply, "__self__", None)
        if not hasattr(model, "zero_taps"):
            raise TypeError("full() needs `apply` to be the method of a model with zero_taps(params, x) "
                            "(the models of lrpjax.models).")
        x, mask, target = _check_example(self, params, x, target, mask)
        if callable(target):
            return _full_function(self, target, params, x, mask)
        return _full(self, params, x, target, mask)


class Explanation(NamedTuple):
    """Everything an LRP pass computes for one example.

    Attributes:
        relevance: relevance of the inputs, (T, E).
        scores: the model's output, (C,) or (T, C).
        target_score: the relevance put at the output: the target's score (``sum(w * output)``).
        params: relevance absorbed by each parameter (biases; weights get 0), a pytree like params.
        initial: relevance at the initial states, ``{layer: {"y0", "c0"}}`` (``{"h0"}`` for a GRU).
        states: relevance at the state after each step, ``{layer: {"y", "c"}}`` each (T, H)
            (``{"h"}`` for a GRU), and at the input of every dense and pooling layer, ``{name: (D,)}``
            or (T, D).
        residual: ``target_score - sum(relevance) - sum(params) - sum(initial)``, a scalar: the
            relevance that no input, bias or initial state received (:func:`lrpjax.datasets.explain_dataset`
            with ``residual=True`` gives it for every sequence of a dataset).

    When ``residual`` is 0 (up to rounding; every rule conserves exactly in exact arithmetic):

    * ``share=True``, any eps and any of the four presets: biases and stabilisers absorb nothing
      that is not spread over the inputs (and the initial states), so ``params`` is 0 too;
    * ``eps = 0`` with any of the four presets: the epsilon rule without stabiliser conserves with
      the bias share counted in ``params``, and the two shares of each product rule sum to 1;
    * ``Flat``, ``WSquare``, ``ZPlus`` and ``ZB`` in dense layers (they ignore the bias), as long as
      no denominator is 0.

    The rounding is relative to the largest relevance met on the way, not to the score. LRP-all and
    LRP-abs stay at about 1e-7 of the target score in float32 and 1e-15 in float64 (measured on the
    shipped SST model). Where a denominator is near 0 and nothing stabilises it, relevance grows
    large and cancels: LRP-half at ``eps = 0`` (each gate's pre-activation gets half the relevance;
    up to 1e-8 of the score in float64, of the order of the score itself in float32), and LRP-prop,
    whose shares ``z_g / (z_g + z_s)`` are unbounded where ``z_g`` is close to ``-z_s`` (far beyond the
    score even in float64 at ``eps = 0``; about 1e-11 in float64 with eps 0.2 and ``share=True``).

    When it is not 0:

    * ``eps > 0`` without ``share``: the stabiliser keeps ``eps sign(z) / (z + eps sign(z))`` of each
      output's relevance ``R``; the residual is the sum of those parts and grows with eps. It is
      largest where ``|z|`` is small against eps (there the stabiliser keeps nearly all of ``R``). On
      the shipped model with LRP-all the median is 0.6 % of the target score at eps 1e-3, 5 % at 1e-2
      and 60 % at 0.2, and single sentences exceed 100 % (absorbed parts of both signs);
    * a zero denominator: an output with a pre-activation exactly 0 under ``eps = 0``, a ``ZPlus``
      output without positive contributions, a ``ZB`` output whose terms are all 0: its relevance
      is lost (a zero share instead of NaN);
    * ``AlphaBeta`` on an output whose contributions all have one sign: it passes on ``alpha R`` or
      ``-beta R``, by design of its equation.
    """

    relevance: Array
    scores: Array
    target_score: Array
    params: Params
    initial: Params
    states: Params
    residual: Array

    def __repr__(self) -> str:
        """One line: shapes, the target and its score, the sums of the conservation equation and the
        residual, never the arrays themselves (a batched or traced explanation: its fields' shapes)."""
        numbers = _scalars(self.target_score, self.residual)
        if numbers is None or not _is_concrete(self.relevance, self.scores):
            return _shapes_repr(self, ("relevance", "scores", "target_score", "residual"))
        target_score, residual = numbers
        return _result_repr(self, target_score, (
            ("sum(relevance)", _leaf_sum(self.relevance)), ("sum(params)", _leaf_sum(self.params)),
            ("sum(initial)", _leaf_sum(self.initial)), ("residual", residual)))

    def _repr_html_(self) -> str:
        """A self-contained HTML fragment for notebooks: prediction, target, its score and the
        conservation figures and, for a sequence input (T, E), a heatmap of the relevance per position."""
        import html

        from lrpjax.viz import render  # only notebooks need it

        numbers = _scalars(self.target_score, self.residual)
        if numbers is None or not _is_concrete(self.relevance, self.scores):
            return f"<pre>{html.escape(repr(self))}</pre>"
        target_score, residual = numbers
        relevance = np.asarray(self.relevance, dtype=np.float64)
        scores = np.asarray(self.scores, dtype=np.float64)
        head = [f"relevance {html.escape(_shape_text(self.relevance))}"]
        if scores.ndim == 1 and scores.size and np.all(np.isfinite(scores)):
            predicted = int(np.argmax(scores))
            head.append(f"prediction <b>{predicted}</b> (score {scores[predicted]:+.4g})")
        target = _target_of(scores, target_score)
        head.append(f"target <b>{'?' if target is None else html.escape(str(target))}</b>, "
                    f"score <b>{target_score:+.4g}</b>")
        body = ""
        if relevance.ndim >= 2:  # a sequence: one value per position (summed over the features)
            words = relevance.reshape(relevance.shape[0], -1).sum(-1)
            if not np.all(np.isfinite(words)):
                body = '<div class="lrp-meta">the relevance holds non-finite values: no heatmap</div>'
            else:
                shown = words[:_HTML_POSITIONS]
                scale = render.shared_scale(words) or 1.0
                body = (f"<div>{render.html_legend(scale)}</div>"
                        f"<div>{render.html_sentence([str(t) for t in range(shown.shape[0])], shown, scale)}</div>")
                if shown.shape[0] < words.shape[0]:
                    body += (f'<div class="lrp-meta">positions 0..{shown.shape[0] - 1} of {words.shape[0]} '
                             "shown</div>")
        conservation = {"target_score": target_score, "bias": _leaf_sum(self.params),
                        "initial": _leaf_sum(self.initial), "residual": residual}
        return (f'<div class="lrpjax-explanation"><style>{render.HTML_CSS}</style>'
                f'<div><b>Explanation</b>: {" &middot; ".join(head)}</div>{body}'
                f"{render._conservation_html(conservation, _leaf_sum(self.relevance))}</div>")


class Attribution(NamedTuple):
    """Integrated Gradients with its completeness gap (:meth:`Method.full`), for one example.

    Attributions of a path method sum to ``f(x) - f(baseline)`` when the path integral is exact; the
    gap measures what the Riemann sum misses, as the LRP residual measures what stabilisers absorbed.

    Attributes:
        relevance: the attributions, (T, E) (or (D,) for a vector input).
        scores: the model's output at ``x``, (C,) or (T, C).
        target_score: the explained quantity at ``x``, ``sum(w * f(x))``.
        baseline_score: the same at the baseline, ``sum(w * f(baseline))``.
        gap: ``sum(relevance) - (target_score - baseline_score)``; it shrinks as ``steps`` grows
            (midpoint rule: about ``1 / steps^2`` for a smooth model).
    """

    relevance: Array
    scores: Array
    target_score: Array
    baseline_score: Array
    gap: Array

    def __repr__(self) -> str:
        """One line: shapes, the target, its score at ``x`` and at the baseline, the sum of the
        attributions and the gap, never the arrays themselves (batched or traced: the shapes)."""
        numbers = _scalars(self.target_score, self.baseline_score, self.gap)
        if numbers is None or not _is_concrete(self.relevance, self.scores):
            return _shapes_repr(self, ("relevance", "scores", "target_score", "baseline_score", "gap"))
        target_score, baseline_score, gap = numbers
        return _result_repr(self, target_score, (
            ("baseline_score", baseline_score), ("sum(relevance)", _leaf_sum(self.relevance)), ("gap", gap)))


# --- reprs of the results ---------------------------------------------------------------------------

_HTML_POSITIONS = 500   # positions an Explanation's HTML heatmap shows at most (it says when there are more)


def _scalars(*values) -> tuple[float, ...] | None:
    """The values as floats when each is one concrete number; None for a batch, a tracer, a non-array."""
    if not _is_concrete(*values) or any(np.ndim(v) != 0 for v in values):
        return None
    try:
        return tuple(float(np.asarray(v)) for v in values)
    except (TypeError, ValueError):
        return None


def _shape_text(value) -> str:
    """``(4, 60) float32`` for an array (its values never), the type name for anything else."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None:
        return type(value).__name__
    return str(tuple(shape)) if dtype is None else f"{tuple(shape)} {dtype}"


def _shapes_repr(result, fields: Sequence[str]) -> str:
    return f"{type(result).__name__}(" + ", ".join(f"{f}={_shape_text(getattr(result, f))}" for f in fields) + ")"


def _leaf_sum(tree) -> float:
    """The sum of every number in a pytree, in float64."""
    return float(sum(np.sum(np.asarray(leaf, dtype=np.float64)) for leaf in jax.tree_util.tree_leaves(tree)))


def _target_of(scores: np.ndarray, target_score: float) -> int | tuple[int, ...] | None:
    """The output whose score is ``target_score`` (an index, or an index tuple for a (T, C) output);
    None unless exactly one score is (a target given by weights or a function, or tied scores)."""
    matches = np.flatnonzero(scores.reshape(-1) == target_score)
    if matches.size != 1:
        return None
    if scores.ndim <= 1:
        return int(matches[0])
    return tuple(int(i) for i in np.unravel_index(int(matches[0]), scores.shape))


def _result_repr(result, target_score: float, tail: Sequence[tuple[str, float]]) -> str:
    target = _target_of(np.asarray(result.scores, dtype=np.float64), target_score)
    parts = [f"relevance={_shape_text(result.relevance)}", f"scores={_shape_text(result.scores)}",
             f"target={'?' if target is None else target}", f"target_score={target_score:+.4g}"]
    parts += [f"{name}={value:+.4g}" for name, value in tail]
    return f"{type(result).__name__}(" + ", ".join(parts) + ")"


# --- per-example relevance functions ---------------------------------------------------------------
#
# ``target`` below is a flat integer index into the output, a weights array of the output's shape, or
# a function of the output (static): ``_weights`` turns each into the weights ``w`` of sum(w * output).

def _weights(target, output: Array) -> Array:
    """The weights ``w`` (output's shape) of the explained quantity ``sum(w * output)``."""
    if callable(target):
        return jax.grad(lambda o: jnp.asarray(target(o), o.dtype))(output)
    target = jnp.asarray(target)
    if jnp.issubdtype(target.dtype, jnp.integer):
        return jax.nn.one_hot(target, output.size, dtype=output.dtype).reshape(output.shape)
    return target.astype(output.dtype)


def _select(target, values: Array) -> Array:
    """``sum(w * values)``; for an index, the indexed value itself (exact, no sum of zeros)."""
    if not callable(target) and jnp.issubdtype(jnp.result_type(target), jnp.integer):
        return values.reshape(-1)[target]
    return jnp.sum(_weights(target, values) * values)


def _seeded_vjp(apply, rules, params, x, target, mask, seed_with_score: bool):
    scores, pullback = jax.vjp(lambda x_: apply(params, x_, rules, mask=mask), x)
    w = _weights(target, scores)
    (r_x,) = pullback(w * scores if seed_with_score else w)
    return r_x


def _lrp_fn(m: Method, params, x, target, mask, index):
    return _seeded_vjp(m.apply, m.rules, params, x, target, mask, True)


def _gradient_fn(m: Method, params, x, target, mask, index):
    return _seeded_vjp(m.apply, None, params, x, target, mask, False)


def _sensitivity_fn(m: Method, params, x, target, mask, index):
    return _gradient_fn(m, params, x, target, mask, index) ** 2


def _gradient_x_input_fn(m: Method, params, x, target, mask, index):
    return _gradient_fn(m, params, x, target, mask, index) * x


def _occlusion_fn(m: Method, params, x, target, mask, index):
    def output(x_):
        scores = m.apply(params, x_, None, mask=mask)
        return _select(target, jax.nn.softmax(scores, axis=-1) if m.option == "p" else scores)

    occluded = jax.vmap(lambda t: output(x.at[t].set(0)))(jnp.arange(x.shape[0]))
    relevance = output(x) - occluded
    return relevance if mask is None else jnp.where(mask, relevance, 0)


def _zero_padded(relevance: Array, mask) -> Array:
    """Exact zeros at padded steps of a (T, ...) relevance (mask None: unchanged)."""
    if mask is None:
        return relevance
    keep = jnp.reshape(mask, mask.shape + (1,) * (relevance.ndim - 1))
    return jnp.where(keep, relevance, jnp.zeros((), relevance.dtype))


def _gradients_at(m: Method, params, points: Array, w: Array, mask) -> Array:
    """``d sum(w * f(p)) / d p`` at every point ``p`` of ``points`` (K, *x.shape), one vmapped pullback."""
    def one(point):
        _, pullback = jax.vjp(lambda x_: m.apply(params, x_, None, mask=mask), point)
        return pullback(w)[0]

    return jax.vmap(one)(points)


def _baseline_of(config: IntegratedGradients, x: Array) -> Array:
    """The baseline input of :func:`integrated_gradients`, shaped like ``x``."""
    if callable(config.baseline):
        baseline = jnp.asarray(config.baseline(x), x.dtype)
        if baseline.shape != x.shape:
            raise ValueError(f"`baseline` function must return an array of the input's shape {x.shape}; "
                             f"got {baseline.shape}.")
        return baseline
    value = jnp.asarray(config.baseline, x.dtype)
    if value.ndim == 1 and value.shape[0] != x.shape[-1]:
        raise ValueError(f"`baseline` has {value.shape[0]} values; the input has E = {x.shape[-1]} features.")
    return jnp.broadcast_to(value, x.shape)


def _ig_parts(m: Method, params, x, target, mask):
    """(attributions, scores at x, baseline input) of Integrated Gradients; midpoint rule on the path."""
    cfg = cast(IntegratedGradients, m.config)
    scores = m.apply(params, x, None, mask=mask)
    w = _weights(target, scores)
    baseline = _baseline_of(cfg, x)
    alphas = (jnp.arange(cfg.steps, dtype=x.dtype) + 0.5) / cfg.steps
    points = baseline[None] + alphas.reshape((-1,) + (1,) * x.ndim) * (x - baseline)[None]
    mean_gradient = jnp.mean(_gradients_at(m, params, points, w, mask), axis=0)
    return _zero_padded((x - baseline) * mean_gradient, mask), scores, baseline


def _ig_fn(m: Method, params, x, target, mask, index):
    return _ig_parts(m, params, x, target, mask)[0]


def _ig_full_impl(m: Method, params, x, target, mask):
    relevance, scores, baseline = _ig_parts(m, params, x, target, mask)
    target_score = _select(target, scores)
    baseline_score = jnp.sum(_weights(target, scores) * m.apply(params, baseline, None, mask=mask))
    gap = jnp.sum(relevance) - (target_score - baseline_score)
    return Attribution(relevance, scores, target_score, baseline_score, gap)


_ig_full = jax.jit(_ig_full_impl, static_argnums=(0,))
_ig_full_function = jax.jit(lambda m, target, params, x, mask: _ig_full_impl(m, params, x, target, mask),
                            static_argnums=(0, 1))


def _smoothgrad_noise(m: Method, x: Array, mask, index) -> Array:
    """Noise (S, *x.shape): a draw per step from ``fold_in(fold_in(PRNGKey(seed), index), t)``, so a step's
    noise depends on the seed, the example and the position only (not on the padded length); padded
    steps get none."""
    cfg = cast(SmoothGrad, m.config)
    key = jax.random.fold_in(jax.random.PRNGKey(m.seed), index)
    if x.ndim == 1:
        noise = jax.random.normal(key, (cfg.samples,) + x.shape, x.dtype)
    else:
        per_step = jax.vmap(lambda t: jax.random.normal(jax.random.fold_in(key, t), (cfg.samples,) + x.shape[1:],
                                                        x.dtype))(jnp.arange(x.shape[0]))
        noise = jnp.swapaxes(per_step, 0, 1)
    scale = jnp.asarray(cfg.sigma, x.dtype)
    if cfg.noise == "relative":
        valid = jnp.ones(x.shape, bool) if mask is None else jnp.broadcast_to(
            jnp.reshape(mask, mask.shape + (1,) * (x.ndim - 1)), x.shape)
        span = jnp.max(jnp.where(valid, x, -jnp.inf)) - jnp.min(jnp.where(valid, x, jnp.inf))
        scale = scale * span
    return jax.vmap(lambda n: _zero_padded(n, mask))(scale * noise)


def _smoothgrad_fn(m: Method, params, x, target, mask, index):
    cfg = cast(SmoothGrad, m.config)
    w = _weights(target, m.apply(params, x, None, mask=mask))
    points = x[None] + _smoothgrad_noise(m, x, mask, index)
    gradients = _gradients_at(m, params, points, w, mask)
    if cfg.map == "sensitivity":
        gradients = gradients ** 2
    elif cfg.map == "gradient_x_input":
        gradients = gradients * points
    return _zero_padded(jnp.mean(gradients, axis=0), mask)


def _random_fn(m: Method, params, x, target, mask, index):
    key = jax.random.fold_in(jax.random.PRNGKey(m.seed), index)
    relevance = jax.random.normal(key, (x.shape[0],), x.dtype)
    return relevance if mask is None else jnp.where(mask, relevance, 0)


# --- compiled drivers ------------------------------------------------------------------------------

@partial(jax.jit, static_argnums=(0,))
def _single(m: Method, params, x, target, mask):
    return m.fn(m, params, x, target, mask, 0)


@partial(jax.jit, static_argnums=(0, 1))
def _single_function(m: Method, target: Callable, params, x, mask):
    return m.fn(m, params, x, target, mask, 0)


@partial(jax.jit, static_argnums=(0,))
def _batched(m: Method, params, X, targets, mask):
    index = jnp.arange(X.shape[0])
    mask_axis = None if mask is None else 0   # models without a mask (the MLP) get None
    return jax.vmap(lambda x, t, k, i: m.fn(m, params, x, t, k, i), in_axes=(0, 0, mask_axis, 0))(
        X, targets, mask, index)


@partial(jax.jit, static_argnums=(0, 1))
def _batched_function(m: Method, target: Callable, params, X, mask):
    index = jnp.arange(X.shape[0])
    mask_axis = None if mask is None else 0
    return jax.vmap(lambda x, k, i: m.fn(m, params, x, target, k, i), in_axes=(0, mask_axis, 0))(X, mask, index)


@partial(jax.jit, static_argnums=(0,))
def _all(m: Method, params, x, mask):
    scores = jax.eval_shape(lambda: m.apply(params, x, None, mask=mask))
    size = int(np.prod(scores.shape))
    if m.fn in (_lrp_fn, _gradient_fn, _sensitivity_fn, _gradient_x_input_fn):
        rules = m.rules if m.fn is _lrp_fn else None
        out, pullback = jax.vjp(lambda x_: m.apply(params, x_, rules, mask=mask), x)
        eye = jnp.eye(size, dtype=out.dtype).reshape((size,) + out.shape)
        seeds = eye * out[None] if m.fn is _lrp_fn else eye
        relevance = jax.vmap(lambda seed: pullback(seed)[0])(seeds)
        if m.fn is _sensitivity_fn:
            relevance = relevance ** 2
        elif m.fn is _gradient_x_input_fn:
            relevance = relevance * x[None]
    else:
        relevance = jax.vmap(lambda t: m.fn(m, params, x, t, mask, 0))(jnp.arange(size))
    return relevance.reshape(scores.shape + relevance.shape[1:])


def _full_impl(m: Method, params, x, target, mask):
    model = m.apply.__self__  # type: ignore[attr-defined]  # a bound method of the model
    taps = model.zero_taps(params, x)
    scores, pullback = jax.vjp(lambda p, x_, t: m.apply(p, x_, m.rules, mask=mask, taps=t), params, x, taps)
    w = _weights(target, scores)
    r_params, r_x, r_taps = pullback(w * scores)
    absorbed = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_params))
    initial = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_taps["initial"]))
    target_score = _select(target, scores)
    residual = target_score - jnp.sum(r_x) - absorbed - initial
    return Explanation(r_x, scores, target_score, r_params, r_taps["initial"], r_taps["states"], residual)


_full = jax.jit(_full_impl, static_argnums=(0,))
_full_function = jax.jit(lambda m, target, params, x, mask: _full_impl(m, params, x, target, mask),
                         static_argnums=(0, 1))


# --- checks ----------------------------------------------------------------------------------------

def _is_concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(values))


def _output_shape(apply, params, x, mask) -> tuple[int, ...]:
    """The shape of the model's output for input ``x`` (checks the parameters when the model can)."""
    model: Any = getattr(apply, "__self__", None)
    network = network_of(model)
    if network is not None:
        return network.output_shape(params, jnp.shape(x)[0] if network.sequence_input else None)
    if hasattr(model, "output_size"):
        return (model.output_size(params),)
    return tuple(jax.eval_shape(lambda p, x_: apply(p, x_, None, mask=mask), params, x).shape)


def _check_inputs(apply, x, mask) -> None:
    """The model's own input checks when it has them (``model.check_inputs``), else sequence checks."""
    model: Any = getattr(apply, "__self__", None)
    (model.check_inputs if hasattr(model, "check_inputs") else check_inputs)(x, mask)


def _as_floating(name: str, x, dtype):
    """``x`` as an array (nested lists of numbers become one) of a floating dtype.

    Raises:
        TypeError: an integer or boolean array, naming ``name`` and the expected dtype.
    """
    if not hasattr(x, "dtype"):
        x = np.asarray(x, dtype=np.float32 if dtype is None else np.float64)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        expected = "" if dtype is None else f" ({np.dtype(dtype).name}, the parameters' dtype)"
        raise TypeError(f"`{name}` must be floating point{expected}; got dtype {x.dtype}.")
    return x


def _cast_input(name: str, x, dtype, where: str = "", check_finite: bool = True):
    """``x`` cast to the parameters' floating ``dtype`` (unchanged when it has it, or ``dtype`` is None).

    A concrete ``x`` is checked before the cast (NaN or inf in the input itself, unless
    ``check_finite`` is False) and after it (finite values that the cast turned into inf: float64
    beyond float32's range, 1e5 in float16). Casting up (float16 or bfloat16 to float32, float32 to
    float64) is exact.

    Raises:
        ValueError: non-finite values in ``x``, or values that overflow ``dtype``, naming ``name``
            (followed by ``where``, e.g. " (sequence 17)").
    """
    if check_finite:
        _check_finite(name, x, where)
    if dtype is None or x.dtype == dtype:
        return x
    if not _is_concrete(x):
        return x.astype(dtype)
    host = np.asarray(x)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = host.astype(dtype)
    overflow = ~np.isfinite(cast) & np.isfinite(host)
    if overflow.any():
        raise ValueError(f"`{name}`{where} has values up to {np.max(np.abs(host[overflow])):.3g} that overflow "
                         f"{np.dtype(dtype).name}, the parameters' dtype (`{name}` is {host.dtype.name}); "
                         "scale the input, or give parameters of a wider dtype.")
    return cast


def _check_finite(name: str, value, where: str = "") -> None:
    if not _is_concrete(value):
        return
    for path, leaf in jax.tree_util.tree_leaves_with_path(value):
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
            raise ValueError(f"`{name}{jax.tree_util.keystr(path)}`{where} contains non-finite values (NaN or inf).")


def _check_target(target, shape: tuple[int, ...], name: str = "target"):
    """Checks one example's target against the output ``shape``; returns it as a flat index (int32), a
    weights array of ``shape``, or the function itself.

    Raises:
        TypeError: a target of another type (a string, a float scalar, ...).
        ValueError: an index out of range, a tuple of the wrong length, weights of the wrong shape.
    """
    if callable(target):
        return target
    if isinstance(target, (str, bytes)) or target is None:
        raise TypeError(f"`{name}` must be a class index, a tuple of indices, an array of weights of the "
                        f"output's shape {shape} or a function of the output; got {target!r}.")
    if isinstance(target, tuple):
        if len(target) != len(shape) or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool)
                                                 for t in target):
            raise ValueError(f"`{name}` as a tuple must hold {len(shape)} integer indices into the output of "
                             f"shape {shape}; got {target!r}.")
        if not all(0 <= t < n for t, n in zip(target, shape)):
            raise ValueError(f"`{name}` {target!r} lies outside the output of shape {shape}.")
        return np.int32(np.ravel_multi_index(target, shape))
    dtype = jnp.result_type(target)
    if jnp.ndim(target) == 0:
        if not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(f"`{name}` must be an integer class index; got dtype {dtype}.")
        if len(shape) != 1:
            raise ValueError(f"`{name}`: the model's output has shape {shape} (one output per step); give a tuple "
                             f"of indices such as (t, c), weights of that shape, or a function of the output.")
        if _is_concrete(target) and not 0 <= int(target) < shape[0]:
            raise ValueError(f"`{name}` must be a class index in [0, {shape[0]}); got {int(target)}.")
        return target
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` as an array must hold float weights of the output's shape {shape}; got dtype "
                        f"{dtype} (give one class index as a scalar).")
    if tuple(jnp.shape(target)) != shape:
        raise ValueError(f"`{name}` weights must have the output's shape {shape}; got {tuple(jnp.shape(target))}.")
    _check_finite(name, target)
    return target


def _check_targets(targets, B: int, shape: tuple[int, ...]):
    """Batch targets: (B,) indices (or one), (B, k) index tuples, (B, *shape) weights, or a function."""
    if callable(targets):
        return targets
    if isinstance(targets, (str, bytes)) or targets is None:
        raise TypeError(f"`targets` must be class indices (B,), index tuples (B, {len(shape)}), weights "
                        f"(B, *{shape}) or a function of the output; got {targets!r}.")
    array = targets if hasattr(targets, "dtype") else np.asarray(targets)
    dtype = jnp.result_type(array)
    if jnp.issubdtype(dtype, jnp.integer):
        if jnp.ndim(array) == 0:
            array = jnp.full((B,), array)
        if len(shape) > 1 and tuple(jnp.shape(array)) == (B, len(shape)):
            if _is_concrete(array):
                a = np.asarray(array)
                bad = ~np.all((a >= 0) & (a < np.asarray(shape)), axis=1)
                if bad.any():
                    raise ValueError(f"`targets` row {int(np.flatnonzero(bad)[0])} {a[bad][0].tolist()} lies "
                                     f"outside the output of shape {shape}.")
            strides = np.asarray([int(np.prod(shape[k + 1:])) for k in range(len(shape))], np.int32)
            return jnp.asarray(array, jnp.int32) @ jnp.asarray(strides)
        if len(shape) > 1:
            raise ValueError(f"`targets`: the model's output has shape {shape}; give index tuples of shape "
                             f"(B, {len(shape)}) = ({B}, {len(shape)}), weights or a function.")
        if tuple(jnp.shape(array)) != (B,):
            raise ValueError(f"`targets` must have shape (B,) = ({B},); got {jnp.shape(array)}.")
        if _is_concrete(array):
            a = np.asarray(array)
            if np.any(a < 0) or np.any(a >= shape[0]):
                bad = a[(a < 0) | (a >= shape[0])].ravel()[0]
                raise ValueError(f"`targets` must be a class index in [0, {shape[0]}); got {int(bad)}.")
        return array
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`targets` must be integer class indices or float weights; got dtype {dtype}.")
    if tuple(jnp.shape(array)) != (B, *shape):
        raise ValueError(f"`targets` weights must have shape (B, *output shape) = {(B, *shape)}; got "
                         f"{tuple(jnp.shape(array))}.")
    _check_finite("targets", array)
    return array


def _takes_mask(apply) -> bool:
    """Whether the model takes a padding mask: sequence models do, a model with ``masked = False``
    (the MLP) does not."""
    return getattr(getattr(apply, "__self__", None), "masked", True)


def _check_example(m: Method, params, x, target, mask):
    """Checks one example; ``target=None`` skips the target (for :meth:`Method.all`)."""
    dtype = floating_dtype(params)
    x = _as_floating("x", x, dtype)
    _check_inputs(m.apply, x, mask)
    x = _cast_input("x", x, dtype)
    shape = _output_shape(m.apply, params, x, mask)
    target = None if target is None else _check_target(target, shape)
    _check_finite("params", params)
    if mask is not None and _is_concrete(mask) and not np.any(np.asarray(mask)):
        raise ValueError("`mask` marks no valid step: the sequence is empty.")
    return x, mask, target


def _check_batch(m: Method, params, X, targets, mask):
    dtype = floating_dtype(params)
    X = _as_floating("X", X, dtype)
    shape = jnp.shape(X)
    if not _takes_mask(m.apply):
        if len(shape) < 2 or shape[0] == 0:
            raise ValueError(f"`X` must be a batch of shape (B, ...) with B >= 1; got {shape}.")
        if mask is not None:
            raise ValueError("`mask` must be None: this model takes no padding mask.")
        B = shape[0]
    else:
        if len(shape) != 3 or shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"`X` must be a padded batch of shape (B, T, E) with B, T >= 1; got {shape}.")
        B, T = shape[:2]
        if mask is None:
            mask = np.ones((B, T), bool)
        if tuple(jnp.shape(mask)) != (B, T):
            raise ValueError(f"`mask` must have shape (B, T) = ({B}, {T}); got {jnp.shape(mask)}.")
        check_prefix(mask)
    mask_row = None if mask is None else mask[0]
    _check_inputs(m.apply, X[0], mask_row)
    X = _cast_input("X", X, dtype)
    targets = _check_targets(targets, B, _output_shape(m.apply, params, X[0], mask_row))
    _check_finite("params", params)
    if mask is not None and _is_concrete(mask):
        empty = np.flatnonzero(~np.asarray(mask).any(axis=1))
        if empty.size:
            raise ValueError(f"`mask` row {int(empty[0])} marks no valid step: an empty sequence.")
    return X, targets, mask


# --- public constructors ---------------------------------------------------------------------------

def lrp(apply: Callable, rules: RuleSet | str = "lrp-all") -> Method:
    """Layer-wise Relevance Propagation through ``apply`` with a rule set.

    ``lrp(apply, rules)(params, x, target)`` returns the relevance of ``x`` (T, E); relevance starts
    as the target's score (other classes 0) and flows back by the rules of each elementary computation.

    Args:
        apply: a model, ``apply(params, x, rules=None, *, mask=None)``.
        rules: a :class:`RuleSet` or a preset name (``"lrp-all"``, ...; eps 0).

    Raises:
        TypeError: ``rules`` not a rule set or a preset name.
        ValueError: an unknown preset, or an override (``rules.composite(by_layer=...)``) naming a
            layer the model (a model of :mod:`lrpjax.models`) does not have; the message lists its layers.
    """
    if isinstance(rules, str):
        rules = preset(rules)
    if not isinstance(rules, RuleSet):
        raise TypeError(f"`rules` must be a RuleSet or a preset name; got {type(rules).__name__}.")
    network = network_of(getattr(apply, "__self__", None))
    if network is not None:
        network.check_rules(rules)
    return Method("lrp", _lrp_fn, apply, rules)


def gradient(apply: Callable) -> Method:
    """``d score[target] / d x`` (T, E) through the plain model (``rules=None``)."""
    return Method("gradient", _gradient_fn, apply)


def sensitivity(apply: Callable) -> Method:
    """Sensitivity Analysis: the squared gradient (T, E); per token its squared L2 norm."""
    return Method("sensitivity", _sensitivity_fn, apply)


def gradient_x_input(apply: Callable) -> Method:
    """Gradient x Input: ``x * d score[target] / d x`` (T, E)."""
    return Method("gradient_x_input", _gradient_x_input_fn, apply)


def occlusion(apply: Callable, mode: str = "f") -> Method:
    """Occlusion (Sec. 11.5.1): one relevance per position (T,), all positions in one vmapped call.

    ``R_t = f(x)[target] - f(x with x_t = 0)[target]`` (``mode="f"``, f-diff on scores) or the same on
    softmax probabilities (``mode="p"``, P-diff).
    """
    if mode not in ("f", "p"):
        raise ValueError(f"`mode` of occlusion must be 'f' (score difference) or 'p' (probability "
                         f"difference); got {mode!r}.")
    return Method(f"occlusion-{mode}", _occlusion_fn, apply, option=mode)


@dataclass(frozen=True)
class IntegratedGradients:
    """Settings of :func:`integrated_gradients` (hashable, static under ``jit``).

    Attributes:
        steps: points of the midpoint rule on the straight path, ``>= 1``.
        baseline: the path's start: a float (every feature), a tuple of E floats (one embedding,
            repeated at every step; lists and arrays are converted), or a function ``baseline(x) ->``
            array of ``x``'s shape (static: pass the same function object to reuse compiled code).
    """

    steps: int = 32
    baseline: float | tuple[float, ...] | Callable = 0.0

    def __post_init__(self):
        if not isinstance(self.steps, (int, np.integer)) or isinstance(self.steps, bool) or self.steps < 1:
            raise ValueError(f"`steps` of Integrated Gradients must be an int >= 1; got {self.steps!r}.")
        object.__setattr__(self, "steps", int(self.steps))
        baseline = self.baseline
        if callable(baseline):
            return
        if hasattr(baseline, "tolist"):
            baseline = baseline.tolist()
        if isinstance(baseline, (list, tuple)):
            if not baseline or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in baseline):
                raise ValueError("`baseline` of Integrated Gradients as a sequence must hold E >= 1 numbers, "
                                 f"one per input feature; got {self.baseline!r}.")
            baseline = tuple(float(v) for v in baseline)
        elif isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
            baseline = float(baseline)
        else:
            raise TypeError("`baseline` of Integrated Gradients must be a float, a sequence of E floats or a "
                            f"function of the input; got {type(self.baseline).__name__}.")
        if not np.all(np.isfinite(baseline)):
            raise ValueError(f"`baseline` of Integrated Gradients must be finite; got {self.baseline!r}.")
        object.__setattr__(self, "baseline", baseline)


def integrated_gradients(apply: Callable, steps: int = 32, baseline=0.0) -> Method:
    """Integrated Gradients (Sundararajan, Taly, Yan 2017): ``(x - x0) * mean_k grad f(x0 + a_k (x - x0))``.

    ``f = sum(w * output)`` is the explained quantity (module docstring; ``w`` is fixed at ``x``) and
    ``a_k = (k + 1/2) / steps`` the midpoint rule on [0, 1]; the gradients at all ``steps`` points are
    one vmapped pullback. Completeness, ``sum(R) = f(x) - f(x0)``, holds up to the quadrature error:
    :meth:`Method.full` returns the :class:`Attribution` with that gap. Padded steps get 0.

    Args:
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        steps: number of points on the path (>= 1).
        baseline: ``x0``: a float for every feature (default 0, the all-zero input that occlusion also
            uses), a sequence of E floats (a reference embedding at every step), or a function
            ``baseline(x) -> x0`` of ``x``'s shape.

    Raises:
        ValueError: ``steps`` < 1, a non-finite or empty baseline.
        TypeError: a baseline of another type.
    """
    return Method("integrated_gradients", _ig_fn, apply, config=IntegratedGradients(steps, baseline))


_NOISE = ("relative", "absolute")
_MAPS = ("gradient", "sensitivity", "gradient_x_input")


@dataclass(frozen=True)
class SmoothGrad:
    """Settings of :func:`smoothgrad` (hashable, static under ``jit``).

    Attributes:
        sigma: noise standard deviation, ``>= 0``: relative to the input's range (``noise="relative"``)
            or absolute.
        samples: noisy copies averaged, ``>= 1``.
        noise: ``"relative"``: the standard deviation is ``sigma * (max(x) - min(x))`` over the valid
            steps of the explained example (Smilkov et al.'s noise level); ``"absolute"``: ``sigma``.
        map: what is averaged at each noisy point ``x'``: ``"gradient"`` (SmoothGrad), ``"sensitivity"``
            (the squared gradient) or ``"gradient_x_input"`` (``x' * gradient``).
    """

    sigma: float = 0.15
    samples: int = 32
    noise: str = "relative"
    map: str = "gradient"

    def __post_init__(self):
        if not isinstance(self.sigma, (int, float)) or isinstance(self.sigma, bool):
            raise TypeError(f"`sigma` of SmoothGrad must be a Python float; got {type(self.sigma).__name__}.")
        if not 0 <= self.sigma < float("inf"):
            raise ValueError(f"`sigma` of SmoothGrad must be a finite number >= 0; got {self.sigma!r}.")
        object.__setattr__(self, "sigma", float(self.sigma))
        if not isinstance(self.samples, (int, np.integer)) or isinstance(self.samples, bool) or self.samples < 1:
            raise ValueError(f"`samples` of SmoothGrad must be an int >= 1; got {self.samples!r}.")
        object.__setattr__(self, "samples", int(self.samples))
        if self.noise not in _NOISE:
            raise ValueError(f"`noise` of SmoothGrad must be one of {_NOISE}; got {self.noise!r}.")
        if self.map not in _MAPS:
            raise ValueError(f"`map` of SmoothGrad must be one of {_MAPS}; got {self.map!r}.")


def smoothgrad(apply: Callable, sigma: float = 0.15, samples: int = 32, seed: int = 0, *,
               noise: str = "relative", map: str = "gradient") -> Method:
    """SmoothGrad (Smilkov et al. 2017): the mean of a gradient map over noisy copies of the input.

    ``R = (1/S) sum_s M(x + e_s)``, ``e_s ~ N(0, s^2)`` element-wise, ``M`` the gradient of ``sum(w *
    output)`` (or its square, or ``x' * gradient``; see :class:`SmoothGrad`). Seeded like the random
    baseline: the draw depends on ``seed``, the example's index (its position in a batch or dataset)
    and the step, not on the padding; padded steps get neither noise nor relevance. With ``sigma = 0``
    it is the map itself (the gradient, up to rounding of the mean). All samples are one vmapped
    pullback.

    Args:
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        sigma: noise level (default 0.15 of the input's range, within Smilkov et al.'s 10-20 %).
        samples: number of noisy copies.
        seed: random seed (an int).
        noise: ``"relative"`` (sigma times the example's value range) or ``"absolute"``.
        map: ``"gradient"``, ``"sensitivity"`` or ``"gradient_x_input"``.

    Raises:
        ValueError: a negative or non-finite ``sigma``, ``samples`` < 1, an unknown ``noise`` or ``map``.
        TypeError: ``seed`` not an int, ``sigma`` not a number.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int; got {type(seed).__name__}.")
    return Method("smoothgrad", _smoothgrad_fn, apply, seed=seed, config=SmoothGrad(sigma, samples, noise, map))


def random_baseline(apply: Callable, seed: int = 0) -> Method:
    """Seeded random relevance (T,), standard normal; a different draw per example of a batch."""
    if not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int; got {type(seed).__name__}.")
    return Method("random", _random_fn, apply, seed=seed)


# --- helpers ---------------------------------------------------------------------------------------

def target_weights(target, output: ArrayLike) -> Array:
    """The weights ``w`` (output's shape) of the quantity ``sum(w * output)`` that ``target`` explains.

    Args:
        target: a flat index (an int), weights of the output's shape, or a function of the output.
        output: the model's output, e.g. (C,) or (T, C).
    """
    return _weights(target, jnp.asarray(output))


def per_token(relevance: ArrayLike, input_ndim: int = 2) -> Array:
    """Word-level relevance: sums (..., T, E) over E; position-wise (..., T) passes unchanged.

    Args:
        relevance: output of a method.
        input_ndim: ndim of the explained input (2 for one sequence, 3 for a batch).
    """
    relevance = jnp.asarray(relevance)
    return relevance.sum(-1) if relevance.ndim == input_ndim else relevance


def pad(sequences: Sequence[ArrayLike], length: int | None = None) -> tuple[Array, Array]:
    """Pads sequences (T_i, E) to a batch ``X`` (B, T, E) with ``mask`` (B, T) bool.

    Raises:
        ValueError: no sequences, an empty sequence, mixed E, or a sequence longer than ``length``.
    """
    if len(sequences) == 0:
        raise ValueError("`sequences` is empty; at least one sequence is needed.")
    arrays = [np.asarray(s) for s in sequences]
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] == 0:
            raise ValueError(f"`sequences[{i}]` must have shape (T, E) with T >= 1; got {a.shape}.")
        if a.shape[1] != arrays[0].shape[1]:
            raise ValueError(f"`sequences[{i}]` has E = {a.shape[1]}; the first has E = {arrays[0].shape[1]}.")
    T = max(a.shape[0] for a in arrays) if length is None else length
    X = np.zeros((len(arrays), T, arrays[0].shape[1]), arrays[0].dtype)
    mask = np.zeros((len(arrays), T), bool)
    for i, a in enumerate(arrays):
        if a.shape[0] > T:
            raise ValueError(f"`sequences[{i}]` has {a.shape[0]} steps, more than `length` = {T}.")
        X[i, :a.shape[0]] = a
        mask[i, :a.shape[0]] = True
    return jnp.asarray(X), jnp.asarray(mask)

