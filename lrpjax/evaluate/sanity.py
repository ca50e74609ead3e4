"""Sanity checks of explanations (Adebayo et al. 2018; Sixt et al. 2020), batched: one compiled explanation per method.

An explanation that does not change when the model's parameters are randomised, or that is the same for
every class, cannot be explaining the model's decision:

* :func:`parameter_randomisation` (Adebayo et al. 2018, NeurIPS, Sec. 3): the layers are re-drawn from
  the output down, cumulatively (``"cascading"``) or one at a time (``"independent"``), and each map is
  compared with the original one by the Spearman rank correlation and the SSIM; a method passes when the
  similarity falls as more of the model is randomised;
* :func:`random_logit` (Sixt et al. 2020, ICML, "When explanations lie"): the map of the explained output
  against the map of a randomly drawn other class; low similarity is better.

Maps are compared over the valid steps only (every input of a step for (T, E) maps); ``absolute=True``
compares their absolute values (Adebayo et al. report both).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.methods.base import Method, check_batch
from lrpjax.methods.program import Program, explain_chunk
from lrpjax.models.sequential import network_of

__all__ = ["spearman", "ssim", "randomised_parameters", "ParameterRandomisation", "parameter_randomisation",
           "RandomLogit", "random_logit"]

_MODES = ("cascading", "independent")


def _as_valid(a: Array, mask: Array | None) -> Array:
    """A bool array of ``a``'s shape: the entries of valid steps (mask (T,) over the first axis)."""
    if mask is None:
        return jnp.ones(a.shape, bool)
    return jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a.shape)


def _average_ranks(a: Array, valid: Array) -> Array:
    """Ranks from 1 among the valid entries, tied values sharing their average rank; invalid ones get 0."""
    v = jnp.where(valid, a, jnp.inf).reshape(-1)
    s = jnp.sort(v)
    low = jnp.searchsorted(s, v, side="left")
    high = jnp.searchsorted(s, v, side="right")
    ranks = (low + high + 1).astype(a.dtype) / 2
    return jnp.where(valid.reshape(-1), ranks, jnp.zeros((), a.dtype))


def _weighted_pearson(a: Array, b: Array, w: Array) -> Array:
    n = jnp.sum(w)
    a_c = (a - jnp.sum(w * a) / n) * w
    b_c = (b - jnp.sum(w * b) / n) * w
    return jnp.sum(a_c * b_c) / jnp.sqrt(jnp.sum(a_c * a_c) * jnp.sum(b_c * b_c))


