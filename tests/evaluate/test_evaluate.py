"""Perturbation curves and AOPC against slow loop oracles (replacement for vectors, deletion for sequences)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.evaluate import Score, aopc, perturbation_curve, perturbation_curves
from lrpjax.models import lstm
from lrpjax.models.mlp import MLP

MODEL = MLP((6, 5, 3))


def _setup(B=4, seed=0):
    params = MODEL.init(jax.random.PRNGKey(seed), jnp.float64)
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (B, 6))
    R = rng.normal(size=(B, 6))
    R[0, 2] = R[0, 4]                          # a tie: the lower index goes first
    targets = np.arange(B) % 3
    return params, X, R, targets


def _np_mlp(params, x):
    h = np.maximum(x @ np.asarray(params["dense_0"]["W"]) + np.asarray(params["dense_0"]["b"]), 0)
    return h @ np.asarray(params["out"]["W"]) + np.asarray(params["out"]["b"])


def _oracle_replace(params, X, R, targets, steps, per_step, baseline, most_first, kind="score"):
    curves = np.zeros((len(X), steps + 1))
    for b in range(len(X)):
        ranking = np.argsort(-R[b] if most_first[b] else R[b], kind="stable")
        for s in range(steps + 1):
            x = X[b].copy()
            for j in ranking[:s * per_step]:
                x[j] = baseline[b][j]
            scores = _np_mlp(params, x)
            curves[b, s] = scores[targets[b]] if kind == "score" else float(np.argmax(scores) == targets[b])
    return curves


@pytest.mark.parametrize("steps,per_step", [(6, 1), (2, 3), (3, 2), (4, 4), (0, 1)])
def test_replacement_curve_matches_loop_oracle(steps, per_step):
    params, X, R, targets = _setup()
    got = perturbation_curves(Score(MODEL.apply), params, X, R, targets, steps=steps, per_step=per_step)
    want = _oracle_replace(params, X, R, targets, steps, per_step, np.zeros_like(X), [True] * 4)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_baselines_orders_and_accuracy():
    params, X, R, targets = _setup()
    mean = X.mean(axis=0)
    noise = np.random.default_rng(5).uniform(0, 1, X.shape)
    per_example = np.array([True, False, False, True])
    for baseline, base_array in ((0.5, np.full_like(X, 0.5)), (mean, np.broadcast_to(mean, X.shape)),
                                 (noise, noise)):
        for order, flags in (("most", [True] * 4), ("least", [False] * 4), (per_example, per_example)):
            got = perturbation_curves(Score(MODEL.apply), params, X, R, targets, baseline=baseline, order=order)
            want = _oracle_replace(params, X, R, targets, 6, 1, base_array, flags)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    got = perturbation_curves(Score(MODEL.apply, "correct"), params, X, R, targets)
    np.testing.assert_array_equal(got, _oracle_replace(params, X, R, targets, 6, 1, np.zeros_like(X), [True] * 4,
                                                       "correct"))


def test_single_curve_equals_batch_row():
    params, X, R, targets = _setup()
    batch = perturbation_curves(Score(MODEL.apply, "probability"), params, X, R, targets, baseline=X.mean(0))
    one = perturbation_curve(Score(MODEL.apply, "probability"), params, X[2], R[2], targets[2], baseline=X.mean(0))
    np.testing.assert_allclose(one, batch[2], rtol=1e-13)
    assert one.shape == (7,)


def test_replacement_never_touches_masked_features():
    params, X, R, targets = _setup()
    mask = np.ones((4, 6), bool)
    mask[:, 4:] = False
    R_big = R.copy()
    R_big[:, 4:] = 100.0                       # most relevant, but padding
    got = perturbation_curves(lambda p, x, t, m: jnp.sum(x * m.astype(x.dtype)), params, X, R_big, targets,
                              mask=mask)
    want = np.zeros((4, 7))
    for b in range(4):
        ranking = np.argsort(-R[b, :4], kind="stable")
        want[b] = [X[b, :4].sum() - X[b, ranking[:s]].sum() for s in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --- deletion of tokens ---------------------------------------------------------------------------------

def _np_lstm(params, xs):
    """Final output of a plain NumPy LSTM (Eqs. 11.1-11.6, gate order i, z, f, o); zeros for no steps."""
    W, U, b = (np.asarray(params["lstm"][k]) for k in ("W", "U", "b"))
    H = U.shape[0]
    y = c = np.zeros(H)
    for x_t in xs:
        pre = x_t @ W + y @ U + b
        i, z, f, o = (pre[k * H:(k + 1) * H] for k in range(4))
        c = c / (1 + np.exp(-f)) + np.tanh(z) / (1 + np.exp(-i))
        y = np.tanh(c) / (1 + np.exp(-o))
    return y


def test_deletion_curve_matches_loop_oracle():
    E, H, C, T = 3, 4, 2, 6
    params = lstm.init(jax.random.PRNGKey(1), E, H, C, jnp.float64)
    rng = np.random.default_rng(1)
    lengths = [6, 4, 1, 5]
    X = np.zeros((4, T, E))
    mask = np.zeros((4, T), bool)
    for b, L in enumerate(lengths):
        X[b, :L] = rng.normal(size=(L, E))
        mask[b, :L] = True
    R = rng.normal(size=(4, T)) * mask
    targets = np.array([0, 1, 1, 0])
    order = np.array([True, False, True, True])
    got = perturbation_curves(Score(lstm.apply), params, X, R, targets, mask=mask, steps=5, mode="delete",
                              order=order)
    for b, L in enumerate(lengths):
        ranking = np.argsort(-R[b, :L] if order[b] else R[b, :L], kind="stable")
        for s in range(6):
            kept = [t for t in range(L) if t not in set(ranking[:s])]
            score = (_np_lstm(params, X[b, kept]) @ np.asarray(params["out"]["W"]))[targets[b]]
            np.testing.assert_allclose(got[b, s], score, rtol=1e-10, atol=1e-14, err_msg=f"example {b} step {s}")


def test_deletion_packs_tokens_and_shortens_the_mask():
    def record(params, x, target, mask):
        digits = 10.0 ** jnp.arange(x.shape[0] - 1, -1, -1, dtype=x.dtype)
        return jnp.sum(x[:, 0] * digits) + 1000.0 * jnp.sum(mask.astype(x.dtype))

    X = np.array([[[1.0], [2.0], [3.0], [0.0]]])
    R = np.array([[0.1, 0.5, 0.2, 0.0]])
    got = perturbation_curves(record, None, X, R, 0, mask=np.array([[True, True, True, False]]), mode="delete")
    # tokens 1 2 3 (mask 3) -> 1 3 (2) -> 1 (1) -> none (0), packed to the front; padding never removed
    np.testing.assert_allclose(got[0], [3000 + 1230.0, 2000 + 1300.0, 1000 + 1000.0, 0.0, 0.0])


# --- AOPC -------------------------------------------------------------------------------------------------

def test_aopc_is_the_mean_drop_including_step_zero():
    curves = np.array([[4.0, 3.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_allclose(aopc(curves), [(0 + 1 + 3 + 4) / 4, 0.0])
    np.testing.assert_allclose(aopc(curves, steps=1), [0.5, 0.0])
    np.testing.assert_allclose(aopc(curves[0]), 2.0)
    with pytest.raises(ValueError, match="steps"):
        aopc(curves, steps=4)
    with pytest.raises(ValueError, match="curves"):
        aopc(np.zeros((2, 2, 2)))


# --- checks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change,error,match", [
    (dict(R=np.zeros((4, 5))), ValueError, r"`R` must have shape \(B, N\) = \(4, 6\)"),
    (dict(R=np.full((4, 6), np.nan)), ValueError, "non-finite"),
    (dict(X=np.zeros((4, 6), np.int32)), TypeError, "floating"),
    (dict(X=np.zeros((4,))), ValueError, "X"),
    (dict(targets=np.zeros(3, int)), ValueError, "targets"),
    (dict(targets=np.zeros(4)), ValueError, "targets"),
    (dict(mode="erase"), ValueError, "mode"),
    (dict(mode="delete"), ValueError, "sequences"),
    (dict(order="first"), ValueError, "order"),
    (dict(order=np.ones(3, bool)), ValueError, "order"),
    (dict(steps=-1), ValueError, "steps"),
    (dict(per_step=0), ValueError, "per_step"),
    (dict(baseline=np.zeros(5)), ValueError, "baseline"),
    (dict(mask=np.ones((4, 6))), ValueError, "mask"),
    (dict(score_fn=3), TypeError, "score_fn"),
])
def test_bad_arguments_are_rejected(change, error, match):
    params, X, R, targets = _setup()
    args = dict(score_fn=Score(MODEL.apply), params=params, X=X, R=R, targets=targets)
    options = {k: change.pop(k) for k in list(change) if k not in args}
    args.update(change)
    with pytest.raises(error, match=match):
        perturbation_curves(**args, **options)
    with pytest.raises(ValueError, match="kind"):
        Score(MODEL.apply, "logit")
