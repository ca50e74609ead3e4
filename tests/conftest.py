"""Test configuration: float64, strict dtype promotion, no silent rank promotion."""

import os

# The suite is dominated by XLA compilation of small programs: a lower backend optimisation level
# compiles faster and leaves results within the tests' tolerances.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

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
