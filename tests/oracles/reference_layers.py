"""Slow, obvious float64 NumPy oracle for LRP through layered recurrent models (no lrpjax).

Extends tests/reference.py (the standard LSTM cell and its rules) to GRUs, stacked uni- and
bidirectional recurrent layers, dense layers with bias and activation (also per step), and
pooling over time. Plain NumPy in float64 with explicit Python loops over steps; the elementary
rules (epsilon rule, Table 11.1 product rules, accumulation) are reference.py's own
(``linear_eps`` and its helpers ``_gated_parts``, ``_accumulate_parts``, which also return the
absorbed part, so that what stabilisers absorb is computed, not inferred). Written from
the chapter *Explaining and Interpreting LSTMs* (eqs 11.1-11.6, Table 11.1, Sec. 11.3) and the
project's conventions; deliberately unoptimised.

Model description: a list of layer dicts applied in order to x (T, E). Every layer reads a list
of PARTS and writes a list of parts; the model input is the single part [x]. A part is either a
sequence (T, D) or a vector (D,).
    {"type": "lstm" | "gru", "name": str, "bidirectional": bool, "sequences": bool,
     "reset_after": bool (gru only, default True), "params": {direction_name: cell, ...}}
        One direction (uni) or two in the order (forward, backward). Reads the concatenation of
        its sequence input parts at each step; writes one part per direction: the final state
        (H,) (sequences=False; backward: the state after reading x_0) or the per-step states
        (T, H) (sequences=True; backward at ORIGINAL positions, row t = state after reading x_t).
        Zero initial states. lstm cell: {"W": (D, 4H), "U": (H, 4H), "b": (4H,)}, gates i, z, f, o
        (exactly reference.py's cell). gru cell: {"W": (D, 3H), "U": (H, 3H), "b": (3H,)} plus
        "b_hn" (H,) when reset_after (and only then), gates r, z, n (PyTorch's order); see
        ``_gru_run`` for the equations and ``_gru_lrp`` for how they split into linear mappings
        (inputs sharing one denominator: (x, h) -> (a_r, a_z); h -> u; x -> w, or (x, p_r) -> a_n
        when reset_after=False), gated interactions (sigmoid(a_r) * u | h; (1 - sigmoid(a_z)) *
        tanh(a_n) and sigmoid(a_z) * h, the gate's numerator in prop/abs being a_z in both) and
        accumulations (a_n = w + p_r; h' = p_new + p_old).
    {"type": "dense", "name": str, "activation": "identity" | "relu" | "tanh" | "sigmoid",
     "params": {"W": [W_0 (D_0, M), ..., one per input part], "b": (M,) or None}}
        z = sum_k part_k @ W_k + b (one linear mapping, one denominator), then the activation;
        per step on sequence parts. Writes ONE part, (M,) or (T, M).
    {"type": "pool", "name": str, "mode": "mean" | "max" | "sum"}
        Each sequence part (T, D_k) pooled over the T steps separately -> (D_k,).
The model output is the concatenation of the last layer's parts: (C,) or (T, C).

Rules: reference.py's rules dict {"linear": (eps, share), "gate": (kind, eps, share),
"accumulate": (eps, share)} (``preset_rules`` builds one); ``rules_by_layer`` = {layer_name:
rules dict} overrides it for single layers. Linear mappings (gate mappings, cell mappings, dense
layers) use "linear", products "gate", accumulations and sum/mean pooling "accumulate"; element-wise
activations pass relevance unchanged. Sum/mean pooling is the accumulation z_d = sum_t w_t x_td
(w_t = 1 resp. 1/T) with terms in step order, so share=True spreads unit d's absorbed part over
its T terms; max pooling gives all of R_d to the FIRST step attaining the maximum.

Functions:
    preset_rules(name, eps=0.0, share=False) -> rules dict       (reference.py's)
    random_model(rng, cell, bidirectional, n_layers, head, E=4, H=3, C=3) -> model
        cell "lstm" | "gru" | "gru-v1" (reset_after=False); head one of HEADS.
    forward(model, x) -> (output, cache)
        output (C,) or (T, C); cache = {"inputs": {name: parts the layer read},
        "outputs": {name: parts it wrote}, "states": {name: {direction: per-step dict, processing
        order}}, "output": output}.
    seed_for_target(output, target) -> onehot(target) * output, same shape as output
        ((T, C) outputs: the same class at every step).
    seed_for_weights(output, w) -> w * output (w of the output's shape).
    lrp(model, x, seed, rules, rules_by_layer=None) -> dict (keys below)
    gradient(model, x, seed) -> d (seed . output) / d x, (T, E), hand-written backward pass
    jax_forward(model, x) -> output as a jax.Array (plain jnp ops, independent of ``forward``)

lrp result:
    "R_x" (T, E) relevance at the model input; "output" the model output; "R_seed" float =
    sum(seed); "R_bias" float (absorbed by every bias); "R_stab" float (absorbed by every
    stabiliser and zero denominator); "R_init" float (relevance at all initial states); and
    "layers": {layer_name: {"R_in": relevance at the layer's input (its input parts
    concatenated on the last axis: (T, D) or (D,)), "R_out": relevance at its output (its parts
    concatenated likewise), "R_bias", "R_stab", "R_init" floats of that layer}}. A recurrent
    layer's entry also holds "directions": {direction_name: d} with, for lstm, "R_y0", "R_c0"
    (H,) and "R_y", "R_c" (T, H); for gru "R_h0" (H,) and "R_h" (T, H); for both "R_pre" (T, 4H)
    resp. (T, 3H): the relevance at the pre-activations (i, z, f, o) resp. (a_r, a_z, a_n) of the
    step that read x_t, and "R_x" (T, D) this direction's share of the layer's R_in. Every (T, .)
    array of a direction is at ORIGINAL positions: row t belongs to the step that read x_t.
    Relevance at a state: R_h[t] (R_y[t], R_c[t]) is the total relevance arriving at the state the
    direction holds after it read x_t, summed over everything that reads that state: the
    direction's next step (gate mapping, u resp. p_r, and p_old for the GRU; the gate mapping for
    y; the next step's product f*c and this step's y = o*tanh(c) for the LSTM's c; the two
    are the same for LRP-all, where c gets all of R_y) and the layer output (every step with
    sequences=True, the final step only with sequences=False). R_h0 etc. is the same for the zero
    state before the first step. Identity (always, up to rounding):
        R_x.sum() + R_init + R_bias + R_stab == R_seed,
    and per layer R_out.sum() == R_in.sum() + R_init + R_bias + R_stab of that layer.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

import reference as ref  # tests/ is on sys.path

preset_rules = ref.preset_rules
RECURRENT = ("lstm", "gru")
LAYER_TYPES = RECURRENT + ("dense", "pool")
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")
POOL_MODES = ("mean", "max", "sum")
HEADS = ("dense", "mlp", "pool-mean", "pool-max", "pool-sum", "per-step")


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _sigmoid(u):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-u))


def _act(name: str, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return _sigmoid(z)
    return np.array(z, dtype=np.float64)


def _act_grad(name: str, z):
    """Derivative of the activation at z (relu: 0 at z <= 0)."""
    if name == "relu":
        return np.where(z > 0.0, 1.0, 0.0)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = _sigmoid(z)
        return s * (1.0 - s)
    return np.ones_like(z)


def _concat(parts):
    return np.concatenate(parts, axis=-1)


def _split(a, widths):
    out, start = [], 0
    for w in widths:
        out.append(a[..., start:start + w].copy())
        start += w
    return out


# ---------------------------------------------------------------------------------------------
# Validation (once, at the start of every public function)
# ---------------------------------------------------------------------------------------------


def _arr(a, where: str, shape: tuple) -> np.ndarray:
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{where}` must be a numeric array; got {type(a).__name__}.") from err
    if a.shape != shape:
        raise ValueError(f"`{where}` must have shape {shape}; got {a.shape}.")
    return a


def _check_x(x) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`x` must be a numeric array; got {type(x).__name__}.") from err
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"`x` must have shape (T, E) with T, E >= 1; got {x.shape}.")
    return x


def _check_cell(kind: str, cell, where: str, D: int, reset_after: bool) -> dict:
    if not isinstance(cell, Mapping) or "U" not in cell:
        raise TypeError(f"`{where}` must be a dict with keys 'W', 'U', 'b'.")
    n = 4 if kind == "lstm" else 3
    U = np.shape(cell["U"])
    if len(U) != 2 or U[0] < 1 or U[1] != n * U[0]:
        raise ValueError(f"`{where}['U']` must have shape (H, {n}*H); got {U}.")
    H = U[0]
    out = {"W": _arr(cell.get("W"), f"{where}['W']", (D, n * H)),
           "U": _arr(cell["U"], f"{where}['U']", (H, n * H)),
           "b": _arr(cell.get("b"), f"{where}['b']", (n * H,))}
    if kind == "gru" and reset_after:
        out["b_hn"] = _arr(cell.get("b_hn"), f"{where}['b_hn']", (H,))
    elif "b_hn" in cell:     # it would be silently ignored
        raise ValueError(f"`{where}['b_hn']` belongs to gru layers with reset_after=True only.")
    return out


def _check_recurrent(layer, where: str, widths, seq: bool) -> tuple[dict, list]:
    if not seq:
        raise ValueError(f"{where} reads vector parts; a recurrent layer needs sequence parts "
                         f"(T, D).")
    flags = {"bidirectional": layer.get("bidirectional"), "sequences": layer.get("sequences")}
    if layer["type"] == "gru":
        flags["reset_after"] = layer.get("reset_after", True)
    elif "reset_after" in layer:
        raise ValueError(f"{where}: `reset_after` applies to gru layers only.")
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{where}: `{key}` must be a bool; got {value!r}.")
    params = layer.get("params")
    n_dir = 2 if flags["bidirectional"] else 1
    if not isinstance(params, Mapping) or len(params) != n_dir:
        got = list(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"{where}: `params` must be a dict of {n_dir} direction(s) "
                         f"(forward{', backward' if n_dir == 2 else ''}); got {got}.")
    D = sum(widths)
    cells = {d: _check_cell(layer["type"], c, f"{where}['params']['{d}']", D,
                            flags.get("reset_after", False)) for d, c in params.items()}
    spec = dict(layer, **flags, params=cells)
    return spec, [c["U"].shape[0] for c in cells.values()]


def _check_dense(layer, where: str, widths) -> tuple[dict, list]:
    act = layer.get("activation", "identity")
    if act not in ACTIVATIONS:
        raise ValueError(f"{where}: `activation` must be one of {ACTIVATIONS}; got {act!r}.")
    params = layer.get("params")
    if not isinstance(params, Mapping) or not isinstance(params.get("W"), (list, tuple)):
        raise TypeError(f"{where}: `params` must be a dict with 'W' a list of (D_k, M) arrays, "
                        f"one per input part, and 'b'.")
    if len(params["W"]) != len(widths):
        raise ValueError(f"{where}: `params['W']` must hold one matrix per input part "
                         f"({len(widths)}); got {len(params['W'])}.")
    M = np.shape(params["W"][0])[-1] if np.ndim(params["W"][0]) == 2 else -1
    if M < 1:
        raise ValueError(f"{where}: `params['W'][0]` must have shape (D_0, M); got "
                         f"{np.shape(params['W'][0])}.")
    W = [_arr(w, f"{where}['params']['W'][{k}]", (widths[k], M))
         for k, w in enumerate(params["W"])]
    b = params.get("b")
    b = None if b is None else _arr(b, f"{where}['params']['b']", (M,))
    return dict(layer, activation=act, params={"W": W, "b": b}), [M]


def _check_pool(layer, where: str, widths, seq: bool) -> tuple[dict, list]:
    if layer.get("mode") not in POOL_MODES:
        raise ValueError(f"{where}: `mode` must be one of {POOL_MODES}; got "
                         f"{layer.get('mode')!r}.")
    if not seq:
        raise ValueError(f"{where} reads vector parts; pooling needs sequence parts (T, D).")
    return dict(layer), list(widths)


def _check_model(model, E: int) -> list:
    """Validated copies of the layers (float64 params) with "in_widths", "in_seq", "out_seq"."""
    if not isinstance(model, (list, tuple)) or len(model) == 0:
        raise TypeError("`model` must be a non-empty list of layer dicts.")
    widths, seq, names, specs = [E], True, set(), []
    for index, layer in enumerate(model):
        if not isinstance(layer, Mapping):
            raise TypeError(f"`model[{index}]` must be a layer dict; got {type(layer).__name__}.")
        name = layer.get("name")
        where = f"`model[{index}]` ({name!r})"
        if not isinstance(name, str) or name in names:
            raise ValueError(f"{where}: `name` must be a string unique in the model.")
        names.add(name)
        kind = layer.get("type")
        if kind not in LAYER_TYPES:
            raise ValueError(f"{where}: `type` must be one of {LAYER_TYPES}; got {kind!r}.")
        if kind in RECURRENT:
            spec, out_widths = _check_recurrent(layer, where, widths, seq)
            out_seq = spec["sequences"]
        elif kind == "dense":
            (spec, out_widths), out_seq = _check_dense(layer, where, widths), seq
        else:
            (spec, out_widths), out_seq = _check_pool(layer, where, widths, seq), False
        spec.update(in_widths=list(widths), in_seq=seq, out_seq=out_seq)
        specs.append(spec)
        widths, seq = out_widths, out_seq
    return specs


def _check_rules(rules, where: str) -> dict:
    if not isinstance(rules, Mapping) or set(rules) != {"linear", "gate", "accumulate"}:
        raise TypeError(f"`{where}` must be a dict with keys 'linear', 'gate', 'accumulate'.")
    try:
        (le, ls), (gk, ge, gs), (ae, as_) = rules["linear"], rules["gate"], rules["accumulate"]
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{where}` must map 'linear' to (eps, share), 'gate' to (kind, eps, "
                        f"share), 'accumulate' to (eps, share).") from err
    return {"linear": (ref._check_eps(le), bool(ls)),
            "gate": (ref._gate_kind(gk), ref._check_eps(ge), bool(gs)),
            "accumulate": (ref._check_eps(ae), bool(as_))}


# ---------------------------------------------------------------------------------------------
# Cells, one direction, processing order
# ---------------------------------------------------------------------------------------------


def _lstm_run(cell: dict, xs) -> dict:
    """Standard LSTM (eqs 11.1-11.6) over xs (T, D) from zero states; per-step arrays (T, .)."""
    T, H = xs.shape[0], cell["U"].shape[0]
    st = {k: np.zeros((T, H)) for k in ("i", "z", "f", "o", "y_prev", "c_prev", "y", "c")}
    st["pre"] = np.zeros((T, 4 * H))
    y, c = np.zeros(H), np.zeros(H)
    for t in range(T):
        st["y_prev"][t], st["c_prev"][t] = y, c
        pre = xs[t] @ cell["W"] + y @ cell["U"] + cell["b"]
        i, z = _sigmoid(pre[:H]), np.tanh(pre[H:2 * H])
        f, o = _sigmoid(pre[2 * H:3 * H]), _sigmoid(pre[3 * H:])
        c = f * c + i * z
        y = o * np.tanh(c)
        st["pre"][t], st["i"][t], st["z"][t], st["f"][t], st["o"][t] = pre, i, z, f, o
        st["y"][t], st["c"][t] = y, c
    return st


def _gru_run(cell: dict, xs, reset_after: bool) -> dict:
    """GRU over xs (T, D) from h = 0, gates r, z, n; per-step arrays (T, .).

    reset_after=True (PyTorch nn.GRU, Keras reset_after=True):
        a_r = x W_r + h U_r + b_r, a_z = x W_z + h U_z + b_z, u = h U_n + b_hn, w = x W_n + b_n,
        p_r = sigmoid(a_r) * u, a_n = w + p_r,
        h' = (1 - sigmoid(a_z)) * tanh(a_n) + sigmoid(a_z) * h.
    reset_after=False (Keras): p_r = sigmoid(a_r) * h, a_n = x W_n + p_r U_n + b_n, h' as above.
    """
    T, H = xs.shape[0], cell["U"].shape[0]
    W, U, b = cell["W"], cell["U"], cell["b"]
    keys = ("a_r", "a_z", "a_n", "r", "zg", "n", "p_r", "u", "w", "h_prev", "h")
    st = {k: np.zeros((T, H)) for k in keys}
    h = np.zeros(H)
    for t in range(T):
        st["h_prev"][t] = h
        a_r = xs[t] @ W[:, :H] + h @ U[:, :H] + b[:H]
        a_z = xs[t] @ W[:, H:2 * H] + h @ U[:, H:2 * H] + b[H:2 * H]
        r, zg = _sigmoid(a_r), _sigmoid(a_z)
        if reset_after:
            u = h @ U[:, 2 * H:] + cell["b_hn"]
            w = xs[t] @ W[:, 2 * H:] + b[2 * H:]
            p_r = r * u
            a_n = w + p_r
            st["u"][t], st["w"][t] = u, w
        else:
            p_r = r * h
            a_n = xs[t] @ W[:, 2 * H:] + p_r @ U[:, 2 * H:] + b[2 * H:]
        n = np.tanh(a_n)
        h = (1.0 - zg) * n + zg * h
        for k, v in (("a_r", a_r), ("a_z", a_z), ("a_n", a_n), ("r", r), ("zg", zg), ("n", n),
                     ("p_r", p_r), ("h", h)):
            st[k][t] = v
    return st


class _Absorbed:
    """Running totals of the relevance absorbed by biases and by stabilisers / zero denominators."""

    def __init__(self):
        self.bias = 0.0
        self.stab = 0.0

    def linear(self, inputs, weights, b, R, rule):
        R_in, rb, rs = ref.linear_eps(inputs, weights, b, R, *rule, with_absorbed=True)
        self.bias += float(rb.sum())
        self.stab += float(rs.sum())
        return R_in

    def gated(self, rule, z_g, z_s, R_p):
        kind, eps, share = rule
        R_g, R_s, absorbed = ref._gated_parts(kind, z_g, z_s, R_p, eps, share)
        self.stab += float(absorbed.sum())
        return R_g, R_s

    def accumulate(self, terms, R_c, rule):
        R_t, absorbed = ref._accumulate_parts(terms, R_c, *rule)
        self.stab += float(absorbed.sum())
        return R_t


def _lstm_lrp(cell: dict, xs, st: dict, R_out, rules: dict, ab: _Absorbed) -> dict:
    """LRP through one LSTM direction; R_out (T, H) is the layer output's relevance per state."""
    T, H = R_out.shape
    W, U, b = cell["W"], cell["U"], cell["b"]
    res = {"R_x": np.zeros(xs.shape), "R_y": np.zeros((T, H)), "R_c": np.zeros((T, H)),
           "R_pre": np.zeros((T, 4 * H))}
    R_y_next, R_c_next = np.zeros(H), np.zeros(H)
    for t in reversed(range(T)):
        res["R_y"][t] = R_y_next + R_out[t]
        pre = st["pre"][t]
        # y = o * tanh(c): gate z_o, signal c
        R_zo, R_c_from_y = ab.gated(rules["gate"], pre[3 * H:], st["c"][t], res["R_y"][t])
        res["R_c"][t] = R_c_next + R_c_from_y
        # c = f * c_prev + i * z, terms in the order (f * c_prev, i * z)
        R_pf, R_pin = ab.accumulate([st["f"][t] * st["c_prev"][t], st["i"][t] * st["z"][t]],
                                    res["R_c"][t], rules["accumulate"])
        R_zf, R_c_next = ab.gated(rules["gate"], pre[2 * H:3 * H], st["c_prev"][t], R_pf)
        R_zi, R_zz = ab.gated(rules["gate"], pre[:H], pre[H:2 * H], R_pin)
        res["R_pre"][t] = np.concatenate([R_zi, R_zz, R_zf, R_zo])
        res["R_x"][t], R_y_next = ab.linear([xs[t], st["y_prev"][t]], [W, U], b, res["R_pre"][t],
                                            rules["linear"])
    res["R_y0"], res["R_c0"] = R_y_next, R_c_next
    return res


