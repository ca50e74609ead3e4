"""Self-tests of the layered NumPy oracle tests/oracles/reference_layers.py (no lrpjax involved)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref  # tests/oracles is on sys.path (tests/conftest.py)
import reference_layers as rl

CELLS = ("lstm", "gru", "gru-v1")
PRESETS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half")


def _sig(u):
    return 1.0 / (1.0 + np.exp(-u))


def _close(a, b, rel=1e-12):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(a, b, rtol=rel, atol=rel * scale)


def _seeds(rng, output):
    """A target-class seed and a random linear-combination seed for this output."""
    return (rl.seed_for_target(output, 1),
            rl.seed_for_weights(output, rng.normal(size=output.shape)))


def _absorbed_size(res):
    """Magnitude of everything summed in the identity (the tolerance scales with it)."""
    size = abs(res["R_seed"]) + np.abs(res["R_x"]).sum() + abs(res["R_bias"]) + abs(res["R_stab"])
    return size + abs(res["R_init"])


# ---- conservation -------------------------------------------------------------------------------


@pytest.mark.parametrize("head", rl.HEADS)
@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_conservation_identity(cell, bi, n_layers, head):
    """sum R_x + initial + bias + stabiliser == sum(seed) for every rule set; with share exact."""
    index = (CELLS.index(cell) * 2 + bi) * 100 + n_layers * 10 + rl.HEADS.index(head)
    rng = np.random.default_rng(index)
    model = rl.random_model(rng, cell, bi, n_layers, head)
    x = rng.normal(0, 0.8, (4, 4))
    output, _ = rl.forward(model, x)
    for seed in _seeds(rng, output):
        for preset, eps, share in itertools.product(PRESETS, (0.0, 0.01), (False, True)):
            res = rl.lrp(model, x, seed, rl.preset_rules(preset, eps, share))
            total = res["R_x"].sum() + res["R_init"] + res["R_bias"] + res["R_stab"]
            assert abs(total - seed.sum()) <= 1e-12 * _absorbed_size(res), (preset, eps, share)
            assert res["R_seed"] == seed.sum()
            if share:
                assert res["R_bias"] == 0.0 and res["R_stab"] == 0.0, (preset, eps)
                # relative to the size of the terms: eps=0 with prop/abs can blow relevance up
                assert abs(res["R_x"].sum() + res["R_init"] - seed.sum()) <= (
                    1e-10 * max(abs(seed.sum()), 1e-2 * _absorbed_size(res)))


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_per_layer_conservation(rng, cell, share):
    """Each layer: what arrives at its output leaves through its input, states, bias, stab."""
    model = rl.random_model(rng, cell, True, 2, "mlp")
    x = rng.normal(0, 0.8, (5, 4))
    output, _ = rl.forward(model, x)
    res = rl.lrp(model, x, rl.seed_for_target(output, 0), rl.preset_rules("lrp-abs", 0.05, share))
    for name, layer in res["layers"].items():
        rest = layer["R_in"].sum() + layer["R_init"] + layer["R_bias"] + layer["R_stab"]
        size = np.abs(layer["R_in"]).sum() + abs(layer["R_bias"]) + abs(layer["R_stab"])
        assert abs(layer["R_out"].sum() - rest) <= 1e-12 * size, name
    assert np.any(output != 0.0)
    assert (res["layers"]["hidden"]["R_bias"] != 0.0) != share


def test_zero_denominator_counts_as_absorbed(rng):
    """u = h U_n + b_hn is exactly 0 at the first step when b_hn = 0: R_u is absorbed."""
    model = rl.random_model(rng, "gru", False, 1, "dense")
    model[0]["params"]["forward"]["b_hn"] = np.zeros(3)
    x = rng.normal(0, 0.8, (3, 4))
    output, _ = rl.forward(model, x)
    seed = rl.seed_for_target(output, 2)
    # eps=0 linear rule, but the accumulation shares its stabiliser so R_{p_r} != 0 at step 0
    rules = {"linear": (0.0, True), "gate": ("all", 0.0, True), "accumulate": (0.1, True)}
    res = rl.lrp(model, x, seed, rules)
    assert res["R_bias"] == 0.0
    assert res["R_stab"] != 0.0 and np.isfinite(res["R_x"]).all()
    total = res["R_x"].sum() + res["R_init"] + res["R_bias"] + res["R_stab"]
    assert abs(total - seed.sum()) <= 1e-12 * _absorbed_size(res)


# ---- the GRU's forward against PyTorch's and Keras's documented equations -----------------------


def _torch_gru_layer(w_ih, w_hh, b_ih, b_hh, xs):
    """nn.GRU, one direction: r, z, n rows of weight_ih (3H, E), weight_hh (3H, H)."""
    H = w_hh.shape[1]
    h, hs = np.zeros(H), []
    for x_t in xs:
        gi, gh = w_ih @ x_t + b_ih, w_hh @ h + b_hh
        r = _sig(gi[:H] + gh[:H])
        z = _sig(gi[H:2 * H] + gh[H:2 * H])
        n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.array(hs)


def _to_torch(cell, rng):
    """Oracle cell -> (weight_ih, weight_hh, bias_ih, bias_hh); the gate bias split at random."""
    H = cell["U"].shape[0]
    part = rng.uniform(0, 1, 2 * H)
    b_ih = np.concatenate([part * cell["b"][:2 * H], cell["b"][2 * H:]])
    b_hh = np.concatenate([(1 - part) * cell["b"][:2 * H], cell["b_hn"]])
    return cell["W"].T.copy(), cell["U"].T.copy(), b_ih, b_hh


@pytest.mark.parametrize("sequences", [False, True])
def test_gru_reset_after_matches_torch_equations(rng, sequences):
    """Two stacked bidirectional layers, as nn.GRU(num_layers=2, bidirectional=True)."""
    model = rl.random_model(rng, "gru", True, 2, "per-step" if sequences else "dense")[:2]
    x = rng.normal(0, 0.8, (5, 4))
    output, _ = rl.forward(model, x)
    layer_in = x
    for layer in model:
        fw = _torch_gru_layer(*_to_torch(layer["params"]["forward"], rng), layer_in)
        bw = _torch_gru_layer(*_to_torch(layer["params"]["backward"], rng), layer_in[::-1])[::-1]
        layer_in = np.concatenate([fw, bw], axis=1)        # torch output (T, 2H)
    h_n = np.concatenate([fw[-1], bw[0]])                   # cat(h_n[-2], h_n[-1])
    _close(output, layer_in if sequences else h_n, 1e-14)


def _keras_gru(kernel, recurrent, bias, xs, reset_after):
    """keras.layers.GRU: gate blocks z, r, h in kernel (E, 3H) and recurrent (H, 3H)."""
    H = recurrent.shape[0]
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros(3 * H))
    h = np.zeros(H)
    for x_t in xs:
        mx, mh = x_t @ kernel + b_in, h @ recurrent + b_rec
        z = _sig(mx[:H] + mh[:H])
        r = _sig(mx[H:2 * H] + mh[H:2 * H])
        if reset_after:
            hh = np.tanh(mx[2 * H:] + r * mh[2 * H:])
        else:
            hh = np.tanh(mx[2 * H:] + (r * h) @ recurrent[:, 2 * H:])
        h = z * h + (1 - z) * hh
    return h


@pytest.mark.parametrize("reset_after", [False, True])
def test_gru_matches_keras_equations(rng, reset_after):
    model = rl.random_model(rng, "gru" if reset_after else "gru-v1", False, 1, "dense")[:1]
    cell = model[0]["params"]["forward"]
    H = 3
    # oracle r, z, n -> Keras z, r, h
    swap = np.concatenate([np.arange(H, 2 * H), np.arange(H), np.arange(2 * H, 3 * H)])
    kernel, recurrent, b = cell["W"][:, swap], cell["U"][:, swap], cell["b"][swap]
    if reset_after:
        rec_bias = np.concatenate([np.zeros(2 * H), cell["b_hn"]])
        bias = np.stack([b, rec_bias])
    else:
        bias = b
    x = rng.normal(0, 0.8, (6, 4))
    output, _ = rl.forward(model, x)
    _close(output, _keras_gru(kernel, recurrent, bias, x, reset_after), 1e-14)


# ---- gradients and the independent JAX forward --------------------------------------------------


def _jax_grad(model, x, seed):
    """jax.grad of seed . jax_forward(model, x) at x."""
    objective = lambda v: jnp.sum(jnp.asarray(seed) * rl.jax_forward(model, v))  # noqa: E731
    return np.asarray(jax.grad(objective)(jnp.asarray(x)))


@pytest.mark.parametrize("head", rl.HEADS)
@pytest.mark.parametrize("cell", CELLS)
def test_gradient_matches_finite_differences_and_jax(cell, head):
    rng = np.random.default_rng(CELLS.index(cell) * 10 + rl.HEADS.index(head))
    model = rl.random_model(rng, cell, True, 2, head)
    x = rng.normal(0, 0.8, (4, 4))
    output, _ = rl.forward(model, x)
    seed = rng.normal(size=output.shape)
    g = rl.gradient(model, x, seed)
    fd, h = np.zeros_like(x), 1e-5
    for t, e in itertools.product(range(x.shape[0]), range(x.shape[1])):
        xp, xm = x.copy(), x.copy()
        xp[t, e] += h
        xm[t, e] -= h
        fd[t, e] = (np.sum(seed * rl.forward(model, xp)[0])
                    - np.sum(seed * rl.forward(model, xm)[0])) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    _close(np.asarray(rl.jax_forward(model, jnp.asarray(x))), output)
    _close(_jax_grad(model, x, seed), g, 1e-10)


@pytest.mark.parametrize("cell", CELLS)
def test_uni_stack_gradient_matches_jax(rng, cell):
    model = rl.random_model(rng, cell, False, 3, "pool-mean")
    x = rng.normal(0, 0.8, (5, 4))
    output, _ = rl.forward(model, x)
    seed = rng.normal(size=output.shape)
    _close(_jax_grad(model, x, seed), rl.gradient(model, x, seed), 1e-10)


# ---- consistency with tests/oracles/reference.py --------------------------------------------------------


def _bilstm_model(params):
    return [{"type": "lstm", "name": "bilstm", "bidirectional": True, "sequences": False,
             "params": {"forward": params["left"], "backward": params["right"]}},
            {"type": "dense", "name": "out", "activation": "identity",
             "params": {"W": [params["out"]["W_left"], params["out"]["W_right"]], "b": None}}]


def _ref_cell(rng, E, H):
    return {"W": rng.normal(0, 0.5, (E, 4 * H)), "U": rng.normal(0, 0.5, (H, 4 * H)),
            "b": rng.normal(0, 0.5, 4 * H)}


@pytest.mark.parametrize("preset", PRESETS)
def test_bilstm_matches_reference_oracle(rng, preset):
    E, H, C = 5, 3, 4
    params = {"left": _ref_cell(rng, E, H), "right": _ref_cell(rng, E, H),
              "out": {"W_left": rng.normal(size=(H, C)), "W_right": rng.normal(size=(H, C))}}
    model = _bilstm_model(params)
    x = rng.normal(0, 0.8, (6, E))
    output, _ = rl.forward(model, x)
    _close(output, ref.bilstm_forward(params, x))
    for eps, share, target in itertools.product((0.0, 0.01), (False, True), (0, 3)):
        old = ref.bilstm_lrp(params, x, target, gate=preset, eps=eps, share=share)
        new = rl.lrp(model, x, rl.seed_for_target(output, target),
                     rl.preset_rules(preset, eps, share))
        _close(new["R_x"], old["R_x"])
        for key in ("R_bias", "R_stab"):
            assert abs(new[key] - old[key]) <= 1e-12 * max(1.0, abs(old[key]))
        dirs = new["layers"]["bilstm"]["directions"]
        for d, side, order in (("forward", "left", slice(None)),
                               ("backward", "right", slice(None, None, -1))):
            for key in ("R_y0", "R_c0"):
                _close(dirs[d][key], old[key][side])
            for key in ("R_y", "R_c"):        # the old oracle keeps the right side in its order
                _close(dirs[d][key], old[key][side][order])
        _close(new["layers"]["bilstm"]["directions"]["backward"]["R_x"], old["R_x_right"])


def test_lstm_matches_reference_oracle(rng):
    E, H, C = 4, 2, 3
    params = {"cell": _ref_cell(rng, E, H), "out": {"W": rng.normal(size=(H, C))}}
    model = [{"type": "lstm", "name": "lstm", "bidirectional": False, "sequences": False,
              "params": {"forward": params["cell"]}},
             {"type": "dense", "name": "out", "params": {"W": [params["out"]["W"]], "b": None}}]
    x = rng.normal(0, 0.8, (5, E))
    output, _ = rl.forward(model, x)
    for preset in PRESETS:
        old = ref.lstm_lrp(params, x, 1, gate=preset, eps=0.01)
        new = rl.lrp(model, x, rl.seed_for_target(output, 1), rl.preset_rules(preset, 0.01))
        _close(new["R_x"], old["R_x"])
        _close(new["layers"]["lstm"]["directions"]["forward"]["R_c"], old["R_c"])
    _close(rl.gradient(model, x, np.eye(C)[1]), ref.lstm_gradient(params, x, 1))


# ---- stacking, states, per-layer rules ----------------------------------------------------------


def _input_relevance(cell, p, st, step, x_t, R_pre, rules):
    """Relevance a recurrent step sends to its input x_t, from its pre-activations' relevance."""
    eps, share = rules["linear"]
    if cell == "lstm":
        return ref.linear_eps([x_t, st["y_prev"][step]], [p["W"], p["U"]], p["b"], R_pre, eps,
                              share)[0]
    H = p["U"].shape[0]
    gates = ref.linear_eps([x_t, st["h_prev"][step]], [p["W"][:, :2 * H], p["U"][:, :2 * H]],
                           p["b"][:2 * H], R_pre[:2 * H], eps, share)[0]
    if cell == "gru":                       # a_n = w + p_r, w = x W_n + b_n
        R_w, _ = ref.accumulate_eps([st["w"][step], st["p_r"][step]], R_pre[2 * H:],
                                    *rules["accumulate"])
        return gates + ref.linear_eps([x_t], [p["W"][:, 2 * H:]], p["b"][2 * H:], R_w, eps,
                                      share)[0]
    return gates + ref.linear_eps([x_t, st["p_r"][step]], [p["W"][:, 2 * H:], p["U"][:, 2 * H:]],
                                  p["b"][2 * H:], R_pre[2 * H:], eps, share)[0]


