"""Independent float64 oracle for Conv1D and the Mamba block: explicit loops, no code shared with lrpjax.

Forward passes from the equations (Gu & Dao 2023; the layout of PyTorch's MambaMixer) and relevance
step by step, backwards, for the rules of the chapter: epsilon (``eps``, ``share``) on linear mappings and
accumulations, the product rules all / prop / abs / half (Table 11.1) on the SiLU gate; the scan's
coefficients Delta, A, B, C, the norm's denominator and SiLU's sigmoid receive nothing.
"""

import math

import numpy as np


def _sign(z):
    return 1.0 if z >= 0 else -1.0


def _stab(z, eps):
    return z + eps * _sign(z)


def _div(a, b):
    return 0.0 if b == 0 else a / b


def _silu(v):
    return v / (1.0 + math.exp(-v))


def _softplus(v):
    return math.log1p(math.exp(-abs(v))) + max(v, 0.0)


def accumulate_shares(terms, eps, share):
    """Shares of the terms of ``c = sum(terms)`` under epsilon (Sec. 11.3.3)."""
    c = sum(terms)
    den = _stab(c, eps)
    shares = [_div(t, den) for t in terms]
    if share:
        rest = (1.0 - sum(shares)) / len(terms)
        shares = [s + rest for s in shares]
    return shares


def gate_split(mode, eps, share, z_g, z_s, r):
    """Table 11.1 on one product: (R_gate, R_signal)."""
    if mode == "all":
        return 0.0, r
    if mode == "half":
        return 0.5 * r, 0.5 * r
    if mode == "prop":
        num_g, num_s = z_g, z_s
        den = _stab(z_g + z_s, eps)
    else:
        num_g, num_s = abs(z_g), abs(z_s)
        den = num_g + num_s + eps
    s_g, s_s = _div(num_g, den), _div(num_s, den)
    if share:
        half = 0.5 * (1.0 - s_g - s_s)
        s_g, s_s = s_g + half, s_s + half
    return s_g * r, s_s * r


def linear_relevance(inputs, weights, bias, r, eps, share, rule="epsilon"):
    """One linear mapping ``z_m = sum_j inputs[j] * weights[j][m] + bias[m]`` (explicit lists).

    Returns the relevance of every input (a list). ``rule``: "epsilon" or "flat".
    """
    D, M = len(inputs), len(r)
    out = [0.0] * D
    for m in range(M):
        if rule == "flat":
            for j in range(D):
                out[j] += r[m] / D
            continue
        z = sum(inputs[j] * weights[j][m] for j in range(D)) + (0.0 if bias is None else bias[m])
        den = _stab(z, eps)
        q = _div(r[m], den)
        for j in range(D):
            out[j] += inputs[j] * weights[j][m] * q
        if share:
            spread = (0.0 if bias is None else bias[m]) + eps * _sign(z)
            for j in range(D):
                out[j] += spread * q / D
    return out


# --- Conv1D ------------------------------------------------------------------------------------------

def _taps(t, T, K, dilation, padding, length):
    span = dilation * (K - 1)
    left = span if padding == "causal" else span // 2
    taps = []
    for k in range(K):
        j = t - left + k * dilation
        if 0 <= j < length:
            taps.append((k, j))
    return taps


def conv_forward(x, W, b, padding, dilation=1, depthwise=False, length=None):
    """(T, D) -> (T, F); steps at or after ``length`` are padding (read as nothing, output 0)."""
    T, D = x.shape
    K = W.shape[0]
    L = T if length is None else length
    F = D if depthwise else W.shape[2]
    out = np.zeros((T, F))
    for t in range(L):
        for f in range(F):
            total = 0.0 if b is None else b[f]
            for k, j in _taps(t, T, K, dilation, padding, L):
                if depthwise:
                    total += x[j, f] * W[k, f]
                else:
                    for d in range(D):
                        total += x[j, d] * W[k, d, f]
            out[t, f] = total
    return out