def _gru_lrp(cell: dict, xs, st: dict, R_out, rules: dict, ab: _Absorbed,
             reset_after: bool) -> dict:
    """LRP through one GRU direction; R_out (T, H) is the layer output's relevance per state."""
    T, H = R_out.shape
    W, U, b = cell["W"], cell["U"], cell["b"]
    res = {"R_x": np.zeros(xs.shape), "R_h": np.zeros((T, H)), "R_pre": np.zeros((T, 3 * H))}
    R_h_next = np.zeros(H)
    for t in reversed(range(T)):
        R_h = res["R_h"][t] = R_h_next + R_out[t]
        a_r, a_z, a_n, h_prev = st["a_r"][t], st["a_z"][t], st["a_n"][t], st["h_prev"][t]
        # h' = p_new + p_old, p_new = (1 - sigmoid(a_z)) * tanh(a_n), p_old = sigmoid(a_z) * h
        R_pnew, R_pold = ab.accumulate([(1.0 - st["zg"][t]) * st["n"][t], st["zg"][t] * h_prev],
                                       R_h, rules["accumulate"])
        R_az_new, R_an = ab.gated(rules["gate"], a_z, a_n, R_pnew)
        R_az_old, R_hprev = ab.gated(rules["gate"], a_z, h_prev, R_pold)
        if reset_after:
            R_w, R_pr = ab.accumulate([st["w"][t], st["p_r"][t]], R_an, rules["accumulate"])
            R_ar, R_u = ab.gated(rules["gate"], a_r, st["u"][t], R_pr)
            (R_h_u,) = ab.linear([h_prev], [U[:, 2 * H:]], cell["b_hn"], R_u, rules["linear"])
            (R_x_n,) = ab.linear([xs[t]], [W[:, 2 * H:]], b[2 * H:], R_w, rules["linear"])
            R_hprev = R_hprev + R_h_u
        else:
            R_x_n, R_pr = ab.linear([xs[t], st["p_r"][t]], [W[:, 2 * H:], U[:, 2 * H:]], b[2 * H:],
                                    R_an, rules["linear"])
            R_ar, R_h_r = ab.gated(rules["gate"], a_r, h_prev, R_pr)
            R_hprev = R_hprev + R_h_r
        R_gates = np.concatenate([R_ar, R_az_new + R_az_old])
        R_x_g, R_h_g = ab.linear([xs[t], h_prev], [W[:, :2 * H], U[:, :2 * H]], b[:2 * H],
                                 R_gates, rules["linear"])
        res["R_pre"][t] = np.concatenate([R_gates, R_an])
        res["R_x"][t] = R_x_g + R_x_n
        R_h_next = R_hprev + R_h_g
    res["R_h0"] = R_h_next
    return res


