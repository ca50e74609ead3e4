"""Independent float64 NumPy oracle for an encoder-decoder LSTM with attention: forward pass and LRP of one
output step, explicit loops (no code shared with lrpjax).

The model (Luong et al. 2015, global attention), for a source of L_s valid steps and a target of L_t:

* encoder: a bidirectional LSTM (gates stacked i, z, f, o; zero initial states) over the embedded source,
  ``k_s = [forward_s, backward_s]`` (the backward direction reads the valid steps reversed);
* decoder: an LSTM over ``[e(y_t); h~_{t-1}]`` (input feeding) or ``e(y_t)``, zero initial states;
* attention of ``h_t`` over the valid ``k_s`` (scores, softmax, context: ``reference_attention``);
* ``h~_t = tanh(c_t W_c + h_t W_h + b_c)``, ``o_t = h~_t W_o + b_o``.

LRP: LRP-epsilon for every linear mapping (``share``: bias and stabiliser shares spread over the inputs),
the accumulation rule for ``c_t = f c_{t-1} + i z``, Table 11.1's product rule ``gate`` for the LSTM's
products, and the attention rule ``mode`` for the attention (reference_attention's functions, themselves
written from the equations). Relevance reaching the zero initial states is dropped (it is not an input's).
"""

import math

import numpy as np

from reference_attention import _attention_lrp, _context, accumulate, eps_linear, split


def _sigmoid(u):
    return 1.0 / (1.0 + math.exp(-u))


def lstm_step(P, x, y_prev, c_prev):
    """One LSTM step: (y, c, pre-activations (4H,))."""
    H = len(y_prev)
    z = np.array([sum(x[j] * P["W"][j, m] for j in range(len(x))) + sum(y_prev[j] * P["U"][j, m] for j in range(H))
                  + P["b"][m] for m in range(4 * H)])
    c = np.array([_sigmoid(z[2 * H + h]) * c_prev[h] + _sigmoid(z[h]) * math.tanh(z[H + h]) for h in range(H)])
    y = np.array([_sigmoid(z[3 * H + h]) * math.tanh(c[h]) for h in range(H)])
    return y, c, z


def lstm_step_lrp(P, x, y_prev, c_prev, z, c, R_y, R_c, gate, eps, share):
    """LRP of one LSTM step: relevance of (x, y_prev, c_prev) from that of (y, c)."""
    H = len(y_prev)
    R_z = np.zeros(4 * H)
    R_c_prev = np.zeros(H)
    for h in range(H):
        r_o, r_signal = split(gate, z[3 * H + h], c[h], R_y[h], eps, share)      # y = sigma(z_o) tanh(c)
        R_z[3 * H + h] = r_o
        p_f = _sigmoid(z[2 * H + h]) * c_prev[h]
        p_in = _sigmoid(z[h]) * math.tanh(z[H + h])
        r_pf, r_pin = accumulate([p_f, p_in], [True, True], R_c[h] + r_signal, eps, share)
        R_z[h], R_z[H + h] = split(gate, z[h], z[H + h], r_pin, eps, share)
        R_z[2 * H + h], R_c_prev[h] = split(gate, z[2 * H + h], c_prev[h], r_pf, eps, share)
    R_x, R_y_prev = eps_linear([x, y_prev], [P["W"], P["U"]], P["b"], R_z, eps, share)
    return R_x, R_y_prev, R_c_prev


def _run_lstm(P, xs):
    H = P["U"].shape[0]
    y, c = np.zeros(H), np.zeros(H)
    steps = []
    for x in xs:
        y_new, c_new, z = lstm_step(P, x, y, c)
        steps.append((x, y, c, z, c_new))
        y, c = y_new, c_new
    return steps


def _lstm_lrp(P, steps, R_ys, gate, eps, share):
    """Backward through time: R_ys[t] (H,) arrives at step t's output; the inputs' relevance per step."""
    H = P["U"].shape[0]
    R_y_next, R_c_next = np.zeros(H), np.zeros(H)
    R_x = [None] * len(steps)
    for t in reversed(range(len(steps))):
        x, y_prev, c_prev, z, c = steps[t]
        R_x[t], R_y_next, R_c_next = lstm_step_lrp(P, x, y_prev, c_prev, z, c, R_ys[t] + R_y_next, R_c_next,
                                                   gate, eps, share)
    return R_x