@pytest.mark.parametrize("cell", CELLS)
def test_stacked_layers_pass_relevance_step_by_step(rng, cell):
    """Layer 1's output relevance is what layer 2's inputs send back, step by step, and layer 1
    alone, seeded with it, gives the same relevance everywhere below."""
    model = rl.random_model(rng, cell, True, 2, "dense")
    x = rng.normal(0, 0.8, (5, 4))
    output, cache = rl.forward(model, x)
    rules = rl.preset_rules("lrp-half", 0.01, False)
    res = rl.lrp(model, x, rl.seed_for_target(output, 1), rules)
    l1, l2 = res["layers"]["rnn1"], res["layers"]["rnn2"]
    assert l1["R_out"].shape == l2["R_in"].shape == (5, 6)
    _close(l1["R_out"], l2["R_in"], 0.0)
    # what layer 2 sends to its input at step t, rebuilt from its pre-activations' relevance
    x2 = np.concatenate(cache["inputs"]["rnn2"], axis=1)
    rebuilt = np.zeros(x2.shape)
    for k, (d, cell_params) in enumerate(model[1]["params"].items()):
        states = cache["states"]["rnn2"][d]
        for step in range(5):
            t = step if k == 0 else 4 - step          # the backward direction reads x_{T-1} first
            R_pre = l2["directions"][d]["R_pre"][t]
            rebuilt[t] += _input_relevance(cell, cell_params, states, step, x2[t], R_pre, rules)
    _close(l1["R_out"], rebuilt)
    alone = rl.lrp(model[:1], x, l2["R_in"], rules)
    _close(alone["R_x"], res["R_x"])
    key = "R_y" if cell == "lstm" else "R_h"
    for d in ("forward", "backward"):
        _close(alone["layers"]["rnn1"]["directions"][d][key], l1["directions"][d][key])
    _close(np.concatenate(cache["outputs"]["rnn1"], axis=1), rl.forward(model[:1], x)[0], 0.0)