# ---------------------------------------------------------------------------------------------
# Layers: forward
# ---------------------------------------------------------------------------------------------


def _run_direction(spec: dict, cell: dict, xs) -> dict:
    if spec["type"] == "lstm":
        return _lstm_run(cell, xs)
    return _gru_run(cell, xs, spec["reset_after"])


def _state_key(spec: dict) -> str:
    return "y" if spec["type"] == "lstm" else "h"


def _recurrent_forward(spec: dict, parts) -> tuple[list, dict]:
    x = _concat(parts)
    states, out = {}, []
    for k, (direction, cell) in enumerate(spec["params"].items()):
        xs = x if k == 0 else x[::-1].copy()        # the backward direction reads x_{T-1}..x_0
        st = states[direction] = _run_direction(spec, cell, xs)
        seq = st[_state_key(spec)]
        if spec["sequences"]:
            out.append(seq.copy() if k == 0 else seq[::-1].copy())   # original positions
        else:
            out.append(seq[-1].copy())
    return out, states


def _dense_forward(spec: dict, parts) -> tuple[list, dict]:
    W, b = spec["params"]["W"], spec["params"]["b"]
    z = sum(p @ w for p, w in zip(parts, W))
    if b is not None:
        z = z + b
    return [_act(spec["activation"], z)], {"z": z}