def seq2seq(P, source, target, Ls, Lt, score, feeding, explain=None, gate="all", mode="gate", eps=0.0,
            share=False):
    """Scores (T, V) of a packed pair (embedded source (S, E), embedded target (T, E), L_s and L_t valid
    steps) and, with ``explain = (t, v)``, the relevance (S + T, E) of output step t's class v.

    ``P``: ``fwd``, ``bwd``, ``dec`` LSTM dicts (W, U, b), ``att`` (reference_attention's layout),
    ``Wc``, ``Wh``, ``bc``, ``Wo``, ``bo``.
    """
    S, E = source.shape
    T = target.shape[0]
    H = P["dec"]["U"].shape[0]
    M = len(P["bc"])
    fwd = _run_lstm(P["fwd"], [source[s] for s in range(Ls)])
    bwd = _run_lstm(P["bwd"], [source[s] for s in reversed(range(Ls))])
    He = P["fwd"]["U"].shape[0]
    keys = np.zeros((S, 2 * He))
    for s in range(Ls):
        keys[s, :He] = _output(fwd, s)
        keys[s, He:] = _output(bwd, Ls - 1 - s)
    valid = [s < Ls for s in range(S)]
    y, c, hid = np.zeros(H), np.zeros(H), np.zeros(M)
    dec, contexts, hiddens, states = [], [], [], []
    scores = np.zeros((T, P["Wo"].shape[1]))
    for t in range(Lt):
        x_in = np.concatenate([target[t], hid]) if feeding else target[t]
        y_new, c_new, z = lstm_step(P["dec"], x_in, y, c)
        dec.append((x_in, y, c, z, c_new))
        y, c = y_new, c_new
        ctx, _ = _context(score, P["att"], keys, valid, y, 0)
        pre = ctx @ P["Wc"] + y @ P["Wh"] + P["bc"]
        hid = np.array([math.tanh(u) for u in pre])
        scores[t] = np.array([sum(hid[m] * P["Wo"][m, v] for m in range(M)) + P["bo"][v]
                              for v in range(P["Wo"].shape[1])])
        contexts.append(ctx)
        hiddens.append(hid)
        states.append(y)
    if explain is None:
        return scores
    tau, v = explain
    R_out = np.zeros(scores.shape[1])
    R_out[v] = scores[tau, v]
    (R_hid_tau,) = eps_linear([hiddens[tau]], [P["Wo"]], P["bo"], R_out, eps, share)
    R_hid = [np.zeros(M) for _ in range(T)]
    R_hid[tau] = R_hid_tau
    R_keys = np.zeros(keys.shape)
    R_target = np.zeros((T, E))
    R_y_next, R_c_next = np.zeros(H), np.zeros(H)
    for t in reversed(range(tau + 1)):
        R_ctx, R_h = eps_linear([contexts[t], states[t]], [P["Wc"], P["Wh"]], P["bc"], R_hid[t], eps, share)
        R_k, R_q = _attention_lrp(score, P["att"], keys, valid, states[t], 0, R_ctx, mode, eps, share)
        R_keys += R_k
        x_in, y_prev, c_prev, z, c_t = dec[t]
        R_x, R_y_next, R_c_next = lstm_step_lrp(P["dec"], x_in, y_prev, c_prev, z, c_t, R_h + R_q + R_y_next,
                                                R_c_next, gate, eps, share)
        R_target[t] = R_x[:E]
        if feeding and t > 0:
            R_hid[t - 1] = R_hid[t - 1] + R_x[E:]
    R_f = _lstm_lrp(P["fwd"], fwd, [R_keys[s, :He] for s in range(Ls)], gate, eps, share)
    R_b = _lstm_lrp(P["bwd"], bwd, [R_keys[s, He:] for s in reversed(range(Ls))], gate, eps, share)
    R_source = np.zeros((S, E))
    for s in range(Ls):
        R_source[s] = R_f[s] + R_b[Ls - 1 - s]
    return scores, np.concatenate([R_source, R_target])


def _output(steps, t):
    """The output y after step t of a run of :func:`_run_lstm`: the next step's y_prev, or recomputed."""
    x, y_prev, c_prev, z, c = steps[t]
    H = len(y_prev)
    return np.array([_sigmoid(z[3 * H + h]) * math.tanh(c[h]) for h in range(H)])