@pytest.mark.parametrize("cell", CELLS)
def test_state_relevance_is_what_reads_the_state(rng, cell):
    """Row t of a direction's state relevance is all that enters the step that read x_t: with
    share it leaves exactly into x_t and the previous state (minus the head's share there)."""
    T, H = 5, 3
    model = rl.random_model(rng, cell, True, 1, "per-step", H=H)
    x = rng.normal(0, 0.8, (T, 4))
    output, _ = rl.forward(model, x)
    preset = "lrp-all" if cell == "lstm" else "lrp-prop"   # LRP-all: R_c[t] = carry + R_y[t]
    res = rl.lrp(model, x, rl.seed_for_weights(output, rng.normal(size=output.shape)),
                 rl.preset_rules(preset, 0.01, True))
    layer = res["layers"]["rnn1"]
    for k, d in enumerate(("forward", "backward")):
        st = layer["directions"][d]
        R_out = layer["R_out"][:, k * H:(k + 1) * H]
        rows = list(range(T)) if k == 0 else list(reversed(range(T)))   # processing order
        key = "R_c" if cell == "lstm" else "R_h"
        _close(st["R_y" if cell == "lstm" else "R_h"][rows[-1]], R_out[rows[-1]])
        for i, t in enumerate(rows):
            if i == 0:
                back = st["R_h0"].sum() if cell != "lstm" else st["R_y0"].sum() + st["R_c0"].sum()
            else:
                back = st[key][rows[i - 1]].sum() - R_out[rows[i - 1]].sum()
            _close(st[key][t].sum(), st["R_x"][t].sum() + back, 1e-10)