def _pool_forward(spec: dict, parts) -> tuple[list, dict]:
    out, first_max = [], []
    for p in parts:
        T = p.shape[0]
        if spec["mode"] == "max":
            arg = np.argmax(p, axis=0)          # argmax returns the FIRST maximum
            out.append(p[arg, np.arange(p.shape[1])])
            first_max.append(arg)
        else:
            total = np.zeros(p.shape[1])
            for t in range(T):
                total = total + p[t]
            out.append(total / T if spec["mode"] == "mean" else total)
    return out, {"argmax": first_max}


_FORWARD = {"lstm": _recurrent_forward, "gru": _recurrent_forward, "dense": _dense_forward,
            "pool": _pool_forward}


def _forward(specs: list, x) -> tuple[np.ndarray, dict]:
    parts = [x]
    cache = {"inputs": {}, "outputs": {}, "states": {}}
    for spec in specs:
        cache["inputs"][spec["name"]] = parts
        parts, cache["states"][spec["name"]] = _FORWARD[spec["type"]](spec, parts)
        cache["outputs"][spec["name"]] = parts
    cache["output"] = _concat(parts)
    return cache["output"], cache


def forward(model, x) -> tuple[np.ndarray, dict]:
    """Model output and every intermediate quantity.

    Args:
        model: list of layer dicts (module doc).
        x: inputs, shape (T, E).

    Returns:
        (output (C,) or (T, C), cache) with cache "inputs" / "outputs" {name: list of parts},
        "states" {name: per-layer dict; recurrent: {direction: per-step arrays in processing
        order}}, "output".
    """
    x = _check_x(x)
    return _forward(_check_model(model, x.shape[1]), x)


