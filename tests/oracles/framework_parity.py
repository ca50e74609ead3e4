"""Helpers of the importer tests: the relative difference to a framework's output, and NumPy-style
promotion for the frameworks that rely on it (keras, flax), which the suite's strict settings forbid
elsewhere."""

import contextlib

import jax
import numpy as np


def rel_err(got, want) -> float:
    """max |got - want| / max |want|: the relative difference of two arrays."""
    want = np.asarray(want)
    return float(np.max(np.abs(np.asarray(got) - want)) / max(np.max(np.abs(want)), 1e-300))


@contextlib.contextmanager
def numpy_promotion():
    """Standard dtype promotion and implicit rank promotion, for the duration of the block."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield
