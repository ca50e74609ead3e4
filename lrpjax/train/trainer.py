"""An optax trainer for any model written as pure functions over parameter pytrees.

The trainer knows nothing about models. It minimises ``loss_fn(params, batch) -> scalar`` where `batch` is a
dict of arrays sharing a leading batch axis B (e.g. {"x": (B, T, E), "mask": (B, T), "y": (B,)}). `make_loss`
and `make_metric` build such functions from a per-example ``predict(params, x, mask) -> (C,)``, batched by
``jax.vmap``; `predict` may do anything first, e.g. look token ids up in a learnt ``params["embed"]`` (V, E)
before calling a model's ``apply``, so embeddings are trained without being part of the explained function:

    predict = lambda p, ids, mask: bilstm.apply(p["model"], p["embed"][ids], mask=mask)
    result = fit(make_loss(predict, "xent"), params, {"x": ids, "mask": mask, "y": labels},
                 val=val_data, metrics={"acc": make_metric(predict, "accuracy")},
                 config=TrainConfig(epochs=20, batch_size=32, patience=3, monitor="acc", mode="max"))

One training step (`make_step`) is ``value_and_grad`` + the optax update; an epoch (or a segment of
`eval_every` steps) is one compiled ``lax.scan`` over index batches of a seeded permutation, with the data on
the device once. `fit_many` trains N independent models at once: the parameters are stacked along a leading
axis N, the same step is ``vmap``-ed over models (one compilation for all), and a model that has met
`stop_when` or run out of patience keeps its parameters and optimizer state from then on (masked updates).

Nothing finished is lost and nothing fails silently. Before the first step, `fit` and `fit_many` refuse
non-finite data, class labels outside [0, C) (which jax indexing would clamp without a word), missing batch
entries and an optimizer whose first updates are NaN, uphill or zero (a NaN, negative or zero learning
rate). A loss that becomes NaN or infinite stops that model at the step where it happened (`fit` raises
`NonFiniteLossError`). On Ctrl-C (KeyboardInterrupt) training returns what it has: a `TrainResult` with
``interrupted=True`` and the best parameters seen so far; on any other exception the same result is
attached to the exception as ``error.result``. With ``checkpoint=PATH`` the returned parameters are also
saved there (atomically) however training ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, cast

import os
import sys
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrpjax.train import guards as _guards
from lrpjax._types import Array, ArrayLike
from lrpjax.io.progress import ProgressBar

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "fit",
    "fit_many",
    "make_loss",
    "make_metric",
    "explanation_penalty",
    "PenaltyKeys",
    "make_optimizer",
    "make_step",
    "stack",
    "unstack",
]

_INT32 = (-(2**31), 2**31 - 1)  # traced seeds are int32 when jax x64 is off

LossFn = Callable[[Any, dict[str, Array]], Array]
Predict = Callable[[Any, Array, Array | None], Array]
StopWhen = Callable[[dict[str, Any]], Any]
_KINDS = ("mse", "xent", "accuracy")


# --------------------------------------------------------------------------------------------- objectives


class Objective(NamedTuple):
    """What a function built by `make_metric` / `make_loss` computes, so that `fit` can check the data
    it will read (entries present, labels in range) before training."""

    kind: str
    predict: Predict
    x_key: str
    mask_key: str
    y_key: str



def _example_value(kind: str, scores: Array, y: Array) -> Array:
    """Per-example objective. scores (C,); y: (C,) or scalar for "mse" (same size), int label for the others."""
    if kind == "mse":
        if y.size != scores.size:
            raise ValueError(f"mse target must have {scores.size} value(s) per example (C,); got shape {y.shape}.")
        return jnp.mean((scores - y.reshape(scores.shape).astype(scores.dtype)) ** 2)
    if y.ndim != 0 or not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"`{kind}` needs one integer label per example; got shape {y.shape}, dtype {y.dtype}.")
    if kind == "xent":
        return -jax.nn.log_softmax(scores)[y]
    predicted = jnp.argmax(scores)
    return (predicted == y.astype(predicted.dtype)).astype(scores.dtype)


def make_metric(
    predict: Predict, kind: str, *, x_key: str = "x", mask_key: str = "mask", y_key: str = "y"
) -> LossFn:
    """Builds ``metric(params, batch) -> scalar``, the mean over the batch of a per-example objective.

    Args:
        predict: ``predict(params, x, mask) -> scores (C,)`` for ONE example; ``mask`` is None when the batch
            has no `mask_key` entry. E.g. ``lambda p, x, m: model.apply(p, x, mask=m)``.
        kind: "mse" (mean squared error; targets (B, C) or (B,) when C = 1), "xent" (softmax cross-entropy
            with integer labels (B,)) or "accuracy" (argmax equals the label, labels (B,)).
        x_key, mask_key, y_key: names of the inputs, mask and targets in the batch dict.

    Returns:
        A function of (params, batch) averaging the per-example values over the leading axis B.

    Raises:
        ValueError: if `kind` is unknown (the returned function raises ValueError for ill-shaped targets).
    """
    if kind not in _KINDS:
        raise ValueError(f"`kind` must be one of {_KINDS}; got {kind!r}.")

    def per_example(params: Any, x: Array, mask: Array | None, y: Array) -> Array:
        return _example_value(kind, predict(params, x, mask), y)

    def metric(params: Any, batch: Mapping[str, Array]) -> Array:
        mask = batch.get(mask_key)
        values = jax.vmap(per_example, in_axes=(None, 0, None if mask is None else 0, 0))(
            params, batch[x_key], mask, batch[y_key]
        )
        return jnp.mean(values)

    # A function attribute, read by fit's up-front checks.
    metric.objective = Objective(kind, predict, x_key, mask_key, y_key)  # type: ignore[attr-defined]
    return metric


def make_loss(
    predict: Predict, kind: str = "mse", *, x_key: str = "x", mask_key: str = "mask", y_key: str = "y",
    penalty: LossFn | Sequence[LossFn] | None = None,
) -> LossFn:
    """Builds ``loss(params, batch) -> scalar`` for `fit`: "mse" (regression) or "xent" (classification).

    See `make_metric` for the arguments; "accuracy" is not differentiable and is refused here.
    `penalty`: terms ``penalty(params, batch) -> scalar`` added to the mean objective, e.g.
    `explanation_penalty` (their entries are checked by `fit` too).

    Raises:
        ValueError: if `kind` is not "mse" or "xent".
        TypeError: a penalty that is not callable.
    """
    if kind not in ("mse", "xent"):
        raise ValueError(f"loss `kind` must be 'mse' or 'xent'; got {kind!r}.")
    objective = make_metric(predict, kind, x_key=x_key, mask_key=mask_key, y_key=y_key)
    penalties = () if penalty is None else (penalty,) if callable(penalty) else tuple(penalty)
    for term in penalties:
        if not callable(term):
            raise TypeError(f"`penalty` must be a function (params, batch) -> scalar or a sequence of them; "
                            f"got {type(term).__name__}.")
    if not penalties:
        return objective

    def loss(params: Any, batch: dict[str, Array]) -> Array:
        return objective(params, batch) + sum(term(params, batch) for term in penalties)

    loss.objective = objective.objective  # type: ignore[attr-defined]  # function attributes, read by fit
    loss.penalties = penalties  # type: ignore[attr-defined]
    return loss


def _penalty_target(explain: str, scores: Array, y: Array) -> Array:
    """The target of an explanation penalty: the class index, or the weights of the linearised log-probabilities."""
    if explain == "score":
        return y
    p = jax.nn.softmax(scores, axis=-1)
    if explain == "log_prob":
        return jax.nn.one_hot(y, scores.shape[-1], dtype=scores.dtype) - p
    return 1.0 - scores.shape[-1] * p


class PenaltyKeys(NamedTuple):
    """The batch entries an `explanation_penalty` reads, so that `fit` can check them before training."""

    marked: str
    x_key: str
    mask_key: str
    y_key: str | None


_NORMS = ("squared", "abs")
_EXPLAINED = ("log_prob", "all_log_probs", "score")
_LEVELS = ("dims", "token")


def explanation_penalty(
    method: Any, weight: float, mask_key: str, *, inputs: Callable[[Any, Array], tuple[Any, Array]] | None = None,
    x_key: str = "x", seq_mask_key: str = "mask", y_key: str | None = "y", explain: str = "log_prob",
    norm: str = "squared", level: str = "dims",
) -> LossFn:
    """A loss term on explanations ("right for the right reasons", Ross, Hughes, Doshi-Velez 2017).

    ``penalty(params, batch) = weight * mean_b sum_t A_bt * rho(R_bt)``, with ``A = batch[mask_key]``
    (B, T) marking the positions that must not matter (bool, or float weights per position), ``R_b``
    the relevance of example b under `method`, and ``rho`` the square (``norm="squared"``) or the
    absolute value (``norm="abs"``) of every relevance entry of the position (``level="dims"``: all E
    of an (T, E) relevance) or of the position's sum (``level="token"``). What is explained, for the
    class ``y`` = ``batch[y_key]`` (or the predicted class when `y_key` is None), with ``s`` the scores:

    * ``explain="log_prob"``: ``log softmax(s)_y`` linearised at ``s``, i.e. the linear combination
      ``sum(w * s)`` with ``w = onehot(y) - softmax(s)`` (for the gradient exactly the input gradient of
      the log-probability); it sees the decision, which depends on every class's score;
    * ``"all_log_probs"``: ``sum_k log softmax(s)_k`` linearised, ``w = 1 - C softmax(s)``: Ross et al.'s
      choice (with ``lrpjax.gradient`` their penalty exactly);
    * ``"score"``: the label's score ``s_y`` alone. A model can then move the decision through the
      *other* classes' scores, which this penalty does not see.

    ``w`` depends on the parameters and is differentiated through. Any method of :mod:`lrpjax.methods`
    or :func:`lrpjax.methods.decomposition.cd` works, since explanations differentiate truly with respect to the
    parameters. Pass the penalty to `make_loss` (``penalty=...``); it is a pure function of one model's
    parameters, so `fit_many` vmaps it over models.

    Args:
        method: an explanation `Method` of the model being trained (e.g. ``lrpjax.lrp(model.apply,
            preset("lrp-all", eps=1e-3))``).
        weight: lambda, a float >= 0.
        mask_key: the batch entry holding A, shape (B, T).
        inputs: ``inputs(params, x) -> (model_params, model_input)``: how the trained parameters and the
            batch input become the explained model's arguments (e.g. an embedding lookup,
            ``lambda p, ids: (p["model"], p["embed"][ids])``); default ``(params, x)``.
        x_key, seq_mask_key: the batch's inputs and (optional) padding mask entries.
        y_key: the batch's integer class labels (B,), or None for the predicted class.
        explain: ``"log_prob"``, ``"all_log_probs"`` or ``"score"`` (above).
        norm: ``"squared"`` or ``"abs"``.
        level: ``"dims"`` or ``"token"``.

    Returns:
        ``penalty(params, batch) -> scalar``.

    Raises:
        TypeError: `method` not an explanation Method, `inputs` not callable, a key not a string.
        ValueError: a negative or non-finite `weight`, an unknown `explain`, `norm` or `level`.
    """
    from lrpjax.methods import Method  # the trainer needs the explanation methods only here

    if not isinstance(method, Method):
        raise TypeError(f"`method` must be an lrpjax explanation Method; got {type(method).__name__}.")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
        raise ValueError(f"`weight` must be a finite number >= 0; got {weight!r}.")
    for name, key in (("mask_key", mask_key), ("x_key", x_key), ("seq_mask_key", seq_mask_key)):
        if not isinstance(key, str):
            raise TypeError(f"`{name}` must be a batch entry name (str); got {type(key).__name__}.")
    if y_key is not None and not isinstance(y_key, str):
        raise TypeError(f"`y_key` must be a batch entry name (str) or None; got {type(y_key).__name__}.")
    if inputs is not None and not callable(inputs):
        raise TypeError(f"`inputs` must be a function (params, x) -> (model_params, model_input); got "
                        f"{type(inputs).__name__}.")
    if explain not in _EXPLAINED:
        raise ValueError(f"`explain` must be one of {_EXPLAINED}; got {explain!r}.")
    if norm not in _NORMS:
        raise ValueError(f"`norm` must be one of {_NORMS}; got {norm!r}.")
    if level not in _LEVELS:
        raise ValueError(f"`level` must be one of {_LEVELS}; got {level!r}.")
    weight = float(weight)

    def per_example(params: Any, x: Array, mask: Array | None, marked: Array, y: Array | None, index: Array):
        model_params, model_x = (params, x) if inputs is None else inputs(params, x)
        scores = method.apply(model_params, model_x, None, mask=mask)
        if y is None:
            y = jnp.argmax(jax.lax.stop_gradient(scores).reshape(-1)).astype(jnp.int32)
        relevance = method.relevance(model_params, model_x, _penalty_target(explain, scores, y), mask, index)
        if relevance.ndim > marked.ndim and level == "token":
            relevance = relevance.sum(axis=tuple(range(marked.ndim, relevance.ndim)))
        values = relevance ** 2 if norm == "squared" else jnp.abs(relevance)
        per_position = values.sum(axis=tuple(range(marked.ndim, values.ndim)))
        return jnp.sum(marked.astype(per_position.dtype) * per_position)

    def penalty(params: Any, batch: Mapping[str, Array]) -> Array:
        mask, y = batch.get(seq_mask_key), None if y_key is None else batch[y_key]
        B = batch[x_key].shape[0]
        axes = (None, 0, None if mask is None else 0, 0, None if y is None else 0, 0)
        values = jax.vmap(per_example, in_axes=axes)(params, batch[x_key], mask, batch[mask_key], y, jnp.arange(B))
        return weight * jnp.mean(values)

    penalty.penalty_keys = PenaltyKeys(mask_key, x_key, seq_mask_key, y_key)  # type: ignore[attr-defined]
    return penalty


# ------------------------------------------------------------------------------------ optimizer and step


def _path_name(path: tuple[Any, ...]) -> str:
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _frozen_labels(params: Any, frozen: Callable[[str], bool] | Any) -> Any:
    if callable(frozen):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "frozen" if frozen(_path_name(path)) else "train", params
        )
    try:
        return jax.tree_util.tree_map(lambda flag, _: "frozen" if bool(flag) else "train", frozen, params)
    except ValueError as error:
        raise ValueError(f"`frozen` must be a callable or a pytree of bools shaped like params: {error}") from error


def make_optimizer(
    optimizer: optax.GradientTransformation | None = None,
    *,
    clip_norm: float | None = None,
    frozen: Callable[[str], bool] | Any | None = None,
    params: Any = None,
) -> optax.GradientTransformation:
    """Wraps an optax optimizer with optional global-norm clipping and frozen leaves.

    Args:
        optimizer: any optax transformation; default ``optax.adam(1e-3)``.
        clip_norm: if given, gradients are first clipped to this global norm (over the trained leaves only;
            in `fit_many` the norm is per model).
        frozen: leaves that are not trained: a predicate on the leaf path ("left/W" for params["left"]["W"]),
            or a pytree of bools shaped like `params` (True = frozen). Frozen leaves get zero updates
            (``optax.set_to_zero``) and keep no optimizer state.
        params: one model's parameters (or the stacked ones); needed only with `frozen`.

    Returns:
        The combined transformation.

    Raises:
        ValueError: if `clip_norm` is not positive, or `frozen` is given without `params` or has another structure.
    """
    tx = _standard_promotion(optax.adam(1e-3) if optimizer is None else optimizer)
    if clip_norm is not None:
        if not clip_norm > 0:
            raise ValueError(f"`clip_norm` must be > 0; got {clip_norm}.")
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    if frozen is None:
        return tx
    if params is None:
        raise ValueError("`params` is needed to apply `frozen`.")
    labels = _frozen_labels(params, frozen)
    return _standard_promotion(optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels))


def _standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Runs `tx` under standard dtype promotion: optax mixes Python floats and int step counts
    (e.g. Adam's ``b1 ** count``), which ``jax_numpy_dtype_promotion="strict"`` refuses. The model and
    loss keep the caller's promotion mode."""

    def init(params: Any) -> Any:
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra)

    return optax.GradientTransformationExtraArgs(init, update)