@pytest.mark.parametrize("cell", CELLS)
def test_lrp_all_eps0_gates_get_nothing(rng, cell):
    model = rl.random_model(rng, cell, True, 2, "pool-sum")
    x = rng.normal(0, 0.8, (5, 4))
    output, _ = rl.forward(model, x)
    res = rl.lrp(model, x, rl.seed_for_target(output, 0), rl.preset_rules("lrp-all", 0.0))
    H = 3
    for name in ("rnn1", "rnn2"):
        for st in res["layers"][name]["directions"].values():
            if cell == "lstm":          # i, z, f, o: only z (the cell input) is a signal
                gates = np.concatenate([st["R_pre"][:, :H], st["R_pre"][:, 2 * H:]], axis=1)
                assert np.all(st["R_y0"] == 0.0) and np.all(st["R_c0"] == 0.0)
            else:                       # r, z, n: only n is a signal
                gates = st["R_pre"][:, :2 * H]
                assert np.all(st["R_h0"] == 0.0)
            assert np.all(gates == 0.0)
            assert np.any(st["R_pre"] != 0.0)
    assert res["R_stab"] == 0.0


def test_rules_by_layer_applies_to_that_layer_only(rng):
    model = rl.random_model(rng, "gru", True, 1, "dense")
    x = rng.normal(0, 0.8, (4, 4))
    output, cache = rl.forward(model, x)
    seed = rl.seed_for_target(output, 2)
    base, head = rl.preset_rules("lrp-all", 0.01), rl.preset_rules("lrp-all", 0.0)
    res = rl.lrp(model, x, seed, base, rules_by_layer={"out": head})
    W, b = model[1]["params"]["W"], model[1]["params"]["b"]
    expect = ref.linear_eps(cache["outputs"]["rnn1"], W, b, seed, 0.0, False)
    _close(res["layers"]["out"]["R_in"], np.concatenate(expect))
    alone = rl.lrp(model[:1], x, res["layers"]["out"]["R_in"], base)
    _close(res["R_x"], alone["R_x"])
    assert not np.allclose(res["R_x"], rl.lrp(model, x, seed, base)["R_x"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_per_step_head_is_causal(rng, cell):
    """A seed at step t0 only: the forward direction gives nothing to later inputs, the
    backward one nothing to earlier inputs."""
    model = rl.random_model(rng, cell, True, 2, "per-step")
    x = rng.normal(0, 0.8, (6, 4))
    output, _ = rl.forward(model, x)
    seed = np.zeros(output.shape)
    seed[2] = output[2]
    res = rl.lrp(model, x, seed, rl.preset_rules("lrp-half", 0.01, True))
    dirs = res["layers"]["rnn2"]["directions"]
    assert np.all(dirs["forward"]["R_x"][3:] == 0.0) and np.any(dirs["forward"]["R_x"][:3] != 0.0)
    assert np.all(dirs["backward"]["R_x"][:2] == 0.0) and np.any(dirs["backward"]["R_x"][2:] != 0.0)
    _close(res["R_x"].sum() + res["R_init"], seed.sum(), 1e-10)


# ---- hand-computed steps ------------------------------------------------------------------------


def _stab(u, eps):
    return u + eps * (1.0 if u >= 0 else -1.0)


def test_gru_reset_after_one_step_by_hand(rng):
    """T = 1, E = H = 1, LRP-prop, eps 0.1, no share, linear head without bias: all by hand."""
    eps = 0.1
    W, U, b, b_hn, V = (rng.normal(0, 0.8, s) for s in ((1, 3), (1, 3), 3, 1, (1, 1)))
    model = [{"type": "gru", "name": "g", "bidirectional": False, "sequences": False,
              "params": {"forward": {"W": W, "U": U, "b": b, "b_hn": b_hn}}},
             {"type": "dense", "name": "out", "params": {"W": [V], "b": None}}]
    x = np.array([[0.7]])
    xv = 0.7
    a_r, a_z = xv * W[0, 0] + b[0], xv * W[0, 1] + b[1]
    u, w = b_hn[0], xv * W[0, 2] + b[2]
    p_r = _sig(a_r) * u
    a_n = w + p_r
    h1 = (1 - _sig(a_z)) * np.tanh(a_n)                # p_old = sigmoid(a_z) * 0
    s = h1 * V[0, 0]
    R_h1 = h1 * V[0, 0] / _stab(s, eps) * s
    R_pnew = h1 / _stab(h1, eps) * R_h1
    R_az = a_z / _stab(a_z + a_n, eps) * R_pnew
    R_an = a_n / _stab(a_z + a_n, eps) * R_pnew
    R_w, R_pr = w / _stab(a_n, eps) * R_an, p_r / _stab(a_n, eps) * R_an
    R_ar, R_u = a_r / _stab(a_r + u, eps) * R_pr, u / _stab(a_r + u, eps) * R_pr
    R_x = (xv * W[0, 2] / _stab(w, eps) * R_w + xv * W[0, 0] / _stab(a_r, eps) * R_ar
           + xv * W[0, 1] / _stab(a_z, eps) * R_az)
    R_bias = (b_hn[0] / _stab(u, eps) * R_u + b[2] / _stab(w, eps) * R_w
              + b[0] / _stab(a_r, eps) * R_ar + b[1] / _stab(a_z, eps) * R_az)
    res = rl.lrp(model, x, np.array([s]), rl.preset_rules("lrp-prop", eps))
    _close(res["R_x"], [[R_x]])
    _close(res["layers"]["g"]["directions"]["forward"]["R_pre"], [[R_ar, R_az, R_an]])
    _close(res["layers"]["g"]["directions"]["forward"]["R_h"], [[R_h1]])
    _close(res["R_bias"], R_bias)
    _close(res["layers"]["g"]["directions"]["forward"]["R_h0"], [0.0])


def test_gru_reset_before_second_step_by_hand(rng):
    """T = 2, E = H = 1, reset_after=False, LRP-abs, eps 0.05: step 2 (h_prev != 0) by hand."""
    eps = 0.05
    W, U, b = rng.normal(0, 0.8, (1, 3)), rng.normal(0, 0.8, (1, 3)), rng.normal(0, 0.8, 3)
    model = [{"type": "gru", "name": "g", "bidirectional": False, "sequences": False,
              "reset_after": False, "params": {"forward": {"W": W, "U": U, "b": b}}}]
    x = np.array([[0.4], [-0.9]])
    h = 0.0
    for xv in x[:, 0]:
        h_prev = h
        a_r = xv * W[0, 0] + h * U[0, 0] + b[0]
        a_z = xv * W[0, 1] + h * U[0, 1] + b[1]
        p_r = _sig(a_r) * h
        a_n = xv * W[0, 2] + p_r * U[0, 2] + b[2]
        h = (1 - _sig(a_z)) * np.tanh(a_n) + _sig(a_z) * h
    p_new, p_old = (1 - _sig(a_z)) * np.tanh(a_n), _sig(a_z) * h_prev
    R_h2 = h                                           # seed = output = h_2
    R_pnew, R_pold = p_new / _stab(h, eps) * R_h2, p_old / _stab(h, eps) * R_h2
    R_az = (abs(a_z) / (abs(a_z) + abs(a_n) + eps) * R_pnew
            + abs(a_z) / (abs(a_z) + abs(h_prev) + eps) * R_pold)
    R_an = abs(a_n) / (abs(a_z) + abs(a_n) + eps) * R_pnew
    R_h_old = abs(h_prev) / (abs(a_z) + abs(h_prev) + eps) * R_pold
    R_pr = p_r * U[0, 2] / _stab(a_n, eps) * R_an
    R_x_n = xv * W[0, 2] / _stab(a_n, eps) * R_an
    R_ar = abs(a_r) / (abs(a_r) + abs(h_prev) + eps) * R_pr
    R_h_r = abs(h_prev) / (abs(a_r) + abs(h_prev) + eps) * R_pr
    R_x_g = xv * W[0, 0] / _stab(a_r, eps) * R_ar + xv * W[0, 1] / _stab(a_z, eps) * R_az
    R_h_g = h_prev * U[0, 0] / _stab(a_r, eps) * R_ar + h_prev * U[0, 1] / _stab(a_z, eps) * R_az
    res = rl.lrp(model, x, np.array([h]), rl.preset_rules("lrp-abs", eps))
    st = res["layers"]["g"]["directions"]["forward"]
    _close(st["R_pre"][1], [R_ar, R_az, R_an])
    _close(res["R_x"][1], [R_x_n + R_x_g])
    _close(st["R_h"][0], [R_h_old + R_h_r + R_h_g])
    _close(st["R_h"][1], [R_h2])


@pytest.mark.parametrize("share", [False, True])
def test_mean_and_sum_pool_by_hand(rng, share):
    x = rng.normal(size=(3, 2))
    eps = 0.2
    for mode, weight in (("mean", 1 / 3), ("sum", 1.0)):
        model = [{"type": "pool", "name": "p", "mode": mode}]
        output, _ = rl.forward(model, x)
        _close(output, weight * x.sum(axis=0))
        R = rng.normal(size=2)
        res = rl.lrp(model, x, R, rl.preset_rules("lrp-all", eps, share))
        for d in range(2):
            den = _stab(output[d], eps)
            expect = weight * x[:, d] / den * R[d]
            if share:
                expect = expect + eps * np.sign(output[d]) / den * R[d] / 3
            _close(res["R_x"][:, d], expect)
        assert (res["R_stab"] == 0.0) == share


def test_max_pool_gives_all_to_the_first_maximum():
    x = np.array([[1.0, -2.0], [0.5, 3.0], [1.0, 3.0]])
    model = [{"type": "pool", "name": "p", "mode": "max"}]
    output, _ = rl.forward(model, x)
    _close(output, [1.0, 3.0])
    res = rl.lrp(model, x, np.array([2.0, -5.0]), rl.preset_rules("lrp-all", 0.1))
    _close(res["R_x"], [[2.0, 0.0], [0.0, -5.0], [0.0, 0.0]])
    assert res["R_stab"] == 0.0
    _close(rl.gradient(model, x, np.array([1.0, 1.0])), [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])


def test_per_step_dense_is_one_mapping_per_step(rng):
    x = rng.normal(size=(4, 3))
    W, b = rng.normal(size=(3, 2)), rng.normal(size=2)
    model = [{"type": "dense", "name": "d", "activation": "tanh", "params": {"W": [W], "b": b}}]
    output, _ = rl.forward(model, x)
    _close(output, np.tanh(x @ W + b))
    seed = rl.seed_for_target(output, 1)
    assert seed.shape == (4, 2) and np.all(seed[:, 0] == 0.0)
    res = rl.lrp(model, x, seed, rl.preset_rules("lrp-all", 0.01))
    for t in range(4):
        (R,) = ref.linear_eps([x[t]], [W], b, seed[t], 0.01, False)
        _close(res["R_x"][t], R)


# ---- errors -------------------------------------------------------------------------------------


def _base():
    rng = np.random.default_rng(0)
    return rl.random_model(rng, "gru", True, 1, "mlp"), rng.normal(size=(3, 4))


def _set(path, value):
    def edit(model):
        target = model
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return model
    return edit


BAD_MODELS = [
    ("not a list", lambda m: {"layers": m}, TypeError, "model"),
    ("empty", lambda m: [], TypeError, "model"),
    ("layer not a dict", lambda m: [m[0], "dense"], TypeError, r"model\[1\]"),
    ("duplicate name", _set((1, "name"), "rnn1"), ValueError, "name"),
    ("unknown type", _set((1, "type"), "conv"), ValueError, "type"),
    ("flag not bool", _set((0, "sequences"), 1), TypeError, "sequences"),
    ("reset_after on lstm", _set((0, "type"), "lstm"), ValueError, "reset_after"),
    ("one direction for bi",
     lambda m: _set((0, "params"), {"forward": m[0]["params"]["forward"]})(m), ValueError,
     "params"),
    ("cell not a dict", _set((0, "params", "forward"), [1, 2]), TypeError, "forward"),
    ("U shape", _set((0, "params", "forward", "U"), np.zeros((3, 6))), ValueError, "U"),
    ("W shape", _set((0, "params", "forward", "W"), np.zeros((5, 9))), ValueError, "W"),
    ("W not numeric", _set((0, "params", "forward", "W"), "abc"), TypeError, "W"),
    ("b_hn missing", lambda m: (m[0]["params"]["backward"].pop("b_hn"), m)[1], ValueError, "b_hn"),
    ("recurrent after vectors", lambda m: m[:1] + [dict(m[0], name="again")] + m[1:],
     ValueError, "sequence parts"),
    ("activation", _set((1, "activation"), "gelu"), ValueError, "activation"),
    ("dense params", _set((1, "params"), {"W": np.zeros((6, 6))}), TypeError, "params"),
    ("dense W count", _set((1, "params", "W"), [np.zeros((3, 6))]), ValueError, "one matrix"),
    ("dense W not 2-D", _set((1, "params", "W"), [np.zeros(3), np.zeros(3)]), ValueError, "W"),
    ("dense W shape", _set((1, "params", "W"), [np.zeros((3, 6)), np.zeros((4, 6))]), ValueError,
     "W"),
    ("b_hn without reset_after", _set((0, "reset_after"), False), ValueError, "b_hn"),
    ("dense b shape", _set((1, "params", "b"), np.zeros(5)), ValueError, "b"),
    ("pool mode", lambda m: m[:1] + [{"type": "pool", "name": "p", "mode": "min"}] + m[1:],
     ValueError, "mode"),
    ("pool on vectors", lambda m: m[:1] + [{"type": "pool", "name": "p", "mode": "max"}] + m[1:],
     ValueError, "pooling needs sequence parts"),
]


@pytest.mark.parametrize("edit,error,match", [b[1:] for b in BAD_MODELS],
                         ids=[b[0] for b in BAD_MODELS])
def test_bad_model_is_rejected_with_a_clear_error(edit, error, match):
    model, x = _base()
    bad = edit(model)
    for fn in (lambda: rl.forward(bad, x), lambda: rl.gradient(bad, x, np.zeros(3)),
               lambda: rl.lrp(bad, x, np.zeros(3), rl.preset_rules("lrp-all"))):
        with pytest.raises(error, match=match):
            fn()


@pytest.mark.parametrize("x,error", [("abc", TypeError), (np.zeros(4), ValueError),
                                     (np.zeros((0, 4)), ValueError)])
def test_bad_x_is_rejected(x, error):
    model, _ = _base()
    with pytest.raises(error, match="`x`"):
        rl.forward(model, x)


BAD_RULES = [
    ({"linear": (0.0, False)}, None, TypeError, "rules"),
    ({"linear": 0.0, "gate": ("all", 0.0, False), "accumulate": (0.0, False)}, None, TypeError,
     "rules"),
    (rl.preset_rules("lrp-all") | {"linear": (-1.0, False)}, None, ValueError, "eps"),
    (rl.preset_rules("lrp-all") | {"gate": ("max", 0.0, False)}, None, ValueError, "gate"),
    (rl.preset_rules("lrp-all"), ["out"], TypeError, "rules_by_layer"),
    (rl.preset_rules("lrp-all"), {"head": rl.preset_rules("lrp-all")}, ValueError,
     "rules_by_layer"),
    (rl.preset_rules("lrp-all"), {"out": {"linear": (0.0, False)}}, TypeError, "rules_by_layer"),
]


@pytest.mark.parametrize("rules,by_layer,error,match", BAD_RULES)
def test_bad_rules_are_rejected(rules, by_layer, error, match):
    model, x = _base()
    with pytest.raises(error, match=match):
        rl.lrp(model, x, np.zeros(3), rules, rules_by_layer=by_layer)


def test_bad_seeds_are_rejected():
    model, x = _base()
    rules = rl.preset_rules("lrp-all")
    with pytest.raises(ValueError, match="seed"):
        rl.lrp(model, x, np.zeros((3, 3)), rules)
    with pytest.raises(ValueError, match="seed"):
        rl.gradient(model, x, np.zeros(4))
    with pytest.raises(TypeError, match="target"):
        rl.seed_for_target(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="target"):
        rl.seed_for_target(np.zeros(3), 3)
    with pytest.raises(ValueError, match="`w`"):
        rl.seed_for_weights(np.zeros(3), np.zeros(4))


def test_random_model_rejects_unknown_choices(rng):
    for args in (("rnn", False, 1, "dense"), ("gru", False, 0, "dense"), ("gru", False, 1, "conv")):
        with pytest.raises(ValueError, match="cell"):
            rl.random_model(rng, *args)
