"""Sharding a dataset explanation over 4 virtual CPU devices gives the single-device results.

The device count of a process is fixed when JAX starts, so the 4-device run happens in a subprocess
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``; it writes its results to an ``.npz``
that this process compares with a 1-device run of its own (and the subprocess with its 1-device run).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax import methods as explain
from lrpjax import datasets as scale
from lrpjax.models import bilstm
from lrpjax.rules import preset

LENGTHS = (3, 7, 1, 5, 8, 2, 6, 4, 7, 3, 5)

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from lrpjax import methods as explain
    from lrpjax import datasets as scale
    from lrpjax.models import bilstm
    from lrpjax.rules import preset

    lengths = json.loads(sys.argv[2])
    params = bilstm.init(jax.random.PRNGKey(4), 5, 3, 3, jnp.float64)
    rng = np.random.default_rng(7)
    sequences = [rng.normal(0.0, 0.5, (T, 5)) for T in lengths]
    methods = [explain.lrp(bilstm.apply, preset("lrp-prop", 0.2)), explain.gradient_x_input(bilstm.apply)]
    sharded = scale.explain_dataset(methods, params, sequences, "all", buckets=(4, 8), chunk_size=4)
    single = scale.explain_dataset(methods, params, sequences, "all", buckets=(4, 8), chunk_size=4, devices=1)
    from lrpjax.datasets import driver
    program = next(iter(driver._CACHE.values()))
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(sharded.relevance, single.relevance))
    np.savez(sys.argv[1], scores=sharded.scores, *sharded.relevance)
    print(json.dumps({"devices": len(jax.devices()), "mesh": int(program.batch.mesh.size),
                      "diff": diff}))
""")


def test_four_devices_equal_one_device(tmp_path):
    out_file = tmp_path / "sharded.npz"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out_file), json.dumps(LENGTHS)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and report["mesh"] == 4
    assert report["diff"] < 1e-12

    params = bilstm.init(jax.random.PRNGKey(4), 5, 3, 3, jnp.float64)
    rng = np.random.default_rng(7)
    sequences = [rng.normal(0.0, 0.5, (T, 5)) for T in LENGTHS]
    methods = [explain.lrp(bilstm.apply, preset("lrp-prop", 0.2)), explain.gradient_x_input(bilstm.apply)]
    here = scale.explain_dataset(methods, params, sequences, "all", buckets=(4, 8), chunk_size=4)
    with np.load(out_file) as sharded:
        np.testing.assert_allclose(sharded["scores"], here.scores, rtol=1e-12, atol=1e-13)
        for i, r in enumerate(here.relevance):
            assert sharded[f"arr_{i}"].shape == r.shape
            np.testing.assert_allclose(sharded[f"arr_{i}"], r, rtol=1e-10, atol=1e-12)
