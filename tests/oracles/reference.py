"""Slow, obvious float64 NumPy oracle for LRP on LSTMs (no code shared with lrpjax).

Everything here is plain NumPy in float64 with explicit Python loops over time steps and
output units, written from the chapter *Explaining and Interpreting LSTMs* (eqs 11.1-11.6,
Table 11.1) and the conventions of the numpy reference implementation of Arras et al.
It exists only to be compared with the library; it is deliberately unoptimised.

Conventions (the project's fixed ones):
    stab(u, eps) = u + eps * sign(u), sign(0) = +1. A division whose denominator is exactly
    0 gives share 0 (never NaN); the relevance that would have gone through it is counted
    as absorbed ("R_stab").
    share=True is the reference's ``bias_factor = 1``: bias and stabiliser shares are spread
    equally onto the inputs, so relevance is conserved.

Elementary rules (exposed for op tests):
    stab(u, eps) -> array
    linear_eps(inputs, weights, b, R_out, eps=0.0, share=False, with_absorbed=False)
        -> [R_in_k (D_k,)]  or  ([R_in_k], R_bias (M,), R_stab (M,)) with with_absorbed=True
    gated_rule(kind, z_g, z_s, R_p, eps=0.0, share=False) -> (R_g (H,), R_s (H,))
        kind in {"all", "prop", "abs", "half"} (the "lrp-" prefix is accepted too)
    accumulate_eps(terms, R_c, eps=0.0, share=False) -> [R_t_k (H,)]
    lrp_linear(hin, w, b, hout, Rout, bias_nb_units, eps, bias_factor=0.0) -> Rin (D,)
        (the reference's function, verbatim semantics, plus the zero-denominator guard)

Models, library layout (gates stacked i, z, f, o; z is the reference's "g"):
    cell   = {"W": (E, 4H), "U": (H, 4H), "b": (4H,)}
    lstm_params   = {"cell": cell, "out": {"W": (H, C)}}
    bilstm_params = {"left": cell, "right": cell, "out": {"W_left": (H, C), "W_right": (H, C)}}
    lstm_states(cell, x, mask=None) -> dict of per-step forward quantities (see docstring)
    lstm_forward(params, x, mask=None) -> scores (C,)
    bilstm_forward(params, x, mask=None) -> scores (C,)
    lstm_lrp(params, x, target, gate="all", eps=0.0, share=False, mask=None, rules=None) -> dict
        "R_x" (T, E), "R_y0" (H,), "R_c0" (H,), "R_bias" float, "R_stab" float,
        "R_y" (T, H), "R_c" (T, H), "scores" (C,)
    bilstm_lrp(params, x, target, gate="all", eps=0.0, share=False, mask=None, rules=None) -> dict
        "R_x" (T, E) = "R_x_left" + "R_x_right" (both at original positions),
        "R_y0", "R_c0", "R_y", "R_c": {"left": ..., "right": ...},
        "R_bias" float, "R_stab" float, "scores" (C,)
        R_y / R_c of the right direction are in its own processing order (row k is the state
        after the right LSTM's k-th step, which reads x_{L-1-k} for k < L).
    lstm_gradient(params, x, target, mask=None) -> d s[target] / d x, (T, E)
    bilstm_gradient(params, x, target, mask=None) -> (T, E)
    preset_rules(name, eps=0.0, share=False) -> rules dict (see below)

    rules (optional, overrides gate/eps/share) = {"linear": (eps, share),
        "gate": (kind, eps, share), "accumulate": (eps, share)}.
    Relevance at the output starts as R_s = s[target] for the target class, 0 elsewhere.
    Conservation: R_x.sum() + R_y0.sum() + R_c0.sum() + R_bias + R_stab == s[target] always;
    with share=True, R_bias == 0 and R_stab == 0 (unless a denominator was exactly 0).

Reference layout (tests/data/ref_bilstm.npz: Wxh_Left (4H, E), bxh_Left (4H,), Whh_Left (4H, H),
bhh_Left (4H,), the same with _Right, Why_Left (C, H), Why_Right (C, H); gate rows i, g, f, o):
    params_from_reference(ref_weights) -> bilstm params (W = Wxh.T, U = Whh.T, b = bxh + bhh,
        W_left = Why_Left.T, ...)
    ref_bilstm_forward(ref_weights, x) -> dict of the reference's forward arrays, incl. "s" (C,)
    ref_bilstm_lrp(ref_weights, x, target, eps=0.001, bias_factor=0.0, gate="all") -> dict
        "R_x" (T, E), "R_x_left", "R_x_right" (original positions), "R_init" float (relevance at
        both directions' initial states, the reference's third return value), "scores" (C,)
    With gate="all" this is the reference's ``lrp`` loop. It agrees with ``bilstm_lrp`` to
    ~1e-12 for bias_factor=0 / share=False (any gate rule) and for eps=0. With bias_factor=1 and
    eps>0 the two differ only in the accumulation c = f*c_prev + i*g: the reference calls
    ``lrp_linear`` with an identity matrix and bias_nb_units = 2H, so the stabiliser share of
    *every* cell unit is spread over all 2H units of (f*c_prev, i*g), while the library
    convention adds eps*sign(c_h)/2/stab(c_h)*R_c_h to the two terms of unit h only.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

GATE_KINDS = ("all", "prop", "abs", "half")
PRESETS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half")


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _f64(a, name: str) -> np.ndarray:
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a numeric array; got {type(a).__name__}.") from err


def _sign(u):
    """sign with sign(0) = +1, as the reference's ``np.where(h >= 0, 1, -1)``."""
    return np.where(np.asarray(u) >= 0, 1.0, -1.0)


