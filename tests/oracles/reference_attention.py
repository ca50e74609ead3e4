"""Independent float64 NumPy oracle for attention over steps: forward passes and LRP, explicit loops.

Written from the equations (no code shared with lrpjax): the scores (additive ``v . tanh(W h + [U q] + b)``,
dot ``q . h``, general ``q . (h W)``), the softmax over the valid steps, the context ``sum_t a_t h_t``;
relevance by LRP-epsilon (``eps * sign(z)``, ``sign(0) = +1``; with ``share`` the bias and stabiliser
shares spread equally over a mapping's inputs), the accumulation rule for sums, Table 11.1's product
splits, and AttnLRP's softmax rule ``R_e_t = e_t (R_a_t - a_t sum_s R_a_s)``.

Models covered (one example, ``H`` (T, D) the input, ``L`` valid steps):

* :func:`pool_model`: AttentionPool (K heads) then a dense output with bias;
* :func:`self_model`: a per-step projection, SelfAttention (optionally causal), sum pooling over the valid
  steps, dense output.
"""

import math

import numpy as np


def _sign(z):
    return 1.0 if z >= 0 else -1.0


def _div(a, b):
    return 0.0 if b == 0 else a / b


def _stab(z, eps):
    return z + eps * _sign(z)


# --- rules ------------------------------------------------------------------------------------------

def eps_linear(xs, Ws, b, r, eps, share):
    """LRP-epsilon for z_m = sum_k sum_j xs[k][j] Ws[k][j, m] + b_m; returns the inputs' relevances."""
    M = len(r)
    z = [sum(xs[k][j] * Ws[k][j, m] for k in range(len(xs)) for j in range(len(xs[k]))) + (0.0 if b is None else b[m])
         for m in range(M)]
    q = [_div(r[m], _stab(z[m], eps)) for m in range(M)]
    out = []
    for k in range(len(xs)):
        out.append(np.array([xs[k][j] * sum(Ws[k][j, m] * q[m] for m in range(M)) for j in range(len(xs[k]))]))
    if share:
        n = sum(len(x) for x in xs)
        absorbed = sum(((0.0 if b is None else b[m]) + eps * _sign(z[m])) * q[m] for m in range(M))
        out = [o + absorbed / n for o in out]
    return out


def accumulate(terms, valid, r, eps, share):
    """The accumulation rule for c = sum_i terms[i] (scalars); ``valid`` marks the terms that count."""
    c = sum(t for t, v in zip(terms, valid) if v)
    q = _div(r, _stab(c, eps))
    out = [t * q if v else 0.0 for t, v in zip(terms, valid)]
    if share:
        n = max(sum(valid), 1)
        rest = (r - sum(out)) / n
        out = [o + rest if v else 0.0 for o, v in zip(out, valid)]
    return out


def split(mode, zg, zs, r, eps, share):
    """Table 11.1 on the product zg * zs (AttnLRP's uniform rule is 'half'); returns (R_g, R_s)."""
    if mode == "all":
        return 0.0, r
    if mode == "half":
        return 0.5 * r, 0.5 * r
    if mode == "prop":
        den = _stab(zg + zs, eps)
        sg, ss = _div(zg, den), _div(zs, den)
    else:
        den = abs(zg) + abs(zs) + eps
        sg, ss = _div(abs(zg), den), _div(abs(zs), den)
    if share:
        half = 0.5 * (1 - sg - ss)
        sg, ss = sg + half, ss + half
    return sg * r, ss * r


def product_mode(mode):
    return {"gate": "all", "attnlrp": "half"}.get(mode, mode)


def softmax_rule(mode, e, a, valid, r, share):
    """The weights' relevance r onto the scores e (lists over steps)."""
    r = [ri if v else 0.0 for ri, v in zip(r, valid)]
    if mode != "attnlrp":
        return r
    total = sum(r)
    out = [e[t] * (r[t] - a[t] * total) if valid[t] else 0.0 for t in range(len(e))]
    if share:
        n = max(sum(valid), 1)
        rest = (total - sum(out)) / n
        out = [o + rest if v else 0.0 for o, v in zip(out, valid)]
    return out


def softmax(e, valid):
    top = max(e[t] for t in range(len(e)) if valid[t])
    w = [math.exp(e[t] - top) if valid[t] else 0.0 for t in range(len(e))]
    s = sum(w)
    return [x / s for x in w]


# --- one attention: scores of one query, weights, context; and its LRP ---------------------------------

def _score(score, P, h_t, query, k):
    """The score of step h_t for head k (learned query: query None) or for a state query."""
    D = len(h_t)
    if score == "additive":
        A = P["W"].shape[1]
        pre = [sum(h_t[d] * P["W"][d, j] for d in range(D)) + P["b"][j]
               + (0.0 if query is None else sum(query[d] * P["U"][d, j] for d in range(D))) for j in range(A)]
        return sum(math.tanh(pre[j]) * P["v"][j, k] for j in range(A))
    g = h_t if score == "dot" else np.array([sum(h_t[i] * P["W"][i, d] for i in range(D)) for d in range(D)])
    qv = P["q"][:, k] if query is None else query
    return sum(qv[d] * g[d] for d in range(D))


