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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrpjax._types import Array, ArrayLike
from lrpjax.progress import ProgressBar

__all__ = [
    "TrainConfig",
    "TrainResult",
    "fit",
    "fit_many",
    "make_loss",
    "make_metric",
    "make_optimizer",
    "make_step",
    "stack",
    "unstack",
]

LossFn = Callable[[Any, dict[str, Array]], Array]
Predict = Callable[[Any, Array, Array | None], Array]
StopWhen = Callable[[dict[str, Any]], Any]
_KINDS = ("mse", "xent", "accuracy")


# --------------------------------------------------------------------------------------------- objectives


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

    return metric


def make_loss(
    predict: Predict, kind: str = "mse", *, x_key: str = "x", mask_key: str = "mask", y_key: str = "y"
) -> LossFn:
    """Builds ``loss(params, batch) -> scalar`` for `fit`: "mse" (regression) or "xent" (classification).

    See `make_metric` for the arguments; "accuracy" is not differentiable and is refused here.

    Raises:
        ValueError: if `kind` is not "mse" or "xent".
    """
    if kind not in ("mse", "xent"):
        raise ValueError(f"loss `kind` must be 'mse' or 'xent'; got {kind!r}.")
    return make_metric(predict, kind, x_key=x_key, mask_key=mask_key, y_key=y_key)


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
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive int; got {getattr(self, name)!r}.")
        for name in ("eval_every", "patience", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive int or None; got {value!r}.")
        if self.mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max'; got {self.mode!r}.")
        if self.min_delta < 0:
            raise ValueError(f"`min_delta` must be >= 0; got {self.min_delta}.")


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
    """

    params: Any
    opt_state: Any
    history: dict[str, np.ndarray]
    best_metric: Any
    best_step: Any
    converged: Any
    stopped_step: Any
    steps: int


# --------------------------------------------------------------------------------------- compiled pieces


def _check_data(data: Mapping[str, ArrayLike], name: str) -> tuple[dict[str, Array], int]:
    if not isinstance(data, Mapping) or not data:
        raise TypeError(f"`{name}` must be a non-empty dict of arrays with a leading axis B.")
    arrays = {key: jnp.asarray(value) for key, value in data.items()}
    sizes = {key: (value.shape[0] if value.ndim else None) for key, value in arrays.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(f"all arrays of `{name}` must share the leading axis B; got leading sizes {sizes}.")
    return jax.device_put(arrays), next(iter(sizes.values()))


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

    def observe(self, values: dict[str, np.ndarray], step: int) -> np.ndarray:
        """Updates the records with one evaluation; returns which models improved (N,)."""
        value, delta = values[self.monitor], self.config.min_delta
        better = value < self.best - delta if self.config.mode == "min" else value > self.best + delta
        improved = self.active & better
        self.best = np.where(improved, value, self.best)
        self.best_step = np.where(improved, step, self.best_step)
        self.bad = np.where(improved, 0, self.bad + self.active)
        done = np.zeros_like(self.active)
        if self.stop_when is not None:
            user = values if self.many else {name: float(v[0]) for name, v in values.items()}
            target = np.broadcast_to(np.asarray(self.stop_when(user), dtype=bool), self.active.shape)
            self.converged |= self.active & target
            done |= target
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
    labels = None
    if frozen is not None:
        leaves, treedef = jax.tree.flatten(_frozen_labels(params, frozen))
        labels = (treedef, tuple(leaves))
    tx, run = _cached(_build_step, loss_fn, optimizer, config.clip_norm, labels, many)
    opt_state = jax.vmap(tx.init)(params) if many else tx.init(params)
    evaluate = _cached(_evaluator, tuple(metrics.items()), many, config.eval_batch_size) if metrics else None
    return data, n, (val_data, n_val, evaluate), monitor, run, opt_state


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


def _train(loss_fn, params, train, *, val, metrics, config, optimizer, stop_when, frozen, seeds, n_models, many):
    data, n, (val_data, n_val, evaluate), monitor, run, opt_state = _prepare(
        loss_fn, params, train, val, metrics, config, optimizer, frozen, many
    )
    n_steps = n // config.batch_size
    segment = min(config.eval_every or n_steps, n_steps)
    tracker = _Tracker(n_models, config, monitor, stop_when, many)
    history: dict[str, list] = {}
    best_params, count, seeds = params, 0, jnp.asarray(seeds)
    with ProgressBar(config.epochs * n_steps, "train", force=config.progress) as bar:
        for epoch in range(config.epochs):
            idx = _order(seeds, epoch, n_examples=n, batch_size=config.batch_size)
            for start in range(0, n_steps, segment):
                params, opt_state, losses = run(params, opt_state, data, idx[start : start + segment],
                                                jnp.asarray(tracker.active))
                count += min(segment, n_steps - start)
                values = {"train_loss": np.atleast_1d(np.mean(np.asarray(losses, dtype=np.float64), axis=0))}
                if evaluate is not None:
                    values.update({k: np.atleast_1d(v) for k, v in evaluate(params, val_data, n_val).items()})
                improved = tracker.observe(values, count)
                if many:
                    best_params = _merge(best_params, params, jnp.asarray(improved))
                elif improved[0]:
                    best_params = params
                for key, value in {"step": count, "epoch": epoch, **values}.items():
                    history.setdefault(key, []).append(value if many or key in ("step", "epoch") else value[0])
                bar.update(min(segment, n_steps - start), active=int(tracker.active.sum()),
                           **{k: float(np.mean(v)) for k, v in values.items()})
                if not tracker.active.any():
                    break
            if not tracker.active.any():
                break
    if config.restore_best:
        has_best = tracker.best_step >= 0  # a model whose monitor was never finite keeps its last params
        if many:
            params = _merge(params, best_params, jnp.asarray(has_best))
        elif has_best[0]:
            params = best_params
    unwrap = (lambda a: a) if many else (lambda a: a[0].item())
    return TrainResult(
        params=params,
        opt_state=opt_state,
        history={key: np.asarray(value) for key, value in history.items()},
        best_metric=unwrap(tracker.best),
        best_step=unwrap(tracker.best_step),
        converged=unwrap(tracker.converged),
        stopped_step=unwrap(tracker.stopped_step),
        steps=count,
    )


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
) -> TrainResult:
    """Trains one model with mini-batch optax steps, validation, early stopping and best-parameter restore.

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

    Returns:
        `TrainResult` with scalar per-model fields.

    Raises:
        ValueError, TypeError: for data without a common leading axis, fewer examples than a batch, metrics
            without `val`, an unknown `monitor`, or a bad `frozen`.
    """
    return _train(loss_fn, params, train, val=val, metrics=metrics, config=config, optimizer=optimizer,
                  stop_when=stop_when, frozen=frozen, seeds=config.seed, n_models=1, many=False)


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
) -> TrainResult:
    """Trains N independent models at once: one compiled, ``vmap``-ed step for all of them.

    Model n is trained exactly as ``fit`` would train ``unstack(params)[n]`` with ``seed=shuffle_seeds[n]``
    (up to floating-point reassociation under ``vmap``). A model stops updating (its parameters and optimizer
    state are kept by a masked update) once `stop_when` holds for it or its patience runs out; the loop ends
    when every model has stopped or after ``config.epochs``. Stopped models still cost compute in the shared
    step; nothing recompiles.

    Args:
        loss_fn: as in `fit`, for ONE model (``loss_fn(params_n, batch)``).
        params: stacked initial parameters: every leaf has a leading axis N (see `stack`, or
            ``jax.vmap(init)(keys)``).
        train, config, optimizer, val, metrics, frozen: as in `fit`; the same data for all models.
        stop_when: ``stop_when(values) -> (N,) bools`` with values {"train_loss": (N,), <metric>: (N,)}
            numpy arrays, e.g. ``lambda m: m["mse"] < 1e-4``.
        shuffle_seeds: None or an int: one shared batch order for all models (seed ``config.seed`` or the
            int); the batch is gathered once per step. A sequence of N ints: model n has its own order.

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
    return _train(loss_fn, params, train, val=val, metrics=metrics, config=config, optimizer=optimizer,
                  stop_when=stop_when, frozen=frozen, seeds=seeds, n_models=n_models, many=True)


def stack(params_list: Sequence[Any]) -> Any:
    """Stacks N parameter pytrees of one structure into one with a leading axis N on every leaf."""
    if not params_list:
        raise ValueError("`params_list` must hold at least one parameter pytree.")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *params_list)


def unstack(params: Any) -> list[Any]:
    """Inverse of `stack`: a list of N pytrees, the n-th taking index n of every leaf."""
    n_models = jax.tree.leaves(params)[0].shape[0]
    return [jax.tree.map(lambda leaf, n=n: leaf[n], params) for n in range(n_models)]
