"""Faithfulness metrics of explanations of sequence models, batched: one compiled call per metric.

Every metric here is a pure function of a :class:`~lrpjax.methods.base.Method` value, the model's
parameters and a padded batch of sequences ``X`` (B, T, E) with its mask (B, T) (or a batch of vectors
(B, D) for a model without a mask). Inside one ``jax.jit``-compiled call it explains every example
(the method's relevance summed to one value per position, as :meth:`Method.tokens` does), perturbs the
examples at every step or subset (``vmap`` over examples and over perturbations) and reads the model's
output. A *feature* is a position (a time step or token, all its E inputs at once); padded steps are
never ranked, removed or counted.

What is measured (``targets``): one output per example, a class index into the output (C,), a flat
index (or an index tuple given as (B, 2) rows) into a per-step output (T, C), index 0 of a regression
output (1,); ``None`` explains and measures each example's predicted (argmax) output. ``output``:
``"score"`` (the raw output, logits for a classifier) or ``"probability"`` (softmax over the output's
last axis, as ERASER reports).

Precomputed relevance (``relevance=``, Quantus's ``a_batch``): every metric explains the batch itself unless
it is given the relevance per position (B, T) (per input (B, D) for vectors) together with the ``targets``
it explains, e.g. from :func:`explained_relevance`; then several metrics of one method explain once and
the time of each metric is the measurement's alone. The method is still needed: its model is measured.

How a feature is removed (:class:`Removal`):

* ``Removal("zero")``: its inputs set to 0;
* ``Removal("baseline", value)``: set to a baseline, one vector (E,), one sequence (T, E) or one per
  example (B, T, E) (e.g. the training set's mean embedding);
* ``Removal("token", token_id)``: for models that take token ids (B, T): the id set to a mask or
  ``<unk>`` token;
* ``Removal("road", noise=0.01, seed=0)``: ROAD's noisy linear imputation along time (Rong et al.
  2022, ICML): a removed step takes the value its kept neighbours imply, the solution of
  ``x_t = (x_{t-1} + x_{t+1}) / 2`` over the removed steps (linear interpolation between the nearest
  kept steps, the nearest kept value at either end), plus Gaussian noise of standard deviation
  ``noise``, so that the removal is neither out of distribution nor leaks the removed set through a
  constant value;
* ``Removal("delete")``: the tokens are dropped and the rest packed to the front with a shorter mask
  (the SST word-deletion study).

:mod:`lrpjax.evaluate.perturbation` (a score function and precomputed relevance) is the special case
of :func:`deletion_curves` with ``Removal("zero")``/``"baseline"``/``"delete"``; both rank ties by
position.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.methods.base import Method, check_batch, ids_model, takes_mask
from lrpjax.methods.program import Program, explain_chunk
from lrpjax.methods.targets import select

__all__ = ["Removal", "ERASER_BINS", "deletion_curves", "insertion_curves", "area", "delta_af", "comprehensiveness",
           "sufficiency", "eraser_aopc", "faithfulness_correlation", "sensitivity_n", "random_subsets",
           "explained_relevance"]

_REMOVALS = ("zero", "baseline", "token", "road", "delete")
_OUTPUTS = ("score", "probability")
ERASER_BINS = (1, 5, 10, 20, 50)
"""The k % of ERASER's AOPC forms (DeYoung et al. 2020, Sec. 4)."""


