"""Tests for the optax trainer (lrpjax.train) and the progress bar (lrpjax.io.progress)."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrpjax.train import trainer as tr
from lrpjax.io.progress import ProgressBar, track

T, E, H, C = 5, 3, 4, 1


# ----------------------------------------------------------------------------------------- tiny models


def linear_predict(params, x, mask):
    """Masked sum over time of a linear map: x (T, E), mask (T,) or None -> (C,)."""
    z = x @ params["W"] + params["b"][None, :]
    if mask is not None:
        z = z * mask[:, None].astype(z.dtype)
    return jnp.sum(z, axis=0)


def rnn_predict(params, x, mask):
    """A small tanh RNN, h_t = tanh(x_t W + h_{t-1} U + b), padded steps keep h; score = h_T V."""

    def cell(h, inputs):
        x_t, m_t = inputs
        h_new = jnp.tanh(x_t @ params["W"] + h @ params["U"] + params["b"])
        return jnp.where(m_t, h_new, h), None

    h0 = jnp.zeros((params["U"].shape[0],), dtype=x.dtype)
    mask = jnp.ones(x.shape[:1], dtype=bool) if mask is None else mask.astype(bool)
    h, _ = jax.lax.scan(cell, h0, (x, mask))
    return h @ params["V"]


def rnn_init(key, e=E, h=H, c=C):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "W": 0.5 * jax.random.normal(k1, (e, h)),
        "U": 0.3 * jax.random.normal(k2, (h, h)),
        "b": jnp.zeros((h,)),
        "V": 0.5 * jax.random.normal(k3, (h, c)),
    }


def regression_data(rng, n, w_true=None):
    x = rng.normal(size=(n, T, E))
    lengths = rng.integers(2, T + 1, size=n)
    mask = np.arange(T)[None, :] < lengths[:, None]
    w_true = np.array([[1.0], [-2.0], [0.5]]) if w_true is None else w_true
    y = np.einsum("nte,ec->nc", x * mask[:, :, None], w_true)
    return {"x": x, "mask": mask, "y": y}


def linear_init():
    return {"W": jnp.zeros((E, C)), "b": jnp.zeros((C,))}


def tree_max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------------------------------- single model


def test_few_adam_steps_lower_the_linear_regression_loss(rng):
    data = jax.tree.map(jnp.asarray, regression_data(rng, 64))
    loss_fn = tr.make_loss(linear_predict, "mse")
    tx = tr.make_optimizer(optax.adam(0.05))
    step = jax.jit(tr.make_step(loss_fn, tx))
    params = linear_init()
    state = tx.init(params)
    first = float(loss_fn(params, data))
    for _ in range(20):
        params, state, _ = step(params, state, data)
    assert float(loss_fn(params, data)) < 0.5 * first


def test_fit_reaches_threshold_and_reports_convergence(rng):
    train, val = regression_data(rng, 256), regression_data(rng, 64)
    result = tr.fit(
        tr.make_loss(linear_predict, "mse"),
        linear_init(),
        train,
        val=val,
        metrics={"mse": tr.make_metric(linear_predict, "mse")},
        stop_when=lambda m: m["mse"] < 1e-6,
        optimizer=optax.adam(0.05),
        config=tr.TrainConfig(epochs=200, batch_size=32, progress=False),
    )
    assert result.converged
    assert result.history["mse"][-1] < 1e-6
    assert result.stopped_step == result.steps == result.history["step"][-1]
    assert result.steps < 200 * 8  # stopped before running all epochs
    np.testing.assert_allclose(np.asarray(result.params["W"]), [[1.0], [-2.0], [0.5]], atol=1e-3)
    assert set(result.history) == {"step", "epoch", "train_loss", "mse"}


def test_early_stopping_restores_the_best_parameters(rng):
    # Training pulls W towards w_true while the validation targets want W = 0: validation MSE gets worse
    # after every epoch, so the best evaluation is the first one and patience 2 stops after the third.
    train = regression_data(rng, 64)
    val = regression_data(rng, 32, w_true=np.zeros((E, C)))
    kwargs = dict(
        loss_fn=tr.make_loss(linear_predict, "mse"),
        params=linear_init(),
        train=train,
        val=val,
        metrics={"mse": tr.make_metric(linear_predict, "mse")},
        optimizer=optax.sgd(1e-3),
    )
    result = tr.fit(**kwargs, config=tr.TrainConfig(epochs=50, batch_size=16, patience=2, progress=False))
    one_epoch = tr.fit(**kwargs, config=tr.TrainConfig(epochs=1, batch_size=16, restore_best=False))
    assert len(result.history["mse"]) == 3
    assert np.all(np.diff(result.history["mse"]) > 0)
    assert result.best_step == 4 and result.stopped_step == 12 and not result.converged
    assert tree_max_diff(result.params, one_epoch.params) == 0.0
    last = tr.fit(**kwargs, config=tr.TrainConfig(epochs=50, batch_size=16, patience=2, restore_best=False))
    assert tree_max_diff(last.params, result.params) > 0.0


def test_eval_every_steps_evaluates_inside_and_at_the_end_of_epochs(rng):
    result = tr.fit(
        tr.make_loss(linear_predict, "mse"),
        linear_init(),
        regression_data(rng, 70),  # 7 steps of 10 per epoch: segments 3, 3, 1
        val=regression_data(rng, 8),
        metrics={"mse": tr.make_metric(linear_predict, "mse")},
        config=tr.TrainConfig(epochs=2, batch_size=10, eval_every=3, eval_batch_size=3),
    )
    np.testing.assert_array_equal(result.history["step"], [3, 6, 7, 10, 13, 14])
    np.testing.assert_array_equal(result.history["epoch"], [0, 0, 0, 1, 1, 1])


def test_chunked_evaluation_equals_whole_set(rng):
    val = jax.tree.map(jnp.asarray, regression_data(rng, 10))
    metric = tr.make_metric(linear_predict, "mse")
    params = {"W": jnp.ones((E, C)), "b": jnp.ones((C,))}
    chunked = tr._evaluator((("mse", metric),), many=False, chunk=3)(params, val, 10)["mse"]
    np.testing.assert_allclose(chunked, float(metric(params, val)), rtol=1e-12)


@pytest.mark.slow
def test_embedding_table_is_trained_through_a_user_predict(rng):
    # Token ids are looked up in params["embed"] (V, E) inside predict, outside the model function.
    v, n = 7, 64
    ids = rng.integers(0, v, size=(n, T))
    labels = (ids[:, 0] % 2).astype(np.int32)

    def predict(params, tokens, mask):
        return rnn_predict(params["model"], params["embed"][tokens], mask)

    params = {"embed": 0.1 * jax.random.normal(jax.random.PRNGKey(1), (v, E)), "model": rnn_init(jax.random.PRNGKey(2), c=2)}
    data = {"x": ids, "y": labels}
    result = tr.fit(
        tr.make_loss(predict, "xent"),
        params,
        data,
        val=data,
        metrics={"acc": tr.make_metric(predict, "accuracy"), "xent": tr.make_metric(predict, "xent")},
        optimizer=optax.adam(0.03),
        config=tr.TrainConfig(epochs=30, batch_size=16, monitor="acc", mode="max"),
    )
    assert result.history["xent"][-1] < 0.5 * result.history["xent"][0]
    assert result.best_metric == 1.0
    assert tree_max_diff(result.params["embed"], params["embed"]) > 1e-3


def test_clip_norm_bounds_the_update(rng):
    data = jax.tree.map(jnp.asarray, regression_data(rng, 16))
    tx = tr.make_optimizer(optax.sgd(1.0), clip_norm=1e-3)
    params = linear_init()
    new, _, _ = jax.jit(tr.make_step(tr.make_loss(linear_predict), tx))(params, tx.init(params), data)
    norm = optax.tree.norm(jax.tree.map(jnp.subtract, new, params))
    np.testing.assert_allclose(float(norm), 1e-3, rtol=1e-9)


@pytest.mark.parametrize("frozen", [lambda path: path == "b", {"W": False, "b": True}])
def test_frozen_leaves_do_not_change(rng, frozen):
    params = {"W": jnp.zeros((E, C)), "b": jnp.full((C,), 0.7)}
    result = tr.fit(
        tr.make_loss(linear_predict),
        params,
        regression_data(rng, 32),
        frozen=frozen,
        optimizer=optax.adam(0.1),
        config=tr.TrainConfig(epochs=3, batch_size=8),
    )
    assert jnp.array_equal(result.params["b"], params["b"])
    assert tree_max_diff(result.params["W"], params["W"]) > 0.1


@pytest.mark.slow
def test_frozen_leaves_do_not_change_in_many_models(rng):
    params = tr.stack([rnn_init(jax.random.PRNGKey(i)) for i in range(3)])
    result = tr.fit_many(
        tr.make_loss(rnn_predict),
        params,
        regression_data(rng, 32),
        frozen=lambda path: path in ("U", "b"),
        config=tr.TrainConfig(epochs=2, batch_size=8),
    )
    assert jnp.array_equal(result.params["U"], params["U"]) and jnp.array_equal(result.params["b"], params["b"])
    assert tree_max_diff(result.params["W"], params["W"]) > 1e-3


# ------------------------------------------------------------------------------------------ many models


def _rnn_kwargs(rng):
    return dict(
        loss_fn=tr.make_loss(rnn_predict, "mse"),
        train=regression_data(rng, 48, w_true=np.array([[0.3], [-0.2], [0.1]])),
        val=regression_data(rng, 16, w_true=np.array([[0.3], [-0.2], [0.1]])),
        metrics={"mse": tr.make_metric(rnn_predict, "mse")},
        optimizer=optax.adam(0.02),
        # Stop thresholds that the three models reach at different epochs.
        stop_when=lambda m: m["mse"] < 0.08,
    )


def _check_many_equals_separate(many, singles):
    for n, single in enumerate(singles):
        assert tree_max_diff(jax.tree.map(lambda a, n=n: a[n], many.params), single.params) < 1e-10
        assert many.stopped_step[n] == single.stopped_step
        assert many.converged[n] == single.converged
        assert many.best_step[n] == single.best_step
        np.testing.assert_allclose(many.best_metric[n], single.best_metric, rtol=1e-10)
        k = len(single.history["mse"])
        np.testing.assert_allclose(many.history["mse"][:k, n], single.history["mse"], rtol=1e-10)


@pytest.mark.slow
def test_many_models_with_own_orders_equal_separate_training(rng):
    kwargs = _rnn_kwargs(rng)
    inits = [rnn_init(jax.random.PRNGKey(i)) for i in range(3)]
    seeds = [11, 12, 13]
    config = tr.TrainConfig(epochs=12, batch_size=8, patience=4, eval_every=3)
    many = tr.fit_many(params=tr.stack(inits), shuffle_seeds=seeds, config=config, **kwargs)
    singles = [
        tr.fit(params=p, config=tr.TrainConfig(**{**config.__dict__, "seed": s}), **kwargs)
        for p, s in zip(inits, seeds)
    ]
    assert len(set(many.stopped_step.tolist())) > 1, "the test wants models stopping at different steps"
    assert many.history["mse"].shape == (len(many.history["step"]), 3)
    _check_many_equals_separate(many, singles)


@pytest.mark.slow
def test_many_models_with_shared_order_equal_separate_training(rng):
    kwargs = _rnn_kwargs(rng)
    inits = [rnn_init(jax.random.PRNGKey(i)) for i in (5, 6)]
    config = tr.TrainConfig(epochs=6, batch_size=8, seed=3)
    many = tr.fit_many(params=tr.stack(inits), config=config, **kwargs)
    _check_many_equals_separate(many, [tr.fit(params=p, config=config, **kwargs) for p in inits])


def test_stack_and_unstack_round_trip():
    trees = [rnn_init(jax.random.PRNGKey(i)) for i in range(2)]
    back = tr.unstack(tr.stack(trees))
    assert all(tree_max_diff(a, b) == 0.0 for a, b in zip(trees, back))


# --------------------------------------------------------------------------------------------- errors


def test_errors_name_the_argument(rng):
    loss = tr.make_loss(linear_predict)
    data = regression_data(rng, 32)
    with pytest.raises(ValueError, match="kind"):
        tr.make_loss(linear_predict, "accuracy")
    with pytest.raises(ValueError, match="kind"):
        tr.make_metric(linear_predict, "hinge")
    with pytest.raises(ValueError, match="batch_size"):
        tr.TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="mode"):
        tr.TrainConfig(mode="best")
    with pytest.raises(ValueError, match="fewer than batch_size"):
        tr.fit(loss, linear_init(), data, config=tr.TrainConfig(batch_size=33))
    with pytest.raises(ValueError, match="leading axis"):
        tr.fit(loss, linear_init(), {**data, "y": data["y"][:4]})
    with pytest.raises(ValueError, match="val"):
        tr.fit(loss, linear_init(), data, metrics={"mse": loss})
    with pytest.raises(ValueError, match="monitor"):
        tr.fit(loss, linear_init(), data, val=data, metrics={"mse": loss}, config=tr.TrainConfig(monitor="acc"))
    with pytest.raises(ValueError, match="clip_norm"):
        tr.make_optimizer(clip_norm=0.0)
    with pytest.raises(ValueError, match="frozen"):
        tr.fit(loss, linear_init(), data, frozen={"W": True})
    with pytest.raises(ValueError, match="leading model axis"):
        tr.fit_many(loss, {"W": jnp.zeros((2, E, C)), "b": jnp.zeros((3, C))}, data)
    with pytest.raises(ValueError, match="shuffle_seeds"):
        tr.fit_many(loss, tr.stack([linear_init()] * 2), data, shuffle_seeds=[1, 2, 3])
    with pytest.raises(ValueError, match="mse target"):
        loss(linear_init(), {**data, "y": np.zeros((32, 2))})
    with pytest.raises(ValueError, match="integer label"):
        tr.make_loss(linear_predict, "xent")(linear_init(), data)


# ---------------------------------------------------------------------------------------- progress bar


def test_progress_bar_draws_only_when_forced_or_on_a_terminal():
    quiet = io.StringIO()  # not a TTY
    with ProgressBar(10, "x", stream=quiet) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""

    loud = io.StringIO()
    with ProgressBar(4, "train", stream=loud, force=True, min_interval=0.0) as bar:
        bar.update(1, loss=0.5)
        bar.update(3)
    text = loud.getvalue()
    assert text.endswith("\n") and "train" in text and "4/4" in text and "loss=0.5" in text and "100%" in text

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    assert list(track(range(3), desc="t", stream=term)) == [0, 1, 2]
    assert "3/3" in term.getvalue()
    off = Terminal()
    list(track(range(3), stream=off, force=False))
    assert off.getvalue() == ""


def test_progress_bar_validates_arguments():
    with pytest.raises(ValueError, match="total"):
        ProgressBar(-1)
    with pytest.raises(ValueError, match="width"):
        ProgressBar(3, width=0)
    unknown = ProgressBar(None, force=False)
    unknown.update(7)
    assert unknown.render().startswith("7 [")  # an unknown total shows the count and rate only


# --------------------------------------------------------------------------------- explanation penalty


def _penalty_setup(seed=0, n=12):
    import jax.flatten_util  # noqa: F401 - used by the gradient test

    import lrpjax
    from lrpjax.models import lstm

    rng = np.random.default_rng(seed)
    params = lstm.init(jax.random.PRNGKey(seed), E, 3, 2, jnp.float64)
    x = rng.normal(size=(n, T, E))
    lengths = rng.integers(2, T + 1, size=n)
    mask = np.arange(T)[None, :] < lengths[:, None]
    marked = np.zeros((n, T), bool)
    marked[np.arange(n), rng.integers(0, 2, size=n)] = True
    data = {"x": x, "mask": mask, "decoy": marked, "y": rng.integers(0, 2, size=n).astype(np.int32)}
    predict = lambda p, x_, m: lstm.apply(p, x_, mask=m)  # noqa: E731
    return lrpjax, lstm, params, data, predict


@pytest.mark.parametrize("explain,norm,level", [("score", "squared", "dims"), ("log_prob", "abs", "token"),
                                                 ("all_log_probs", "squared", "token")])
def test_explanation_penalty_is_the_weighted_mean_over_marked_positions(explain, norm, level):
    lrpjax, lstm, params, data, predict = _penalty_setup()
    method = lrpjax.lrp(lstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))
    penalty = tr.explanation_penalty(method, 0.7, "decoy", explain=explain, norm=norm, level=level)
    total = 0.0
    for b in range(len(data["y"])):
        x, m, y = jnp.asarray(data["x"][b]), jnp.asarray(data["mask"][b]), int(data["y"][b])
        s = lstm.apply(params, x, mask=m)
        p = jax.nn.softmax(s)
        target = {"score": y, "log_prob": jax.nn.one_hot(y, 2, dtype=s.dtype) - p,
                  "all_log_probs": 1.0 - 2 * p}[explain]
        R = np.asarray(method(params, x, target, mask=m))
        if level == "token":
            R = R.sum(-1, keepdims=True)
        values = R ** 2 if norm == "squared" else np.abs(R)
        total += np.sum(values.sum(-1) * data["decoy"][b])
    np.testing.assert_allclose(penalty(params, data), 0.7 * total / len(data["y"]), rtol=1e-10)
    loss = tr.make_loss(predict, "xent", penalty=penalty)
    np.testing.assert_allclose(loss(params, data), tr.make_loss(predict, "xent")(params, data) + penalty(params, data),
                               rtol=1e-12)


def test_explanation_penalty_reads_inputs_through_a_function_and_uses_predicted_classes():
    lrpjax, lstm, params, data, _ = _penalty_setup(1)
    embed = jnp.asarray(np.random.default_rng(1).normal(size=(7, E)))
    ids = np.random.default_rng(2).integers(0, 7, size=data["mask"].shape)
    wrapped = {"model": params, "embed": embed}
    gradient = lrpjax.gradient(lstm.apply)
    through = tr.explanation_penalty(gradient, 1.0, "decoy", inputs=lambda p, i: (p["model"], p["embed"][i]),
                                     y_key=None, explain="score")
    direct = tr.explanation_penalty(gradient, 1.0, "decoy", y_key=None, explain="score")
    batch = dict(data, x=np.asarray(embed)[ids])
    np.testing.assert_allclose(through(wrapped, dict(data, x=ids)), direct(params, batch), rtol=1e-12)
    # Predicted classes: the same as giving the argmax as labels.
    predicted = np.asarray(jax.vmap(lambda x_, m: jnp.argmax(lstm.apply(params, x_, mask=m)))(batch["x"], batch["mask"]))
    labelled = tr.explanation_penalty(gradient, 1.0, "decoy", explain="score")
    np.testing.assert_allclose(direct(params, batch), labelled(params, dict(batch, y=predicted.astype(np.int32))),
                               rtol=1e-12)


@pytest.mark.slow
def test_explanation_penalty_differentiates_and_fit_many_equals_fit():
    lrpjax, lstm, params, data, predict = _penalty_setup(3, n=16)
    method = lrpjax.lrp(lstm.apply, lrpjax.rules.preset("lrp-half", eps=1e-2))
    penalty = tr.explanation_penalty(method, 2.0, "decoy")
    grad = jax.grad(penalty)(params, data)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    d = jnp.asarray(np.random.default_rng(4).normal(size=flat.shape))
    central = lambda h: (penalty(unravel(flat + h * d), data) - penalty(unravel(flat - h * d), data)) / (2 * h)  # noqa: E731
    fd = (4 * central(5e-5) - central(1e-4)) / 3   # Richardson: error O(h^4)
    np.testing.assert_allclose(jnp.vdot(jax.flatten_util.ravel_pytree(grad)[0], d), fd, rtol=1e-6)
    loss = tr.make_loss(predict, "xent", penalty=penalty)
    config = tr.TrainConfig(epochs=3, batch_size=8, progress=False, restore_best=False)
    others = lstm.init(jax.random.PRNGKey(9), E, 3, 2, jnp.float64)
    many = tr.fit_many(loss, tr.stack([params, others]), data, config=config, optimizer=optax.adam(0.05))
    one = tr.fit(loss, others, data, config=config, optimizer=optax.adam(0.05))
    assert tree_max_diff(tr.unstack(many.params)[1], one.params) < 1e-9
    assert float(penalty(one.params, data)) < float(penalty(others, data))


def test_explanation_penalty_arguments_and_entries_are_checked():
    lrpjax, lstm, params, data, predict = _penalty_setup(5)
    method = lrpjax.gradient(lstm.apply)
    for kwargs, error, match in (({"method": "gradient"}, TypeError, "method"), ({"weight": -1.0}, ValueError, "weight"),
                                 ({"weight": float("nan")}, ValueError, "weight"), ({"mask_key": 3}, TypeError, "mask_key"),
                                 ({"y_key": 1}, TypeError, "y_key"), ({"inputs": "embed"}, TypeError, "inputs"),
                                 ({"explain": "logit"}, ValueError, "explain"), ({"norm": "l1"}, ValueError, "norm"),
                                 ({"level": "word"}, ValueError, "level")):
        args = {"method": method, "weight": 1.0, "mask_key": "decoy", **kwargs}
        with pytest.raises(error, match=match):
            tr.explanation_penalty(args.pop("method"), args.pop("weight"), args.pop("mask_key"), **args)
    with pytest.raises(TypeError, match="penalty"):
        tr.make_loss(predict, "xent", penalty=[1.0])
    loss = tr.make_loss(predict, "xent", penalty=tr.explanation_penalty(method, 1.0, "decoy"))
    config = tr.TrainConfig(epochs=1, batch_size=4, progress=False)
    missing = {k: v for k, v in data.items() if k != "decoy"}
    with pytest.raises(ValueError, match="'decoy'"):
        tr.fit(loss, params, missing, config=config)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        tr.fit(loss, params, dict(data, decoy=data["decoy"][:, :2]), config=config)
    zero = tr.make_loss(predict, "xent", penalty=tr.explanation_penalty(method, 0.0, "decoy"))
    np.testing.assert_allclose(zero(params, data), tr.make_loss(predict, "xent")(params, data), rtol=1e-12)