def _score_lrp(score, P, h_t, query, k, r_e, mode, eps, share):
    """Relevance of the score's inputs: (R of h_t (D,), R of the query (D,) or None)."""
    D = len(h_t)
    r_query = None if query is None else np.zeros(D)
    if score == "additive":
        A = P["W"].shape[1]
        pre = np.array([sum(h_t[d] * P["W"][d, j] for d in range(D)) + P["b"][j]
                        + (0.0 if query is None else sum(query[d] * P["U"][d, j] for d in range(D)))
                        for j in range(A)])
        a = np.tanh(pre)
        (r_a,) = eps_linear([a], [P["v"][:, k:k + 1]], None, [r_e], eps, share)
        if query is None:
            (r_h,) = eps_linear([h_t], [P["W"]], P["b"], r_a, eps, share)
        else:
            r_h, r_query = eps_linear([h_t, query], [P["W"], P["U"]], P["b"], r_a, eps, share)
        return r_h, r_query
    g = h_t if score == "dot" else np.array([sum(h_t[i] * P["W"][i, d] for i in range(D)) for d in range(D)])
    if query is None:
        (r_g,) = eps_linear([g], [P["q"][:, k:k + 1]], None, [r_e], eps, share)
    else:
        products = [query[d] * g[d] for d in range(D)]
        r_p = accumulate(products, [True] * D, r_e, eps, share)
        r_g = np.zeros(D)
        for d in range(D):
            r_q, r_g[d] = split(product_mode(mode), query[d], g[d], r_p[d], eps, share)
            r_query[d] += r_q
    if score == "dot":
        return r_g, r_query
    (r_h,) = eps_linear([h_t], [P["W"]], None, r_g, eps, share)
    return r_h, r_query


def _attention_lrp(score, P, H, attended, query, k, r_c, mode, eps, share):
    """LRP of one context c = sum_t a_t h_t (head k; query None: learned): (R_H (T, D), R_query or None)."""
    T, D = H.shape
    e = [_score(score, P, H[t], query, k) if attended[t] else 0.0 for t in range(T)]
    a = softmax(e, attended)
    R = np.zeros((T, D))
    r_query = None if query is None else np.zeros(D)
    r_a = [0.0] * T
    for d in range(D):
        terms = [a[t] * H[t, d] for t in range(T)]
        r_terms = accumulate(terms, attended, r_c[d], eps, share)
        for t in range(T):
            if attended[t]:
                r_g, r_s = split(product_mode(mode), a[t], H[t, d], r_terms[t], eps, share)
                r_a[t] += r_g
                R[t, d] += r_s
    r_e = softmax_rule(mode, e, a, attended, r_a, share)
    for t in range(T):
        if attended[t]:
            r_h, r_q = _score_lrp(score, P, H[t], query, k, r_e[t], mode, eps, share)
            R[t] += r_h
            if query is not None:
                r_query += r_q
    return R, r_query


def _context(score, P, H, attended, query, k):
    T, D = H.shape
    e = [_score(score, P, H[t], query, k) if attended[t] else 0.0 for t in range(T)]
    a = softmax(e, attended)
    return np.array([sum(a[t] * H[t, d] for t in range(T) if attended[t]) for d in range(D)]), a


# --- models -------------------------------------------------------------------------------------------

def pool_model(score, P, Wo, bo, H, L, target, mode="gate", eps=0.0, share=False):
    """AttentionPool (K heads) + dense output: (scores (C,), weights (T, K), relevance of H (T, D))."""
    T, D = H.shape
    K = (P["v"] if score == "additive" else P["q"]).shape[1]
    valid = [t < L for t in range(T)]
    contexts, weights = [], np.zeros((T, K))
    for k in range(K):
        c, a = _context(score, P, H, valid, None, k)
        contexts.append(c)
        weights[:, k] = a
    z = np.concatenate(contexts)
    y = np.array([sum(z[i] * Wo[i, c] for i in range(len(z))) + bo[c] for c in range(Wo.shape[1])])
    r_y = np.zeros(len(y))
    r_y[target] = y[target]
    (r_z,) = eps_linear([z], [Wo], bo, r_y, eps, share)
    R = np.zeros((T, D))
    for k in range(K):
        R_k, _ = _attention_lrp(score, P, H, valid, None, k, r_z[k * D:(k + 1) * D], mode, eps, share)
        R += R_k
    return y, weights, R


def self_model(score, P, Wp, Wo, bo, X, L, target, causal=False, mode="gate", eps=0.0, share=False):
    """A per-step projection without bias ``H = X Wp``, SelfAttention, sum pooling over the valid steps,
    dense output: (scores (C,), relevance of X)."""
    T = X.shape[0]
    D = Wp.shape[1]
    H = np.array([[sum(X[t, i] * Wp[i, d] for i in range(X.shape[1])) for d in range(D)] for t in range(T)])
    valid = [t < L for t in range(T)]
    attended = [[valid[t] and (t <= s or not causal) for t in range(T)] for s in range(T)]
    C_all = np.zeros((T, D))
    for s in range(L):
        C_all[s], _ = _context(score, P, H, attended[s], H[s], 0)
    z = C_all.sum(axis=0)
    y = np.array([sum(z[i] * Wo[i, c] for i in range(D)) + bo[c] for c in range(Wo.shape[1])])
    r_y = np.zeros(len(y))
    r_y[target] = y[target]
    (r_z,) = eps_linear([z], [Wo], bo, r_y, eps, share)
    R = np.zeros((T, D))
    for d in range(D):
        r_steps = accumulate([C_all[s, d] for s in range(T)], valid, r_z[d], eps, share)
        for s in range(T):
            C_all[s, d] = r_steps[s]     # reuse: now the contexts' relevance
    for s in range(L):
        R_s, r_q = _attention_lrp(score, P, H, attended[s], H[s], 0, C_all[s], mode, eps, share)
        R += R_s
        R[s] += r_q
    R_X = np.zeros(X.shape)
    for t in range(L):
        (R_X[t],) = eps_linear([X[t]], [Wp], None, R[t], eps, share)
    return y, R_X