def spearman(a: ArrayLike, b: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """Spearman's rank correlation of two maps of one example over their valid entries: the Pearson
    correlation of their ranks, ties sharing their average rank (Spearman 1904). NaN when a map is
    constant.

    Args:
        a: one map, (T,) or (T, E).
        b: the other map, of the same shape.
        mask: valid steps (T,) bool, or None.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    valid = _as_valid(a, None if mask is None else jnp.asarray(mask))
    w = valid.reshape(-1).astype(a.dtype)
    return _weighted_pearson(_average_ranks(a, valid), _average_ranks(b, valid), w)


def ssim(a: ArrayLike, b: ArrayLike, mask: ArrayLike | None = None, *, data_range: float | None = None) -> Array:
    """The structural similarity of two maps over their valid entries, taken as one window (Wang et al.
    2004, IEEE TIP 13(4), Eq. 13):
    ``((2 mu_a mu_b + C1)(2 s_ab + C2)) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))`` with sample
    (co)variances, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` and ``L`` the data range (default: the range
    of ``a`` over its valid entries, 1 where ``a`` is constant). 1 for equal maps.

    Args:
        a: the reference map, (T,) or (T, E).
        b: the compared map, of the same shape.
        mask: valid steps (T,) bool, or None.
        data_range: ``L``.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    valid = _as_valid(a, None if mask is None else jnp.asarray(mask))
    w = valid.astype(a.dtype)
    n = jnp.sum(w)
    if data_range is None:
        L = jnp.max(jnp.where(valid, a, -jnp.inf)) - jnp.min(jnp.where(valid, a, jnp.inf))
        L = jnp.where(L > 0, L, jnp.ones((), a.dtype))
    else:
        L = jnp.asarray(data_range, a.dtype)
    mu_a, mu_b = jnp.sum(w * a) / n, jnp.sum(w * b) / n
    da, db = (a - mu_a) * w, (b - mu_b) * w
    var_a, var_b = jnp.sum(da * da) / (n - 1), jnp.sum(db * db) / (n - 1)
    cov = jnp.sum(da * db) / (n - 1)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def _compare(maps_a: Array, maps_b: Array, mask: Array | None, absolute: bool) -> tuple[Array, Array]:
    """Spearman and SSIM of two batches of maps (B, ...): ((B,), (B,))."""
    if absolute:
        maps_a, maps_b = jnp.abs(maps_a), jnp.abs(maps_b)
    mask_axis = None if mask is None else 0
    rho = jax.vmap(spearman, in_axes=(0, 0, mask_axis))(maps_a, maps_b, mask)
    sim = jax.vmap(lambda a, b, m: ssim(a, b, m), in_axes=(0, 0, mask_axis))(maps_a, maps_b, mask)
    return rho, sim


# --- model-parameter randomisation -------------------------------------------------------------------------

def _layer_order(method: Method, params: Params, layers) -> tuple[str, ...]:
    keys = tuple(params) if isinstance(params, dict) else ()
    if layers is None:
        network = network_of(method.model)
        layers = tuple(k for k in network.keys if k in keys) if network is not None else keys
    layers = tuple(layers)
    unknown = [k for k in layers if k not in keys]
    if not layers or unknown:
        raise ValueError(f"`layers` must name parameter groups of the model, input side first; the model has "
                         f"{list(keys)}; got {list(layers)}.")
    return layers


def randomised_parameters(params: Params, layers: tuple[str, ...], mode: str = "cascading",
                          seed: int = 0) -> list[Params]:
    """The randomised models of :func:`parameter_randomisation`, the top (output) layer first.

    Randomisation ``k`` re-draws layer ``layers[-1 - k]`` and, with ``"cascading"``, every layer above it;
    a re-drawn array is standard normal times the array's own standard deviation (a re-initialisation at
    the trained scale; an all-constant array, such as zero biases, stays as it is). The other arrays are
    the trained ones, unchanged.

    Args:
        params: the trained parameters, a dict of parameter groups.
        layers: the groups in order from the input to the output.
        mode: ``"cascading"`` or ``"independent"``.
        seed: the draws' seed (each group draws from its own key).

    Returns:
        len(layers) parameter dicts.
    """
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}; got {mode!r}.")
    return _randomised(params, tuple(layers), mode, seed)


def _randomised(params: Params, layers: tuple[str, ...], mode: str, seed: int) -> list[Params]:
    drawn = _drawn(params, layers, jnp.asarray(seed, jnp.int32))
    models = []
    for k in range(len(layers)):
        chosen = layers[len(layers) - 1 - k:] if mode == "cascading" else (layers[len(layers) - 1 - k],)
        models.append({name: (drawn[name] if name in chosen else group) for name, group in params.items()})
    return models


@partial(jax.jit, static_argnums=(1,))
def _drawn(params: Params, layers: tuple[str, ...], seed) -> dict:
    """Every layer re-drawn, in one compiled program shared by both modes (drawn eagerly, every small draw
    of every array compiled a program of its own: seconds per model on a busy CPU)."""
    key = jax.random.PRNGKey(seed)
    drawn = {}
    for j, name in enumerate(layers):
        leaves, tree = jax.tree_util.tree_flatten(params[name])
        keys = jax.random.split(jax.random.fold_in(key, j), max(len(leaves), 1))
        new = [jnp.std(leaf) * jax.random.normal(k, jnp.shape(leaf), jnp.result_type(leaf)) +
               jnp.where(jnp.std(leaf) > 0, 0, leaf) for k, leaf in zip(keys, leaves)]
        drawn[name] = jax.tree_util.tree_unflatten(tree, new)
    return drawn


class ParameterRandomisation(NamedTuple):
    """What :func:`parameter_randomisation` returns.

    Attributes:
        layers: the randomised layer of each column, top (output) first.
        spearman: (B, K) rank correlation of each randomised map with the original one.
        ssim: (B, K) their SSIM.
        maps: (K, B, ...) the randomised maps; original: (B, ...) the original maps.
    """

    layers: tuple[str, ...]
    spearman: Array
    ssim: Array
    maps: Array
    original: Array


# One compiled explanation per method, called once per map (the trained model's, every randomised model's,
# the other class's), and one compiled comparison shared by every method: a sanity check costs one
# compilation of the method rather than programs that trace the explanation twice each.

@partial(jax.jit, static_argnums=(0,))
def _maps(method: Method, params, X, mask, targets):
    """The maps of a batch (B, ...), the explained outputs (B,) and the output's size per step (its last axis)."""
    index = jnp.arange(X.shape[0], dtype=jnp.int32)
    out = explain_chunk(Program((method,), "index"), params, X, mask, targets, index)
    return out.relevance, out.targets, out.scores


@partial(jax.jit, static_argnums=(3,))
def _compare_jit(maps_a, maps_b, mask, absolute: bool):
    return _compare(maps_a, maps_b, mask, absolute)


def parameter_randomisation(method: Method, params: Params, X: ArrayLike, targets=None, *,
                            mask: ArrayLike | None = None, mode: str = "cascading", layers=None, seed: int = 0,
                            absolute: bool = False) -> ParameterRandomisation:
    """Model-parameter randomisation test (Adebayo et al. 2018, Sec. 3.1), cascading or independent.

    The maps of the model with its layers randomised (:func:`randomised_parameters`) are compared with
    the trained model's maps of the same outputs (``targets``, or the trained model's predictions) by
    :func:`spearman` and :func:`ssim`. One compiled explanation (per method) explains the batch under every
    randomisation, one call per randomised model.

    Args:
        method: the explanation method.
        params: the trained parameters (a dict of parameter groups, one per layer).
        X: padded batch (B, T, E) (or (B, D)); mask: (B, T) bool.
        targets: class indices (B,) (or index tuples (B, k)); None: the trained model's predictions.
        mode: ``"cascading"`` (from the output down, cumulatively) or ``"independent"``.
        layers: parameter groups, input side first (default: the model's layers in order).
        seed: the randomisation's seed.
        absolute: compare absolute maps.

    Returns:
        :class:`ParameterRandomisation`.

    Raises:
        ValueError: an unknown mode, layers the model does not have, bad shapes or targets.
    """
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}; got {mode!r}.")
    layers = _layer_order(method, params, layers)
    checked, targets, mask = check_batch(method, params, X, _any_output if targets is None else targets, mask)
    X = jnp.asarray(checked)
    targets = jnp.full((X.shape[0],), -1, jnp.int32) if callable(targets) else jnp.asarray(targets, jnp.int32)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int; got {type(seed).__name__}.")
    models = _randomised(params, layers, mode, int(seed))
    original, fixed, _ = _maps(method, params, X, mask, targets)
    maps, rho, sim = [], [], []
    for randomised in models:                     # the trained model's outputs explained under every randomisation
        m, _, _ = _maps(method, randomised, X, mask, fixed)
        r, s = _compare_jit(original, m, mask, bool(absolute))
        maps.append(m)
        rho.append(r)
        sim.append(s)
    return ParameterRandomisation(tuple(reversed(layers)), jnp.stack(rho, axis=1), jnp.stack(sim, axis=1),
                                  jnp.stack(maps), original)


def _any_output(output: Array) -> Array:
    """A stand-in target for the checks when each example's predicted output is explained."""
    return jnp.sum(output)


# --- random logit -----------------------------------------------------------------------------------------

class RandomLogit(NamedTuple):
    """What :func:`random_logit` returns: ``spearman`` and ``ssim`` (B,) between the map of the explained
    output and the map of ``other`` (B,), a flat index into the output (another class of the same step)."""

    spearman: Array
    ssim: Array
    other: Array


@partial(jax.jit, static_argnums=(2,))
def _other_classes(seed, targets, C: int):
    """A class drawn uniformly from the C - 1 others, at the explained output's step: (B,) flat indices."""
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(
        jnp.arange(targets.shape[0], dtype=jnp.int32))
    shift = jax.vmap(lambda k: jax.random.randint(k, (), 1, C, dtype=jnp.int32))(keys)
    cls = targets % C
    return targets - cls + (cls + shift) % C


def random_logit(method: Method, params: Params, X: ArrayLike, targets=None, *, mask: ArrayLike | None = None,
                 seed: int = 0, absolute: bool = False) -> RandomLogit:
    """The random-logit test (Sixt et al. 2020, Sec. 5): the map of the explained output compared with
    the map of a class drawn uniformly from the other classes (of the same step for a per-step output),
    by :func:`spearman` and :func:`ssim`. A method whose maps do not depend on the class scores 1.
    ``method``, ``params``, ``X``, ``targets``, ``mask`` and ``absolute`` as for
    :func:`parameter_randomisation`.

    Args:
        seed: draws the other classes (each example by its index in the batch).

    Returns:
        :class:`RandomLogit`.

    Raises:
        ValueError: a model with fewer than two classes, bad shapes or targets.
    """
    checked, targets, mask = check_batch(method, params, X, _any_output if targets is None else targets, mask)
    X = jnp.asarray(checked)
    targets = jnp.full((X.shape[0],), -1, jnp.int32) if callable(targets) else jnp.asarray(targets, jnp.int32)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int; got {type(seed).__name__}.")
    shape = jax.eval_shape(lambda x, m: method.apply(params, x, None, mask=m), X[0],
                           None if mask is None else jnp.asarray(mask)[0]).shape
    if shape[-1] < 2:
        raise ValueError(f"random_logit needs at least two classes; the model's output has shape {shape}.")
    first, explained, scores = _maps(method, params, X, mask, targets)
    other = _other_classes(jnp.asarray(seed, jnp.int32), explained, int(scores.shape[-1]))
    second, _, _ = _maps(method, params, X, mask, other)
    rho, sim = _compare_jit(first, second, mask, bool(absolute))
    return RandomLogit(rho, sim, other)
