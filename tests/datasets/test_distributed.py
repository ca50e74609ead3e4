"""Two processes under jax.distributed explain one stream; their merged output equals one process's.

Each process is a subprocess: ``jax.distributed.initialize`` with a coordinator on 127.0.0.1 (a free
port), ``num_processes=2``, its ``process_id``, ``JAX_PLATFORMS=cpu``. Both read the whole input and
explain their own chunks on their own device (``partition="chunks"``), then their own halves given as
``(index, array)`` pairs (``partition="given"``); process 0 writes the merged manifest after a barrier.
Every wait is bounded, and both processes are killed if the test fails.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax import methods as explain
from lrpjax import datasets as scale
from lrpjax.datasets import stream
from lrpjax.models import bilstm
from lrpjax.rules import preset

ROOT = Path(__file__).resolve().parents[2]
N = 60

CHILD = textwrap.dedent("""
    import json, sys
    import jax
    process, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process,
                               initialization_timeout=120)
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np
    from lrpjax import methods as explain
    from lrpjax.datasets import stream
    from lrpjax.models import bilstm
    from lrpjax.rules import preset

    params = bilstm.init(jax.random.PRNGKey(4), 5, 3, 3, jnp.float64)
    methods = [explain.lrp(bilstm.apply, preset("lrp-prop", 0.2)), explain.gradient_x_input(bilstm.apply)]

    def sequences():
        for i in range(int(sys.argv[4])):
            yield i, np.random.default_rng(i).normal(0.0, 0.5, (1 + (i * 7) % 11, 5))

    chunks = stream.explain_stream(methods, params, sequences(), out + "/chunks", "all", buckets=(4, 8), chunk_size=4,
                                   shard_bytes=4000)
    mine = ((i, x) for i, x in sequences() if i % 2 == process)
    given = stream.explain_stream(methods, params, mine, out + "/given", "all", buckets=(4, 8), chunk_size=4,
                                  partition="given")
    print(json.dumps({"process": jax.process_index(), "count": jax.process_count(),
                      "local_devices": len(jax.local_devices()), "chunks": chunks._asdict(), "given": given._asdict()}))
    jax.distributed.shutdown()
""")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_write_what_one_process_writes(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    port = _free_port()
    processes = [subprocess.Popen([sys.executable, "-c", CHILD, str(k), str(port), str(tmp_path), str(N)], env=env,
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for k in range(2)]
    reports = []
    try:
        deadline = time.monotonic() + 300
        for process in processes:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)
    assert [r["process"] for r in reports] == [0, 1] and all(r["count"] == 2 for r in reports)
    chunks = [r["chunks"] for r in reports]
    assert sum(c["sequences"] for c in chunks) == N and all(c["sequences"] > N // 4 for c in chunks)
    assert chunks[0]["manifest"] is not None and chunks[1]["manifest"] is None   # process 0, after the barrier

    params = bilstm.init(jax.random.PRNGKey(4), 5, 3, 3, jnp.float64)
    methods = [explain.lrp(bilstm.apply, preset("lrp-prop", 0.2)), explain.gradient_x_input(bilstm.apply)]
    xs = [np.random.default_rng(i).normal(0.0, 0.5, (1 + (i * 7) % 11, 5)) for i in range(N)]
    single = scale.explain_dataset(methods, params, xs, "all", buckets=(4, 8), chunk_size=4)
    for name in ("chunks", "given"):
        results = stream.open_results(tmp_path / name)
        assert results.complete and results.process_count == 2 and len(results) == N
        merged = results.load()
        np.testing.assert_array_equal(merged.lengths, single.lengths)
        np.testing.assert_array_equal(merged.scores, single.scores)
        for a, b in zip(merged.relevance, single.relevance):
            np.testing.assert_array_equal(a, b)
    manifest = json.loads((tmp_path / "chunks" / "_manifest.json").read_text())
    assert manifest["process_count"] == 2 and manifest["sequences"] == N
    assert {s["process"] for s in manifest["shards"]} == {0, 1}
