"""Test configuration: float64, strict dtype promotion, no silent rank promotion."""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    """A fixed PRNG key; tests that need several split it."""
    return jax.random.PRNGKey(0)


@pytest.fixture
def rng():
    """A seeded numpy generator for oracle inputs."""
    return np.random.default_rng(0)
