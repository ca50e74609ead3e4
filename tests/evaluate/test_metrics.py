"""Faithfulness metrics against independent float64 NumPy implementations of their published definitions
(explicit loops over examples, steps and subsets; a NumPy LSTM as the model), batched against per-example,
masks respected."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.core.cells import StandardCell
from lrpjax.evaluate import metrics as M
from lrpjax.evaluate import Score, perturbation_curves
from lrpjax.models import Dense, Embedding, Pool, Recurrent, Sequential, lstm

E, H, C, T = 3, 4, 3, 6
LENGTHS = [6, 4, 2, 5]
PER_STEP = Sequential((Recurrent(StandardCell(), H, sequences=True), Dense(C)))


@pytest.fixture(scope="module")
def setup():
    params = lstm.init(jax.random.PRNGKey(3), E, H, C, jnp.float64)
    rng = np.random.default_rng(3)
    X = np.zeros((4, T, E))
    mask = np.zeros((4, T), bool)
    for b, L in enumerate(LENGTHS):
        X[b, :L] = rng.normal(size=(L, E))
        mask[b, :L] = True
    method = lrpjax.lrp(lstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))
    targets = np.array([0, 1, 2, 1])
    R, explained = M.explained_relevance(method, params, X, targets, mask=mask)
    return params, X, mask, method, targets, np.asarray(R)


# --- the NumPy model and removals ---------------------------------------------------------------------------

def _np_states(p, xs):
    """Hidden states of a NumPy LSTM (Eqs. 11.1-11.6, gate order i, z, f, o) over the steps ``xs``."""
    W, U, b = (np.asarray(p[k]) for k in ("W", "U", "b"))
    y = c = np.zeros(U.shape[0])
    out = []
    for x_t in xs:
        pre = x_t @ W + y @ U + b
        i, z, f, o = np.split(pre, 4)
        c = c / (1 + np.exp(-f)) + np.tanh(z) / (1 + np.exp(-i))
        y = np.tanh(c) / (1 + np.exp(-o))
        out.append(y)
    return np.array(out) if out else np.zeros((0, U.shape[0]))


def _np_classifier(params, xs):
    states = _np_states(params["lstm"], xs)
    last = states[-1] if len(states) else np.zeros(H)
    return last @ np.asarray(params["out"]["W"])


def _softmax(s):
    e = np.exp(s - s.max())
    return e / e.sum()


def _road_oracle(x, removed):
    """ROAD's imputation in one dimension: solve x_u = mean of u's neighbours (t-1, t+1 inside the
    sequence) for every removed u, the kept values fixed (a dense linear system, solved directly)."""
    L = len(x)
    out = x.copy()
    unknown = [t for t in range(L) if removed[t]]
    if not unknown:
        return out
    if len(unknown) == L:
        return np.zeros_like(x)
    where = {t: k for k, t in enumerate(unknown)}
    A = np.zeros((len(unknown), len(unknown)))
    rhs = np.zeros((len(unknown),) + x.shape[1:])
    for t in unknown:
        neighbours = [s for s in (t - 1, t + 1) if 0 <= s < L]
        A[where[t], where[t]] = 1.0
        for s in neighbours:
            if s in where:
                A[where[t], where[s]] -= 1.0 / len(neighbours)
            else:
                rhs[where[t]] += x[s] / len(neighbours)
    solved = np.linalg.solve(A, rhs.reshape(len(unknown), -1)).reshape(rhs.shape)
    for t in unknown:
        out[t] = solved[where[t]]
    return out


def _remove(x, removed, kind, baseline=None):
    x = x.copy()
    if kind == "road":
        return _road_oracle(x, removed)
    for t in range(len(x)):
        if removed[t]:
            x[t] = 0.0 if kind == "zero" else baseline[t]
    return x


def _order(r, most):
    """Positions by relevance (most relevant first, or least), ties by position (stable)."""
    return sorted(range(len(r)), key=lambda t: (-r[t] if most else r[t], t))


def _read(params, x, target, output):
    s = _np_classifier(params, x)
    return (_softmax(s) if output == "probability" else s)[target]


# --- curves ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["zero", "baseline", "road"])
def test_deletion_and_insertion_curves_match_loop_oracle(setup, kind):
    params, X, mask, method, targets, R = setup
    base = np.random.default_rng(9).normal(size=(T, E))
    removal = {"zero": M.Removal(), "baseline": M.Removal("baseline", base), "road": M.Removal("road", noise=0.0)}[kind]
    got = {(c, o): np.asarray(f(method, params, X, targets, mask=mask, removal=removal, order=o, steps=5))
           for c, f in (("del", M.deletion_curves), ("ins", M.insertion_curves)) for o in ("most", "least")}
    for (curve, order), values in got.items():
        for b, L in enumerate(LENGTHS):
            ranking = _order(R[b, :L], order == "most")
            for s in range(6):
                top = set(ranking[:s])
                removed = [(t in top) != (curve == "ins") for t in range(L)]
                x = _remove(X[b, :L], removed, kind, base)
                np.testing.assert_allclose(values[b, s], _read(params, x, targets[b], "score"), rtol=1e-10,
                                           atol=1e-12, err_msg=f"{kind} {curve} {order} example {b} step {s}")


def test_per_step_and_per_example_batches_agree(setup):
    params, X, mask, method, targets, R = setup
    batch = M.deletion_curves(method, params, X, targets, mask=mask, per_step=2, output="probability")
    for b, L in enumerate(LENGTHS):
        one = M.deletion_curves(method, params, X[b:b + 1], targets[b:b + 1], mask=mask[b:b + 1], per_step=2,
                                output="probability")
        np.testing.assert_allclose(batch[b], one[0], rtol=1e-12)
        ranking = _order(R[b, :L], True)
        want = [_read(params, _remove(X[b, :L], [t in set(ranking[:2 * s]) for t in range(L)], "zero"), targets[b],
                      "probability") for s in range(4)]
        np.testing.assert_allclose(batch[b], want, rtol=1e-10)


def test_special_case_of_the_perturbation_curves(setup):
    params, X, mask, method, targets, R = setup
    new = M.deletion_curves(method, params, X, targets, mask=mask, removal=M.Removal("delete"))
    old = perturbation_curves(Score(lstm.apply), params, X, R, targets, mask=mask, mode="delete")
    np.testing.assert_allclose(new, old, rtol=1e-12, atol=1e-14)


def test_predicted_targets_and_per_step_outputs():
    params = PER_STEP.init(jax.random.PRNGKey(4), E, jnp.float64)
    X = np.random.default_rng(4).normal(size=(2, 4, E))
    method = lrpjax.gradient_x_input(PER_STEP.apply)
    targets = np.array([[3, 1], [0, 2]])                      # (step, class) rows
    curves = M.deletion_curves(method, params, X, targets)
    R, flat = M.explained_relevance(method, params, X, targets)
    R = np.asarray(R)
    np.testing.assert_array_equal(flat, [3 * C + 1, 0 * C + 2])
    for b in range(2):
        for s in range(5):
            x = X[b].copy()
            x[_order(R[b], True)[:s]] = 0.0
            want = np.asarray(PER_STEP.apply(params, x)).reshape(-1)[flat[b]]
            np.testing.assert_allclose(curves[b, s], want, rtol=1e-12)
    _, predicted = M.explained_relevance(method, params, X)
    scores = [np.asarray(PER_STEP.apply(params, X[b])).reshape(-1) for b in range(2)]
    np.testing.assert_array_equal(predicted, np.argmax(scores, axis=1))


def test_token_ids_are_replaced_by_the_mask_token():
    model = Sequential((Embedding(E), Recurrent(StandardCell(), H), Dense(C)))
    params = model.init(jax.random.PRNGKey(6), 7, jnp.float64)          # vocabulary of 7, id 0 the mask
    ids = np.array([[3, 5, 1, 6, 2], [4, 4, 2, 0, 0]], np.int32)
    mask = np.array([[True] * 5, [True] * 3 + [False] * 2])
    method = lrpjax.gradient_x_input(model.apply)
    curves = M.deletion_curves(method, params, ids, np.array([1, 2]), mask=mask, removal=M.Removal("token", 0))
    R, _ = M.explained_relevance(method, params, ids, np.array([1, 2]), mask=mask)
    table = np.asarray(params["embedding_0"]["table"])
    inner = {k: v for k, v in params.items() if k != "embedding_0"}
    for b, L in enumerate([5, 3]):
        ranking = _order(np.asarray(R)[b, :L], True)
        for s in range(L + 1):
            kept = [0 if t in set(ranking[:s]) else int(ids[b, t]) for t in range(L)]
            want = _np_states(inner["lstm_0"], table[kept])[-1] @ np.asarray(inner["out"]["W"]) + \
                np.asarray(inner["out"]["b"])
            np.testing.assert_allclose(curves[b, s], want[[1, 2][b]], rtol=1e-10)
    with pytest.raises(ValueError, match="token"):
        M.deletion_curves(method, params, ids, np.array([1, 2]), mask=mask, removal=M.Removal("road"))
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        M.deletion_curves(method, params, ids, np.array([1, 2]), mask=mask, removal=M.Removal("token", 7))


def test_road_noise_touches_only_removed_steps_and_scales():
    def model(params, x, rules=None, *, mask=None):       # reads the input back: (T * E,)
        return x.reshape(-1)

    method = lrpjax.gradient(model)
    X = np.arange(2 * 5 * 2, dtype=np.float64).reshape(2, 5, 2)
    mask = np.array([[True] * 5, [True] * 3 + [False] * 2])
    runs = [np.asarray(M.deletion_curves(method, None, X, np.array([4, 4]), mask=mask, steps=5,
                                         removal=M.Removal("road", noise=s)), np.float64) for s in (0.0, 1.0, 2.0)]
    assert np.any(runs[1] != runs[0])
    np.testing.assert_allclose(runs[2] - runs[0], 2 * (runs[1] - runs[0]), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(runs[1][:, 0], runs[0][:, 0])  # nothing removed yet


def test_area_and_delta_af():
    morf = np.array([[4.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    lerf = np.array([[4.0, 4.0, 1.0], [1.0, 2.0, 0.0]])
    np.testing.assert_allclose(M.area(morf), [2.0, 1.0])
    np.testing.assert_allclose(M.delta_af(morf, lerf), [3.0 - 2.0, 1.0 - 1.0])
    np.testing.assert_allclose(M.delta_af(morf, lerf), lrpjax.evaluate.aopc(morf) - lrpjax.evaluate.aopc(lerf))
    with pytest.raises(ValueError, match="one shape"):
        M.delta_af(morf, lerf[:, :2])


# --- ERASER ---------------------------------------------------------------------------------------------------

def test_comprehensiveness_and_sufficiency_match_loop_oracle(setup):
    params, X, mask, method, targets, R = setup
    ks = (10, 20, 50, 100)
    comp = np.asarray(M.comprehensiveness(method, params, X, targets, k=ks, mask=mask))
    suff = np.asarray(M.sufficiency(method, params, X, targets, k=ks, mask=mask))
    suff0 = np.asarray(M.sufficiency(method, params, X, targets, k=0, mask=mask))
    for b, L in enumerate(LENGTHS):
        full = _read(params, X[b, :L], targets[b], "probability")
        ranking = _order(R[b, :L], True)
        for j, k in enumerate(ks):
            rationale = set(ranking[:math.ceil(k * L / 100)])
            without = _remove(X[b, :L], [t in rationale for t in range(L)], "zero")
            only = _remove(X[b, :L], [t not in rationale for t in range(L)], "zero")
            np.testing.assert_allclose(comp[b, j], full - _read(params, without, targets[b], "probability"),
                                       rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(suff[b, j], full - _read(params, only, targets[b], "probability"),
                                       rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(suff0[b], full - _read(params, np.zeros((L, E)), targets[b], "probability"),
                                   rtol=1e-10)
    aopc = M.eraser_aopc(suff, suff0)
    np.testing.assert_allclose(aopc, (suff0 + suff.sum(1)) / 5, rtol=1e-14)


# --- random subsets -------------------------------------------------------------------------------------------

def test_faithfulness_correlation_matches_loop_oracle(setup):
    params, X, mask, method, targets, R = setup
    rng = np.random.default_rng(11)
    subsets = rng.uniform(size=(4, 7, T)) < 0.4
    subsets[:, 0] = False
    subsets[:, 0, 0] = True
    got = M.faithfulness_correlation(method, params, X, targets, subsets=subsets, mask=mask)
    for b, L in enumerate(LENGTHS):
        sums, drops = [], []
        full = _read(params, X[b, :L], targets[b], "score")
        for S in subsets[b]:
            chosen = [t for t in range(L) if S[t]]
            sums.append(sum(R[b, t] for t in chosen))
            drops.append(full - _read(params, _remove(X[b, :L], [t in chosen for t in range(L)], "zero"),
                                      targets[b], "score"))
        a, d = np.array(sums) - np.mean(sums), np.array(drops) - np.mean(drops)
        np.testing.assert_allclose(got[b], (a @ d) / np.sqrt((a @ a) * (d @ d)), rtol=1e-10)


def test_random_subsets_have_the_size_and_stay_in_the_mask():
    mask = np.array([[True] * 6, [True] * 2 + [False] * 4])
    subsets = np.asarray(M.random_subsets(jax.random.PRNGKey(0), mask, 3, 50))
    assert subsets.shape == (2, 50, 6)
    np.testing.assert_array_equal(subsets.sum(-1), [[3] * 50, [2] * 50])
    assert not subsets[1][:, 2:].any()
    assert len({tuple(s) for s in subsets[0]}) > 5          # they differ


def test_gradient_x_input_of_a_linear_model_is_sensitivity_n():
    """Ancona et al. 2018, Prop. 4 / Sec. 3: on a linear model Gradient x Input is sensitivity-n for every n,
    (the property is exact: any other relevance, or a removal other than the zero the gradient is taken
    against, breaks it)."""
    model = Sequential((Dense(2), Pool("sum"), Dense(2)))
    params = model.init(jax.random.PRNGKey(5), E, jnp.float64)
    X = np.random.default_rng(5).normal(size=(3, 5, E))
    mask = np.array([[True] * 5, [True] * 4 + [False], [True] * 3 + [False] * 2])
    got = M.sensitivity_n(lrpjax.gradient_x_input(model.apply), params, X, np.array([0, 1, 0]), sizes=(1, 2),
                          n=8, mask=mask)
    np.testing.assert_allclose(got, np.ones((3, 2)), rtol=1e-10)


# --- checks ---------------------------------------------------------------------------------------------------

def test_bad_arguments_are_named(setup):
    params, X, mask, method, targets, R = setup
    with pytest.raises(ValueError, match="kind"):
        M.Removal("blur")
    with pytest.raises(ValueError, match="value"):
        M.Removal("baseline")
    with pytest.raises(ValueError, match="token"):
        M.Removal("token", -1)
    with pytest.raises(ValueError, match="noise"):
        M.Removal("road", noise=-1.0)
    with pytest.raises(ValueError, match="value"):
        M.deletion_curves(method, params, X, targets, mask=mask, removal=M.Removal("baseline", np.zeros(E + 1)))
    with pytest.raises(ValueError, match="order"):
        M.deletion_curves(method, params, X, targets, mask=mask, order="first")
    with pytest.raises(ValueError, match="output"):
        M.deletion_curves(method, params, X, targets, mask=mask, output="logit")
    with pytest.raises(ValueError, match="per_step"):
        M.deletion_curves(method, params, X, targets, mask=mask, per_step=0)
    with pytest.raises(ValueError, match="`k`"):
        M.comprehensiveness(method, params, X, targets, k=120, mask=mask)
    with pytest.raises(ValueError, match="subsets"):
        M.faithfulness_correlation(method, params, X, targets, subsets=np.ones((4, 3, T + 1), bool), mask=mask)
    with pytest.raises(TypeError, match="method"):
        M.deletion_curves(lstm.apply, params, X, targets, mask=mask)
    with pytest.raises(ValueError, match="targets"):
        M.deletion_curves(method, params, X, np.array([0, 1]), mask=mask)