def make_step(loss_fn: LossFn, tx: optax.GradientTransformation) -> Callable[..., tuple[Any, Any, Array]]:
    """One training step ``(params, opt_state, batch) -> (params', opt_state', loss)`` (not jitted, so it
    composes with ``jit``, ``vmap`` and ``lax.scan``; the loss is the one before the update)."""

    def step(params: Any, opt_state: Any, batch: dict[str, Array]) -> tuple[Any, Any, Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        with jax.numpy_dtype_promotion("standard"):  # see _standard_promotion
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

    return step


# ----------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the training loop (the optimizer is passed separately).

    Attributes:
        epochs: maximum number of passes over the training data.
        batch_size: examples per step; the last incomplete batch of each epoch is dropped (one compilation).
        seed: seed of the shuffle (epoch e uses ``fold_in(PRNGKey(seed), e)``); in `fit_many` the shared order.
        eval_every: evaluate every this many steps and at the end of each epoch; None: once per epoch.
        patience: stop (a model) after this many evaluations without improvement of `monitor`; None: never.
        min_delta: an improvement must beat the best value by more than this.
        monitor: the metric deciding "best" and patience: a key of `metrics`, or "train_loss" (the mean loss
            of the steps since the previous evaluation). Default: the first metric, else "train_loss".
        mode: "min" or "max": whether smaller or larger `monitor` values are better.
        restore_best: return the parameters of the best evaluation instead of the last ones.
        clip_norm: clip gradients to this global norm (see `make_optimizer`).
        eval_batch_size: evaluate in chunks of this many examples; None: the whole validation set at once.
        progress: draw a progress bar on stderr: None only on a terminal, True always, False never.
    """

    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    eval_every: int | None = None
    patience: int | None = None
    min_delta: float = 0.0
    monitor: str | None = None
    mode: str = "min"
    restore_best: bool = True
    clip_norm: float | None = None
    eval_batch_size: int | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive int; got {getattr(self, name)!r}.")
        for name in ("eval_every", "patience", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"`{name}` must be a positive int or None; got {value!r}.")
        _check_seed(self.seed, "seed")
        if self.mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max'; got {self.mode!r}.")
        if not isinstance(self.min_delta, (int, float)) or isinstance(self.min_delta, bool) or not (
                0 <= self.min_delta < float("inf")):
            raise ValueError(f"`min_delta` must be a finite number >= 0; got {self.min_delta!r}.")
        if self.monitor is not None and not isinstance(self.monitor, str):
            raise TypeError(f"`monitor` must be a metric name (str) or None; got {type(self.monitor).__name__}.")
        if self.clip_norm is not None and (isinstance(self.clip_norm, bool) or not isinstance(
                self.clip_norm, (int, float)) or not self.clip_norm > 0):
            raise ValueError(f"`clip_norm` must be a number > 0 or None; got {self.clip_norm!r}.")
        for name in ("restore_best",) + (("progress",) if self.progress is not None else ()):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool; got {getattr(self, name)!r}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_seed(seed: Any, name: str) -> None:
    if not _is_int(seed):
        raise TypeError(f"`{name}` must be an int; got {type(seed).__name__}.")
    if not _INT32[0] <= int(seed) <= _INT32[1]:
        raise ValueError(f"`{name}` must fit int32, [{_INT32[0]}, {_INT32[1]}] (jax's traced seeds); got {seed}.")


@dataclass
class TrainResult:
    """What `fit` and `fit_many` return. In `fit_many` every per-model field has a leading axis N.

    Attributes:
        params: trained parameters (the best ones if `restore_best`), stacked (N, ...) in `fit_many`.
        opt_state: optimizer state after the last step (not restored with the best parameters).
        history: numpy arrays, one entry per evaluation: "step" and "epoch" (shape (K,)), "train_loss" and
            every metric (shape (K,) in `fit`, (K, N) in `fit_many`).
        best_metric: best value of `monitor` (float, or (N,)).
        best_step: step count at the best evaluation (int, or (N,)).
        converged: whether `stop_when` was met (bool, or (N,)).
        stopped_step: step count at which the model stopped (`stop_when` or patience); -1 if it ran all epochs.
        steps: number of steps the loop ran (for all models together in `fit_many`).
        diverged_step: the step at which the model's loss became NaN or infinite (it stopped there and
            kept its best parameters, or those before the failing segment); -1 if it never did.
        interrupted: whether training ended early by Ctrl-C (KeyboardInterrupt) or an exception.
        error: that KeyboardInterrupt or exception, else None.
        saved_to: the checkpoint the returned parameters were written to (``checkpoint=`` of `fit`), else None.
    """

    params: Any
    opt_state: Any
    history: dict[str, np.ndarray]
    best_metric: Any
    best_step: Any
    converged: Any
    stopped_step: Any
    steps: int
    diverged_step: Any = -1
    interrupted: bool = False
    error: BaseException | None = None
    saved_to: str | None = None


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (every model's, in `fit_many`).

    Attributes:
        step: the first step whose loss was not finite (counted from 1, as `TrainResult.steps`).
        result: the `TrainResult` up to the last finite segment (best parameters restored).
    """

    def __init__(self, message: str, step: int, result: TrainResult | None = None):
        super().__init__(message)
        self.step = step
        self.result = result


