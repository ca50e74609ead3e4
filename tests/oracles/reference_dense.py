"""Float64 NumPy oracle of the dense-layer rules (z, z+, alpha-beta, gamma, flat, w², zB), written from the
papers' equations in matrix form (Bach et al. 2015; Montavon et al. 2017, 2019; Lapuschkin et al. 2016), with
no code shared with the library. Rules are recognised by their class name and read through their fields."""

import numpy as np

# R_j = sum_k N_jk / (sum_j N_jk + B_k) R_k per rule.


def _share(N, B, r, eps=0.0):
    """Input and bias relevance for numerators N (D, M), bias term B (M,) and stabiliser eps."""
    den = N.sum(axis=0) + B
    den = den + eps * np.where(den >= 0, 1.0, -1.0) if eps > 0 else den
    q = np.array([r[k] / den[k] if den[k] != 0 else 0.0 for k in range(len(r))])
    return N @ q, B * q, (den - N.sum(axis=0)) * q


def oracle(rule, x, W, b, r):
    """(R_x (D,), R_b (M,)) for one input vector x; b may be None (treated as zeros)."""
    x, W, r = (np.asarray(v, np.float64) for v in (x, W, r))
    b = np.zeros(W.shape[1]) if b is None else np.asarray(b, np.float64)
    Z_ = x[:, None] * W                                       # z_jk = x_j w_jk
    zeros = np.zeros_like(b)
    name = type(rule).__name__
    if name in ("Epsilon", "Z"):
        eps = getattr(rule, "eps", 0.0)
        Rx, Rb, absorbed = _share(Z_, b, r, eps)
    elif name == "ZPlus":
        Rx, Rb, absorbed = _share(np.maximum(Z_, 0), zeros, r)
    elif name == "AlphaBeta":
        Rp, Rbp, ap = _share(np.maximum(Z_, 0), np.maximum(b, 0), rule.alpha * r)
        Rn, Rbn, an = _share(np.minimum(Z_, 0), np.minimum(b, 0), -rule.beta * r)
        Rx, Rb, absorbed = Rp + Rn, Rbp + Rbn, ap + an
    elif name == "Gamma":
        Wg = W + rule.gamma * np.maximum(W, 0)
        Rx, Rb, absorbed = _share(x[:, None] * Wg, b + rule.gamma * np.maximum(b, 0), r, rule.eps)
    elif name == "Flat":
        Rx, Rb, absorbed = _share(np.ones_like(W), zeros, r)
    elif name == "WSquare":
        Rx, Rb, absorbed = _share(W ** 2, zeros, r)
    elif name == "ZB":
        lo = np.broadcast_to(np.asarray(rule.low, np.float64), x.shape)[:, None]
        hi = np.broadcast_to(np.asarray(rule.high, np.float64), x.shape)[:, None]
        Rx, Rb, absorbed = _share(Z_ - lo * np.maximum(W, 0) - hi * np.minimum(W, 0), zeros, r)
    else:
        raise AssertionError(name)
    if getattr(rule, "share", False):
        Rx = Rx + absorbed.sum() / len(x)
        Rb = zeros
    return Rx, Rb
