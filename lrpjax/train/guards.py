"""Up-front checks of `lrpjax.train.fit` and `fit_many`: data, labels and optimizer, before the first step.

JAX fails late or not at all on these: NaN data trains to a NaN loss, an out-of-range class index is
clamped by indexing (``log_softmax(s)[7]`` of five classes reads class 4), and a NaN, negative or zero
learning rate runs to the end without a word. Every check raises a ValueError naming the argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax._types import Array

__all__ = ["check_finite", "check_objective", "check_optimizer"]

_CLASS_KINDS = ("xent", "accuracy")


def check_finite(arrays: Mapping[str, Array], name: str) -> None:
    """Refuses NaN or infinite values in the floating-point arrays of a batch dict.

    Raises:
        ValueError: naming the entry, the number of bad values and the index of the first one.
    """
    for key, value in arrays.items():
        if jnp.issubdtype(value.dtype, jnp.inexact) and not bool(jnp.isfinite(value).all()):
            bad = np.argwhere(~np.isfinite(np.asarray(value)))
            raise ValueError(f"`{name}[{key!r}]` holds {len(bad)} non-finite value(s) (NaN or inf), the first "
                             f"at index {tuple(int(i) for i in bad[0])}; training on them gives a NaN loss.")


def _n_classes(objective: Any, params: Any, data: Mapping[str, Array], many: bool) -> int:
    """C, the size of ``predict``'s scores for one example, found by tracing (nothing is computed)."""
    drop = 1 if many else 0
    spec = lambda a: jax.ShapeDtypeStruct(np.shape(a)[drop:], jnp.result_type(a))  # noqa: E731
    one = lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype)  # noqa: E731
    mask = data.get(objective.mask_key)
    scores = jax.eval_shape(objective.predict, jax.tree.map(spec, params), one(data[objective.x_key]),
                            None if mask is None else one(mask))
    return int(np.prod(scores.shape))


def check_objective(objective: Any, data: Mapping[str, Array], name: str, role: str, params: Any,
                    many: bool) -> None:
    """Checks the entries an objective of `lrpjax.train.make_metric` reads, and its class labels.

    Args:
        objective: the function's ``objective`` record (kind, predict, x_key, mask_key, y_key).
        data: the batch dict it will read (`train` or `val`).
        name: the argument's name in messages, "train" or "val".
        role: what reads it in messages, e.g. "loss" or "metric 'acc'".
        params: one model's parameters (stacked along N when `many`).
        many: whether `params` are stacked (`fit_many`).

    Raises:
        ValueError: a missing entry, non-integer labels, or labels outside [0, C) for "xent"/"accuracy".
    """
    for field in ("x_key", "y_key"):
        key = getattr(objective, field)
        if key not in data:
            raise ValueError(f"`{name}` has no {key!r} entry, which the {role} reads ({field}={key!r}); "
                             f"its entries are {sorted(data)}.")
    y = data[objective.y_key]
    if objective.kind not in _CLASS_KINDS or y.ndim != 1:  # other shapes: the objective's own error
        return
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"`{name}[{objective.y_key!r}]` must hold integer class labels for the {role} "
                         f"({objective.kind!r}); got dtype {y.dtype}.")
    n_classes = _n_classes(objective, params, data, many)
    if int(jnp.min(y)) < 0 or int(jnp.max(y)) >= n_classes:
        labels = np.asarray(y)
        bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
        raise ValueError(f"`{name}[{objective.y_key!r}]` holds {len(bad)} label(s) outside [0, C) = [0, {n_classes}) "
                         f"for the {role} ({objective.kind!r}), the first {int(labels[bad[0]])} at index "
                         f"{int(bad[0])}; jax indexing would clamp it to a valid class without a word.")


def _probe_updates(tx: Any, opt_state: Any, params: Any) -> list[Any]:
    """The optimizer's first two updates for a gradient of ones at parameters zero (so that weight decay
    adds nothing), for one model."""
    grads = jax.tree.map(jnp.ones_like, params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates = []
    for _ in range(2):
        update, opt_state = tx.update(grads, opt_state, zeros)
        updates.append(update)
    return updates


def check_optimizer(tx: Any, opt_state: Any, params: Any, many: bool) -> None:
    """Refuses an optimizer whose first updates on a gradient of ones are not finite (a NaN learning rate),
    go uphill (a negative one) or are all zero in both of the first two steps (a zero one, or every leaf
    frozen). A warm-up from 0 passes: its second step moves. An optimizer that accumulates gradients
    over more than two steps before moving (``optax.MultiSteps``) is taken for a zero learning rate.

    Raises:
        ValueError: naming `optimizer` (and the model, in `fit_many`) and the likely cause.
    """
    probe = jax.vmap(lambda s, p: _probe_updates(tx, s, p)) if many else (lambda s, p: _probe_updates(tx, s, p))
    updates = probe(opt_state, params)
    axes = (lambda a: tuple(range(1, a.ndim))) if many else (lambda a: None)
    leaves = [np.asarray(leaf, dtype=np.float64) for leaf in jax.tree.leaves(updates)]
    finite = np.all([np.all(np.isfinite(leaf), axis=axes(leaf)) for leaf in leaves], axis=0)
    total = np.sum([np.sum(leaf, axis=axes(leaf)) for leaf in leaves], axis=0)
    moved = np.any([np.any(leaf != 0, axis=axes(leaf)) for leaf in leaves], axis=0)
    for ok, message in ((finite, "is not finite: a NaN or infinite learning rate?"),
                        (total <= 0, "goes uphill: a negative learning rate? fit minimises the loss."),
                        (moved, "is zero in both of the first two steps: a learning rate of 0, or every "
                                "parameter frozen?")):
        failed = np.flatnonzero(~np.atleast_1d(ok))
        if failed.size:
            which = f" of model {int(failed[0])}" if many else ""
            raise ValueError(f"`optimizer`: its update{which} for a gradient of ones {message}")