# --------------------------------------------------------------------------------------- compiled pieces


def _check_data(data: Mapping[str, ArrayLike], name: str) -> tuple[dict[str, Array], int]:
    if not isinstance(data, Mapping) or not data:
        raise TypeError(f"`{name}` must be a non-empty dict of arrays with a leading axis B.")
    arrays = {key: jnp.asarray(value) for key, value in data.items()}
    sizes = {key: (value.shape[0] if value.ndim else None) for key, value in arrays.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"all arrays of `{name}` must share the leading axis B; got leading sizes {sizes}.")
    _guards.check_finite(arrays, name)
    return jax.device_put(arrays), cast(int, next(iter(sizes.values())))  # no None: checked above


@partial(jax.jit, static_argnames=("n_examples", "batch_size"))
def _order(seeds: Array, epoch: Array, *, n_examples: int, batch_size: int) -> Array:
    """Index batches of epoch `epoch`: (S, B) for one seed, (S, N, B) for seeds (N,); S = n_examples // B.

    Epoch e of seed s uses the permutation of ``fold_in(PRNGKey(s), e)``; the incomplete last batch is dropped.
    Module-level and static in the sizes, so it compiles once per data size for every `fit` call.
    """
    n_steps = n_examples // batch_size

    def one(seed: Array) -> Array:
        perm = jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(seed), epoch), n_examples)
        return perm[: n_steps * batch_size].reshape(n_steps, batch_size)

    if seeds.ndim == 0:
        return one(seeds)
    return jnp.swapaxes(jax.vmap(one)(seeds), 0, 1)


