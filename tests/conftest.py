"""Test configuration: float64, strict dtype promotion, no silent rank promotion."""

import gc
import os
import sys
from pathlib import Path

# The tests mirror the package's folders (tests/core, tests/methods, ...); the independent float64
# oracles and the test helpers (tests/oracles) are imported by name from every folder.
sys.path.insert(0, str(Path(__file__).resolve().parent / "oracles"))

# The suite is dominated by XLA compilation of small programs: a lower backend optimisation level
# compiles faster and leaves results within the tests' tolerances.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

# The command line keeps compiled programs in the user's cache directory; the tests do not (the cache
# tests set their own directory).
os.environ["LRPJAX_CACHE_DIR"] = ""

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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Frees the programs each test module compiled. Every compiled CPU program holds memory mappings
    of its own, and one process of this suite compiles thousands: without this the process reaches the
    kernel's limit on mappings (vm.max_map_count, 65530 by default) and the next compilation fails."""
    yield
    from lrpjax import datasets as scale

    scale.clear_cache()
    jax.clear_caches()
    gc.collect()
