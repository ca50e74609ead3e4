"""Contextual Decomposition (CD) for the standard LSTM (Murdoch, Liu, Yu 2018, "Beyond word importance").

CD splits every state of the standard cell (Eqs. 11.1-11.6) into a *relevant* part ``beta`` (what the
positions of a chosen set contribute) and an *irrelevant* part ``gamma`` (everything else, biases
included), so that ``beta + gamma`` is the true state at every step. Following the authors' code
(``sent_util.CD``):

* every gate pre-activation splits linearly into ``beta`` (``W x_t`` if t is relevant, plus
  ``U beta^y_{t-1}``), ``gamma`` (``W x_t`` if t is irrelevant, plus ``U gamma^y_{t-1}``) and the bias ``b``;
* a sigmoid/tanh of the three is linearised by averaging the relevant and irrelevant terms' marginal
  effects over the two orderings, the bias always entering first (``_decomp_three``):
  ``L(beta) = [act(beta + b) - act(b) + act(beta + gamma + b) - act(gamma + b)] / 2``, ``L(b) = act(b)``;
* the products ``i * z`` and ``f * c_{t-1}`` are expanded term by term; a product goes to ``beta`` if one
  factor is relevant and the other relevant or bias, the bias-times-bias term ``L(b_i) L(b_z)`` goes to
  ``gamma`` (the authors' code with ``start == stop``, i.e. one relevant position), all others to ``gamma``;
* the output ``y = o * tanh(c)`` keeps the whole gate ``o`` and splits ``tanh(beta^c + gamma^c)`` by the
  two-term average (``_decomp_two``).

The relevance of position t is the relevant part of the final score of the target class when only t is
relevant, ``W_out[:, target] . beta^y_T``; all positions are computed at once with ``vmap``. In the
bidirectional model both directions are decomposed (the right one reads the valid prefix reversed) and
their relevant scores are summed, the output layer being linear without bias.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.cells import StandardCell
from lrpjax.explain import Method
from lrpjax.models.lstm import LSTM, check_inputs, reverse_valid

__all__ = ["cd", "decompose", "Decomposition"]


class Decomposition(NamedTuple):
    """Relevant (beta) and irrelevant (gamma) parts of a model's states and scores.

    Attributes:
        beta_y, gamma_y, beta_c, gamma_c: ``{layer: (T, H)}``, the parts of the output ``y_t`` and the
            cell state ``c_t`` after the step that read position t (original positions for the right
            encoder too; padded steps repeat the last valid state).
        beta, gamma: relevant and irrelevant parts of the scores, (C,); ``beta + gamma`` = scores.
    """

    beta_y: dict[str, Array]
    gamma_y: dict[str, Array]
    beta_c: dict[str, Array]
    gamma_c: dict[str, Array]
    beta: Array
    gamma: Array


def _decomp_three(rel: Array, irr: Array, bias: Array, act: Callable[[Array], Array]):
    """Linearises ``act(rel + irr + bias)`` into (L(rel), L(irr), L(bias)) summing to it (Murdoch et al.)."""
    full = act(rel + irr + bias)
    l_rel = 0.5 * (act(rel + bias) - act(bias) + full - act(irr + bias))
    l_irr = 0.5 * (act(irr + bias) - act(bias) + full - act(rel + bias))
    return l_rel, l_irr, act(bias)


def _decomp_two(rel: Array, irr: Array, act: Callable[[Array], Array]):
    """Linearises ``act(rel + irr)`` (act(0) = 0) into two parts by the two-ordering average."""
    full = act(rel + irr)
    return 0.5 * (act(rel) + full - act(irr)), 0.5 * (act(irr) + full - act(rel))


def _cd_step(params: Params, carry: tuple[Array, ...], inputs: tuple[Array, Array, Array]):
    """One CD step, ``((beta_y, gamma_y, beta_c, gamma_c), (x_t, relevant_t, valid_t)) -> (carry', carry')``.

    Shapes: states (H,), ``x_t`` (E,), flags scalar bool. Gate order i, z, f, o as in ``StandardCell``.
    """
    beta_y, gamma_y, beta_c, gamma_c = carry
    x_t, relevant_t, valid_t = inputs
    wx = x_t @ params["W"]
    zero = jnp.zeros_like(wx)
    rel = beta_y @ params["U"] + jnp.where(relevant_t, wx, zero)
    irr = gamma_y @ params["U"] + jnp.where(relevant_t, zero, wx)
    (rel_i, rel_z, rel_f, rel_o), (irr_i, irr_z, irr_f, irr_o) = jnp.split(rel, 4), jnp.split(irr, 4)
    b_i, b_z, b_f, b_o = jnp.split(params["b"], 4)
    ri, ii, bi = _decomp_three(rel_i, irr_i, b_i, jax.nn.sigmoid)
    rz, iz, bz = _decomp_three(rel_z, irr_z, b_z, jnp.tanh)
    rf, if_, bf = _decomp_three(rel_f, irr_f, b_f, jax.nn.sigmoid)
    # Eq. (11.4) expanded; the bias-bias product L(b_i) L(b_z) is irrelevant (authors' code, start == stop).
    new_beta_c = ri * (rz + bz) + bi * rz + (rf + bf) * beta_c
    new_gamma_c = ii * (rz + iz + bz) + (ri + bi) * iz + bi * bz + (rf + if_ + bf) * gamma_c + if_ * beta_c
    # Eq. (11.6): the whole output gate multiplies both parts of tanh(c).
    o = jax.nn.sigmoid(rel_o + irr_o + b_o)
    h_rel, h_irr = _decomp_two(new_beta_c, new_gamma_c, jnp.tanh)
    new = (o * h_rel, o * h_irr, new_beta_c, new_gamma_c)
    # A padded step leaves the state untouched, as in ``cells.unroll``.
    new = tuple(jnp.where(valid_t, n, old) for n, old in zip(new, carry))
    return new, new


def _decompose_layer(params: Params, x: Array, relevant: Array, mask: Array):
    """Scans ``_cd_step`` over x (T, E) from zero states; returns the four parts, each (T, H)."""
    H = params["U"].shape[0]
    zeros = jnp.zeros((H,), x.dtype)
    _, states = lax.scan(lambda carry, inp: _cd_step(params, carry, inp), (zeros,) * 4, (x, relevant, mask))
    return states


def _decompose(model: LSTM, params: Params, x: Array, relevant: Array, mask: Array) -> Decomposition:
    """Unchecked :func:`decompose` (x (T, E), relevant and mask (T,) bool); traceable."""
    parts = {"beta_y": {}, "gamma_y": {}, "beta_c": {}, "gamma_c": {}}
    beta, gamma = 0, 0
    for name in model.layers:
        order = reverse_valid(mask) if name == "right" else None
        x_dir, rel_dir = (x, relevant) if order is None else (x[order], relevant[order])
        states = _decompose_layer(params[name], x_dir, rel_dir, mask)
        W_out = params["out"]["W_left" if name == "left" else "W_right" if name == "right" else "W"]
        # The last scan step holds the final state (padded steps repeat it), in either direction.
        beta = beta + states[0][-1] @ W_out
        gamma = gamma + states[1][-1] @ W_out
        if order is not None:
            states = tuple(s[order] for s in states)  # the reversal is an involution: original positions
        for key, s in zip(parts, states):
            parts[key][name] = s
    return Decomposition(parts["beta_y"], parts["gamma_y"], parts["beta_c"], parts["gamma_c"], beta, gamma)


def _model_of(apply: Callable) -> LSTM:
    model = getattr(apply, "__self__", None)
    if not isinstance(model, LSTM):
        raise TypeError("Contextual Decomposition needs `apply` to be the apply method of an "
                        f"lrpjax.models.LSTM (e.g. lstm.apply, bilstm.apply); got {apply!r}.")
    if type(model.cell) is not StandardCell:  # a subclass may change the equations
        raise TypeError(f"Contextual Decomposition is defined for the standard LSTM cell; the model's cell is "
                        f"{type(model.cell).__name__} (kind {model.cell.kind!r}).")
    return model


def decompose(apply: Callable, params: Params, x: ArrayLike, relevant: ArrayLike, *,
              mask: ArrayLike | None = None) -> Decomposition:
    """Contextual Decomposition of every state for a set of relevant positions.

    Args:
        apply: the apply method of a standard-cell ``LSTM`` (uni- or bidirectional).
        params: the model's parameters.
        x: embedded sequence, shape (T, E).
        relevant: the positions in the relevant set, shape (T,) bool.
        mask: valid steps, shape (T,) bool; None means all valid.

    Returns:
        A :class:`Decomposition`; ``beta + gamma`` equals each true state and the scores.

    Raises:
        TypeError: ``apply`` is not a standard-cell LSTM, or ``relevant``/``mask`` not boolean.
        ValueError: bad shapes.
    """
    model = _model_of(apply)
    E, _, _ = model.sizes(params)
    check_inputs(x, mask, E)
    if tuple(jnp.shape(relevant)) != (jnp.shape(x)[0],):
        raise ValueError(f"`relevant` must have shape (T,) = ({jnp.shape(x)[0]},); got {jnp.shape(relevant)}.")
    if jnp.result_type(relevant) != jnp.bool_:
        raise TypeError(f"`relevant` must be boolean; got dtype {jnp.result_type(relevant)}.")
    x = jnp.asarray(x)
    mask = jnp.ones((x.shape[0],), bool) if mask is None else jnp.asarray(mask)
    return _decompose_jit(model, params, x, jnp.asarray(relevant), mask)


_decompose_jit = jax.jit(_decompose, static_argnums=(0,))


def _cd_fn(m: Method, params: Params, x: Array, target: Array, mask: Array | None, index: Array) -> Array:
    """Per-position CD relevance (T,): ``beta`` of the target score with only position t relevant."""
    model = _model_of(m.apply)
    T = x.shape[0]
    mask = jnp.ones((T,), bool) if mask is None else mask

    def one(t):
        return _decompose(model, params, x, jnp.arange(T) == t, mask).beta[target]

    relevance = jax.vmap(one)(jnp.arange(T))
    return jnp.where(mask, relevance, jnp.zeros_like(relevance))


def cd(apply: Callable) -> Method:
    """Contextual Decomposition (Murdoch et al. 2018), one relevance per position (T,).

    ``R_t`` is the relevant part of the target's score when only position t is relevant (module
    docstring); computed for every position in one vmapped call, padded positions get 0.

    Args:
        apply: the apply method of a standard-cell ``LSTM`` (``lstm.apply``, ``bilstm.apply``,
            ``LSTM(StandardCell(), ...).apply``).

    Raises:
        TypeError: another model or a cell other than ``StandardCell``.
    """
    _model_of(apply)
    return Method("cd", _cd_fn, apply)
