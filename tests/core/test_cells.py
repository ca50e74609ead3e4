"""The LRP-friendly cells (Eqs. 11.7-11.18) against a float64 NumPy oracle written here.

The oracle's forward pass is written from the chapter's equations with explicit loops; its LRP
backward composes the elementary rules of ``tests/oracles/reference.py`` (which shares no code with the
library) in the order the equations dictate.
"""

import jax
import jax.numpy as jnp
import jax.test_util as jax_test_util
import numpy as np
import pytest

from lrpjax import lrp
from lrpjax.cells import GatelessCell, GRUCell, MarkovCell, NondecreasingCell, StandardCell, unroll
from lrpjax.models.lstm import LSTM
from lrpjax.rules import PRESETS, preset
import reference as ref  # tests/oracles is on sys.path (tests/conftest.py)

CELLS = (NondecreasingCell(), MarkovCell(), GatelessCell(), NondecreasingCell(a_g=3.0, a_h=2.0),
         MarkovCell(a_g=4.0, a_h=4.0, b_z_init=-3.0, b_i_init=-2.0))
CELL_IDS = ("nondecreasing", "markov", "gateless", "nondecreasing-3-2", "markov-4-4")
# Every (gated cell, preset) pair; the gateless cell's relevance does not depend on the product rule.
CELL_PRESETS = [(c, n) for c in CELLS[:2] for n in PRESETS] + [(CELLS[2], "lrp-all")]
CELL_PRESET_IDS = [f"{c.kind}-{n}" for c, n in CELL_PRESETS]


# --- oracle ---------------------------------------------------------------------------------------