def stab(u, eps: float):
    """Stabilised denominator u + eps * sign(u) with sign(0) = +1."""
    u = np.asarray(u, dtype=np.float64)
    return u + eps * _sign(u)


def _div(num: float, den: float) -> float:
    """Scalar num / den, 0 when den is exactly 0 (the project's no-NaN convention)."""
    return 0.0 if den == 0.0 else num / den


def _sigmoid(u):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-u))


def _check_eps(eps) -> float:
    if not isinstance(eps, (int, float, np.floating, np.integer)) or isinstance(eps, bool):
        raise TypeError(f"`eps` must be a float; got {type(eps).__name__}.")
    if not eps >= 0.0:
        raise ValueError(f"`eps` must be >= 0; got {eps}.")
    return float(eps)


def _gate_kind(kind: str) -> str:
    if not isinstance(kind, str):
        raise TypeError(f"`gate` must be a string; got {type(kind).__name__}.")
    name = kind[4:] if kind.startswith("lrp-") else kind
    if name not in GATE_KINDS:
        raise ValueError(f"`gate` must be one of {GATE_KINDS} or {PRESETS}; got {kind!r}.")
    return name


# ---------------------------------------------------------------------------------------------
# Elementary rules
# ---------------------------------------------------------------------------------------------


def linear_eps(inputs: Sequence, weights: Sequence, b, R_out, eps: float = 0.0,
               share: bool = False, with_absorbed: bool = False):
    """Epsilon rule for z = sum_k a_k @ W_k + b (several inputs, one shared denominator).

    R_kj = sum_s a_kj W_kjs / stab(z_s) * R_s; with share=True every one of the D = sum_k D_k
    input units also gets sum_s (b_s + eps*sign(z_s)) / D / stab(z_s) * R_s.

    Args:
        inputs: sequence of K input vectors a_k, shapes (D_k,).
        weights: sequence of K matrices W_k, shapes (D_k, M).
        b: bias, shape (M,), or None for no bias.
        R_out: relevance of z, shape (M,).
        eps: stabiliser >= 0 (0 is the z-rule).
        share: spread bias and stabiliser relevance equally onto all input units.
        with_absorbed: also return the absorbed relevance.

    Returns:
        list of K arrays (D_k,); with with_absorbed, (that list, R_bias (M,), R_stab (M,)),
        R_bias = b_s/stab(z_s)*R_s and R_stab = eps*sign(z_s)/stab(z_s)*R_s when share=False
        (zeros when share=True), and R_stab_s = R_s where stab(z_s) == 0.
    """
    eps = _check_eps(eps)
    if len(inputs) != len(weights) or len(inputs) == 0:
        raise ValueError(f"`inputs` and `weights` must be non-empty and of equal length; got "
                         f"{len(inputs)} and {len(weights)}.")
    a_list = [_f64(a, f"inputs[{k}]") for k, a in enumerate(inputs)]
    w_list = [_f64(w, f"weights[{k}]") for k, w in enumerate(weights)]
    R_out = _f64(R_out, "R_out")
    if R_out.ndim != 1:
        raise ValueError(f"`R_out` must have shape (M,); got {R_out.shape}.")
    M = R_out.shape[0]
    for k, (a, w) in enumerate(zip(a_list, w_list)):
        if a.ndim != 1:
            raise ValueError(f"`inputs[{k}]` must have shape (D_{k},); got {a.shape}.")
        if w.shape != (a.shape[0], M):
            raise ValueError(f"`weights[{k}]` must have shape (D_{k}, M) = ({a.shape[0]}, {M}); "
                             f"got {w.shape}.")
    b = np.zeros(M) if b is None else _f64(b, "b")
    if b.shape != (M,):
        raise ValueError(f"`b` must have shape (M,) = ({M},); got {b.shape}.")

    D = sum(a.shape[0] for a in a_list)
    z = b.copy()
    for a, w in zip(a_list, w_list):
        z = z + a @ w
    R_in = [np.zeros(a.shape[0]) for a in a_list]
    R_bias = np.zeros(M)
    R_stab = np.zeros(M)
    for s in range(M):
        den = float(stab(z[s], eps))
        if den == 0.0:
            R_stab[s] = R_out[s]  # nothing can be redistributed through a zero denominator
            continue
        for k in range(len(a_list)):
            R_in[k] += a_list[k] * w_list[k][:, s] / den * R_out[s]
        bias_part = b[s] / den * R_out[s]
        stab_part = eps * float(_sign(z[s])) / den * R_out[s]
        if share:
            for k in range(len(a_list)):
                R_in[k] += (bias_part + stab_part) / D
        else:
            R_bias[s] = bias_part
            R_stab[s] = stab_part
    if with_absorbed:
        return R_in, R_bias, R_stab
    return R_in


