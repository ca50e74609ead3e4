"""Float64 NumPy oracle of xLSTM (sLSTM cell, mLSTM cell, mLSTM block) and its LRP, written from the
equations of Beck et al. (2024), the ``xlstm`` package's stabilised forward, and the chapter's rules,
with explicit loops and no code shared with the library.

Rules (``mode`` in "all", "prop", "abs", "half"; ``eps``; ``share``):
linear mappings and accumulations epsilon (``z + eps sign(z)``, sign(0) = +1; ``share`` spreads the bias and
stabiliser parts equally over all inputs of the mapping / all terms); products by Table 11.1 on the gate's
raw pre-activation and the signal's; divisions by normalisers (``c/n``, the mLSTM denominator, the layer
norm's standard deviation) and constant scales pass relevance unchanged; SiLU after the convolution passes
it unchanged. The forward functions take ``xp`` (numpy or jax.numpy) so that the gradient tests can
differentiate them; the LRP functions are NumPy only.
"""

import math

import numpy as np


def sgn(z):
    return 1.0 if z >= 0 else -1.0


def stab(z, eps):
    return z + eps * sgn(z)


def div(a, b):
    return 0.0 if b == 0 else a / b


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def log_sigmoid(z):
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def silu(z):
    return z * sigmoid(z)


# --- elementary rules ------------------------------------------------------------------------------------

def lrp_linear(xs, Ws, b, R, eps, share):
    """Relevance of the inputs xs (lists of floats) of z_s = sum_k sum_j xs[k][j] Ws[k][j][s] + b[s]."""
    M = len(R)
    z = [sum(xs[k][j] * Ws[k][j][s] for k in range(len(xs)) for j in range(len(xs[k])))
         + (0.0 if b is None else b[s]) for s in range(M)]
    out = [[0.0] * len(x) for x in xs]
    absorbed = 0.0
    for s in range(M):
        q = div(R[s], stab(z[s], eps))
        for k in range(len(xs)):
            for j in range(len(xs[k])):
                out[k][j] += xs[k][j] * Ws[k][j][s] * q
        absorbed += ((0.0 if b is None else b[s]) + eps * sgn(z[s])) * q
    if share:
        n = sum(len(x) for x in xs)
        out = [[r + absorbed / n for r in o] for o in out]
    return out


def lrp_accumulate(terms, R, eps, share):
    """Relevance of the terms (floats) of c = sum(terms)."""
    c = sum(terms)
    shares = [div(t, stab(c, eps)) for t in terms]
    if share:
        rest = (1.0 - sum(shares)) / len(terms)
        shares = [s + rest for s in shares]
    return [s * R for s in shares]


def lrp_gate(mode, z_g, z_s, R, eps, share):
    """(R_gate, R_signal) of a product (Table 11.1)."""
    if mode == "all":
        return 0.0, R
    if mode == "half":
        return 0.5 * R, 0.5 * R
    if mode == "prop":
        den = stab(z_g + z_s, eps)
        s_g, s_s = div(z_g, den), div(z_s, den)
    else:
        den = abs(z_g) + abs(z_s) + eps
        s_g, s_s = div(abs(z_g), den), div(abs(z_s), den)
    if share:
        half = 0.5 * (1.0 - s_g - s_s)
        s_g, s_s = s_g + half, s_s + half
    return s_g * R, s_s * R


# --- the sLSTM cell --------------------------------------------------------------------------------------

def slstm_dense_R(R, NH):
    """The (H, 4H) recurrent matrix of head blocks R (NH, DH, 4 DH), gate-major columns."""
    DH = len(R[0])
    H = NH * DH
    U = [[0.0] * (4 * H) for _ in range(H)]
    for h in range(NH):
        for d in range(DH):
            for g in range(4):
                for j in range(DH):
                    U[h * DH + d][g * H + h * DH + j] = float(R[h][d][g * DH + j])
    return U