def conv_relevance(x, W, b, r, padding, dilation=1, depthwise=False, eps=0.0, share=False, rule="epsilon",
                   length=None):
    """Relevance of ``x`` (T, D) for the output relevance ``r`` (T, F): each step one mapping of its valid taps."""
    T, D = x.shape
    K = W.shape[0]
    L = T if length is None else length
    F = D if depthwise else W.shape[2]
    R = np.zeros((T, D))
    for t in range(L):
        taps = _taps(t, T, K, dilation, padding, L)
        if depthwise:
            for f in range(F):
                inputs = [x[j, f] for k, j in taps]
                weights = [[W[k, f]] for k, j in taps]
                got = linear_relevance(inputs, weights, None if b is None else [b[f]], [r[t, f]], eps, share, rule)
                for (k, j), value in zip(taps, got):
                    R[j, f] += value
        else:
            inputs = [x[j, d] for k, j in taps for d in range(D)]
            weights = [[W[k, d, f] for f in range(F)] for k, j in taps for d in range(D)]
            got = linear_relevance(inputs, weights, b, list(r[t]), eps, share, rule)
            for n, value in enumerate(got):
                R[taps[n // D][1], n % D] += value
    return R


# --- the Mamba block ---------------------------------------------------------------------------------

def mamba_forward(p, x, norm_eps=1e-5):
    """The residual block for one sequence x (T, D); returns (out (T, D), record of every intermediate)."""
    T, Dm = x.shape
    I, N = p["A_log"].shape
    K = p["conv_W"].shape[0]
    Rk = p["dt_proj"].shape[0]
    rec = {"x": x}
    n = np.zeros((T, Dm))
    for t in range(T):
        ms = sum(x[t, e] ** 2 for e in range(Dm)) / Dm
        inv = 1.0 / math.sqrt(ms + norm_eps)
        for e in range(Dm):
            n[t, e] = x[t, e] * inv * p["norm"][e]
    sz = np.zeros((T, 2 * I))
    for t in range(T):
        for j in range(2 * I):
            sz[t, j] = sum(n[t, e] * p["in_proj"][e, j] for e in range(Dm)) + (p["in_proj_b"][j] if "in_proj_b" in p else 0.0)
    s, z = sz[:, :I], sz[:, I:]
    cpre = np.zeros((T, I))
    for t in range(T):
        for i in range(I):
            total = p["conv_b"][i] if "conv_b" in p else 0.0
            for k in range(K):
                j = t - (K - 1) + k
                if j >= 0:
                    total += s[j, i] * p["conv_W"][k, i]
            cpre[t, i] = total
    c = np.vectorize(_silu)(cpre)
    delta = np.zeros((T, I))
    Bm = np.zeros((T, N))
    Cm = np.zeros((T, N))
    for t in range(T):
        dbc = [sum(c[t, i] * p["x_proj"][i, m] for i in range(I)) for m in range(Rk + 2 * N)]
        for i in range(I):
            delta[t, i] = _softplus(sum(dbc[r] * p["dt_proj"][r, i] for r in range(Rk)) + p["dt_bias"][i])
        for m in range(N):
            Bm[t, m] = dbc[Rk + m]
            Cm[t, m] = dbc[Rk + N + m]
    h = np.zeros((T, I, N))
    a = np.zeros((T, I, N))
    u = np.zeros((T, I, N))
    for t in range(T):
        for i in range(I):
            for m in range(N):
                A = -math.exp(p["A_log"][i, m])
                a[t, i, m] = math.exp(delta[t, i] * A)
                u[t, i, m] = delta[t, i] * Bm[t, m] * c[t, i]
                prev = h[t - 1, i, m] if t > 0 else 0.0
                h[t, i, m] = a[t, i, m] * prev + u[t, i, m]
    y = np.zeros((T, I))
    for t in range(T):
        for i in range(I):
            y[t, i] = sum(Cm[t, m] * h[t, i, m] for m in range(N)) + p["D"][i] * c[t, i]
    g = np.zeros((T, I))
    for t in range(T):
        for i in range(I):
            g[t, i] = y[t, i] * _silu(z[t, i])
    o = np.zeros((T, Dm))
    for t in range(T):
        for e in range(Dm):
            o[t, e] = sum(g[t, i] * p["out_proj"][i, e] for i in range(I)) + (p["out_proj_b"][e] if "out_proj_b" in p else 0.0)
    out = x + o
    rec.update(n=n, sz=sz, s=s, z=z, cpre=cpre, c=c, delta=delta, B=Bm, C=Cm, a=a, u=u, h=h, y=y, g=g, o=o, out=out)
    return out, rec


def mamba_relevance(p, x, r_out, mode="all", eps=0.0, share=False, norm_eps=1e-5):
    """Relevance of x (T, D) for the relevance ``r_out`` (T, D) of the block's output, step by step."""
    _, rec = mamba_forward(p, x, norm_eps)
    T, Dm = x.shape
    I, N = p["A_log"].shape
    K = p["conv_W"].shape[0]
    R_x = np.zeros((T, Dm))
    R_o = np.zeros((T, Dm))
    for t in range(T):                                     # residual: x + o
        for e in range(Dm):
            s1, s2 = accumulate_shares([x[t, e], rec["o"][t, e]], eps, share)
            R_x[t, e] += s1 * r_out[t, e]
            R_o[t, e] = s2 * r_out[t, e]
    R_g = np.zeros((T, I))
    for t in range(T):                                     # out-projection
        W = [[p["out_proj"][i, e] for e in range(Dm)] for i in range(I)]
        R_g[t] = linear_relevance(list(rec["g"][t]), W, p.get("out_proj_b"), list(R_o[t]), eps, share)
    R_y = np.zeros((T, I))
    R_z = np.zeros((T, I))
    for t in range(T):                                     # gate: y * SiLU(z)
        for i in range(I):
            R_z[t, i], R_y[t, i] = gate_split(mode, eps, share, rec["z"][t, i], rec["y"][t, i], R_g[t, i])
    R_h = np.zeros((T, I, N))
    R_c = np.zeros((T, I))
    for t in range(T):                                     # read-out: sum_n C h + D c
        for i in range(I):
            terms = [rec["C"][t, m] * rec["h"][t, i, m] for m in range(N)] + [p["D"][i] * rec["c"][t, i]]
            shares = accumulate_shares(terms, eps, share)
            for m in range(N):
                R_h[t, i, m] += shares[m] * R_y[t, i]
            R_c[t, i] += shares[N] * R_y[t, i]
    for t in reversed(range(T)):                           # the scan, backwards
        for i in range(I):
            for m in range(N):
                if t == 0:
                    (s_u,) = accumulate_shares([rec["u"][t, i, m]], eps, share)
                else:
                    s_h, s_u = accumulate_shares([rec["a"][t, i, m] * rec["h"][t - 1, i, m], rec["u"][t, i, m]],
                                                 eps, share)
                    R_h[t - 1, i, m] += s_h * R_h[t, i, m]
                R_c[t, i] += s_u * R_h[t, i, m]           # u = Delta B c: all to c
    R_s = np.zeros((T, I))                                 # SiLU passes; causal depthwise convolution
    for t in range(T):
        for i in range(I):
            taps = [(k, t - (K - 1) + k) for k in range(K) if t - (K - 1) + k >= 0]
            got = linear_relevance([rec["s"][j, i] for k, j in taps], [[p["conv_W"][k, i]] for k, j in taps],
                                   [p["conv_b"][i]] if "conv_b" in p else None, [R_c[t, i]], eps, share)
            for (k, j), value in zip(taps, got):
                R_s[j, i] += value
    R_n = np.zeros((T, Dm))
    for t in range(T):                                     # in-projection
        W = [[p["in_proj"][e, j] for j in range(2 * I)] for e in range(Dm)]
        R_n[t] = linear_relevance(list(rec["n"][t]), W, p.get("in_proj_b"), list(R_s[t]) + list(R_z[t]), eps, share)
    return R_x + R_n                                       # the norm's denominator is a constant