def _runner(step: Callable[..., tuple[Any, Any, Array]], many: bool) -> Callable[..., tuple[Any, Any, Array]]:
    """Compiles ``run(params, opt_state, data, idx, active) -> (params, opt_state, losses (S,) or (S, N))``,
    a scan of `step` over index batches idx (S, B), or (S, N, B) for per-model orders."""

    def masked(params: Any, opt_state: Any, batch: dict[str, Array], active: Array) -> tuple[Any, Any, Array]:
        new_params, new_state, loss = step(params, opt_state, batch)
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731 - a stopped model keeps everything
        return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_state, opt_state), loss

    @jax.jit
    def run(params: Any, opt_state: Any, data: dict[str, Array], idx: Array, active: Array):
        per_model_order = idx.ndim == 3
        vstep = jax.vmap(masked, in_axes=(0, 0, 0 if per_model_order else None, 0))

        def body(carry: tuple[Any, Any], idx_t: Array) -> tuple[tuple[Any, Any], Array]:
            batch = {key: value[idx_t] for key, value in data.items()}
            p, s = carry
            p, s, loss = vstep(p, s, batch, active) if many else step(p, s, batch)
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), idx)
        return params, opt_state, losses

    return run


def _evaluator(metrics: tuple[tuple[str, LossFn], ...], many: bool, chunk: int | None):
    """Returns ``evaluate(params, data) -> {name: float or (N,) numpy}`` averaging over chunks of examples."""

    def all_metrics(params: Any, batch: dict[str, Array]) -> dict[str, Array]:
        return {name: fn(params, batch) for name, fn in metrics}

    compiled = jax.jit(jax.vmap(all_metrics, in_axes=(0, None)) if many else all_metrics)

    def evaluate(params: Any, data: dict[str, Array], n: int) -> dict[str, np.ndarray]:
        """Weighted mean of the metrics over chunks of `chunk` examples (the last chunk may be smaller)."""
        size = n if chunk is None else chunk
        totals: dict[str, np.ndarray] = {}
        for start in range(0, n, size):
            part = {key: value[start : start + size] for key, value in data.items()}
            weight = min(size, n - start)
            for name, value in compiled(params, part).items():
                totals[name] = totals.get(name, 0.0) + weight * np.asarray(value, dtype=np.float64)
        return {name: total / n for name, total in totals.items()}

    return evaluate


