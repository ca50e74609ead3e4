"""What an explanation returns beyond the relevance: :class:`Explanation` (LRP's relevance at every state,
the biases' share and the conservation residual) and :class:`Attribution` (Integrated Gradients with its
completeness gap), each printing as one line and rendering in notebooks."""

from __future__ import annotations

import warnings
from typing import NamedTuple, Sequence

import jax
import numpy as np

from lrpjax._types import Array, Params

__all__ = ["Explanation", "Attribution", "is_concrete", "NumericalWarning", "health", "warn_if_unhealthy",
           "MAGNITUDE_BOUND", "RESIDUAL_TOLERANCE"]

MAGNITUDE_BOUND = 1e4
"""A relevance map whose absolute sum exceeds this many times the target's score is flagged: relevance
that large cancels to the score only through rounding (a denominator near 0 that nothing stabilises)."""

RESIDUAL_TOLERANCE = 10.0
"""A conservation residual beyond this many times the target's score is flagged."""

_ADVICE = ("raise eps (a larger stabiliser), use share=True, or compute in float64 "
           "(jax.config.update('jax_enable_x64', True) and float64 parameters)")


class NumericalWarning(UserWarning):
    """Explanations whose numbers are not to be trusted (see :func:`health`)."""


def health(relevance, target_score, residual=None, *, bound: float = MAGNITUDE_BOUND,
           tolerance: float = RESIDUAL_TOLERANCE) -> str | None:
    """What is numerically wrong with one explanation, or None.

    Flagged: non-finite relevance (or residual); relevance whose absolute sum exceeds ``bound`` times
    ``|target_score|``; a residual beyond ``tolerance`` times ``|target_score|``. The reference is at
    least 1e-8, so that a score of exactly 0 does not flag every map.

    Args:
        relevance: the relevance (any shape), host or device values (not traced).
        target_score: the explained score.
        residual: the conservation residual, if the method has one.
    """
    R = np.asarray(relevance, dtype=np.float64)
    score = abs(float(np.asarray(target_score, dtype=np.float64).sum()))
    if not np.all(np.isfinite(R)):
        return f"the relevance holds NaN or infinity; {_ADVICE}"
    reference = max(score, 1e-8)
    with np.errstate(over="ignore"):
        size = float(np.abs(R).sum())
    if size > bound * reference:
        return (f"the relevance's absolute sum {size:.3g} is {size / reference:.3g} times the target's score "
                f"{score:.3g} (bound {bound:g}): it cancels only through rounding; {_ADVICE}")
    if residual is not None:
        r = np.asarray(residual, dtype=np.float64)
        if not np.all(np.isfinite(r)):
            return f"the conservation residual is NaN or infinity; {_ADVICE}"
        if float(np.abs(r).max(initial=0.0)) > tolerance * reference:
            return (f"the conservation residual {float(np.abs(r).max()):.3g} exceeds {tolerance:g} times the "
                    f"target's score {score:.3g}; {_ADVICE}")
    return None


def warn_if_unhealthy(result, stacklevel: int = 3) -> None:
    """Warns (:class:`NumericalWarning`, once for this call) when a concrete :class:`Explanation` or
    :class:`Attribution` is flagged by :func:`health`."""
    message = getattr(result, "health", None)
    if message:
        warnings.warn(f"lrpjax: {type(result).__name__}: {message}", NumericalWarning, stacklevel=stacklevel)


def is_concrete(*values) -> bool:
    """Whether no leaf of ``values`` is a tracer (the values can be read on the host)."""
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(values))


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

    @property
    def health(self) -> str | None:
        """What is numerically wrong with this explanation (:func:`health`: non-finite values, relevance
        far beyond the target's score, a residual beyond tolerance), or None; None too while traced."""
        if not is_concrete(self.relevance, self.target_score, self.residual):
            return None
        return health(self.relevance, self.target_score, self.residual)

    def __repr__(self) -> str:
        """One line: shapes, the target and its score, the sums of the conservation equation and the
        residual, never the arrays themselves (a batched or traced explanation: its fields' shapes)."""
        numbers = _scalars(self.target_score, self.residual)
        if numbers is None or not is_concrete(self.relevance, self.scores):
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
        if numbers is None or not is_concrete(self.relevance, self.scores):
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
                f"{render.conservation_html(conservation, _leaf_sum(self.relevance))}</div>")


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

    @property
    def health(self) -> str | None:
        """What is numerically wrong with these attributions (non-finite values, a magnitude far beyond
        the explained difference), or None; None too while traced."""
        if not is_concrete(self.relevance, self.target_score, self.baseline_score):
            return None
        difference = np.asarray(self.target_score, np.float64) - np.asarray(self.baseline_score, np.float64)
        return health(self.relevance, difference)

    def __repr__(self) -> str:
        """One line: shapes, the target, its score at ``x`` and at the baseline, the sum of the
        attributions and the gap, never the arrays themselves (batched or traced: the shapes)."""
        numbers = _scalars(self.target_score, self.baseline_score, self.gap)
        if numbers is None or not is_concrete(self.relevance, self.scores):
            return _shapes_repr(self, ("relevance", "scores", "target_score", "baseline_score", "gap"))
        target_score, baseline_score, gap = numbers
        return _result_repr(self, target_score, (
            ("baseline_score", baseline_score), ("sum(relevance)", _leaf_sum(self.relevance)), ("gap", gap)))


# --- reprs of the results ---------------------------------------------------------------------------

_HTML_POSITIONS = 500   # positions an Explanation's HTML heatmap shows at most (it says when there are more)


def _scalars(*values) -> tuple[float, ...] | None:
    """The values as floats when each is one concrete number; None for a batch, a tracer, a non-array."""
    if not is_concrete(*values) or any(np.ndim(v) != 0 for v in values):
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