# ---------------------------------------------------------------------------------------------
# Layers: LRP
# ---------------------------------------------------------------------------------------------


def _recurrent_lrp(spec, parts, states, R_parts, rules, ab):
    x = _concat(parts)
    T = x.shape[0]
    R_x, directions, R_init = np.zeros(x.shape), {}, 0.0
    for k, (direction, cell) in enumerate(spec["params"].items()):
        xs = x if k == 0 else x[::-1].copy()
        H = cell["U"].shape[0]
        if spec["sequences"]:
            R_out = R_parts[k] if k == 0 else R_parts[k][::-1]
        else:                                 # only the final state is read by what follows
            R_out = np.zeros((T, H))
            R_out[-1] = R_parts[k]
        if spec["type"] == "lstm":
            res = _lstm_lrp(cell, xs, states[direction], R_out, rules, ab)
            R_init += float(res["R_y0"].sum() + res["R_c0"].sum())
        else:
            res = _gru_lrp(cell, xs, states[direction], R_out, rules, ab, spec["reset_after"])
            R_init += float(res["R_h0"].sum())
        if k == 1:                            # back to original positions
            res.update({key: v[::-1].copy() for key, v in res.items() if np.ndim(v) == 2})
        R_x = R_x + res["R_x"]
        directions[direction] = res
    return _split(R_x, spec["in_widths"]), {"directions": directions, "R_init": R_init}


