"""Murdoch et al.'s linearisations for the float64 Contextual Decomposition oracles of the tests (plain
NumPy, no code shared with the library)."""

import numpy as np


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def split_three(a, b, c, act):
    """act(a + b + c) as (L(a), L(b), L(c)): the two orderings of a and b averaged, the bias c first."""
    a_part = 0.5 * (act(a + c) - act(c) + act(a + b + c) - act(b + c))
    b_part = 0.5 * (act(b + c) - act(c) + act(a + b + c) - act(a + c))
    return a_part, b_part, act(c)


def split_tanh(a, b):
    """tanh(a + b) as two parts, the two orderings averaged."""
    return 0.5 * (np.tanh(a) + np.tanh(a + b) - np.tanh(b)), 0.5 * (np.tanh(b) + np.tanh(a + b) - np.tanh(a))