def _gated_parts(kind: str, z_g, z_s, R_p, eps: float, share: bool):
    """Table 11.1 rules on unit vectors; returns (R_g, R_s, R_absorbed)."""
    kind = _gate_kind(kind)
    eps = _check_eps(eps)
    z_g, z_s, R_p = _f64(z_g, "z_g"), _f64(z_s, "z_s"), _f64(R_p, "R_p")
    if z_g.ndim != 1 or z_s.shape != z_g.shape or R_p.shape != z_g.shape:
        raise ValueError(f"`z_g`, `z_s`, `R_p` must all have shape (H,); got {z_g.shape}, "
                         f"{z_s.shape}, {R_p.shape}.")
    H = z_g.shape[0]
    R_g, R_s, R_abs = np.zeros(H), np.zeros(H), np.zeros(H)
    for h in range(H):
        g, s, r = z_g[h], z_s[h], R_p[h]
        if kind == "all":  # signal-take-all: the gate gets nothing
            rg, rs, absorbed = 0.0, r, 0.0
        elif kind == "half":
            rg, rs, absorbed = 0.5 * r, 0.5 * r, 0.0
        elif kind == "prop":
            den = float(stab(g + s, eps))
            rg, rs = _div(g, den) * r, _div(s, den) * r
            absorbed = r if den == 0.0 else eps * float(_sign(g + s)) / den * r
        else:  # "abs"
            den = abs(g) + abs(s) + eps
            rg, rs = _div(abs(g), den) * r, _div(abs(s), den) * r
            absorbed = r if den == 0.0 else eps / den * r
        if share:
            rg, rs, absorbed = rg + 0.5 * absorbed, rs + 0.5 * absorbed, 0.0
        R_g[h], R_s[h], R_abs[h] = rg, rs, absorbed
    return R_g, R_s, R_abs


def gated_rule(kind: str, z_g, z_s, R_p, eps: float = 0.0, share: bool = False):
    """Product rule (Table 11.1) for p = gate_fn(z_g) * signal_fn(z_s), element-wise.

    "all": R_g = 0, R_s = R_p. "prop": R_x = z_x / stab(z_g + z_s) * R_p.
    "abs": R_x = |z_x| / (|z_g| + |z_s| + eps) * R_p. "half": R_g = R_s = R_p / 2.
    share=True adds half of the absorbed part R_p - R_g - R_s to each.

    Args:
        kind: "all", "prop", "abs" or "half" (or with the "lrp-" prefix).
        z_g: gate pre-activation, shape (H,).
        z_s: signal pre-activation, shape (H,).
        R_p: relevance of the product, shape (H,).
        eps: stabiliser >= 0 (used by "prop" and "abs").
        share: redistribute the absorbed part equally to gate and signal.

    Returns:
        (R_g, R_s), each (H,).
    """
    R_g, R_s, _ = _gated_parts(kind, z_g, z_s, R_p, eps, share)
    return R_g, R_s


def _accumulate_parts(terms: Sequence, R_c, eps: float, share: bool):
    """Epsilon rule for c = t_1 + ... + t_n element-wise; returns ([R_t_k], R_absorbed)."""
    eps = _check_eps(eps)
    if len(terms) == 0:
        raise ValueError("`terms` must hold at least one array of shape (H,).")
    t_list = [_f64(t, f"terms[{k}]") for k, t in enumerate(terms)]
    R_c = _f64(R_c, "R_c")
    if R_c.ndim != 1:
        raise ValueError(f"`R_c` must have shape (H,); got {R_c.shape}.")
    for k, t in enumerate(t_list):
        if t.shape != R_c.shape:
            raise ValueError(f"`terms[{k}]` must have shape (H,) = {R_c.shape}; got {t.shape}.")
    n, H = len(t_list), R_c.shape[0]
    R_t = [np.zeros(H) for _ in t_list]
    R_abs = np.zeros(H)
    for h in range(H):
        c = 0.0
        for t in t_list:
            c += t[h]
        den = float(stab(c, eps))
        if den == 0.0:
            R_abs[h] = R_c[h]
            continue
        absorbed = eps * float(_sign(c)) / den * R_c[h]
        for k, t in enumerate(t_list):
            R_t[k][h] = t[h] / den * R_c[h] + (absorbed / n if share else 0.0)
        R_abs[h] = 0.0 if share else absorbed
    return R_t, R_abs


def accumulate_eps(terms: Sequence, R_c, eps: float = 0.0, share: bool = False):
    """Epsilon rule for the accumulation c = t_1 + ... + t_n (element-wise).

    R_tk = t_k / stab(c) * R_c; share=True adds eps*sign(c)/n/stab(c)*R_c to each term.

    Args:
        terms: sequence of n arrays, each (H,).
        R_c: relevance of c, shape (H,).
        eps: stabiliser >= 0.
        share: spread the stabiliser share equally over the n terms.

    Returns:
        list of n arrays (H,).
    """
    return _accumulate_parts(terms, R_c, eps, share)[0]


def lrp_linear(hin, w, b, hout, Rout, bias_nb_units: int, eps: float, bias_factor: float = 0.0):
    """The reference implementation's ``lrp_linear`` (Arras et al.), zero denominators -> 0.

    numer = w*hin[:,None] + bias_factor*(b[None,:] + eps*sign_out)/bias_nb_units,
    denom = hout[None,:] + eps*sign_out, Rin = ((numer/denom)*Rout[None,:]).sum(1).

    Args:
        hin: input, shape (D,). w: weights, shape (D, M). b: bias, shape (M,).
        hout: output z (used for the denominator), shape (M,). Rout: relevance, shape (M,).
        bias_nb_units: number of units the bias share is spread over.
        eps: stabiliser. bias_factor: 0 (absorb) or 1 (spread).

    Returns:
        Rin, shape (D,).
    """
    hin, w, b, hout, Rout = (np.asarray(v, dtype=np.float64) for v in (hin, w, b, hout, Rout))
    sign_out = np.where(hout[None, :] >= 0, 1.0, -1.0)
    numer = (w * hin[:, None]) + (bias_factor * (b[None, :] + eps * sign_out) / bias_nb_units)
    denom = hout[None, :] + eps * sign_out
    safe = np.where(denom == 0.0, 1.0, denom)
    message = np.where(denom == 0.0, 0.0, numer / safe) * Rout[None, :]
    return message.sum(axis=1)