def _dense_recurrent(R, NH, xp):
    """The (H, 4H) recurrent matrix from head blocks R (NH, DH, 4 DH), gate-major columns, with xp ops."""
    DH = R.shape[1]
    cols = []
    for g in range(4):
        rows = []
        for h in range(NH):
            rows.append(xp.concatenate([R[h][:, g * DH:(g + 1) * DH] if k == h else xp.zeros((DH, DH), R.dtype)
                                        for k in range(NH)], axis=1))
        cols.append(xp.concatenate(rows, axis=0))
    return xp.concatenate(cols, axis=1)


def slstm_forward(W, R, b, x, NH, forget="sigmoid", xp=np):
    """Every step's record of the sLSTM cell on x (T, E): list of dicts (z, m, i, f, c, n, y, y_prev, c_prev)."""
    T, E = x.shape
    H = W.shape[1] // 4
    U = _dense_recurrent(R, NH, xp)
    y, c, n, m = (xp.zeros(H, dtype=x.dtype) for _ in range(4))
    records = []
    for t in range(T):
        z = x[t] @ W + y @ U + b
        z_i, z_f, z_z, z_o = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
        log_f = -xp.logaddexp(0.0, -z_f) if forget == "sigmoid" else z_f
        m_new = z_i if t == 0 else xp.maximum(z_i, log_f + m)
        i_g = xp.minimum(xp.exp(z_i - m_new), 1.0)
        f_g = xp.minimum(xp.exp(log_f + m - m_new), 1.0)
        c_new = f_g * c + i_g * xp.tanh(z_z)
        n_new = f_g * n + i_g
        y_new = 1.0 / (1.0 + xp.exp(-z_o)) * (c_new / n_new)
        records.append(dict(z=z, m=m_new, i=i_g, f=f_g, c=c_new, n=n_new, y=y_new, y_prev=y, c_prev=c))
        y, c, n, m = y_new, c_new, n_new, m_new
    return records


def slstm_lrp(W, R, b, x, NH, R_y_final, mode, eps, share, forget="sigmoid"):
    """Relevance (T, E) of x and of the initial (y, c), given the relevance at the final y (H,)."""
    W, R, b, x = (np.asarray(a, np.float64) for a in (W, R, b, x))
    T, E = x.shape
    H = W.shape[1] // 4
    U = slstm_dense_R(R, NH)
    recs = slstm_forward(W, R, b, x, NH, forget)
    R_x = np.zeros((T, E))
    R_y = list(np.asarray(R_y_final, np.float64))
    R_c = [0.0] * H
    U = U.tolist() if hasattr(U, "tolist") else U
    for t in reversed(range(T)):
        rec = recs[t]
        z = rec["z"]
        R_raw = [0.0] * (4 * H)
        R_c_prev = [0.0] * H
        for j in range(H):
            h_val = rec["c"][j] / rec["n"][j]
            r_o, r_h = lrp_gate(mode, z[3 * H + j], h_val, R_y[j], eps, share)
            r_c = R_c[j] + r_h
            r_pf, r_pin = lrp_accumulate([rec["f"][j] * rec["c_prev"][j], rec["i"][j] * math.tanh(z[2 * H + j])],
                                         r_c, eps, share)
            r_i, r_z = lrp_gate(mode, z[j], z[2 * H + j], r_pin, eps, share)
            r_f, r_cp = lrp_gate(mode, z[H + j], rec["c_prev"][j], r_pf, eps, share)
            R_raw[j], R_raw[H + j], R_raw[2 * H + j], R_raw[3 * H + j] = r_i, r_f, r_z, r_o
            R_c_prev[j] = r_cp
        r_x, r_yp = lrp_linear([list(x[t]), list(rec["y_prev"])], [W.tolist(), U], list(b), R_raw, eps, share)
        R_x[t] = r_x
        R_y, R_c = r_yp, R_c_prev
    return R_x, np.array(R_y), np.array(R_c)


# --- the mLSTM cell --------------------------------------------------------------------------------------

