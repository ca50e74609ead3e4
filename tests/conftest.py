"""Test configuration: float64, strict dtype promotion, no silent rank promotion."""

import gc
import os
import shutil
import signal
import sys
import tempfile
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

# PyTorch's CPU operations start an OpenMP thread per core; beside the other xdist worker and XLA's
# threads those threads spin against each other (the attention guide's 60-step training of a tiny
# BiLSTM: 0.4 s on one thread, 8 s on two on a 2-core machine). The tests and the processes they start
# (documentation pages, experiments) run them on one thread: set before anything imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The interruption tests send SIGINT to the run (and to the processes it starts) and expect Python's
# KeyboardInterrupt. A run started in the background of a non-interactive shell (`pytest ... &`) inherits
# SIGINT ignored, and Python then installs no handler: the tests would wait for an interruption that
# never comes. They get Python's own handler back (children started from here inherit the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# Many tests compile programs another test of the run compiled already (the same model and rule set
# built anew, a parametrised case whose trace is the same): each test process keeps its compiled
# programs in a directory of its own (JAX's persistent compilation cache, set before the first
# compilation, removed at the end of the run), so an identical program is loaded instead of compiled
# again. Tracing and lowering still run; a program is keyed by its lowered text, the compile options
# (XLA_FLAGS above) and the JAX version, so a loaded program is the one a compilation would give.
# Subprocesses of the tests (documentation pages, experiments, the cache tests) do not inherit it.
_XLA_CACHE = tempfile.mkdtemp(prefix="lrpjax-tests-xla-")
jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


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


# --- the order in which pytest-xdist hands out the files (`-n auto --dist loadfile`) -------------------
# xdist's default hands out the files with the most tests first, which leaves the files of one or two long
# tests (the experiments' --quick runs, the two-process runs) to the end, where one worker runs the last of
# them while the other waits. The files go out instead by an estimate of their cost, the heaviest first
# (longest-processing-time-first scheduling): every test counts 1, a test marked slow (a run of 10-100 s)
# counts SLOW_WEIGHT more. Only the order changes: every file still runs whole in one worker.
SLOW_WEIGHT = 20


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "dist", "no") == "loadfile":
        config.option.loadscopereorder = False       # keep the order the workers' collection gives


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):
        return                                       # only the order xdist's workers report matters
    cost: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        cost[path] = cost.get(path, 0) + 1 + (SLOW_WEIGHT if item.get_closest_marker("slow") else 0)
    first = {path: i for i, path in enumerate(cost)}
    items.sort(key=lambda item: (-cost[item.nodeid.split("::", 1)[0]], first[item.nodeid.split("::", 1)[0]]))


def pytest_unconfigure(config):
    shutil.rmtree(_XLA_CACHE, ignore_errors=True)