@jax.jit
def _merge(old: Any, new: Any, take_new: Array) -> Any:
    """Per model n: new[n] where take_new[n] else old[n], for stacked pytrees with leading axis N."""
    pick = lambda o, n: jnp.where(take_new.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)  # noqa: E731
    return jax.tree.map(pick, old, new)


# ------------------------------------------------------------------------------------------- the loop


class _Tracker:
    """Host-side bookkeeping per model (arrays of shape (N,)): best value, patience, stopping."""

    def __init__(self, n_models: int, config: TrainConfig, monitor: str, stop_when: StopWhen | None, many: bool):
        self.config, self.monitor, self.stop_when, self.many = config, monitor, stop_when, many
        self.best = np.full(n_models, np.inf if config.mode == "min" else -np.inf)
        self.best_step = np.full(n_models, -1)
        self.bad = np.zeros(n_models, dtype=int)
        self.active = np.ones(n_models, dtype=bool)
        self.converged = np.zeros(n_models, dtype=bool)
        self.stopped_step = np.full(n_models, -1)
        self.diverged_step = np.full(n_models, -1)

    def diverge(self, models: np.ndarray, steps: np.ndarray) -> None:
        """Stops `models` (N,) bools whose loss became non-finite at `steps` (N,)."""
        self.diverged_step = np.where(models, steps, self.diverged_step)
        self.stopped_step = np.where(models, steps, self.stopped_step)
        self.active &= ~models

    def observe(self, values: dict[str, np.ndarray], step: int) -> np.ndarray:
        """Updates the records with one evaluation; returns which models improved (N,).

        `stop_when` (user code, which may raise or be interrupted) runs before any record changes, so the
        records stay those of the previous evaluation if it fails."""
        target = np.zeros_like(self.active)
        if self.stop_when is not None:
            user = values if self.many else {name: float(v[0]) for name, v in values.items()}
            target = np.broadcast_to(np.asarray(self.stop_when(user), dtype=bool), self.active.shape)
        value, delta = values[self.monitor], self.config.min_delta
        better = value < self.best - delta if self.config.mode == "min" else value > self.best + delta
        improved = self.active & better
        self.best = np.where(improved, value, self.best)
        self.best_step = np.where(improved, step, self.best_step)
        self.bad = np.where(improved, 0, self.bad + self.active)
        self.converged |= self.active & target
        done = target.copy()
        if self.config.patience is not None:
            done |= self.bad >= self.config.patience
        done &= self.active
        self.stopped_step = np.where(done, step, self.stopped_step)
        self.active &= ~done
        return improved


def _prepare(loss_fn, params, train, val, metrics, config, optimizer, frozen, many):
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable (params, batch) -> scalar; got {type(loss_fn).__name__}.")
    data, n = _check_data(train, "train")
    if n < config.batch_size:
        raise ValueError(f"`train` has {n} examples, fewer than batch_size = {config.batch_size}.")
    metrics = dict(metrics or {})
    if metrics and val is None:
        raise ValueError("`metrics` are computed on `val`; pass `val` data too.")
    val_data, n_val = _check_data(val, "val") if val is not None else (None, 0)
    monitor = config.monitor or (next(iter(metrics)) if metrics else "train_loss")
    if monitor != "train_loss" and monitor not in metrics:
        raise ValueError(f"`monitor` must be 'train_loss' or one of the metrics {sorted(metrics)}; got {monitor!r}.")
    _check_objectives(loss_fn, metrics, data, val_data, params, many)
    labels = None
    if frozen is not None:
        leaves, treedef = jax.tree.flatten(_frozen_labels(params, frozen))
        labels = (treedef, tuple(leaves))
    tx, run = _cached(_build_step, loss_fn, optimizer, config.clip_norm, labels, many)
    opt_state = jax.vmap(tx.init)(params) if many else tx.init(params)
    _guards.check_optimizer(tx, opt_state, params, many)
    evaluate = _cached(_evaluator, tuple(metrics.items()), many, config.eval_batch_size) if metrics else None
    return data, n, (val_data, n_val, evaluate), monitor, run, opt_state


def _check_objectives(loss_fn, metrics, data, val_data, params, many) -> None:
    """Entries and class labels read by the loss (on `train`) and the metrics (on `val`), when they were
    built by `make_loss` / `make_metric` (other callables are opaque and checked by running them)."""
    readers = [(loss_fn, data, "train", "loss")] + [(fn, val_data, "val", f"metric {name!r}")
                                                    for name, fn in metrics.items()]
    for fn, arrays, name, role in readers:
        objective = getattr(fn, "objective", None)
        if isinstance(objective, Objective):
            _guards.check_objective(objective, arrays, name, role, params, many)
    for term in getattr(loss_fn, "penalties", ()):
        keys = getattr(term, "penalty_keys", None)
        if isinstance(keys, PenaltyKeys):
            _check_penalty_entries(keys, data)
    for name, fn in metrics.items():
        keys = getattr(fn, "penalty_keys", None)
        if isinstance(keys, PenaltyKeys):
            _check_penalty_entries(keys, val_data, "val", f"metric {name!r}")