def mlstm_forward(q, k, v, z_i, z_f, xp=np, eps_den=1e-6):
    """h̃ (T, NH, DH) of the recurrent stabilised mLSTM (m started at the first input gate), and the records;
    C indexed (key unit, value unit)."""
    T, NH, DH = q.shape
    outs, records = [], []
    for h in range(NH):
        C = xp.zeros((DH, DH), dtype=q.dtype)
        n = xp.zeros(DH, dtype=q.dtype)
        m = None
        hs, recs = [], []
        for t in range(T):
            log_f = -xp.logaddexp(0.0, -z_f[t, h])
            m_new = z_i[t, h] if m is None else xp.maximum(log_f + m, z_i[t, h])
            f_g = xp.exp(log_f + (0.0 if m is None else m) - m_new)
            i_g = xp.exp(z_i[t, h] - m_new)
            ks = k[t, h] / math.sqrt(DH)
            C_new = f_g * C + i_g * (ks[:, None] * v[t, h][None, :])
            n_new = f_g * n + i_g * ks
            den = xp.maximum(xp.abs(q[t, h] @ n_new), xp.exp(-m_new)) + eps_den
            hs.append(q[t, h] @ C_new / den)
            recs.append(dict(C_prev=C, C=C_new, ks=ks, f=f_g, i=i_g))
            C, n, m = C_new, n_new, m_new
        outs.append(xp.stack(hs))
        records.append(recs)
    return xp.stack(outs, axis=1), records


def mlstm_lrp(q, k, v, z_i, z_f, R_h, mode, eps, share):
    """Relevance of q, k, v (T, NH, DH), z_i, z_f (T, NH) and the initial memory (NH, DH, DH), given R at h̃."""
    q, k, v, z_i, z_f, R_h = (np.asarray(a, np.float64) for a in (q, k, v, z_i, z_f, R_h))
    T, NH, DH = q.shape
    _, records = mlstm_forward(q, k, v, z_i, z_f)
    R_q, R_k, R_v = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    R_i, R_f = np.zeros_like(z_i), np.zeros_like(z_f)
    R_C0 = np.zeros((NH, DH, DH))
    for h in range(NH):
        R_C = np.zeros((DH, DH))
        for t in reversed(range(T)):
            rec = records[h][t]
            for j in range(DH):
                reads = [q[t, h, d] * rec["C"][d][j] for d in range(DH)]
                r_reads = lrp_accumulate(reads, R_h[t, h, j], eps, share)
                for d in range(DH):
                    r_q, r_c = lrp_gate(mode, q[t, h, d], rec["C"][d][j], r_reads[d], eps, share)
                    R_q[t, h, d] += r_q
                    R_C[d, j] += r_c
            R_C_prev = np.zeros((DH, DH))
            for d in range(DH):
                for j in range(DH):
                    kv = rec["ks"][d] * v[t, h, j]
                    r_pf, r_pin = lrp_accumulate([rec["f"] * rec["C_prev"][d][j], rec["i"] * kv], R_C[d, j], eps, share)
                    r_i, r_kv = lrp_gate(mode, z_i[t, h], kv, r_pin, eps, share)
                    r_k, r_v = lrp_gate(mode, rec["ks"][d], v[t, h, j], r_kv, eps, share)
                    r_f, r_cp = lrp_gate(mode, z_f[t, h], rec["C_prev"][d][j], r_pf, eps, share)
                    R_i[t, h] += r_i
                    R_f[t, h] += r_f
                    R_k[t, h, d] += r_k
                    R_v[t, h, j] += r_v
                    R_C_prev[d, j] = r_cp
            R_C = R_C_prev
        R_C0[h] = R_C
    return R_q, R_k, R_v, R_i, R_f, R_C0


# --- the mLSTM block -------------------------------------------------------------------------------------

def _block_diag(blocks):
    NH, I, O = blocks.shape
    M = np.zeros((NH * I, NH * O))
    for h in range(NH):
        M[h * I:(h + 1) * I, h * O:(h + 1) * O] = blocks[h]
    return M


