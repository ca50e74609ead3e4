"""Self-tests of the NumPy oracle tests/oracles/reference.py (no lrpjax involved)."""

import pathlib

import numpy as np
import pytest

import reference as ref  # tests/oracles is on sys.path (tests/conftest.py)

DATA = pathlib.Path(__file__).parents[1] / "data" / "ref_bilstm.npz"
GATES = ("all", "prop", "abs", "half")


def _cell(rng, E, H, scale=0.5):
    return {"W": rng.normal(0, scale, (E, 4 * H)), "U": rng.normal(0, scale, (H, 4 * H)),
            "b": rng.normal(0, scale, 4 * H)}


def _lstm_params(rng, E=5, H=3, C=4):
    return {"cell": _cell(rng, E, H), "out": {"W": rng.normal(0, 1.0, (H, C))}}


def _bilstm_params(rng, E=5, H=3, C=4):
    return {"left": _cell(rng, E, H), "right": _cell(rng, E, H),
            "out": {"W_left": rng.normal(0, 1.0, (H, C)), "W_right": rng.normal(0, 1.0, (H, C))}}


def _ref_weights_from(params):
    """Library layout -> reference layout (inverse conversion, bias split in two halves)."""
    out = {}
    for side, name in (("Left", "left"), ("Right", "right")):
        out[f"Wxh_{side}"] = params[name]["W"].T.copy()
        out[f"Whh_{side}"] = params[name]["U"].T.copy()
        out[f"bxh_{side}"] = 0.3 * params[name]["b"]
        out[f"bhh_{side}"] = 0.7 * params[name]["b"]
    out["Why_Left"] = params["out"]["W_left"].T.copy()
    out["Why_Right"] = params["out"]["W_right"].T.copy()
    return out


def _total(res, bi):
    tot = res["R_x"].sum() + res["R_bias"] + res["R_stab"]
    dirs = ("left", "right") if bi else (None,)
    for d in dirs:
        tot += (res["R_y0"][d] if bi else res["R_y0"]).sum()
        tot += (res["R_c0"][d] if bi else res["R_c0"]).sum()
    return tot


def _close(a, b, rel=1e-12):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(a, b, rtol=rel, atol=rel * scale)


# ---- elementary rules ----------------------------------------------------------------------


def test_linear_eps_hand_computed_z_rule():
    (R,), rb, rs = ref.linear_eps([np.array([1.0, 2.0])], [np.array([[1.0], [1.0]])],
                                  np.array([1.0]), np.array([4.0]), 0.0, False,
                                  with_absorbed=True)
    np.testing.assert_allclose(R, [1.0, 2.0])
    np.testing.assert_allclose(rb, [1.0])
    np.testing.assert_allclose(rs, [0.0])
    (R,) = ref.linear_eps([np.array([1.0, 2.0])], [np.array([[1.0], [1.0]])],
                          np.array([1.0]), np.array([4.0]), 0.0, True)
    np.testing.assert_allclose(R, [1.5, 2.5])


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.01, 0.5])
def test_linear_eps_matches_reference_lrp_linear(rng, eps, share):
    a1, a2 = rng.normal(size=5), rng.normal(size=3)
    W1, W2 = rng.normal(size=(5, 7)), rng.normal(size=(3, 7))
    b, R = rng.normal(size=7), rng.normal(size=7)
    R1, R2 = ref.linear_eps([a1, a2], [W1, W2], b, R, eps, share)
    z = a1 @ W1 + a2 @ W2 + b
    bf = 1.0 if share else 0.0
    _close(R1, ref.lrp_linear(a1, W1, b, z, R, 8, eps, bf))
    _close(R2, ref.lrp_linear(a2, W2, b, z, R, 8, eps, bf))
    if share:
        _close(R1.sum() + R2.sum(), R.sum())


def test_linear_eps_zero_denominator_gives_zero():
    (R,), rb, rs = ref.linear_eps([np.array([1.0, -1.0])], [np.ones((2, 1))], None,
                                  np.array([3.0]), 0.0, True, with_absorbed=True)
    assert np.all(np.isfinite(R)) and np.all(R == 0.0)
    assert rs[0] == 3.0