@dataclass(frozen=True)
class Removal:
    """How a feature (a position) is removed; see the module docstring.

    Attributes:
        kind: ``"zero"``, ``"baseline"``, ``"token"``, ``"road"`` or ``"delete"``.
        value: the baseline array (``"baseline"``) or the token id (``"token"``); None otherwise.
        noise: ROAD's noise standard deviation (``"road"``), >= 0.
        seed: ROAD's noise seed; each example (by its index in the batch) and each perturbation draws anew.
    """

    kind: str = "zero"
    value: Any = None
    noise: float = 0.01
    seed: int = 0

    def __post_init__(self):
        if self.kind not in _REMOVALS:
            raise ValueError(f"`kind` of Removal must be one of {_REMOVALS}; got {self.kind!r}.")
        if self.kind == "baseline" and self.value is None:
            raise ValueError("Removal('baseline') needs `value`: a vector (E,), a sequence (T, E) or one per "
                             "example (B, T, E).")
        if self.kind == "token" and (not isinstance(self.value, (int, np.integer)) or isinstance(self.value, bool)
                                     or self.value < 0):
            raise ValueError(f"Removal('token') needs `value`, the mask token's id (an int >= 0); got {self.value!r}.")
        if self.kind not in ("baseline", "token") and self.value is not None:
            raise ValueError(f"Removal({self.kind!r}) takes no `value`; got {self.value!r}.")
        if not isinstance(self.noise, (int, float)) or isinstance(self.noise, bool) or not self.noise >= 0:
            raise ValueError(f"`noise` of Removal must be a float >= 0; got {self.noise!r}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"`seed` of Removal must be an int; got {type(self.seed).__name__}.")
        if not -2 ** 31 <= self.seed < 2 ** 31:
            raise ValueError(f"`seed` of Removal must fit int32; got {self.seed}.")


# --- the per-example procedure -------------------------------------------------------------------------

def _expand(flags: Array, ndim: int) -> Array:
    """(T,) -> (T, 1, ..., 1) with ``ndim`` axes in all."""
    return flags.reshape(flags.shape + (1,) * (ndim - 1))


def _impute(x: Array, keep: Array, valid: Array) -> Array:
    """ROAD's linear imputation along time: every step's value from the nearest kept steps before and
    after it (linear interpolation; the nearest kept value where only one side has one; 0 when no step
    is kept). The solution of ``x_t = mean of its valid neighbours`` over the removed steps."""
    T = x.shape[0]
    t = jnp.arange(T)
    keep = keep & valid
    before = jax.lax.cummax(jnp.where(keep, t, -1), axis=0)
    after = jax.lax.cummin(jnp.where(keep, t, T), axis=0, reverse=True)
    has_before, has_after = before >= 0, after < T
    x_before = x[jnp.clip(before, 0, T - 1)]
    x_after = x[jnp.clip(after, 0, T - 1)]
    gap = jnp.maximum(after - before, 1).astype(x.dtype)
    w_after = jnp.where(has_before & has_after, (t - before).astype(x.dtype) / gap, jnp.zeros((), x.dtype))
    w_after = jnp.where(has_after & ~has_before, jnp.ones((), x.dtype), w_after)
    inner = _expand(1 - w_after, x.ndim) * x_before + _expand(w_after, x.ndim) * x_after
    return jnp.where(_expand(has_before | has_after, x.ndim), inner, jnp.zeros((), x.dtype))


def _perturbed(removal: Removal, x: Array, mask: Array | None, removed: Array, value: Array, key: Array,
               noise: Array):
    """``(x', mask')``: ``x`` (T, ...) with the ``removed`` (T,) positions removed."""
    valid = jnp.ones(removed.shape, bool) if mask is None else mask
    removed = removed & valid
    if removal.kind == "zero":
        return jnp.where(_expand(removed, x.ndim), value.astype(x.dtype), x), mask
    if removal.kind == "road":
        noisy = _impute(x, ~removed, valid) + noise.astype(x.dtype) * jax.random.normal(key, x.shape, x.dtype)
        return jnp.where(_expand(removed, x.ndim), noisy, x), mask
    keep = valid & ~removed                           # "delete": kept tokens first, in their order
    packed = jnp.argsort(~keep, stable=True)
    new_mask = jnp.arange(x.shape[0]) < jnp.sum(keep.astype(jnp.int32))
    return jnp.where(_expand(new_mask, x.ndim), x[packed], jnp.zeros_like(x)), new_mask


def _read(apply, output: str, params: Params, x: Array, mask: Array | None, target: Array) -> Array:
    """The measured output of one (perturbed) example: the target's score or probability."""
    scores = apply(params, x, None, mask=mask)
    if output == "probability":
        scores = jax.nn.softmax(scores, axis=-1)
    return select(target, scores)


def _measure(apply, removal, output, params, x, mask, target, value, key, noise, removed_sets):
    """The measured output after removing each set of ``removed_sets`` (K, T): (K,)."""
    def one(k, removed):
        x_k, mask_k = _perturbed(removal, x, mask, removed, value, jax.random.fold_in(key, k), noise)
        return _read(apply, output, params, x_k, mask_k, target)

    return jax.vmap(one)(jnp.arange(removed_sets.shape[0]), removed_sets)


def _ranks(r: Array, valid: Array, most_first) -> Array:
    """Each position's rank (0: removed first); invalid positions rank last; ties by position."""
    key = jnp.where(valid, jnp.where(most_first, -r, r), jnp.inf)
    order = jnp.argsort(key, stable=True)
    return jnp.zeros(r.shape, jnp.int32).at[order].set(jnp.arange(r.shape[0], dtype=jnp.int32))


# --- two compiled calls for the batch: the explanations, then the measurements ----------------------------

@dataclass(frozen=True)
class _Plan:
    """The static part of a metric's calls. The relevance is compiled per method; the measurements per
    model, removal and output, so that every method of one model shares them (the order, the complement
    and the counts are arguments: deletion and insertion in both orders share one program too)."""

    method: Method
    removal: Removal
    output: str
    tokens: bool = True       # sum relevance (T, E) over E (sequences); vectors (D,) keep theirs


@partial(jax.jit, static_argnums=(0, 1))
def _relevance(method: Method, tokens: bool, params, X, mask, targets):
    """Relevance per position of every example and the explained outputs: ((B, T), (B,))."""
    index = jnp.arange(X.shape[0], dtype=jnp.int32)
    out = explain_chunk(Program((method,), "index", tokens=tokens), params, X, mask, targets, index)
    return out.relevance, out.targets


@partial(jax.jit, static_argnums=(0, 1, 2))
def _measurements(apply, removal: Removal, output: str, params, X, mask, explained, value, R, counts, subsets,
                  options, noise, seed):
    """The measured output of every example after every perturbation: (B, K)."""
    index = jnp.arange(X.shape[0], dtype=jnp.int32)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(index)
    most_first, complement, percent = options

    def example(x, m, t, v, key, r, sets):
        valid = jnp.ones((x.shape[0],), bool) if m is None else m
        if sets is None:                                  # the top positions by rank
            n_valid = jnp.sum(valid, dtype=jnp.int32)
            cnt = jnp.where(percent, (counts * n_valid + 99) // 100, counts)
            sets = _ranks(r, valid, most_first)[None, :] < cnt[:, None]
        sets = jnp.where(complement, valid[None, :] & ~sets, sets)
        return _measure(apply, removal, output, params, x, m, t, v, key, noise, sets)

    mask_axis = None if mask is None else 0
    value_axis = 0 if value.ndim == X.ndim else None
    subset_axis = None if subsets is None else 0
    return jax.vmap(example, in_axes=(0, mask_axis, 0, value_axis, 0, 0, subset_axis))(
        X, mask, explained, value, keys, R, subsets)


def _run(plan: _Plan, params, X, mask, targets, value, counts, subsets, options, relevance=None):
    """Relevance, measurements and explained outputs: ((B, T), (B, K), (B,)); ``relevance`` (checked by
    :func:`_check_relevance`) replaces the explanation."""
    if relevance is None:
        R, explained = _relevance(plan.method, plan.tokens, params, X, mask, targets)
    else:
        R, explained = relevance, targets
    static = dataclasses.replace(plan.removal, noise=0.0, seed=0)      # noise and seed are arguments
    values = _measurements(plan.method.apply, static, plan.output, params, X, mask, explained, value, R,
                           counts, subsets, options, jnp.asarray(plan.removal.noise), jnp.asarray(plan.removal.seed, jnp.int32))
    return R, values, explained


def explained_relevance(method: Method, params: Params, X: ArrayLike, targets=None, *,
                        mask: ArrayLike | None = None) -> tuple[Array, Array]:
    """The relevance per position (B, T) every metric here ranks by, and the explained output index (B,)
    (the predicted one where ``targets`` is None)."""
    removal = Removal("delete") if ids_model(method) is not None else Removal()
    plan, params, X, mask, targets, value, _ = _prepare(method, params, X, targets, mask, removal, "score")
    return _relevance(plan.method, plan.tokens, params, X, mask, targets)


def _options(most_first: bool = True, complement: bool = False, percent: bool = False) -> tuple:
    return jnp.asarray(most_first), jnp.asarray(complement), jnp.asarray(percent)


def _prepare(method, params, X, targets, mask, removal, output, relevance=None):
    """The checked batch, the measurement plan and the removal's value; with ``relevance`` given, also that
    relevance checked (:func:`_check_relevance`), else None."""
    if not isinstance(method, Method):
        raise TypeError(f"`method` must be an explanation method (lrpjax.methods.Method); got {type(method).__name__}.")
    if not isinstance(removal, Removal):
        raise TypeError(f"`removal` must be a Removal; got {type(removal).__name__}.")
    if output not in _OUTPUTS:
        raise ValueError(f"`output` must be one of {_OUTPUTS}; got {output!r}.")
    given = targets
    X_checked, targets, mask = check_batch(method, params, X, _any_output if given is None else given, mask)
    B = X_checked.shape[0]
    targets = jnp.full((B,), -1, jnp.int32) if given is None else targets
    if not jnp.issubdtype(jnp.result_type(targets), jnp.integer):
        raise TypeError("`targets` must be class indices (B,) (or index tuples (B, k)) or None; the metrics "
                        "measure one output per example.")
    targets = jnp.asarray(targets, jnp.int32)
    if removal.kind == "delete" and not takes_mask(method):
        raise ValueError("Removal('delete') drops tokens of sequences; this model takes no mask.")
    if removal.kind == "delete" and mask is None:
        mask = jnp.ones(X_checked.shape[:2], bool)
    ids = ids_model(method)
    if ids is not None and removal.kind not in ("token", "delete"):
        raise ValueError(f"Removal({removal.kind!r}) cannot remove a token id: a model that takes token ids needs "
                         "Removal('token', id) (a mask or <unk> token) or Removal('delete').")
    if ids is None and removal.kind == "token":
        raise ValueError("Removal('token') replaces token ids; this model reads vectors (use 'zero', 'baseline' or "
                         "'road').")
    if ids is not None and removal.kind == "token" and not removal.value < ids.input_size(params):
        raise ValueError(f"`value` of Removal('token') must be a token id in [0, {ids.input_size(params)}); got "
                         f"{removal.value}.")
    value = _removal_value(removal, X_checked)
    static = dataclasses.replace(removal, kind="zero" if removal.kind in ("baseline", "token") else removal.kind,
                                 value=None, noise=float(removal.noise))
    plan = _Plan(method, static, output, tokens=X_checked.ndim > 2 or ids is not None)
    return plan, params, X_checked, mask, targets, value, _check_relevance(relevance, given, X_checked, plan)


def _any_output(output: Array) -> Array:
    """A stand-in target for the checks when each example's predicted output is measured."""
    return jnp.sum(output)


def _check_relevance(relevance, targets, X: Array, plan: _Plan) -> Array | None:
    """The precomputed relevance as an array of the shape the metrics rank, (B, T) (or (B, D) for vectors)."""
    if relevance is None:
        return None
    if targets is None:
        raise ValueError("`relevance` needs `targets`: the outputs it explains, one per example (explained_relevance "
                         "returns both).")
    R = jnp.asarray(relevance)
    shape = X.shape[:2] if plan.tokens else X.shape
    if not jnp.issubdtype(R.dtype, jnp.floating):
        raise TypeError(f"`relevance` must be a float array; got dtype {R.dtype}.")
    if R.shape != shape:
        raise ValueError(f"`relevance` must have shape {shape}, one value per {'position' if plan.tokens else 'input'} "
                         f"of every example (explained_relevance gives it); got {R.shape}.")
    return R


def _removal_value(removal: Removal, X: Array) -> Array:
    if removal.kind == "token":
        return jnp.asarray(removal.value, X.dtype)
    if removal.kind != "baseline":
        return jnp.zeros((), X.dtype)
    value = jnp.asarray(removal.value)
    if not jnp.issubdtype(value.dtype, jnp.floating) and not jnp.issubdtype(value.dtype, jnp.integer):
        raise TypeError(f"`value` of Removal('baseline') must be numeric; got dtype {value.dtype}.")
    shapes = (X.shape[2:], X.shape[1:], X.shape)
    if value.shape not in shapes:
        raise ValueError(f"`value` of Removal('baseline') must have shape {X.shape[2:]} (one vector), "
                         f"{X.shape[1:]} (one sequence) or {X.shape} (one per example); got {value.shape}.")
    if not np.all(np.isfinite(np.asarray(value))):
        raise ValueError("`value` of Removal('baseline') contains non-finite values.")
    return value.astype(X.dtype) if value.shape == X.shape else jnp.broadcast_to(value.astype(X.dtype), X.shape[1:])


def _check_count(name: str, value, low: int = 0, high: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low or \
            (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"`{name}` must be an int {bound}; got {value!r}.")
    return int(value)


def _order(order: str) -> bool:
    if order not in ("most", "least"):
        raise ValueError(f"`order` must be 'most' (MoRF) or 'least' (LeRF); got {order!r}.")
    return order == "most"


# --- curves ---------------------------------------------------------------------------------------------

def _curves(method, params, X, targets, mask, removal, output, steps, per_step, order, complement, relevance):
    per_step = _check_count("per_step", per_step, 1)
    most_first = _order(order)
    plan, params, X, mask, targets, value, R = _prepare(method, params, X, targets, mask, removal, output, relevance)
    steps = -(-X.shape[1] // per_step) if steps is None else _check_count("steps", steps)
    counts = jnp.arange(steps + 1, dtype=jnp.int32) * per_step
    return _run(plan, params, X, mask, targets, value, counts, None, _options(most_first, complement), R)[1]


def deletion_curves(method: Method, params: Params, X: ArrayLike, targets=None, *, mask: ArrayLike | None = None,
                    removal: Removal = Removal(), output: str = "score", steps: int | None = None,
                    per_step: int = 1, order: str = "most", relevance: ArrayLike | None = None) -> Array:
    """Deletion (perturbation) curves: the output as the highest-ranked positions are removed.

    MoRF (``order="most"``, most relevant first; pixel flipping, Bach et al. 2015; Samek et al. 2017)
    should fall fast; LeRF (``order="least"``) should stay high. Step ``s`` removes the ``s * per_step``
    highest-ranked valid positions (all of them once there are fewer).

    Args:
        method: the explanation method (its model is the one measured).
        params: the model's parameters.
        X: padded batch (B, T, E) (or (B, D) for a model without a mask).
        targets: explained and measured output per example (module docstring); None: the predicted one.
        mask: valid steps (B, T) bool.
        removal: how a position is removed (:class:`Removal`).
        output: ``"score"`` or ``"probability"``.
        steps: L, the number of steps (the curve has L + 1 points); default: until every position is gone.
        per_step: positions removed per step.
        order: ``"most"`` or ``"least"``.
        relevance: precomputed relevance per position (B, T) of the ``targets`` (which must then be given);
            None: the method explains the batch.

    Returns:
        (B, L + 1): the output before any removal, then after every step.

    Raises:
        ValueError: bad shapes, steps, per_step, order or output (named).
        TypeError: ``method`` not a Method, ``removal`` not a Removal, non-integer targets.
    """
    return _curves(method, params, X, targets, mask, removal, output, steps, per_step, order, False, relevance)


def insertion_curves(method: Method, params: Params, X: ArrayLike, targets=None, *, mask: ArrayLike | None = None,
                     removal: Removal = Removal(), output: str = "score", steps: int | None = None,
                     per_step: int = 1, order: str = "most", relevance: ArrayLike | None = None) -> Array:
    """Insertion curves: every valid position starts removed and the highest-ranked ones are restored,
    ``per_step`` at a time (Petsiuk et al. 2018, RISE; its area is the insertion metric). With
    ``order="most"`` the output should rise fast.

    Arguments as for :func:`deletion_curves`. Returns (B, L + 1): the output with every position removed,
    then after every step.
    """
    return _curves(method, params, X, targets, mask, removal, output, steps, per_step, order, True, relevance)


def area(curves: ArrayLike) -> Array:
    """The area under a curve of L + 1 equally spaced points on [0, 1] as their mean,
    ``A = 1 / (L + 1) * sum_k f(x^(k))`` (the normalised area of MambaLRP's ``A_F``); (B,) or a scalar."""
    curves = jnp.asarray(curves)
    if curves.ndim not in (1, 2) or curves.shape[-1] < 1:
        raise ValueError(f"`curves` must have shape (B, L + 1) or (L + 1,); got {curves.shape}.")
    return jnp.mean(curves, axis=-1)


def delta_af(morf: ArrayLike, lerf: ArrayLike) -> Array:
    """``Delta A_F = A_F(LeRF) - A_F(MoRF)`` (Blücher et al. 2024; MambaLRP, Jafari et al. NeurIPS 2024),
    from deletion curves of the same examples in the two orders; larger is better. Equals
    ``aopc(morf) - aopc(lerf)`` since both curves start at the same output.

    Raises:
        ValueError: curves of different shapes.
    """
    morf, lerf = jnp.asarray(morf), jnp.asarray(lerf)
    if morf.shape != lerf.shape:
        raise ValueError(f"`morf` and `lerf` must have one shape; got {morf.shape} and {lerf.shape}.")
    return area(lerf) - area(morf)


# --- ERASER -------------------------------------------------------------------------------------------

def _eraser(method, params, X, targets, mask, removal, output, k, complement, relevance):
    ks = (k,) if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else tuple(k)
    if not ks:
        raise ValueError("`k` must name at least one percentage.")
    ks = tuple(_check_count("k", v, 0, 100) for v in ks)
    plan, params, X, mask, targets, value, R = _prepare(method, params, X, targets, mask, removal, output, relevance)
    counts = jnp.asarray((0,) + ks + (100,), jnp.int32)   # 0 % removed or 100 % kept: the output itself
    values = _run(plan, params, X, mask, targets, value, counts, None, _options(True, complement, True), R)[1]
    full = values[:, -1:] if complement else values[:, :1]
    result = full - values[:, 1:-1]
    return result[:, 0] if isinstance(k, (int, np.integer)) else result


def comprehensiveness(method: Method, params: Params, X: ArrayLike, targets=None, *, k=ERASER_BINS,
                      mask: ArrayLike | None = None, removal: Removal = Removal(), output: str = "probability",
                      relevance: ArrayLike | None = None):
    """ERASER comprehensiveness (DeYoung et al. 2020, ACL): ``f(x) - f(x \\ r_k)``, the output's drop when
    the rationale ``r_k``, the top ``k`` % of the valid positions (``ceil(k * n / 100)`` of n), is
    removed. Larger is better. The other arguments (``relevance`` included) are those of
    :func:`deletion_curves` (``output`` defaults to ``"probability"``).

    Args:
        k: one percentage (an int in [0, 100]) or several (default :data:`ERASER_BINS`).

    Returns:
        (B,) for one k, (B, len(k)) for several.
    """
    return _eraser(method, params, X, targets, mask, removal, output, k, False, relevance)


def sufficiency(method: Method, params: Params, X: ArrayLike, targets=None, *, k=ERASER_BINS,
                mask: ArrayLike | None = None, removal: Removal = Removal(), output: str = "probability",
                relevance: ArrayLike | None = None):
    """ERASER sufficiency (DeYoung et al. 2020): ``f(x) - f(r_k)``, the output's drop when everything
    but the rationale ``r_k`` (the top ``k`` %, as in :func:`comprehensiveness`) is removed. Smaller is
    better. Arguments and result as for :func:`comprehensiveness`."""
    return _eraser(method, params, X, targets, mask, removal, output, k, True, relevance)


def eraser_aopc(values: ArrayLike, zero: ArrayLike) -> Array:
    """ERASER's AOPC form over the bins B (DeYoung et al. 2020, Eq. in Sec. 4):
    ``1 / (|B| + 1) * (v_0 + sum_{k in B} v_k)``.

    Args:
        values: (B, |B|) from :func:`comprehensiveness` or :func:`sufficiency` at the bins.
        zero: (B,) the metric at k = 0 (``comprehensiveness(..., k=0)`` is 0; ``sufficiency(..., k=0)``
            the drop when every position is removed).

    Returns:
        (B,).
    """
    values, zero = jnp.asarray(values), jnp.asarray(zero)
    if values.ndim != 2 or zero.shape != values.shape[:1]:
        raise ValueError(f"`values` must be (B, bins) and `zero` (B,); got {values.shape} and {zero.shape}.")
    return (zero + values.sum(axis=1)) / (values.shape[1] + 1)


# --- random subsets: faithfulness correlation and sensitivity-n ----------------------------------------------

def random_subsets(key: Array, mask: ArrayLike, size, n: int) -> Array:
    """``n`` random subsets of ``size`` valid positions per example, uniformly without replacement:
    (B, n, T) bool. ``mask`` (B, T); ``size`` an int (or a traced int), clipped to each valid length."""
    mask = jnp.asarray(mask)

    def one(k, m):
        def draw(k_):
            u = jnp.where(m, jax.random.uniform(k_, m.shape), jnp.inf)
            return _ranks(-u, m, True) < jnp.minimum(size, jnp.sum(m, dtype=jnp.int32))
        return jax.vmap(draw)(jax.random.split(k, n))

    return jax.vmap(one)(jax.random.split(key, mask.shape[0]), mask)


def _pearson(a: Array, b: Array) -> Array:
    a, b = a - a.mean(), b - b.mean()
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))


def _subset_correlation(method, params, X, targets, mask, removal, output, subsets, n, seed, sizes, relevance):
    plan, params, X, mask, targets, value, relevance = _prepare(method, params, X, targets, mask, removal, output,
                                                                relevance)
    B, T = X.shape[:2]
    valid = jnp.ones((B, T), bool) if mask is None else jnp.asarray(mask)
    if subsets is None:
        n = _check_count("n", n, 2)
        key = jax.random.PRNGKey(seed)
        subsets = jnp.concatenate([random_subsets(jax.random.fold_in(key, s), valid, s, n) for s in sizes], axis=1)
    else:
        subsets = jnp.asarray(subsets)
        if subsets.dtype != jnp.bool_ or subsets.ndim != 3 or subsets.shape[0] != B or subsets.shape[2] != T:
            raise ValueError(f"`subsets` must be bool of shape (B, n, T) = ({B}, n, {T}); got {subsets.dtype} "
                             f"{subsets.shape}.")
        subsets = subsets & valid[:, None, :]
    full = jnp.zeros((B, 1, T), bool)
    R, values, _ = _run(plan, params, X, mask, targets, value, jnp.zeros((1,), jnp.int32),
                        jnp.concatenate([full, subsets], axis=1), _options(), relevance)
    drops = values[:, :1] - values[:, 1:]                                        # (B, K)
    sums = jnp.einsum("bt,bkt->bk", R, subsets.astype(R.dtype))
    groups = len(sizes) if sizes else 1
    drops = drops.reshape(B, groups, -1)
    sums = sums.reshape(B, groups, -1)
    return jax.vmap(jax.vmap(_pearson))(sums, drops)


def faithfulness_correlation(method: Method, params: Params, X: ArrayLike, targets=None, *, size: int = 2,
                             n: int = 32, seed: int = 0, subsets: ArrayLike | None = None,
                             mask: ArrayLike | None = None, removal: Removal = Removal(),
                             output: str = "score", relevance: ArrayLike | None = None) -> Array:
    """Faithfulness correlation (Bhatt et al. 2020, IJCAI, Eq. 3): the Pearson correlation, over random
    subsets S of ``size`` positions, between the relevance of S, ``sum_{i in S} R_i``, and the output's
    drop when S is removed, ``f(x) - f(x_[S removed])``. 1 is best. The other arguments (``relevance``
    included) are those of :func:`deletion_curves`.

    Args:
        size: |S| (clipped to each example's valid length).
        n: number of random subsets per example (>= 2).
        seed: the subsets' seed.
        subsets: instead of drawing, these subsets (B, n, T) bool (padded steps are dropped from them).

    Returns:
        (B,); NaN where the relevance sums or the drops do not vary over the subsets.
    """
    _check_count("size", size, 1)
    return _subset_correlation(method, params, X, targets, mask, removal, output, subsets, n, seed,
                               (size,) if subsets is None else (), relevance)[:, 0]


def sensitivity_n(method: Method, params: Params, X: ArrayLike, targets=None, *, sizes=(1, 2, 3), n: int = 32,
                  seed: int = 0, mask: ArrayLike | None = None, removal: Removal = Removal(),
                  output: str = "score", relevance: ArrayLike | None = None) -> Array:
    """Sensitivity-n (Ancona et al. 2018, ICLR): for each subset size n_s in ``sizes``, the Pearson
    correlation over ``n`` random subsets S with |S| = n_s between ``sum_{i in S} R_i`` and
    ``f(x) - f(x_[S removed])``; a method is sensitivity-n when it is 1. The other arguments (``relevance``
    included) are those of :func:`faithfulness_correlation`.

    Returns:
        (B, len(sizes)).
    """
    sizes = tuple(sizes)
    if not sizes:
        raise ValueError("`sizes` must name at least one subset size.")
    sizes = tuple(_check_count("sizes", s, 1) for s in sizes)
    return _subset_correlation(method, params, X, targets, mask, removal, output, None, n, seed, sizes, relevance)