def _norm(x, w, groups, xp=np):
    D = x.shape[0]
    size = D // groups
    out = []
    for g in range(groups):
        part = x[g * size:(g + 1) * size]
        centred = part - xp.mean(part)
        var = xp.mean(centred * centred)
        out.append(centred / xp.sqrt(var + 1e-5))
    return xp.concatenate(out) * w


def _silu(z, xp):
    return z / (1.0 + xp.exp(-z))


def mlstm_block_forward(P, x, NH, xp=np):
    """The mLSTM block on x (T, D) with parameters P (the lrpjax layout, no biases): (T, D) and a record."""
    T, D = x.shape
    I = P["proj_up"]["W"].shape[1] // 2
    Wc, bc = P["conv"]["W"], P["conv"]["b"]
    K = Wc.shape[0]
    xn = xp.stack([_norm(x[t], P["norm"]["scale"], 1, xp) for t in range(T)])
    up = xn @ P["proj_up"]["W"]
    u, zb = up[:, :I], up[:, I:]
    conv = xp.stack([bc + sum(Wc[kk] * u[t - K + 1 + kk] for kk in range(K) if t - K + 1 + kk >= 0) for t in range(T)])
    a = _silu(conv, xp)
    Wq, Wk, Wv = (_block_diag(np.asarray(P[n]["W"])) if xp is np else _jblock(P[n]["W"], xp) for n in "qkv")
    q, k, v = a @ Wq, a @ Wk, u @ Wv
    qkv = xp.concatenate([q, k, v], axis=1)
    z_i = qkv @ P["igate"]["W"] + P["igate"]["b"][None, :]
    z_f = qkv @ P["fgate"]["W"] + P["fgate"]["b"][None, :]
    DH = I // NH
    split = lambda a_: a_.reshape(T, NH, DH)
    h, _ = mlstm_forward(split(q), split(k), split(v), z_i, z_f, xp)
    h = h.reshape(T, I)
    hn = xp.stack([_norm(h[t], P["outnorm"]["scale"], NH, xp) for t in range(T)])
    hs = hn + P["skip"][None, :] * a
    g = _silu(zb, xp) * hs
    y = g @ P["proj_down"]["W"]
    rec = dict(xn=xn, u=u, zb=zb, conv=conv, a=a, q=q, k=k, v=v, z_i=z_i, z_f=z_f, h=h, hn=hn, hs=hs, g=g, y=y,
               Wq=Wq, Wk=Wk, Wv=Wv)
    return x + y, rec


def _jblock(blocks, xp):
    NH, I, O = blocks.shape
    rows = []
    for h in range(NH):
        rows.append(xp.concatenate([blocks[h] if g == h else xp.zeros((I, O), blocks.dtype) for g in range(NH)], axis=1))
    return xp.concatenate(rows, axis=0)


def _lrp_norm(x, groups, R, eps, share):
    """Relevance of x (D,) of a (group) norm: the centring mapping by epsilon, the rest passes."""
    D = len(x)
    size = D // groups
    M = np.zeros((D, D))
    for g in range(groups):
        for i in range(size):
            for j in range(size):
                M[g * size + i, g * size + j] = (1.0 if i == j else 0.0) - 1.0 / size
    return np.array(lrp_linear([list(x)], [M.tolist()], None, list(R), eps, share)[0])