def _check_penalty_entries(keys: PenaltyKeys, data: Mapping[str, Array], name: str = "train",
                           role: str = "explanation penalty") -> None:
    """The entries an `explanation_penalty` reads are present, and A has the shape (B, T) of the inputs."""
    for key in (keys.x_key, keys.marked) + (() if keys.y_key is None else (keys.y_key,)):
        if key not in data:
            raise ValueError(f"`{name}` has no {key!r} entry, which the {role} reads; its entries are {sorted(data)}.")
    want = tuple(data[keys.x_key].shape[:2])
    got = tuple(data[keys.marked].shape)
    if got != want:
        raise ValueError(f"`{name}[{keys.marked!r}]` marks positions for the {role} and must have shape (B, T) = "
                         f"{want}, the leading axes of `{name}[{keys.x_key!r}]`; got {got}.")


def _build_step(loss_fn, optimizer, clip_norm, labels, many):
    """The optimizer and the compiled segment runner for one (loss, optimizer, frozen leaves) combination."""
    frozen = None if labels is None else labels[0].unflatten([label == "frozen" for label in labels[1]])
    tx = make_optimizer(optimizer, clip_norm=clip_norm, frozen=frozen, params=frozen)
    return tx, _runner(make_step(loss_fn, tx), many)


@lru_cache(maxsize=32)
def _cached_call(build, *args):
    return build(*args)


def _cached(build, *args):
    """`build(*args)`, memoised on the identity of the functions passed, so that calling `fit` again with the
    same loss, optimizer and metrics objects reuses the compiled step (jit still keys on shapes and dtypes)."""
    try:
        return _cached_call(build, *args)
    except TypeError as error:  # unhashable arguments (e.g. a user optimizer holding a list): build afresh
        if "unhashable" not in str(error):
            raise
        return build(*args)


class _Run:
    """One training run's state, kept consistent between segments, so that an interruption at any point
    (Ctrl-C arrives between two Python bytecodes) leaves the finished work intact: `params` only ever holds
    parameters whose losses were all finite, and `best_params` those of the best evaluation."""

    def __init__(self, setup, params, config, monitor, stop_when, seeds, n_models, many):
        self.data, self.n, (self.val_data, self.n_val, self.evaluate), self.step_fn, self.opt_state = setup
        self.config, self.many, self.seeds = config, many, jnp.asarray(seeds)
        self.tracker = _Tracker(n_models, config, monitor, stop_when, many)
        self.params = self.best_params = params
        self.history: dict[str, list] = {}
        self.count, self.epoch = 0, 0
        self.n_steps = self.n // config.batch_size

    def loop(self) -> None:
        segment = min(self.config.eval_every or self.n_steps, self.n_steps)
        with ProgressBar(self.config.epochs * self.n_steps, "train", force=self.config.progress) as bar:
            for epoch in range(self.config.epochs):
                self.epoch = epoch
                idx = _order(self.seeds, epoch, n_examples=self.n, batch_size=self.config.batch_size)
                for start in range(0, self.n_steps, segment):
                    self.segment(idx[start : start + segment], min(segment, self.n_steps - start), bar)
                    if not self.tracker.active.any():
                        return

    def segment(self, idx: Array, size: int, bar: ProgressBar) -> None:
        """Runs `size` steps, refuses non-finite losses, commits, evaluates and records."""
        params, opt_state, losses = self.step_fn(self.params, self.opt_state, self.data, idx,
                                                 jnp.asarray(self.tracker.active))
        losses = np.asarray(losses, dtype=np.float64).reshape(size, -1)  # (S, N)
        diverged = self._diverged(losses)
        if diverged.any():  # those models go back to their parameters before this segment
            params = _merge(params, self.params, jnp.asarray(diverged)) if self.many else self.params
            opt_state = _merge(opt_state, self.opt_state, jnp.asarray(diverged)) if self.many else self.opt_state
        self.params, self.opt_state = params, opt_state
        self.count += size
        values = {"train_loss": np.atleast_1d(np.mean(losses, axis=0))}
        if self.evaluate is not None:
            values.update({k: np.atleast_1d(v) for k, v in self.evaluate(params, self.val_data, self.n_val).items()})
        improved = self.tracker.observe(values, self.count)
        if self.many:
            self.best_params = _merge(self.best_params, params, jnp.asarray(improved))
        elif improved[0]:
            self.best_params = params
        record: dict[str, Any] = {"step": self.count, "epoch": self.epoch, **values}
        for key, value in record.items():
            self.history.setdefault(key, []).append(value if self.many or key in ("step", "epoch") else value[0])
        bar.update(size, active=int(self.tracker.active.sum()), **{k: float(np.mean(v)) for k, v in values.items()})

    def _diverged(self, losses: np.ndarray) -> np.ndarray:
        """Active models (N,) with a non-finite loss in this segment; stops them (fit_many warns, and
        raises once every model has diverged; fit raises at once)."""
        bad = ~np.isfinite(losses) & self.tracker.active
        models = bad.any(axis=0)
        if not models.any():
            return models
        steps = self.count + 1 + np.argmax(bad, axis=0)
        self.tracker.diverge(models, steps)
        which = np.flatnonzero(models)
        if (self.tracker.diverged_step >= 0).all():
            first = int(steps[which].min())
            raise NonFiniteLossError(
                f"the training loss became non-finite (NaN or inf) at step {first} (epoch {self.epoch})"
                + ("" if not self.many else " for every model") + "; lower the learning rate, clip gradients "
                "(TrainConfig.clip_norm) or check the data and loss.", first)
        warnings.warn(f"lrpjax.train: the loss of model(s) {which.tolist()} became non-finite at step(s) "
                      f"{steps[which].tolist()}; they stop there with their best parameters "
                      "(TrainResult.diverged_step).", RuntimeWarning, stacklevel=4)
        return models

    def result(self, error: BaseException | None = None) -> TrainResult:
        params = self.params
        if self.config.restore_best:
            has_best = self.tracker.best_step >= 0  # a model whose monitor was never finite keeps its last params
            if self.many:
                params = _merge(params, self.best_params, jnp.asarray(has_best))
            elif has_best[0]:
                params = self.best_params
        unwrap = (lambda a: a) if self.many else (lambda a: a[0].item())
        tracker = self.tracker
        return TrainResult(
            params=params, opt_state=self.opt_state,
            history={key: np.asarray(value) for key, value in self.history.items()},
            best_metric=unwrap(tracker.best), best_step=unwrap(tracker.best_step),
            converged=unwrap(tracker.converged), stopped_step=unwrap(tracker.stopped_step), steps=self.count,
            diverged_step=unwrap(tracker.diverged_step), interrupted=error is not None, error=error)

    def what_is_kept(self) -> str:
        """For messages: which parameters the result holds."""
        if self.count == 0:
            return "the initial parameters (no step had finished)"
        if not self.config.restore_best:
            return f"the parameters after step {self.count} (restore_best=False)"
        if self.many:
            return "each model's best parameters so far (its last ones where no evaluation had finished)"
        best = int(self.tracker.best_step[0])
        if best < 0:
            return f"the parameters after step {self.count} (no evaluation had finished)"
        return f"the best parameters so far (evaluation at step {best})"