def _sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def oracle_forward(cell, p, x):
    """Eqs. 11.7-11.18, explicit loop over time; returns per-step quantities, float64."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x = np.asarray(x, np.float64)
    T, H = x.shape[0], p["W"].shape[1]
    y, c = np.zeros(H), np.zeros(H)
    st = {k: [] for k in ("zz", "z", "zi", "zo", "p", "c", "y", "y_prev", "c_prev")}
    for t in range(T):
        zz = x[t] @ p["W"] + p["b_z"]                     # W_z x_t + b_z
        z = cell.a_g * _sigmoid(zz)                       # (11.7), (11.12), (11.16)
        zi = zo = np.zeros(H)
        i = o = np.ones(H)
        if cell.kind in ("nondecreasing", "markov"):
            zi = y @ p["U"][:, :H] + p["b"][:H]           # only recurrent input (A5)
            i = _sigmoid(zi)
        if cell.kind == "nondecreasing":
            zo = y @ p["U"][:, H:] + p["b"][H:]           # only recurrent input (A6)
            o = _sigmoid(zo)
        st["y_prev"].append(y)
        st["c_prev"].append(c)
        c = i * z + c                                     # forget gate 1 (A1)
        y = o * cell.a_h * np.tanh(c)
        for k, v in (("zz", zz), ("z", z), ("zi", zi), ("zo", zo), ("p", i * z), ("c", c), ("y", y)):
            st[k].append(v)
    return {k: np.array(v) for k, v in st.items()}


def oracle_lrp(cell, params, x, target, gate, eps):
    """LRP of the uni-directional model (share=False); returns R_x, R_y0, R_c0, R_bias, score."""
    lp, W_out = params["lstm"], np.asarray(params["out"]["W"], np.float64)
    lp = {k: np.asarray(v, np.float64) for k, v in lp.items()}
    st = oracle_forward(cell, lp, x)
    T, H = st["c"].shape
    scores = st["y"][-1] @ W_out
    R_out = np.zeros_like(scores)
    R_out[target] = scores[target]
    (R_y_T,) = ref.linear_eps([st["y"][-1]], [W_out], None, R_out, eps)
    R_y = np.zeros((T + 1, H))                            # row t: relevance of y_t (row 0: y_0)
    R_y[T] = R_y_T
    R_x, R_bias, R_c_next = np.zeros_like(np.asarray(x, np.float64)), 0.0, np.zeros(H)
    for t in range(T - 1, -1, -1):
        R_zo = np.zeros(H)
        if cell.kind == "nondecreasing":
            R_zo, R_c = ref.gated_rule(gate, st["zo"][t], st["c"][t], R_y[t + 1], eps)
        else:
            R_c = R_y[t + 1]                              # y = a_h tanh(c): pass-through
        R_c = R_c + R_c_next
        R_c_prev, R_p = ref.accumulate_eps([st["c_prev"][t], st["p"][t]], R_c, eps)
        if cell.kind == "gateless":
            R_zi, R_zz = np.zeros(H), R_p                 # z = a_g sigma(zz): pass-through
        else:
            R_zi, R_zz = ref.gated_rule(gate, st["zi"][t], st["zz"][t], R_p, eps)
        (R_x[t],), R_b, _ = ref.linear_eps([x[t]], [lp["W"]], lp["b_z"], R_zz, eps, with_absorbed=True)
        R_bias += R_b.sum()
        if cell.kind != "gateless":
            R_gates = R_zi if cell.kind == "markov" else np.concatenate([R_zi, R_zo])
            (R_yp,), R_b, _ = ref.linear_eps([st["y_prev"][t]], [lp["U"]], lp["b"], R_gates, eps,
                                             with_absorbed=True)
            R_y[t] += R_yp
            R_bias += R_b.sum()
        R_c_next = R_c_prev
    return {"R_x": R_x, "R_y0": R_y[0], "R_c0": R_c_next, "R_bias": R_bias, "score": scores[target]}


def _model_and_params(cell, key, E=4, H=3, C=2, bidirectional=False, perturb=True):
    model = LSTM(cell, bidirectional=bidirectional)
    params = model.init(key, E, H, C, jnp.float64)
    if perturb:  # move biases off their constant initial values so every unit differs
        leaves, tree = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.fold_in(key, 7), len(leaves))
        leaves = [leaf + 0.3 * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)]
        params = jax.tree_util.tree_unflatten(tree, leaves)
    return model, params


def _x(key, T=6, E=4):
    return jax.random.uniform(jax.random.fold_in(key, 1), (T, E), jnp.float64, -1.0, 1.0)


# --- forward equations ----------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("T,H", [(1, 1), (7, 3)], ids=["T1-H1", "T7-H3"])
def test_forward_matches_oracle(cell, T, H, key):
    params = cell.init(key, 4, H, jnp.float64)
    params = {k: v + 0.2 * jax.random.normal(jax.random.fold_in(key, i), v.shape, v.dtype)
              for i, (k, v) in enumerate(sorted(params.items()))}
    x = _x(key, T)
    _, ys = unroll(cell, params, x)
    np.testing.assert_allclose(np.asarray(ys), oracle_forward(cell, params, x)["y"], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_scan_equals_python_loop(cell, key):
    params = cell.init(key, 4, 3, jnp.float64)
    x = _x(key, 5)
    carry = (jnp.zeros(3, jnp.float64), jnp.zeros(3, jnp.float64))
    for t in range(5):
        carry = cell.step(params, None, carry, x[t])
    y_last, _ = unroll(cell, params, x)
    np.testing.assert_allclose(np.asarray(y_last), np.asarray(carry[0]), rtol=1e-14)


# --- parameters and constraints A1-A9 -------------------------------------------------------------

def test_parameter_shapes_per_variant():
    E, H = 5, 3
    assert NondecreasingCell().shapes(E, H) == {"W": (E, H), "b_z": (H,), "U": (H, 2 * H), "b": (2 * H,)}
    assert MarkovCell().shapes(E, H) == {"W": (E, H), "b_z": (H,), "U": (H, H), "b": (H,)}
    assert GatelessCell().shapes(E, H) == {"W": (E, H), "b_z": (H,)}


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_init_biases_negative_and_shapes(cell, key):
    params = cell.init(key, 4, 3, jnp.float64)
    assert {k: v.shape for k, v in params.items()} == cell.shapes(4, 3)
    assert all(v.dtype == jnp.float64 for v in params.values())
    np.testing.assert_array_equal(params["b_z"], np.full(3, cell.b_z_init))        # A2
    if cell.gates:
        np.testing.assert_array_equal(params["b"][:3], np.full(3, cell.b_i_init))  # A7
        assert np.all(np.asarray(params["b"]) < 0)
    if "o" in cell.gates:
        np.testing.assert_array_equal(params["b"][3:], np.full(3, cell.b_o_init))  # A8


@pytest.mark.parametrize("kwargs,match", [({"a_g": 0.0}, "a_g"), ({"a_h": -1.0}, "a_h"),
                                          ({"b_z_init": 0.5}, "b_z_init"), ({"b_i_init": 0.0}, "b_i_init"),
                                          ({"b_o_init": 1.0}, "b_o_init")])
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarkovCell(**kwargs)


def test_bad_configuration_type_raises():
    with pytest.raises(TypeError, match="a_g"):
        NondecreasingCell(a_g="2")


def test_cells_are_hashable_and_distinct():
    assert hash(MarkovCell()) == hash(MarkovCell())
    assert MarkovCell(a_g=3.0) != MarkovCell()
    assert {c.kind for c in (StandardCell(), NondecreasingCell(), MarkovCell(), GatelessCell())} == {
        "standard", "nondecreasing", "markov", "gateless"}


def test_lstm_sizes_and_shape_errors(key):
    model = LSTM(MarkovCell())
    params = model.init(key, 4, 3, 1, jnp.float64)
    assert model.sizes(params) == (4, 3, 1)
    assert model.kind == "lstm-markov"
    bad = {**params, "lstm": {**params["lstm"], "U": jnp.zeros((3, 6), jnp.float64)}}
    with pytest.raises(ValueError, match="U"):
        model.sizes(bad)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_cell_state_nonnegative_and_nondecreasing(cell, key):
    """A9: c_0 = 0, c_t >= 0 and c_t >= c_{t-1} for any input and any weights (z > 0, i > 0)."""
    params = cell.init(key, 4, 3, jnp.float64)
    params = {k: 2.0 * jax.random.normal(jax.random.fold_in(key, i), v.shape, v.dtype)
              for i, (k, v) in enumerate(sorted(params.items()))}
    x = 3.0 * _x(key, 20)
    carry, cs = (jnp.zeros(3, jnp.float64), jnp.zeros(3, jnp.float64)), [np.zeros(3)]
    for t in range(20):
        carry = cell.step(params, None, carry, x[t])
        cs.append(np.asarray(carry[1]))
    assert np.all(np.diff(np.array(cs), axis=0) >= 0)
    assert np.all(np.array(cs) >= 0)


def test_markov_input_gate_reads_only_recurrent_state(key):
    """A5: i_t = (c_t - c_{t-1}) / z_t does not depend on x_t."""
    cell = MarkovCell()
    params = cell.init(key, 4, 3, jnp.float64)
    y_prev = jnp.array([0.3, 0.1, 0.7], jnp.float64)
    c_prev = jnp.array([0.2, 0.0, 1.0], jnp.float64)

    def gate(x_t):
        _, c = cell.step(params, None, (y_prev, c_prev), x_t)
        z = cell.a_g * jax.nn.sigmoid(x_t @ params["W"] + params["b_z"])
        return (c - c_prev) / z

    jac = jax.jacobian(gate)(_x(key, 1)[0])
    np.testing.assert_allclose(np.asarray(jac), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gate(_x(key, 1)[0])),
                               np.asarray(jax.nn.sigmoid(y_prev @ params["U"] + params["b"])), rtol=1e-12)


def test_markov_cell_input_reads_only_input(key):
    """A4: z_t = (c_t - c_{t-1}) / i_t does not depend on y_{t-1}; c_{t-1} is kept (no forget gate)."""
    cell = MarkovCell()
    params = cell.init(key, 4, 3, jnp.float64)
    x_t = _x(key, 1)[0]
    c_prev = jnp.array([0.2, 0.0, 1.0], jnp.float64)

    def cell_input(y_prev):
        _, c = cell.step(params, None, (y_prev, c_prev), x_t)
        return (c - c_prev) / jax.nn.sigmoid(y_prev @ params["U"] + params["b"])

    y_prev = jnp.array([0.3, -0.1, 0.7], jnp.float64)
    np.testing.assert_allclose(np.asarray(jax.jacobian(cell_input)(y_prev)), 0.0, atol=1e-12)
    # No forget gate: d c_t / d c_{t-1} is the identity.
    dc = jax.jacobian(lambda c: cell.step(params, None, (y_prev, c), x_t)[1])(c_prev)
    np.testing.assert_allclose(np.asarray(dc), np.eye(3), atol=1e-15)


def test_markov_has_no_output_gate(key):
    """Eq. 11.15: y_t = a_h tanh(c_t) exactly, whatever y_{t-1}."""
    cell = MarkovCell(a_h=2.0)
    params = cell.init(key, 4, 3, jnp.float64)
    y, c = cell.step(params, None, (jnp.array([0.9, 0.5, 0.1], jnp.float64), jnp.ones(3, jnp.float64)),
                     _x(key, 1)[0])
    np.testing.assert_allclose(np.asarray(y), 2.0 * np.tanh(np.asarray(c)), rtol=1e-15)


# --- relevance ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,name", CELL_PRESETS, ids=CELL_PRESET_IDS)
def test_lrp_matches_oracle(cell, name, key):
    model, params = _model_and_params(cell, key)
    x = _x(key)
    eps = 1e-3
    ex = lrp(model.apply, preset(name, eps)).full(params, x, 1)
    want = oracle_lrp(cell, params, np.asarray(x), 1, name, eps)
    np.testing.assert_allclose(np.asarray(ex.relevance), want["R_x"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ex.initial["lstm"]["y0"]), want["R_y0"], atol=1e-12)
    np.testing.assert_allclose(np.asarray(ex.initial["lstm"]["c0"]), want["R_c0"], atol=1e-12)
    bias = sum(float(np.sum(v)) for v in jax.tree_util.tree_leaves(ex.params))
    np.testing.assert_allclose(bias, want["R_bias"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(ex.target_score), want["score"], rtol=1e-12)


@pytest.mark.parametrize("cell,name,eps", [(c, n, 1e-2) for c, n in CELL_PRESETS]
                         + [(CELLS[3], "lrp-prop", 0.0), (CELLS[4], "lrp-half", 0.0)],
                         ids=[f"{i}-eps0.01" for i in CELL_PRESET_IDS] + ["nondecreasing-3-2-prop-eps0",
                                                                           "markov-4-4-half-eps0"])
def test_conservation_with_shared_biases(cell, name, eps, key):
    """share=True: input relevance + initial states == score (biases and stabilisers spread)."""
    model, params = _model_and_params(cell, key)
    ex = lrp(model.apply, preset(name, eps, share=True)).full(params, _x(key), 0)
    assert abs(float(ex.residual)) < 1e-10
    bias = sum(float(np.sum(v)) for v in jax.tree_util.tree_leaves(ex.params))
    assert abs(bias) < 1e-12
    initial = sum(float(np.sum(v)) for v in jax.tree_util.tree_leaves(ex.initial))
    np.testing.assert_allclose(float(np.sum(ex.relevance)) + initial, float(ex.target_score), atol=1e-10)


@pytest.mark.parametrize("cell,name", [(CELLS[0], "lrp-prop"), (CELLS[0], "lrp-all"), (CELLS[1], "lrp-half"),
                                       (CELLS[1], "lrp-abs"), (CELLS[2], "lrp-all")],
                         ids=["nondecreasing-prop", "nondecreasing-all", "markov-half", "markov-abs", "gateless"])
def test_bidirectional_masked_conservation_and_padding(cell, name, key):
    model, params = _model_and_params(cell, key, bidirectional=True)
    x = _x(key, 5)
    padded = jnp.concatenate([x, jnp.ones((3, 4), jnp.float64)])
    mask = jnp.arange(8) < 5
    method = lrp(model.apply, preset(name, 1e-2, share=True))
    full = method.full(params, padded, 1, mask=mask)
    assert abs(float(full.residual)) < 1e-10
    np.testing.assert_allclose(np.asarray(full.relevance[5:]), 0.0, atol=0)
    np.testing.assert_allclose(np.asarray(full.relevance[:5]), np.asarray(method(params, x, 1)),
                               rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.asarray(model.apply(params, padded, mask=mask)),
                               np.asarray(model.apply(params, x)), rtol=1e-13)


@pytest.mark.parametrize("cell", CELLS[:3], ids=CELL_IDS[:3])
def test_jit_and_vmap_equivalence(cell, key):
    model, params = _model_and_params(cell, key)
    X = jax.random.uniform(key, (3, 6, 4), jnp.float64)
    np.testing.assert_allclose(np.asarray(jax.jit(model.apply)(params, X[0])),
                               np.asarray(model.apply(params, X[0])), rtol=1e-14)
    method = lrp(model.apply, "lrp-half")
    targets = jnp.array([0, 1, 0])
    batch = method.batch(params, X, targets)
    for b in range(3):
        np.testing.assert_allclose(np.asarray(batch[b]), np.asarray(method(params, X[b], targets[b])),
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS[:3], ids=CELL_IDS[:3])
def test_gradient_path_is_true_vjp(cell, key):
    model, params = _model_and_params(cell, key)
    x = _x(key)
    jax_test_util.check_grads(lambda x_: model.apply(params, x_)[0], (x,), 1, modes=("rev",))


def test_input_gate_relevance_only_under_gate_sharing_rules(key):
    """Markov cell: y_{t<T} feeds only the input gates, so it gets relevance iff the gate rule gives any."""
    model, params = _model_and_params(MarkovCell(), key)
    x = _x(key)
    for name in PRESETS:
        ex = lrp(model.apply, preset(name)).full(params, x, 0)
        r_y = np.abs(np.asarray(ex.states["lstm"]["y"][:-1])).sum()
        assert (r_y == 0.0) if name == "lrp-all" else (r_y > 1e-6), name


def test_gateless_relevance_independent_of_product_rule(key):
    model, params = _model_and_params(GatelessCell(), key)
    x = _x(key)
    first = lrp(model.apply, "lrp-all")(params, x, 0)
    for name in PRESETS[1:]:
        np.testing.assert_array_equal(np.asarray(lrp(model.apply, name)(params, x, 0)), np.asarray(first))


# --- capabilities, one program with and without a mask, the recorded forward ---------------------------

def test_the_gate_rule_states_whether_gates_receive_relevance():
    from lrpjax.rules import Gate

    assert Gate("all").gates_receive_relevance is False      # signal-take-all, Table 11.1
    for mode in ("prop", "abs", "half"):
        assert Gate(mode).gates_receive_relevance is True
    assert [preset(name).gate.gates_receive_relevance for name in PRESETS] == [name != "lrp-all" for name in PRESETS]


@pytest.mark.parametrize("cell", [StandardCell(), GRUCell(), NondecreasingCell()], ids=["standard", "gru", "nondec"])
def test_no_mask_is_the_all_valid_mask_bit_for_bit(cell, key):
    from lrpjax.models import Dense, Recurrent, Sequential

    net = Sequential((Recurrent(cell, 3, bidirectional=True, sequences=True), Recurrent(cell, 2, bidirectional=True),
                      Dense(2)))
    params = net.init(key, 4, jnp.float32)
    X = jax.random.normal(jax.random.fold_in(key, 1), (3, 6, 4), jnp.float32)
    ones = jnp.ones((3, 6), bool)
    plain = jax.jit(jax.vmap(lambda x: net.apply(params, x)))(X)
    masked = jax.jit(jax.vmap(lambda x, m: net.apply(params, x, mask=m)))(X, ones)
    np.testing.assert_array_equal(plain, masked)
    p = params["lstm_0_forward" if cell.kind != "gru" else "gru_0_forward"]
    x = X[0, :, :]
    np.testing.assert_array_equal(jax.jit(lambda x: unroll(cell, p, x)[1])(x),
                                  jax.jit(lambda x, m: unroll(cell, p, x, mask=m)[1])(x, ones[0]))
    # under a rule set too: the relevance of the two calls is the same
    rules = preset("lrp-prop", 0.01)

    def relevance(*mask):
        out, vjp = jax.vjp(lambda x: net.apply(params, x, rules, mask=mask[0] if mask else None), X[1])
        return vjp(out)[0]

    np.testing.assert_array_equal(jax.jit(relevance)(), jax.jit(relevance)(ones[1]))


def test_the_recorded_forward_is_the_forward(key):
    from lrpjax.cells import unroll_record

    cell = StandardCell()
    params = jax.tree.map(lambda w: w + 0.1, cell.init(key, 3, 4, jnp.float64))
    x = jax.random.normal(jax.random.fold_in(key, 1), (5, 3), jnp.float64)
    mask = jnp.arange(5) < 4
    (y, c), records = unroll_record(cell, params, x, mask)
    final, ys = unroll(cell, params, x, mask=mask)
    # the same computation in another program (XLA may fuse it differently): equal to rounding
    np.testing.assert_allclose(y, ys, rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(y[-1], y[3])        # padded steps repeat the last valid state
    np.testing.assert_allclose(y[-1], final, rtol=1e-13, atol=1e-16)
    # the record holds the pre-activations i, z, f, o of Eqs. (11.1)-(11.5), their activations, and h(c)
    pre = x[1] @ params["W"] + y[0] @ params["U"] + params["b"]
    H = 4
    for k, (z, act) in enumerate(zip(records["z"], (_sigmoid, np.tanh, _sigmoid, _sigmoid))):
        np.testing.assert_allclose(z[1], pre[k * H:(k + 1) * H], rtol=1e-12)
        np.testing.assert_allclose(records["gates"][k][1], act(np.asarray(pre[k * H:(k + 1) * H])), rtol=1e-12)
    np.testing.assert_allclose(records["tanh_c"][:4], np.tanh(c[:4]), rtol=1e-12)
    # only the standard cell itself has a Contextual Decomposition (a subclass may change the equations)
    assert cell.decomposable and not getattr(GRUCell(), "decomposable", False)
    assert not type("Sub", (StandardCell,), {})().decomposable