def mlstm_block_lrp(P, x, NH, R_out, mode, eps, share, cell_mode=None):
    """Relevance (T, D) of x and of the initial memory (NH, DH, DH), given the relevance R_out (T, D) at the
    block's output; ``cell_mode`` (default ``mode``) is the product rule inside the mLSTM memory."""
    P = {k: ({kk: np.asarray(vv, np.float64) for kk, vv in v.items()} if isinstance(v, dict)
             else np.asarray(v, np.float64)) for k, v in P.items()}
    x, R_out = np.asarray(x, np.float64), np.asarray(R_out, np.float64)
    T, D = x.shape
    out, r = mlstm_block_forward(P, x, NH)
    I = r["u"].shape[1]
    DH = I // NH
    R_x = np.zeros((T, D))
    R_y = np.zeros((T, D))
    for t in range(T):
        R_x[t], R_y[t] = np.array(lrp_accumulate_vec([x[t], r["y"][t]], R_out[t], eps, share))
    R_g = np.array([lrp_linear([list(r["g"][t])], [P["proj_down"]["W"].tolist()], None, list(R_y[t]), eps, share)[0]
                    for t in range(T)])
    R_zb, R_hs = np.zeros((T, I)), np.zeros((T, I))
    for t in range(T):
        for j in range(I):
            R_zb[t, j], R_hs[t, j] = lrp_gate(mode, r["zb"][t, j], r["hs"][t, j], R_g[t, j], eps, share)
    R_hn, R_a = np.zeros((T, I)), np.zeros((T, I))
    for t in range(T):
        R_hn[t], R_a[t] = np.array(lrp_accumulate_vec([r["hn"][t], P["skip"] * r["a"][t]], R_hs[t], eps, share))
    R_h = np.array([_lrp_norm(r["h"][t], NH, R_hn[t], eps, share) for t in range(T)])
    split = lambda a_: a_.reshape(T, NH, DH)
    R_q, R_k, R_v, R_i, R_f, R_C0 = mlstm_lrp(split(r["q"]), split(r["k"]), split(r["v"]), r["z_i"], r["z_f"],
                                              split(R_h), cell_mode or mode, eps, share)
    R_q, R_k, R_v = R_q.reshape(T, I), R_k.reshape(T, I), R_v.reshape(T, I)
    Wi, Wf = P["igate"]["W"], P["fgate"]["W"]
    for t in range(T):
        xs = [list(r["q"][t]), list(r["k"][t]), list(r["v"][t])]
        for Wg, b, Rg in ((Wi, P["igate"]["b"], R_i[t]), (Wf, P["fgate"]["b"], R_f[t])):
            rq, rk, rv = lrp_linear(xs, [Wg[:I].tolist(), Wg[I:2 * I].tolist(), Wg[2 * I:].tolist()], list(b), list(Rg),
                                    eps, share)
            R_q[t] += rq
            R_k[t] += rk
            R_v[t] += rv
    R_u = np.zeros((T, I))
    for t in range(T):
        R_a[t] += lrp_linear([list(r["a"][t])], [r["Wq"].tolist()], None, list(R_q[t]), eps, share)[0]
        R_a[t] += lrp_linear([list(r["a"][t])], [r["Wk"].tolist()], None, list(R_k[t]), eps, share)[0]
        R_u[t] += lrp_linear([list(r["u"][t])], [r["Wv"].tolist()], None, list(R_v[t]), eps, share)[0]
    # The causal depthwise convolution: per output (t, c) a mapping of its valid taps; SiLU passes.
    Wc, bc = P["conv"]["W"], P["conv"]["b"]
    K = Wc.shape[0]
    for t in range(T):
        for c in range(I):
            taps = [kk for kk in range(K) if t - K + 1 + kk >= 0]
            rs = lrp_linear([[r["u"][t - K + 1 + kk, c] for kk in taps]], [[[Wc[kk, c]] for kk in taps]], [bc[c]],
                            [R_a[t, c]], eps, share)[0]
            for kk, rr in zip(taps, rs):
                R_u[t - K + 1 + kk, c] += rr
    R_up = np.concatenate([R_u, R_zb], axis=1)
    for t in range(T):
        R_xn = lrp_linear([list(r["xn"][t])], [P["proj_up"]["W"].tolist()], None, list(R_up[t]), eps, share)[0]
        R_x[t] += _lrp_norm(x[t], 1, R_xn, eps, share)
    return R_x, R_C0


def lrp_accumulate_vec(terms, R, eps, share):
    """Element-wise accumulation of equal-length vectors."""
    out = [np.zeros(len(R)) for _ in terms]
    for j in range(len(R)):
        rs = lrp_accumulate([t[j] for t in terms], R[j], eps, share)
        for k in range(len(terms)):
            out[k][j] = rs[k]
    return out