def _train(loss_fn, params, train, *, val, metrics, config, optimizer, stop_when, frozen, seeds, n_models, many,
           checkpoint, checkpoint_metadata):
    if checkpoint_metadata is not None and not isinstance(checkpoint_metadata, dict):
        raise TypeError(f"`checkpoint_metadata` must be a dict; got {type(checkpoint_metadata).__name__}.")
    data, n, evaluation, monitor, step_fn, opt_state = _prepare(
        loss_fn, params, train, val, metrics, config, optimizer, frozen, many
    )
    run = _Run((data, n, evaluation, step_fn, opt_state), params, config, monitor, stop_when, seeds, n_models, many)
    try:
        run.loop()
    except KeyboardInterrupt as error:
        result = _save(run.result(error), checkpoint, checkpoint_metadata)
        where = f"; saved to {result.saved_to}" if result.saved_to else ""
        sys.stderr.write(f"lrpjax.train: interrupted at step {run.count} of {config.epochs * run.n_steps} "
                         f"(epoch {run.epoch}); returning {run.what_is_kept()} with interrupted=True{where}\n")
        return result
    except BaseException as error:
        result = _save(run.result(error), checkpoint, checkpoint_metadata)
        error.result = result  # type: ignore[attr-defined]  # the result rides on the exception
        if hasattr(error, "add_note"):
            where = f" and saved to {result.saved_to}" if result.saved_to else ""
            error.add_note(f"lrpjax.train: training stopped at step {run.count}; {run.what_is_kept()} are in "
                           f"`error.result`{where}.")
        raise
    result = run.result()
    return _save(result, checkpoint, checkpoint_metadata, strict=True)


def _finite_or_none(value: Any) -> Any:
    """A metric (or (N,) metrics) as JSON numbers, None where it is not finite (strict JSON)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return float(array) if np.isfinite(array) else None
    return [float(v) if np.isfinite(v) else None for v in array.ravel()]


def _save(result: TrainResult, path: Any, metadata: dict | None, strict: bool = False) -> TrainResult:
    """Writes ``result.params`` to the checkpoint `path` (if given) and records where. After an interruption
    or an exception a failed write is reported on stderr and the result returned anyway; after a normal
    run (`strict`) the OSError is raised with the result attached."""
    if path is None:
        return result
    from lrpjax.io import checkpoints  # the trainer needs the file format only here

    error = result.error
    meta = {"kind": "trained-params", **(metadata or {}), "training": {
        "steps": result.steps, "interrupted": result.interrupted, "best_step": np.asarray(result.best_step).tolist(),
        "best_metric": _finite_or_none(result.best_metric), "diverged_step": np.asarray(result.diverged_step).tolist(),
        "error": None if error is None else f"{type(error).__name__}: {error}"}}
    try:
        result.saved_to = checkpoints.save(path, jax.tree.map(np.asarray, result.params), meta)
    except (OSError, TypeError, ValueError) as failure:
        if strict:
            failure.result = result  # type: ignore[union-attr]  # the result rides on the exception
            raise
        sys.stderr.write(f"lrpjax.train: could not save the parameters to {os.fspath(path)!r}: {failure}\n")
    return result


def fit(
    loss_fn: LossFn,
    params: Any,
    train: Mapping[str, ArrayLike],
    *,
    config: TrainConfig = TrainConfig(),
    optimizer: optax.GradientTransformation | None = None,
    val: Mapping[str, ArrayLike] | None = None,
    metrics: Mapping[str, LossFn] | None = None,
    stop_when: StopWhen | None = None,
    frozen: Callable[[str], bool] | Any | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Trains one model with mini-batch optax steps, validation, early stopping and best-parameter restore.

    Nothing finished is lost: on Ctrl-C (KeyboardInterrupt) `fit` stops after the current segment of
    steps, prints one line on stderr saying what it keeps, and returns a `TrainResult` with
    ``interrupted=True``, ``error`` the KeyboardInterrupt, and the best parameters seen so far (with
    ``restore_best``; the last finished ones otherwise or before any evaluation). On any other exception
    (a `NonFiniteLossError`, an error in `stop_when` or a metric, ...) that exception propagates with the
    same result as ``error.result`` (and a note saying so). With `checkpoint` the result's parameters are
    also written there once training has started -- at the end, on interruption and on error -- and
    ``result.saved_to`` says so. Errors found before the first step (see Raises) train nothing and keep
    nothing.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar`` with batch a dict of arrays of leading axis B (see
            `make_loss`); differentiated with respect to `params`.
        params: the initial parameter pytree (plain dicts of arrays).
        train: dict of arrays sharing a leading axis (e.g. "x" (N, T, E), "mask" (N, T), "y" (N,)); put on the
            device once. Each epoch draws `batch_size` batches from a permutation seeded by ``(seed, epoch)``.
        config: loop hyper-parameters, `TrainConfig`.
        optimizer: optax transformation, default ``optax.adam(1e-3)``.
        val: validation data, same layout as `train`; needed by `metrics`.
        metrics: name -> ``metric(params, batch) -> scalar`` (a mean over the batch, see `make_metric`),
            evaluated on `val` after each epoch (or every ``config.eval_every`` steps).
        stop_when: ``stop_when(values) -> bool`` on the evaluation's values {"train_loss": float,
            <metric>: float}; training stops when it returns True (e.g. ``lambda m: m["mse"] < 1e-4``).
        frozen: leaves not to train (see `make_optimizer`): predicate on the path "a/b" or a pytree of bools.
        checkpoint: a ``.npz`` path (`lrpjax.io.checkpoints`, written atomically) for the returned parameters.
        checkpoint_metadata: metadata of that checkpoint (its "kind" defaults to "trained-params"); a
            "training" entry (steps, best step and metric, interruption, error) is added.

    Returns:
        `TrainResult` with scalar per-model fields.

    Raises:
        ValueError, TypeError: before the first step, for data without a common leading axis, fewer examples
            than a batch, NaN or infinite values in `train` or `val`, a missing batch entry or class labels
            outside [0, C) for a "xent" / "accuracy" objective of `make_loss` / `make_metric`, metrics
            without `val`, an unknown `monitor`, a bad `frozen`, or an optimizer whose first updates are
            non-finite, uphill or zero (a NaN, negative or zero learning rate).
        NonFiniteLossError: the loss became NaN or infinite; ``error.step`` is the step, ``error.result``
            the parameters before the failing segment (or the best ones).
        OSError: `checkpoint` could not be written after a finished run (``error.result`` holds the result).
    """
    return _train(loss_fn, params, train, val=val, metrics=metrics, config=config, optimizer=optimizer,
                  stop_when=stop_when, frozen=frozen, seeds=config.seed, n_models=1, many=False,
                  checkpoint=checkpoint, checkpoint_metadata=checkpoint_metadata)