def _dense_lrp(spec, parts, cache, R_parts, rules, ab):
    (R_z,) = R_parts                          # the activation passes relevance unchanged
    W, b = spec["params"]["W"], spec["params"]["b"]
    if not spec["in_seq"]:
        return ab.linear(parts, W, b, R_z, rules["linear"]), {}
    R_in = [np.zeros(p.shape) for p in parts]
    for t in range(R_z.shape[0]):             # a per-step head: one mapping per step
        for k, R in enumerate(ab.linear([p[t] for p in parts], W, b, R_z[t], rules["linear"])):
            R_in[k][t] = R
    return R_in, {}


def _pool_lrp(spec, parts, cache, R_parts, rules, ab):
    R_in = []
    for k, (p, R) in enumerate(zip(parts, R_parts)):
        T = p.shape[0]
        R_p = np.zeros(p.shape)
        if spec["mode"] == "max":             # winner takes all: the first step at the maximum
            for d, t in enumerate(cache["argmax"][k]):
                R_p[t, d] = R[d]
        else:
            weight = 1.0 / T if spec["mode"] == "mean" else 1.0
            terms = [weight * p[t] for t in range(T)]
            for t, R_t in enumerate(ab.accumulate(terms, R, rules["accumulate"])):
                R_p[t] = R_t
        R_in.append(R_p)
    return R_in, {}


_LRP = {"lstm": _recurrent_lrp, "gru": _recurrent_lrp, "dense": _dense_lrp, "pool": _pool_lrp}


def seed_for_target(output, target: int) -> np.ndarray:
    """onehot(target) * output: the target class's score, at every step for (T, C) outputs."""
    output = np.asarray(output, dtype=np.float64)
    C = output.shape[-1]
    if not isinstance(target, (int, np.integer)) or isinstance(target, bool):
        raise TypeError(f"`target` must be an int; got {type(target).__name__}.")
    if not 0 <= target < C:
        raise ValueError(f"`target` must be in [0, C) = [0, {C}); got {target}.")
    seed = np.zeros(output.shape)
    seed[..., target] = output[..., target]
    return seed


def seed_for_weights(output, w) -> np.ndarray:
    """w * output for a linear combination w of the outputs (same shape as the output)."""
    output = np.asarray(output, dtype=np.float64)
    return _arr(w, "w", output.shape) * output


def _layer_rules(specs, rules, rules_by_layer) -> dict:
    base = _check_rules(rules, "rules")
    by_layer = {} if rules_by_layer is None else rules_by_layer
    if not isinstance(by_layer, Mapping):
        raise TypeError("`rules_by_layer` must be a dict {layer_name: rules dict} or None.")
    names = [s["name"] for s in specs]
    unknown = [n for n in by_layer if n not in names]
    if unknown:
        raise ValueError(f"`rules_by_layer` names layers {unknown} not in the model {names}.")
    return {n: (_check_rules(by_layer[n], f"rules_by_layer[{n!r}]") if n in by_layer else base)
            for n in names}


def lrp(model, x, seed, rules, rules_by_layer=None) -> dict:
    """LRP of (seed . output) back to x, layer by layer (keys in the module doc).

    Args:
        model: list of layer dicts (module doc).
        x: inputs, shape (T, E).
        seed: relevance at the output, the output's shape (C,) or (T, C); e.g.
            ``seed_for_target(output, c)`` or ``seed_for_weights(output, w)``.
        rules: rules dict {"linear": (eps, share), "gate": (kind, eps, share),
            "accumulate": (eps, share)}, e.g. ``preset_rules("lrp-all", 0.01)``.
        rules_by_layer: optional {layer_name: rules dict} overriding ``rules`` for those layers.

    Returns:
        dict "R_x" (T, E), "R_bias", "R_stab", "R_init", "R_seed" floats, "output", "layers".
    """
    x = _check_x(x)
    specs = _check_model(model, x.shape[1])
    layer_rules = _layer_rules(specs, rules, rules_by_layer)
    output, cache = _forward(specs, x)
    seed = _arr(seed, "seed", output.shape)
    last = cache["outputs"][specs[-1]["name"]]
    R_parts = _split(seed, [p.shape[-1] for p in last])
    result = {"layers": {}, "R_bias": 0.0, "R_stab": 0.0, "R_init": 0.0}
    for spec in reversed(specs):
        name, ab = spec["name"], _Absorbed()
        parts = cache["inputs"][name]
        R_in, extra = _LRP[spec["type"]](spec, parts, cache["states"][name], R_parts,
                                         layer_rules[name], ab)
        entry = {"R_in": _concat(R_in), "R_out": _concat(R_parts), "R_bias": ab.bias,
                 "R_stab": ab.stab, "R_init": extra.get("R_init", 0.0)}
        if "directions" in extra:
            entry["directions"] = extra["directions"]
        result["layers"][name] = entry
        for key in ("R_bias", "R_stab", "R_init"):
            result[key] += entry[key]
        R_parts = R_in
    result.update(R_x=R_parts[0], output=output, R_seed=float(seed.sum()))
    return result


# ---------------------------------------------------------------------------------------------
# Gradient: hand-written backward pass
# ---------------------------------------------------------------------------------------------


def _lstm_backprop(cell: dict, xs, st: dict, g_out) -> np.ndarray:
    """d/dxs of sum_t g_out[t] . y_t through eqs 11.1-11.6; g_out (T, H) -> (T, D)."""
    T, H = g_out.shape
    dx, dy, dc = np.zeros(xs.shape), np.zeros(H), np.zeros(H)
    for t in reversed(range(T)):
        dy = dy + g_out[t]
        i, z, f, o = st["i"][t], st["z"][t], st["f"][t], st["o"][t]
        tc = np.tanh(st["c"][t])
        dc = dc + dy * o * (1.0 - tc ** 2)
        dpre = np.concatenate([dc * z * i * (1.0 - i), dc * i * (1.0 - z ** 2),
                               dc * st["c_prev"][t] * f * (1.0 - f), dy * tc * o * (1.0 - o)])
        dx[t] = cell["W"] @ dpre
        dy = cell["U"] @ dpre
        dc = dc * f
    return dx