# ---------------------------------------------------------------------------------------------
# Library-layout models: forward
# ---------------------------------------------------------------------------------------------


def _check_cell(cell: Mapping, name: str, E: int) -> int:
    if not isinstance(cell, Mapping) or not {"W", "U", "b"} <= set(cell):
        raise TypeError(f"`{name}` must be a dict with keys 'W', 'U', 'b'.")
    W, U, b = (np.shape(cell[k]) for k in ("W", "U", "b"))
    if len(U) != 2 or U[1] != 4 * U[0]:
        raise ValueError(f"`{name}['U']` must have shape (H, 4*H); got {U}.")
    H = U[0]
    if W != (E, 4 * H):
        raise ValueError(f"`{name}['W']` must have shape (E, 4*H) = ({E}, {4 * H}); got {W}.")
    if b != (4 * H,):
        raise ValueError(f"`{name}['b']` must have shape (4*H,) = ({4 * H},); got {b}.")
    return H


def _check_x_mask(x, mask):
    x = _f64(x, "x")
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"`x` must have shape (T, E) with T >= 1; got {x.shape}.")
    if mask is None:
        mask = np.ones(x.shape[0], dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.shape != (x.shape[0],):
            raise ValueError(f"`mask` must have shape (T,) = ({x.shape[0]},); got {mask.shape}.")
        if mask.dtype != bool:
            raise TypeError(f"`mask` must be boolean; got dtype {mask.dtype}.")
    return x, mask


def _check_target(target, C: int) -> int:
    if not isinstance(target, (int, np.integer)) or isinstance(target, bool):
        raise TypeError(f"`target` must be an int; got {type(target).__name__}.")
    if not 0 <= target < C:
        raise ValueError(f"`target` must be in [0, C) = [0, {C}); got {target}.")
    return int(target)


def lstm_states(cell: Mapping, x, mask=None) -> dict:
    """Forward pass of the standard LSTM (eqs 11.1-11.6), one step at a time.

    Args:
        cell: {"W": (E, 4H), "U": (H, 4H), "b": (4H,)}, gates stacked i, z, f, o.
        x: inputs, shape (T, E).
        mask: boolean (T,); a False step leaves (y, c) unchanged. None: all True.

    Returns:
        dict with "pre" (T, 4H) gate pre-activations, "i", "z", "f", "o" (T, H),
        "y_prev", "c_prev" (T, H) (state before step t), "y", "c" (T, H) (state after
        step t), "y_final", "c_final" (H,), "mask" (T,). Masked rows of pre/i/z/f/o are 0.
    """
    x, mask = _check_x_mask(x, mask)
    T, E = x.shape
    H = _check_cell(cell, "cell", E)
    W, U, b = (_f64(cell[k], f"cell['{k}']") for k in ("W", "U", "b"))
    out = {k: np.zeros((T, H)) for k in ("i", "z", "f", "o", "y_prev", "c_prev", "y", "c")}
    out["pre"] = np.zeros((T, 4 * H))
    y, c = np.zeros(H), np.zeros(H)  # y_0 = 0, c_0 = 0
    for t in range(T):
        out["y_prev"][t], out["c_prev"][t] = y, c
        if mask[t]:
            pre = x[t] @ W + y @ U + b
            i = _sigmoid(pre[0:H])               # (11.2)
            z = np.tanh(pre[H:2 * H])            # (11.1)
            f = _sigmoid(pre[2 * H:3 * H])       # (11.3)
            o = _sigmoid(pre[3 * H:4 * H])       # (11.5)
            c = f * c + i * z                    # (11.4)
            y = o * np.tanh(c)                   # (11.6)
            out["pre"][t] = pre
            out["i"][t], out["z"][t], out["f"][t], out["o"][t] = i, z, f, o
        out["y"][t], out["c"][t] = y, c
    out["y_final"], out["c_final"], out["mask"] = y, c, mask
    return out


def _check_lstm_params(params: Mapping, E: int):
    if not isinstance(params, Mapping) or "cell" not in params or "out" not in params:
        raise TypeError("`params` must be a dict with keys 'cell' and 'out'.")
    H = _check_cell(params["cell"], "params['cell']", E)
    V = np.shape(params["out"]["W"])
    if len(V) != 2 or V[0] != H:
        raise ValueError(f"`params['out']['W']` must have shape (H, C) with H = {H}; got {V}.")
    return H, V[1]


def lstm_forward(params: Mapping, x, mask=None) -> np.ndarray:
    """Scores s = y_T @ V of the unidirectional LSTM. x (T, E) -> (C,)."""
    x, mask = _check_x_mask(x, mask)
    _check_lstm_params(params, x.shape[1])
    st = lstm_states(params["cell"], x, mask)
    return st["y_final"] @ _f64(params["out"]["W"], "params['out']['W']")


def _check_bilstm_params(params: Mapping, E: int):
    if not isinstance(params, Mapping) or not {"left", "right", "out"} <= set(params):
        raise TypeError("`params` must be a dict with keys 'left', 'right', 'out'.")
    H = _check_cell(params["left"], "params['left']", E)
    H_r = _check_cell(params["right"], "params['right']", E)
    if H_r != H:
        raise ValueError(f"`params['right']` must have H = {H} like 'left'; got H = {H_r}.")
    VL, VR = np.shape(params["out"]["W_left"]), np.shape(params["out"]["W_right"])
    if len(VL) != 2 or VL[0] != H:
        raise ValueError(f"`params['out']['W_left']` must have shape (H, C), H = {H}; got {VL}.")
    if VR != VL:
        raise ValueError(f"`params['out']['W_right']` must have shape {VL}; got {VR}.")
    return H, VL[1]


def _reverse_valid(x, mask):
    """The right direction's input: x_L..x_1 then the padded steps (mask must be a prefix)."""
    L = int(mask.sum())
    if not mask[:L].all():
        raise ValueError("`mask` must be a valid prefix (True...True False...False) for the BiLSTM.")
    order = np.concatenate([np.arange(L)[::-1], np.arange(L, len(mask))]).astype(int)
    return x[order], order


def bilstm_forward(params: Mapping, x, mask=None) -> np.ndarray:
    """Scores s = y_left_T @ V_left + y_right_T @ V_right of the BiLSTM. x (T, E) -> (C,)."""
    x, mask = _check_x_mask(x, mask)
    _check_bilstm_params(params, x.shape[1])
    x_rev, _ = _reverse_valid(x, mask)
    yl = lstm_states(params["left"], x, mask)["y_final"]
    yr = lstm_states(params["right"], x_rev, mask)["y_final"]
    return yl @ _f64(params["out"]["W_left"], "W_left") + yr @ _f64(params["out"]["W_right"], "W_right")


# ---------------------------------------------------------------------------------------------
# Library-layout models: LRP
# ---------------------------------------------------------------------------------------------


def preset_rules(name: str, eps: float = 0.0, share: bool = False) -> dict:
    """Rule set of a preset: the same eps and share for linear, gate and accumulation."""
    kind = _gate_kind(name)
    eps = _check_eps(eps)
    return {"linear": (eps, bool(share)), "gate": (kind, eps, bool(share)),
            "accumulate": (eps, bool(share))}


def _lstm_lrp_backward(cell: Mapping, x, st: dict, R_y_final, rules: dict) -> dict:
    """LRP backward through one LSTM direction, from the relevance of its final output."""
    T, E = x.shape
    H = R_y_final.shape[0]
    W, U, b = (_f64(cell[k], k) for k in ("W", "U", "b"))
    lin_eps, lin_share = rules["linear"]
    kind, g_eps, g_share = rules["gate"]
    acc_eps, acc_share = rules["accumulate"]
    R_x, R_y, R_c = np.zeros((T, E)), np.zeros((T, H)), np.zeros((T, H))
    R_bias = R_stab = 0.0
    R_y_next, R_c_next = np.array(R_y_final, dtype=np.float64), np.zeros(H)
    for t in reversed(range(T)):
        R_y[t] = R_y_next          # all uses of y_t (output layer or step t+1) are summed
        if not st["mask"][t]:      # padded step: the state is copied, relevance passes back
            R_c[t] = R_c_next
            continue
        pre = st["pre"][t]
        z_i, z_z, z_f, z_o = pre[0:H], pre[H:2 * H], pre[2 * H:3 * H], pre[3 * H:4 * H]
        # y_t = o * tanh(c_t): gate z_o, signal c_t
        R_zo, R_c_from_y, ab1 = _gated_parts(kind, z_o, st["c"][t], R_y[t], g_eps, g_share)
        R_c[t] = R_c_next + R_c_from_y
        # c_t = f * c_prev + i * z (accumulation, order (p_f, p_in))
        p_f = st["f"][t] * st["c_prev"][t]
        p_in = st["i"][t] * st["z"][t]
        (R_pf, R_pin), ab2 = _accumulate_parts([p_f, p_in], R_c[t], acc_eps, acc_share)
        R_zf, R_cprev, ab3 = _gated_parts(kind, z_f, st["c_prev"][t], R_pf, g_eps, g_share)
        R_zi, R_zz, ab4 = _gated_parts(kind, z_i, z_z, R_pin, g_eps, g_share)
        R_pre = np.concatenate([R_zi, R_zz, R_zf, R_zo])
        (R_xt, R_yprev), rb, rs = linear_eps([x[t], st["y_prev"][t]], [W, U], b, R_pre,
                                             lin_eps, lin_share, with_absorbed=True)
        R_x[t] = R_xt
        R_bias += rb.sum()
        R_stab += rs.sum() + ab1.sum() + ab2.sum() + ab3.sum() + ab4.sum()
        R_y_next, R_c_next = R_yprev, R_cprev
    return {"R_x": R_x, "R_y0": R_y_next, "R_c0": R_c_next, "R_y": R_y, "R_c": R_c,
            "R_bias": float(R_bias), "R_stab": float(R_stab)}


def _resolve_rules(gate, eps, share, rules):
    if rules is None:
        return preset_rules(gate, eps, share)
    if not isinstance(rules, Mapping) or set(rules) != {"linear", "gate", "accumulate"}:
        raise TypeError("`rules` must be a dict with keys 'linear', 'gate', 'accumulate'.")
    (le, ls), (gk, ge, gs), (ae, as_) = rules["linear"], rules["gate"], rules["accumulate"]
    return {"linear": (_check_eps(le), bool(ls)),
            "gate": (_gate_kind(gk), _check_eps(ge), bool(gs)),
            "accumulate": (_check_eps(ae), bool(as_))}


def lstm_lrp(params: Mapping, x, target: int, gate: str = "all", eps: float = 0.0,
             share: bool = False, mask=None, rules=None) -> dict:
    """LRP for the unidirectional LSTM with output s = y_T @ V.

    Args:
        params: {"cell": {"W": (E, 4H), "U": (H, 4H), "b": (4H,)}, "out": {"W": (H, C)}}.
        x: inputs, shape (T, E).
        target: class whose score s[target] is explained.
        gate: product rule "all" | "prop" | "abs" | "half" (or "lrp-..." preset name).
        eps: stabiliser of every rule. share: the reference's bias_factor = 1.
        mask: boolean (T,) or None. rules: optional per-computation override (module doc).

    Returns:
        dict "R_x" (T, E), "R_y0" (H,), "R_c0" (H,), "R_y" (T, H), "R_c" (T, H),
        "R_bias" float, "R_stab" float, "scores" (C,).
    """
    x, mask = _check_x_mask(x, mask)
    _, C = _check_lstm_params(params, x.shape[1])
    target = _check_target(target, C)
    rules = _resolve_rules(gate, eps, share, rules)
    st = lstm_states(params["cell"], x, mask)
    V = _f64(params["out"]["W"], "params['out']['W']")
    scores = st["y_final"] @ V
    R_s = np.zeros(C)
    R_s[target] = scores[target]
    (R_yT,), rb, rs = linear_eps([st["y_final"]], [V], None, R_s, *rules["linear"],
                                 with_absorbed=True)
    out = _lstm_lrp_backward(params["cell"], x, st, R_yT, rules)
    out["R_bias"] += float(rb.sum())
    out["R_stab"] += float(rs.sum())
    out["scores"] = scores
    return out


def bilstm_lrp(params: Mapping, x, target: int, gate: str = "all", eps: float = 0.0,
               share: bool = False, mask=None, rules=None) -> dict:
    """LRP for the BiLSTM of the reference (left reads x_1..x_T, right reads x_L..x_1).

    Args:
        params: {"left": cell, "right": cell, "out": {"W_left": (H, C), "W_right": (H, C)}}.
        x: inputs, shape (T, E).
        target, gate, eps, share, rules: as in ``lstm_lrp``.
        mask: boolean (T,) valid-prefix mask or None.

    Returns:
        dict "R_x", "R_x_left", "R_x_right" (T, E) at original positions; "R_y0", "R_c0"
        ({"left", "right"} -> (H,)); "R_y", "R_c" ({"left", "right"} -> (T, H), right in its
        processing order); "R_bias", "R_stab" floats; "scores" (C,).
    """
    x, mask = _check_x_mask(x, mask)
    _, C = _check_bilstm_params(params, x.shape[1])
    target = _check_target(target, C)
    rules = _resolve_rules(gate, eps, share, rules)
    x_rev, order = _reverse_valid(x, mask)
    st_l = lstm_states(params["left"], x, mask)
    st_r = lstm_states(params["right"], x_rev, mask)
    VL, VR = _f64(params["out"]["W_left"], "W_left"), _f64(params["out"]["W_right"], "W_right")
    scores = st_l["y_final"] @ VL + st_r["y_final"] @ VR
    R_s = np.zeros(C)
    R_s[target] = scores[target]
    # one linear mapping with two inputs: both directions share the denominator s, D = 2H
    (R_yl, R_yr), rb, rs = linear_eps([st_l["y_final"], st_r["y_final"]], [VL, VR], None, R_s,
                                      *rules["linear"], with_absorbed=True)
    left = _lstm_lrp_backward(params["left"], x, st_l, R_yl, rules)
    right = _lstm_lrp_backward(params["right"], x_rev, st_r, R_yr, rules)
    R_x_right = np.zeros_like(x)
    for k in range(x.shape[0]):
        R_x_right[order[k]] += right["R_x"][k]   # processing step k read x[order[k]]
    both = {"left": left, "right": right}
    return {
        "R_x": left["R_x"] + R_x_right, "R_x_left": left["R_x"], "R_x_right": R_x_right,
        "R_y0": {d: v["R_y0"] for d, v in both.items()},
        "R_c0": {d: v["R_c0"] for d, v in both.items()},
        "R_y": {d: v["R_y"] for d, v in both.items()},
        "R_c": {d: v["R_c"] for d, v in both.items()},
        "R_bias": left["R_bias"] + right["R_bias"] + float(rb.sum()),
        "R_stab": left["R_stab"] + right["R_stab"] + float(rs.sum()),
        "scores": scores,
    }


# ---------------------------------------------------------------------------------------------
# Gradients by hand-written backpropagation through time
# ---------------------------------------------------------------------------------------------


def _lstm_backprop(cell: Mapping, x, st: dict, dy_final) -> np.ndarray:
    """d(dy_final . y_T)/dx by BPTT through eqs 11.1-11.6; returns (T, E)."""
    T, E = x.shape
    H = dy_final.shape[0]
    W, U = _f64(cell["W"], "W"), _f64(cell["U"], "U")
    dx = np.zeros((T, E))
    dy, dc = np.array(dy_final, dtype=np.float64), np.zeros(H)
    for t in reversed(range(T)):
        if not st["mask"][t]:     # copied state: gradients pass through unchanged
            continue
        i, z, f, o = st["i"][t], st["z"][t], st["f"][t], st["o"][t]
        tc = np.tanh(st["c"][t])
        do = dy * tc
        dc_total = dc + dy * o * (1.0 - tc ** 2)
        df = dc_total * st["c_prev"][t]
        di = dc_total * z
        dz = dc_total * i
        dpre = np.concatenate([di * i * (1.0 - i), dz * (1.0 - z ** 2),
                               df * f * (1.0 - f), do * o * (1.0 - o)])
        dx[t] = W @ dpre
        dy = U @ dpre
        dc = dc_total * f
    return dx


def lstm_gradient(params: Mapping, x, target: int, mask=None) -> np.ndarray:
    """d s[target] / d x for the unidirectional LSTM. x (T, E) -> (T, E)."""
    x, mask = _check_x_mask(x, mask)
    _, C = _check_lstm_params(params, x.shape[1])
    target = _check_target(target, C)
    st = lstm_states(params["cell"], x, mask)
    V = _f64(params["out"]["W"], "params['out']['W']")
    return _lstm_backprop(params["cell"], x, st, V[:, target].copy())


def bilstm_gradient(params: Mapping, x, target: int, mask=None) -> np.ndarray:
    """d s[target] / d x for the BiLSTM. x (T, E) -> (T, E)."""
    x, mask = _check_x_mask(x, mask)
    _, C = _check_bilstm_params(params, x.shape[1])
    target = _check_target(target, C)
    x_rev, order = _reverse_valid(x, mask)
    st_l = lstm_states(params["left"], x, mask)
    st_r = lstm_states(params["right"], x_rev, mask)
    VL, VR = _f64(params["out"]["W_left"], "W_left"), _f64(params["out"]["W_right"], "W_right")
    g = _lstm_backprop(params["left"], x, st_l, VL[:, target].copy())
    g_rev = _lstm_backprop(params["right"], x_rev, st_r, VR[:, target].copy())
    for k in range(x.shape[0]):
        g[order[k]] += g_rev[k]
    return g


# ---------------------------------------------------------------------------------------------
# Reference layout (Arras et al. LSTM_bidi): forward and lrp loop
# ---------------------------------------------------------------------------------------------

_REF_KEYS = ("Wxh_Left", "bxh_Left", "Whh_Left", "bhh_Left", "Wxh_Right", "bxh_Right",
             "Whh_Right", "bhh_Right", "Why_Left", "Why_Right")


def _check_ref(ref_weights: Mapping, E: int):
    missing = [k for k in _REF_KEYS if k not in ref_weights]
    if missing:
        raise ValueError(f"`ref_weights` lacks keys {missing}.")
    w = {k: np.asarray(ref_weights[k], dtype=np.float64) for k in _REF_KEYS}
    H = w["Whh_Left"].shape[1]
    C = w["Why_Left"].shape[0]
    for side in ("Left", "Right"):
        expect = {f"Wxh_{side}": (4 * H, E), f"bxh_{side}": (4 * H,), f"Whh_{side}": (4 * H, H),
                  f"bhh_{side}": (4 * H,), f"Why_{side}": (C, H)}
        for k, shape in expect.items():
            if w[k].shape != shape:
                raise ValueError(f"`ref_weights['{k}']` must have shape {shape}; got {w[k].shape}.")
    return w, H, C


def params_from_reference(ref_weights: Mapping) -> dict:
    """Reference layout -> library-layout BiLSTM params (W = Wxh.T, U = Whh.T, b = bxh + bhh).

    Gate order is i, g, f, o in both layouts (g is the chapter's cell input z).
    """
    w, _, _ = _check_ref(ref_weights, np.shape(ref_weights["Wxh_Left"])[1])
    cells = {}
    for side, name in (("Left", "left"), ("Right", "right")):
        cells[name] = {"W": w[f"Wxh_{side}"].T.copy(), "U": w[f"Whh_{side}"].T.copy(),
                       "b": w[f"bxh_{side}"] + w[f"bhh_{side}"]}
    cells["out"] = {"W_left": w["Why_Left"].T.copy(), "W_right": w["Why_Right"].T.copy()}
    return cells


def ref_bilstm_forward(ref_weights: Mapping, x) -> dict:
    """The reference's ``forward`` (rows = gates, T+1 state rows with row -1 the zero state).

    Args:
        ref_weights: reference-layout mapping (module doc). x: inputs, shape (T, E).

    Returns:
        dict "x", "x_rev", "gates_pre_Left", "gates_Left", "h_Left", "c_Left" and the same
        for Right ((T, 4H) and (T+1, H)), "y_Left", "y_Right", "s" (C,).
    """
    x = _f64(x, "x")
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"`x` must have shape (T, E) with T >= 1; got {x.shape}.")
    w, d, C = _check_ref(ref_weights, x.shape[1])
    T = x.shape[0]
    idx = np.hstack((np.arange(0, d), np.arange(2 * d, 4 * d))).astype(int)  # i, f, o
    idx_g, idx_f, idx_i, idx_o = (np.arange(d, 2 * d), np.arange(2 * d, 3 * d),
                                  np.arange(0, d), np.arange(3 * d, 4 * d))
    out = {"x": x, "x_rev": x[::-1, :].copy()}
    for side, xs in (("Left", out["x"]), ("Right", out["x_rev"])):
        h, c = np.zeros((T + 1, d)), np.zeros((T + 1, d))
        gates_pre, gates = np.zeros((T, 4 * d)), np.zeros((T, 4 * d))
        for t in range(T):
            gates_pre[t] = (np.dot(w[f"Wxh_{side}"], xs[t]) + np.dot(w[f"Whh_{side}"], h[t - 1])
                            + w[f"bxh_{side}"] + w[f"bhh_{side}"])
            gates[t, idx] = _sigmoid(gates_pre[t, idx])
            gates[t, idx_g] = np.tanh(gates_pre[t, idx_g])
            c[t] = gates[t, idx_f] * c[t - 1] + gates[t, idx_i] * gates[t, idx_g]
            h[t] = gates[t, idx_o] * np.tanh(c[t])
        out.update({f"gates_pre_{side}": gates_pre, f"gates_{side}": gates,
                    f"h_{side}": h, f"c_{side}": c})
    out["y_Left"] = np.dot(w["Why_Left"], out["h_Left"][T - 1])
    out["y_Right"] = np.dot(w["Why_Right"], out["h_Right"][T - 1])
    out["s"] = out["y_Left"] + out["y_Right"]
    return out