@pytest.mark.parametrize("kind", GATES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gated_rule_values_and_share_conserves(rng, kind, eps):
    zg, zs, Rp = rng.normal(size=6), rng.normal(size=6), rng.normal(size=6)
    Rg, Rs = ref.gated_rule(kind, zg, zs, Rp, eps, False)
    if kind == "all":
        expect_g, expect_s = np.zeros(6), Rp
    elif kind == "half":
        expect_g, expect_s = 0.5 * Rp, 0.5 * Rp
    elif kind == "prop":
        den = zg + zs + eps * np.where(zg + zs >= 0, 1.0, -1.0)
        expect_g, expect_s = zg / den * Rp, zs / den * Rp
    else:
        den = np.abs(zg) + np.abs(zs) + eps
        expect_g, expect_s = np.abs(zg) / den * Rp, np.abs(zs) / den * Rp
    _close(Rg, expect_g)
    _close(Rs, expect_s)
    Rg2, Rs2 = ref.gated_rule("lrp-" + kind, zg, zs, Rp, eps, True)
    _close(Rg2 + Rs2, Rp)
    _close(Rg2 - Rg, Rs2 - Rs)   # the absorbed part is split in halves


def test_gated_rule_rejects_unknown_kind():
    with pytest.raises(ValueError, match="gate"):
        ref.gated_rule("mean", np.zeros(2), np.zeros(2), np.zeros(2))


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_accumulate_eps(rng, eps):
    t1, t2, t3, R = (rng.normal(size=4) for _ in range(4))
    c = t1 + t2 + t3
    den = c + eps * np.where(c >= 0, 1.0, -1.0)
    R1, R2, R3 = ref.accumulate_eps([t1, t2, t3], R, eps, False)
    _close(R2, t2 / den * R)
    S1, S2, S3 = ref.accumulate_eps([t1, t2, t3], R, eps, True)
    _close(S1 + S2 + S3, R)
    _close(S3 - R3, eps * np.where(c >= 0, 1.0, -1.0) / den * R / 3)


# ---- forward and gradient ------------------------------------------------------------------


def test_lstm_forward_matches_hand_step(rng):
    p = _lstm_params(rng, E=2, H=1, C=1)
    x = rng.normal(size=(1, 2))
    W, U, b = p["cell"]["W"], p["cell"]["U"], p["cell"]["b"]
    pre = x[0] @ W + b
    sig = lambda u: 1 / (1 + np.exp(-u))
    c = sig(pre[0]) * np.tanh(pre[1])
    y = sig(pre[3]) * np.tanh(c)
    _close(ref.lstm_forward(p, x), [y * p["out"]["W"][0, 0]])


@pytest.mark.parametrize("T,H", [(6, 3), (1, 3), (6, 1)])
def test_gradients_match_central_differences(rng, T, H):
    E, C = 5, 4
    lp, bp = _lstm_params(rng, E, H, C), _bilstm_params(rng, E, H, C)
    x = rng.normal(0, 0.8, (T, E))
    for fwd, grad, p in ((ref.lstm_forward, ref.lstm_gradient, lp),
                         (ref.bilstm_forward, ref.bilstm_gradient, bp)):
        g = grad(p, x, 2)
        fd = np.zeros_like(x)
        h = 1e-6
        for t in range(T):
            for e in range(E):
                xp, xm = x.copy(), x.copy()
                xp[t, e] += h
                xm[t, e] -= h
                fd[t, e] = (fwd(p, xp)[2] - fwd(p, xm)[2]) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


# ---- conservation --------------------------------------------------------------------------


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("T,H", [(6, 3), (1, 3), (6, 1)])
def test_conservation_with_share(rng, gate, T, H):
    lp, bp = _lstm_params(rng, 5, H, 4), _bilstm_params(rng, 5, H, 4)
    x = rng.normal(0, 0.8, (T, 5))
    for fn, p, bi in ((ref.lstm_lrp, lp, False), (ref.bilstm_lrp, bp, True)):
        for target in (0, 3):
            res = fn(p, x, target, gate=gate, eps=0.01, share=True)
            assert res["R_bias"] == 0.0 and res["R_stab"] == 0.0
            _close(_total(res, bi), res["scores"][target])


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("eps", [0.0, 0.05])
def test_bookkeeping_without_share(rng, gate, eps):
    """Without share, input + initial-state + bias + stabiliser relevance is the score."""
    bp = _bilstm_params(rng)
    x = rng.normal(0, 0.8, (6, 5))
    res = ref.bilstm_lrp(bp, x, 1, gate=gate, eps=eps, share=False)
    # absorbed terms can be large and of either sign: tolerance relative to their magnitude
    size = np.abs(res["R_x"]).sum() + abs(res["R_bias"]) + abs(res["R_stab"])
    assert abs(_total(res, True) - res["scores"][1]) <= 1e-12 * size
    assert res["R_bias"] != 0.0
    if eps == 0.0:
        assert res["R_stab"] == 0.0


def test_lrp_all_eps0_initial_states_get_nothing(rng):
    """With LRP-all, eps=0 and no share, y_0 = c_0 = 0 receive exactly zero."""
    res = ref.bilstm_lrp(_bilstm_params(rng), rng.normal(size=(6, 5)), 0, gate="all")
    for d in ("left", "right"):
        assert np.all(res["R_y0"][d] == 0.0) and np.all(res["R_c0"][d] == 0.0)


def test_state_relevance_bookkeeping(rng):
    """R_y[T-1] is the output layer's relevance; R_y[t-1] sums to what step t sends back."""
    p = _lstm_params(rng)
    x = rng.normal(size=(6, 5))
    res = ref.lstm_lrp(p, x, 2, gate="all", eps=0.0)
    st = ref.lstm_states(p["cell"], x)
    R_s = np.zeros(4)
    R_s[2] = res["scores"][2]
    (R_yT,) = ref.linear_eps([st["y_final"]], [p["out"]["W"]], None, R_s)
    _close(res["R_y"][5], R_yT)
    # under LRP-all y_t's relevance moves entirely onto c_t
    assert np.all(np.abs(res["R_c"][5] - res["R_y"][5]) < 1e-15)


def test_rules_override_equals_preset(rng):
    p = _lstm_params(rng)
    x = rng.normal(size=(6, 5))
    a = ref.lstm_lrp(p, x, 1, gate="lrp-prop", eps=0.1, share=True)
    b = ref.lstm_lrp(p, x, 1, rules=ref.preset_rules("lrp-prop", 0.1, True))
    _close(a["R_x"], b["R_x"], 0.0)
    c = ref.lstm_lrp(p, x, 1, rules={"linear": (0.1, True), "gate": ("prop", 0.1, True),
                                     "accumulate": (0.0, True)})
    assert not np.allclose(a["R_x"], c["R_x"])


# ---- masks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gate", GATES)
def test_padded_equals_unpadded(rng, gate):
    lp, bp = _lstm_params(rng), _bilstm_params(rng)
    L, T = 4, 6
    x = rng.normal(size=(T, 5))
    mask = np.arange(T) < L
    for fn, grad, p in ((ref.lstm_lrp, ref.lstm_gradient, lp),
                        (ref.bilstm_lrp, ref.bilstm_gradient, bp)):
        pad = fn(p, x, 1, gate=gate, eps=0.01, share=True, mask=mask)
        unp = fn(p, x[:L], 1, gate=gate, eps=0.01, share=True)
        _close(pad["scores"], unp["scores"])
        _close(pad["R_x"][:L], unp["R_x"])
        assert np.all(pad["R_x"][L:] == 0.0)
        g_pad, g_unp = grad(p, x, 1, mask=mask), grad(p, x[:L], 1)
        _close(g_pad[:L], g_unp)
        assert np.all(g_pad[L:] == 0.0)


def test_lstm_mask_in_the_middle_skips_the_step(rng):
    p = _lstm_params(rng)
    x = rng.normal(size=(6, 5))
    mask = np.array([True, True, False, True, True, True])
    a = ref.lstm_lrp(p, x, 0, gate="half", eps=0.01, share=True, mask=mask)
    b = ref.lstm_lrp(p, x[mask], 0, gate="half", eps=0.01, share=True)
    _close(a["R_x"][mask], b["R_x"])
    assert np.all(a["R_x"][2] == 0.0)
    _close(a["R_y"][2], a["R_y"][1])   # the copied state keeps its relevance


def test_bilstm_rejects_non_prefix_mask(rng):
    with pytest.raises(ValueError, match="mask"):
        ref.bilstm_forward(_bilstm_params(rng), np.zeros((3, 5)), np.array([True, False, True]))


def test_shape_errors_name_the_argument(rng):
    p = _lstm_params(rng)
    with pytest.raises(ValueError, match="W"):
        ref.lstm_forward(p, np.zeros((3, 6)))
    with pytest.raises(ValueError, match="target"):
        ref.lstm_lrp(p, np.zeros((3, 5)), 4)
    with pytest.raises(ValueError, match="eps"):
        ref.lstm_lrp(p, np.zeros((3, 5)), 0, eps=-1.0)


# ---- reference layout ----------------------------------------------------------------------


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("eps", [0.0, 0.001])
@pytest.mark.parametrize("T,H", [(6, 3), (1, 3), (6, 1)])
def test_reference_layout_agrees_share_false(rng, gate, eps, T, H):
    bp = _bilstm_params(rng, 5, H, 4)
    rw = _ref_weights_from(bp)
    x = rng.normal(0, 0.8, (T, 5))
    conv = ref.params_from_reference(rw)
    _close(ref.ref_bilstm_forward(rw, x)["s"], ref.bilstm_forward(conv, x))
    a = ref.ref_bilstm_lrp(rw, x, 2, eps=eps, bias_factor=0.0, gate=gate)
    b = ref.bilstm_lrp(conv, x, 2, gate=gate, eps=eps, share=False)
    _close(a["R_x_left"], b["R_x_left"])
    _close(a["R_x_right"], b["R_x_right"])
    _close(a["R_init"], sum(b["R_y0"][d].sum() + b["R_c0"][d].sum() for d in ("left", "right")))


def test_reference_layout_share_true_eps0_agrees_and_eps_differs(rng):
    """bias_factor=1 == share=True when eps=0; with eps>0 only the accumulation share differs."""
    bp = _bilstm_params(rng)
    rw = _ref_weights_from(bp)
    conv = ref.params_from_reference(rw)
    x = rng.normal(0, 0.8, (6, 5))
    a = ref.ref_bilstm_lrp(rw, x, 1, eps=0.0, bias_factor=1.0)
    b = ref.bilstm_lrp(conv, x, 1, gate="all", eps=0.0, share=True)
    _close(a["R_x"], b["R_x"])
    a = ref.ref_bilstm_lrp(rw, x, 1, eps=0.1, bias_factor=1.0)
    b = ref.bilstm_lrp(conv, x, 1, gate="all", eps=0.1, share=True)
    c = ref.bilstm_lrp(conv, x, 1, rules={"linear": (0.1, True), "gate": ("all", 0.1, True),
                                          "accumulate": (0.1, False)})
    assert not np.allclose(a["R_x"], b["R_x"], rtol=1e-9, atol=0.0)
    _close(a["R_x"].sum() + a["R_init"], a["scores"][1])   # the reference conserves too
    _close(b["R_x"].sum() + sum(b["R_y0"][d].sum() + b["R_c0"][d].sum()
                                for d in ("left", "right")), b["scores"][1])
    assert c["R_stab"] != 0.0


def test_real_reference_weights():
    weights = dict(np.load(DATA))
    x = np.random.default_rng(7).normal(0, 0.4, (7, 60))
    conv = ref.params_from_reference(weights)
    s = ref.ref_bilstm_forward(weights, x)["s"]
    _close(s, ref.bilstm_forward(conv, x))
    target = int(np.argmax(s))
    a = ref.ref_bilstm_lrp(weights, x, target, eps=0.001, bias_factor=0.0)
    b = ref.bilstm_lrp(conv, x, target, gate="all", eps=0.001, share=False)
    _close(a["R_x"], b["R_x"])
    c = ref.bilstm_lrp(conv, x, target, gate="all", eps=0.001, share=True)
    _close(_total(c, True), s[target])
    d = ref.ref_bilstm_lrp(weights, x, target, eps=0.001, bias_factor=1.0)
    _close(d["R_x"].sum() + d["R_init"], s[target])