def fit_many(
    loss_fn: LossFn,
    params: Any,
    train: Mapping[str, ArrayLike],
    *,
    config: TrainConfig = TrainConfig(),
    optimizer: optax.GradientTransformation | None = None,
    val: Mapping[str, ArrayLike] | None = None,
    metrics: Mapping[str, LossFn] | None = None,
    stop_when: StopWhen | None = None,
    frozen: Callable[[str], bool] | Any | None = None,
    shuffle_seeds: int | Sequence[int] | ArrayLike | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Trains N independent models at once: one compiled, ``vmap``-ed step for all of them.

    Model n is trained exactly as ``fit`` would train ``unstack(params)[n]`` with ``seed=shuffle_seeds[n]``
    (up to floating-point reassociation under ``vmap``). A model stops updating (its parameters and optimizer
    state are kept by a masked update) once `stop_when` holds for it or its patience runs out; the loop ends
    when every model has stopped or after ``config.epochs``. Stopped models still cost compute in the shared
    step; nothing recompiles. A model whose loss becomes NaN or infinite stops at that step with its best
    parameters (a RuntimeWarning names it, ``result.diverged_step`` records it) while the others go on;
    only when every model has diverged does `fit_many` raise `NonFiniteLossError`. Interruption, errors
    and `checkpoint` work as in `fit`, for all models together.

    Args:
        loss_fn: as in `fit`, for ONE model (``loss_fn(params_n, batch)``).
        params: stacked initial parameters: every leaf has a leading axis N (see `stack`, or
            ``jax.vmap(init)(keys)``).
        train, config, optimizer, val, metrics, frozen: as in `fit`; the same data for all models.
        stop_when: ``stop_when(values) -> (N,) bools`` with values {"train_loss": (N,), <metric>: (N,)}
            numpy arrays, e.g. ``lambda m: m["mse"] < 1e-4``.
        shuffle_seeds: None or an int: one shared batch order for all models (seed ``config.seed`` or the
            int); the batch is gathered once per step. A sequence of N ints: model n has its own order.
            Seeds must fit int32.
        checkpoint, checkpoint_metadata: as in `fit` (the stacked parameters).

    Returns:
        `TrainResult` with params stacked (N, ...), history values (K, N) and per-model fields (N,).

    Raises:
        ValueError, TypeError: as in `fit`, and for leaves with different leading sizes or `shuffle_seeds`
            of a length other than N.
    """
    leaves = jax.tree.leaves(params)
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if not leaves or len(sizes) != 1 or None in sizes:
        raise ValueError(f"`params` leaves must share a leading model axis N; got leading sizes {sizes}.")
    n_models = sizes.pop()
    seeds = np.asarray(config.seed if shuffle_seeds is None else shuffle_seeds)
    if seeds.ndim > 1 or (seeds.ndim == 1 and seeds.shape[0] != n_models):
        raise ValueError(f"`shuffle_seeds` must be an int or have shape (N,) = ({n_models},); got {seeds.shape}.")
    if not np.issubdtype(seeds.dtype, np.integer):
        raise TypeError(f"`shuffle_seeds` must be integers; got dtype {seeds.dtype}.")
    if seeds.size and not (_INT32[0] <= int(seeds.min()) and int(seeds.max()) <= _INT32[1]):
        raise ValueError(f"`shuffle_seeds` must fit int32, [{_INT32[0]}, {_INT32[1]}] (jax's traced seeds); "
                         f"got values in [{int(seeds.min())}, {int(seeds.max())}].")
    return _train(loss_fn, params, train, val=val, metrics=metrics, config=config, optimizer=optimizer,
                  stop_when=stop_when, frozen=frozen, seeds=seeds, n_models=n_models, many=True,
                  checkpoint=checkpoint, checkpoint_metadata=checkpoint_metadata)


def stack(params_list: Sequence[Any]) -> Any:
    """Stacks N parameter pytrees of one structure into one with a leading axis N on every leaf."""
    if not params_list:
        raise ValueError("`params_list` must hold at least one parameter pytree.")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *params_list)


def unstack(params: Any) -> list[Any]:
    """Inverse of `stack`: a list of N pytrees, the n-th taking index n of every leaf."""
    n_models = jax.tree.leaves(params)[0].shape[0]
    return [jax.tree.map(lambda leaf, n=n: leaf[n], params) for n in range(n_models)]