def ref_bilstm_lrp(ref_weights: Mapping, x, target: int, eps: float = 0.001,
                   bias_factor: float = 0.0, gate: str = "all") -> dict:
    """The reference's ``lrp`` loop on the reference layout (lrp_linear per gate).

    With gate="all" this is the reference exactly: Rc[t] += Rh[t], Rc[t-1] and Rg[t] by
    lrp_linear with identity weights over 2H units, and only gate g feeds x and h[t-1].
    Other gate rules (an extension for layout tests) apply ``gated_rule`` to each product
    and call lrp_linear for every gate block i, g, f, o.

    Args:
        ref_weights: reference-layout mapping. x: inputs, shape (T, E). target: class.
        eps: stabiliser. bias_factor: 0.0 or 1.0 (1.0 spreads bias/stabiliser shares).
        gate: product rule; the gated rule's share is bias_factor == 1.

    Returns:
        dict "R_x" (T, E), "R_x_left", "R_x_right" (T, E) at original positions,
        "R_init" float, "scores" (C,).
    """
    kind = _gate_kind(gate)
    eps = _check_eps(eps)
    if bias_factor not in (0.0, 1.0):
        raise ValueError(f"`bias_factor` must be 0.0 or 1.0; got {bias_factor}.")
    fw = ref_bilstm_forward(ref_weights, x)
    w, d, C = _check_ref(ref_weights, fw["x"].shape[1])
    target = _check_target(target, C)
    T, e = fw["x"].shape
    blocks = {"i": np.arange(0, d), "g": np.arange(d, 2 * d),
              "f": np.arange(2 * d, 3 * d), "o": np.arange(3 * d, 4 * d)}
    share = bias_factor == 1.0
    Rout_mask = np.zeros(C)
    Rout_mask[target] = 1.0
    R_x_side, R_init = {}, 0.0
    for side, xs in (("Left", fw["x"]), ("Right", fw["x_rev"])):
        h, c = fw[f"h_{side}"], fw[f"c_{side}"]
        gates_pre, gates = fw[f"gates_pre_{side}"], fw[f"gates_{side}"]
        Rx, Rh, Rc = np.zeros((T, e)), np.zeros((T + 1, d)), np.zeros((T + 1, d))
        Rh[T - 1] = lrp_linear(h[T - 1], w[f"Why_{side}"].T, np.zeros(C), fw["s"],
                               fw["s"] * Rout_mask, 2 * d, eps, bias_factor)
        for t in reversed(range(T)):
            R_q = {}
            R_q["o"], R_c_from_h = gated_rule(kind, gates_pre[t, blocks["o"]], c[t], Rh[t],
                                              eps, share)
            Rc[t] += R_c_from_h            # gate "all": Rc[t] += Rh[t]
            R_pf = lrp_linear(gates[t, blocks["f"]] * c[t - 1], np.identity(d), np.zeros(d),
                              c[t], Rc[t], 2 * d, eps, bias_factor)
            R_pin = lrp_linear(gates[t, blocks["i"]] * gates[t, blocks["g"]], np.identity(d),
                               np.zeros(d), c[t], Rc[t], 2 * d, eps, bias_factor)
            R_q["f"], Rc[t - 1] = gated_rule(kind, gates_pre[t, blocks["f"]], c[t - 1], R_pf,
                                             eps, share)
            R_q["i"], R_q["g"] = gated_rule(kind, gates_pre[t, blocks["i"]],
                                            gates_pre[t, blocks["g"]], R_pin, eps, share)
            Rh[t - 1] = 0.0
            for name, rows in blocks.items():
                bias = w[f"bxh_{side}"][rows] + w[f"bhh_{side}"][rows]
                Rx[t] += lrp_linear(xs[t], w[f"Wxh_{side}"][rows].T, bias, gates_pre[t, rows],
                                    R_q[name], d + e, eps, bias_factor)
                Rh[t - 1] += lrp_linear(h[t - 1], w[f"Whh_{side}"][rows].T, bias,
                                        gates_pre[t, rows], R_q[name], d + e, eps, bias_factor)
        R_x_side[side] = Rx
        R_init += Rh[-1].sum() + Rc[-1].sum()
    R_x_right = R_x_side["Right"][::-1, :].copy()
    return {"R_x": R_x_side["Left"] + R_x_right, "R_x_left": R_x_side["Left"],
            "R_x_right": R_x_right, "R_init": float(R_init), "scores": fw["s"]}