def _gru_backprop(cell: dict, xs, st: dict, g_out, reset_after: bool) -> np.ndarray:
    """d/dxs of sum_t g_out[t] . h_t through the GRU (``_gru_run``); g_out (T, H) -> (T, D)."""
    T, H = g_out.shape
    W, U = cell["W"], cell["U"]
    dx, dh = np.zeros(xs.shape), np.zeros(H)
    for t in reversed(range(T)):
        dh = dh + g_out[t]
        r, zg, n, h_prev = st["r"][t], st["zg"][t], st["n"][t], st["h_prev"][t]
        da_n = dh * (1.0 - zg) * (1.0 - n ** 2)
        da_z = dh * (h_prev - n) * zg * (1.0 - zg)
        dh_prev = dh * zg
        if reset_after:
            da_r = da_n * st["u"][t] * r * (1.0 - r)
            du = da_n * r
            dx[t] = W @ np.concatenate([da_r, da_z, da_n])
            dh_prev = dh_prev + U @ np.concatenate([da_r, da_z, du])
        else:
            dp_r = U[:, 2 * H:] @ da_n
            da_r = dp_r * h_prev * r * (1.0 - r)
            dx[t] = W @ np.concatenate([da_r, da_z, da_n])
            dh_prev = dh_prev + dp_r * r + U[:, :2 * H] @ np.concatenate([da_r, da_z])
        dh = dh_prev
    return dx


def _recurrent_backprop(spec, parts, states, g_parts):
    x = _concat(parts)
    T, dx = x.shape[0], np.zeros(x.shape)
    for k, (direction, cell) in enumerate(spec["params"].items()):
        xs = x if k == 0 else x[::-1].copy()
        if spec["sequences"]:
            g_out = g_parts[k] if k == 0 else g_parts[k][::-1].copy()
        else:
            g_out = np.zeros((T, cell["U"].shape[0]))
            g_out[-1] = g_parts[k]
        if spec["type"] == "lstm":
            g = _lstm_backprop(cell, xs, states[direction], g_out)
        else:
            g = _gru_backprop(cell, xs, states[direction], g_out, spec["reset_after"])
        dx = dx + (g if k == 0 else g[::-1])
    return _split(dx, spec["in_widths"])


def _dense_backprop(spec, parts, cache, g_parts):
    (g,) = g_parts
    dz = g * _act_grad(spec["activation"], cache["z"])
    return [dz @ w.T for w in spec["params"]["W"]]


def _pool_backprop(spec, parts, cache, g_parts):
    out = []
    for k, (p, g) in enumerate(zip(parts, g_parts)):
        T = p.shape[0]
        d = np.zeros(p.shape)
        if spec["mode"] == "max":
            for j, t in enumerate(cache["argmax"][k]):
                d[t, j] = g[j]
        else:
            for t in range(T):
                d[t] = g / T if spec["mode"] == "mean" else g
        out.append(d)
    return out


_BACKPROP = {"lstm": _recurrent_backprop, "gru": _recurrent_backprop, "dense": _dense_backprop,
             "pool": _pool_backprop}


def gradient(model, x, seed) -> np.ndarray:
    """d (seed . output) / d x by a hand-written backward pass (explicit loops over steps).

    Args:
        model: list of layer dicts (module doc).
        x: inputs, shape (T, E).
        seed: weights of the outputs, the output's shape (C,) or (T, C).

    Returns:
        gradient, shape (T, E).
    """
    x = _check_x(x)
    specs = _check_model(model, x.shape[1])
    output, cache = _forward(specs, x)
    seed = _arr(seed, "seed", output.shape)
    g_parts = _split(seed, [p.shape[-1] for p in cache["outputs"][specs[-1]["name"]]])
    for spec in reversed(specs):
        name = spec["name"]
        g_parts = _BACKPROP[spec["type"]](spec, cache["inputs"][name], cache["states"][name],
                                          g_parts)
    return g_parts[0]


# ---------------------------------------------------------------------------------------------
# An independent plain-JAX forward (for jax.grad comparisons)
# ---------------------------------------------------------------------------------------------


def jax_forward(model, x):
    """The model's output in plain jnp ops (a Python loop over steps, no lrpjax, no NumPy path).

    Args:
        model: list of layer dicts (module doc).
        x: inputs, shape (T, E); may be a jax array (traced under jax.grad).

    Returns:
        jax.Array, the output (C,) or (T, C).
    """
    import jax.numpy as jnp  # only this function needs JAX; the oracle itself is NumPy

    specs = _check_model(model, np.shape(x)[1])
    parts = [jnp.asarray(x)]
    for spec in specs:
        if spec["type"] in RECURRENT:
            parts = _jax_recurrent(jnp, spec, jnp.concatenate(parts, axis=-1))
        elif spec["type"] == "dense":
            z = sum(p @ jnp.asarray(w) for p, w in zip(parts, spec["params"]["W"]))
            if spec["params"]["b"] is not None:     # explicit broadcast over steps
                z = z + jnp.broadcast_to(jnp.asarray(spec["params"]["b"]), z.shape)
            act = {"identity": lambda v: v, "relu": lambda v: jnp.maximum(v, 0.0),
                   "tanh": jnp.tanh, "sigmoid": lambda v: 1.0 / (1.0 + jnp.exp(-v))}
            parts = [act[spec["activation"]](z)]
        else:
            reduce = {"mean": jnp.mean, "sum": jnp.sum, "max": jnp.max}[spec["mode"]]
            parts = [reduce(p, axis=0) for p in parts]
    return jnp.concatenate(parts, axis=-1)


def _jax_recurrent(jnp, spec, x):
    sig = lambda v: 1.0 / (1.0 + jnp.exp(-v))  # noqa: E731
    out = []
    for k, cell in enumerate(spec["params"].values()):
        W, U, b = (jnp.asarray(cell[key]) for key in ("W", "U", "b"))
        H = U.shape[0]
        h, c, hs = jnp.zeros(H, dtype=x.dtype), jnp.zeros(H, dtype=x.dtype), []
        for t in (range(x.shape[0]) if k == 0 else reversed(range(x.shape[0]))):
            if spec["type"] == "lstm":
                g = x[t] @ W + h @ U + b
                c = sig(g[2 * H:3 * H]) * c + sig(g[:H]) * jnp.tanh(g[H:2 * H])
                h = sig(g[3 * H:]) * jnp.tanh(c)
            else:
                gx, gh = x[t] @ W, h @ U
                r = sig(gx[:H] + gh[:H] + b[:H])
                zg = sig(gx[H:2 * H] + gh[H:2 * H] + b[H:2 * H])
                if spec["reset_after"]:
                    b_hn = jnp.asarray(cell["b_hn"])
                    n = jnp.tanh(gx[2 * H:] + b[2 * H:] + r * (gh[2 * H:] + b_hn))
                else:
                    n = jnp.tanh(gx[2 * H:] + (r * h) @ U[:, 2 * H:] + b[2 * H:])
                h = zg * h + (1.0 - zg) * n
            hs.append(h)
        if spec["sequences"]:
            out.append(jnp.stack(hs if k == 0 else hs[::-1]))
        else:
            out.append(h)
    return out


# ---------------------------------------------------------------------------------------------
# Random models for tests
# ---------------------------------------------------------------------------------------------


def _random_cell(rng, kind: str, D: int, H: int, scale: float) -> dict:
    n = 4 if kind == "lstm" else 3
    cell = {"W": rng.normal(0, scale, (D, n * H)), "U": rng.normal(0, scale, (H, n * H)),
            "b": rng.normal(0, scale, n * H)}
    if kind == "gru":
        cell["b_hn"] = rng.normal(0, scale, H)
    return cell


def _random_recurrent(rng, cell: str, name: str, D: int, H: int, bi: bool, seq: bool) -> dict:
    kind = "lstm" if cell == "lstm" else "gru"
    dirs = ("forward", "backward") if bi else ("forward",)
    layer = {"type": kind, "name": name, "bidirectional": bi, "sequences": seq,
             "params": {d: _random_cell(rng, "gru-v1" if cell == "gru-v1" else kind, D, H, 0.6)
                        for d in dirs}}
    if kind == "gru":
        layer["reset_after"] = cell == "gru"
    return layer


def _dense(rng, name: str, widths, M: int, bias: bool, activation: str = "identity") -> dict:
    # a relu layer gets positive biases so that its units are rarely all inactive
    b = rng.uniform(0.2, 1.0, M) if activation == "relu" else rng.normal(0, 0.5, M)
    return {"type": "dense", "name": name, "activation": activation,
            "params": {"W": [rng.normal(0, 0.8, (w, M)) for w in widths],
                       "b": b if bias else None}}


def random_model(rng, cell: str, bidirectional: bool, n_layers: int, head: str, E: int = 4,
                 H: int = 3, C: int = 3) -> list:
    """A random stack of ``n_layers`` recurrent layers and a head.

    Args:
        rng: numpy Generator.
        cell: "lstm", "gru" (reset_after=True) or "gru-v1" (reset_after=False).
        bidirectional: every recurrent layer bidirectional (next layers read [forward, backward]).
        n_layers: number of recurrent layers (>= 1); all but the last give every step.
        head: "dense" (final states, dense with bias), "mlp" (final states, dense+relu with bias,
            dense without bias), "pool-mean" | "pool-max" | "pool-sum" (all steps, pooled,
            dense with bias), "per-step" (all steps, dense with bias at every step: (T, C)).
        E, H, C: input, hidden (per direction) and output sizes.

    Returns:
        model list; layer names "rnn1".., "hidden", "pool", "out".
    """
    if cell not in ("lstm", "gru", "gru-v1") or head not in HEADS or n_layers < 1:
        raise ValueError(f"`cell` must be lstm|gru|gru-v1, `head` one of {HEADS}, "
                         f"`n_layers` >= 1; got {cell!r}, {head!r}, {n_layers}.")
    model, D = [], E
    widths = [H, H] if bidirectional else [H]
    for k in range(n_layers):
        seq = k < n_layers - 1 or head.startswith("pool") or head == "per-step"
        model.append(_random_recurrent(rng, cell, f"rnn{k + 1}", D, H, bidirectional, seq))
        D = sum(widths)
    if head.startswith("pool"):
        model.append({"type": "pool", "name": "pool", "mode": head[5:]})
    if head == "mlp":
        model.append(_dense(rng, "hidden", widths, 6, True, "relu"))
        model.append(_dense(rng, "out", [6], C, False))
    else:
        model.append(_dense(rng, "out", widths, C, True))
    return model
