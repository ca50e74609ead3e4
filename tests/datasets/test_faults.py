"""Fault injection against streamed explanations (lrpjax.datasets.stream): a killed writer, shards
corrupted, truncated or deleted after the fact, a second writer on one output, changed arguments, and
processes under jax.distributed that disagree or are lost. Every case ends with the output of an
uninterrupted run or a clear error naming the argument (or process) and what to do; none ends "complete"
with wrong, mixed or missing results.

Tiny shapes (E=4, H=3, float64), one chunk program per bucket; subprocesses are bounded by timeouts and
killed if a test fails.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax import methods as explain
from lrpjax.core.rules import preset
from lrpjax.datasets import stream
from lrpjax.datasets.shards import StreamError, StreamWarning
from lrpjax.io.locks import LockError
from lrpjax.models import bilstm

ROOT = Path(__file__).resolve().parents[2]
N = 24


@pytest.fixture(scope="module")
def params():
    return bilstm.init(jax.random.PRNGKey(3), 4, 3, 3, jnp.float64)


LRP = explain.lrp(bilstm.apply, preset("lrp-all", 1e-3))


def items(n=N, shift=0.0):
    for i in range(n):
        yield i, np.random.default_rng(i).normal(shift, 0.5, (1 + (i * 5) % 7, 4))


def write(out, params, resume=False, fmt="npz", **kwargs):
    return stream.explain_stream(LRP, params, items(), out, "pred", buckets=(4, 8), chunk_size=2, shard_bytes=300,
                                 resume=resume, format=fmt, **kwargs)


def contents(directory):
    return {p.name: p.read_bytes() for p in Path(directory).iterdir() if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def whole(params, tmp_path_factory):
    """The uninterrupted run's files, in both formats."""
    out = {}
    for fmt in ("npz", "parquet"):
        if fmt == "parquet":
            pytest.importorskip("pyarrow")
        directory = tmp_path_factory.mktemp(f"whole-{fmt}")
        write(directory, params, fmt=fmt)
        out[fmt] = contents(directory)
    return out


def copy(files, directory):
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


# --- corrupt, truncate, delete ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["npz", "parquet"])
def test_a_damaged_shard_is_refused_by_the_reader_and_recomputed_on_resume(tmp_path, params, whole, fmt):
    out = copy(whole[fmt], tmp_path / "out")
    shards = sorted(out.glob(f"part-*.{fmt}"))
    assert len(shards) >= 4
    flipped = bytearray(shards[1].read_bytes())
    flipped[len(flipped) // 2] ^= 0x01    # one bit, in the values
    shards[1].write_bytes(bytes(flipped))
    shards[2].write_bytes(shards[2].read_bytes()[:-7])   # truncated
    shards[3].unlink()                                    # deleted
    results = stream.open_results(out)
    with pytest.raises(StreamError, match=rf"{shards[1].name}.*checksum.*resume the run"):
        list(results)
    with pytest.warns(StreamWarning, match=r"3 kept shard\(s\) are damaged or missing"):
        summary = write(out, params, resume=True, fmt=fmt)
    assert summary.repaired == 3 and summary.explained > 0 and summary.manifest is not None
    assert contents(out) == whole[fmt]
    # Resuming again finds everything whole and changes nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error", StreamWarning)
        again = write(out, params, resume=True, fmt=fmt)
    assert again.repaired == 0 and again.explained == 0 and contents(out) == whole[fmt]


# --- kill ---------------------------------------------------------------------------------------------

KILLED = textwrap.dedent("""
    import os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np
    from lrpjax import methods as explain
    from lrpjax.core.rules import preset
    from lrpjax.datasets import stream
    from lrpjax.models import bilstm

    params = bilstm.init(jax.random.PRNGKey(3), 4, 3, 3, jnp.float64)

    def items():
        for i in range(int(sys.argv[2])):
            if i == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)
            yield i, np.random.default_rng(i).normal(0.0, 0.5, (1 + (i * 5) % 7, 4))

    stream.explain_stream(explain.lrp(bilstm.apply, preset("lrp-all", 1e-3)), params, items(), sys.argv[1], "pred",
                          buckets=(4, 8), chunk_size=2, shard_bytes=300, resume=True)
""")


def test_a_killed_writer_leaves_a_stale_lock_that_a_resume_takes_over_to_the_uninterrupted_bytes(tmp_path, params,
                                                                                               whole):
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    process = subprocess.run([sys.executable, "-c", KILLED, str(out), str(N), str(N - 5)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    lock = json.loads((out / ".lock-00000").read_text())       # left behind by the killed process
    assert lock["pid"] != os.getpid()
    summary = write(out, params, resume=True)
    assert summary.kept > 0 and summary.explained > 0 and not (out / ".lock-00000").exists()
    assert contents(out) == whole["npz"]


# --- concurrent writers -------------------------------------------------------------------------------

def test_a_second_writer_on_one_output_is_refused_naming_the_holder(tmp_path, params):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tick = int(Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        (out / ".lock-00000").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                     "started": 0, "tick": tick}))
        with pytest.raises(LockError, match=rf"being written by process {holder.pid} on host .*1970-01-01"):
            write(out, params, resume=True)
        assert sorted(p.name for p in out.iterdir()) == [".lock-00000"]   # nothing written, nothing removed
        # Another process index is another part of the output: not locked by it.
        summary = write(out, params, resume=True, process_index=1, process_count=2)
        assert summary.sequences > 0
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # A recycled process id (same pid, another start tick) does not hold the lock either.
    (out / ".lock-00000").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "tick": -5}))
    assert write(out, params, resume=True, process_index=0, process_count=2).manifest is not None


def test_a_writer_in_this_process_holds_its_output_until_it_ends(tmp_path, params):
    out = tmp_path / "out"

    def reentrant():
        for item in items():
            if item[0] == 3:
                with pytest.raises(LockError, match="already being written by this process"):
                    write(out, params, resume=True)
            yield item

    stream.explain_stream(LRP, params, reentrant(), out, "pred", buckets=(4, 8), chunk_size=2, shard_bytes=300)
    assert not (out / ".lock-00000").exists() and stream.open_results(out).complete


# --- changed arguments --------------------------------------------------------------------------------

def test_the_identity_holds_the_devices(tmp_path, params):
    write(tmp_path / "out", params)
    header = json.loads((tmp_path / "out" / "_log-00000-of-00001.jsonl").read_text().splitlines()[0])
    assert header["config"]["devices"] == {"count": 1, "platform": "cpu", "kind": jax.devices()[0].device_kind}
    log = tmp_path / "out" / "_log-00000-of-00001.jsonl"
    lines = log.read_text().splitlines()
    edited = json.loads(lines[0])
    edited["config"]["devices"]["count"] = 2       # as if written on two devices
    log.write_text("\n".join([json.dumps(edited, sort_keys=True), *lines[1:]]) + "\n")
    with pytest.raises(StreamError, match=r"config.devices.count: 2 before, 1 now"):
        write(tmp_path / "out", params, resume=True)


# --- processes that disagree or are lost -------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, sys
    import jax
    process, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process, initialization_timeout=60,
                               heartbeat_timeout_seconds=10)   # the lost process is named after 10 s, not 100
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np
    from lrpjax import methods as explain
    from lrpjax.core.rules import preset
    from lrpjax.datasets import stream
    from lrpjax.models import bilstm

    params = bilstm.init(jax.random.PRNGKey(3), 4, 3, 3, jnp.float64)
    lrp = explain.lrp(bilstm.apply, preset("lrp-all", 1e-3))
    report = {}

    def items(changed=None, lost=None):
        for i in range(12):
            if i == lost:
                print(json.dumps(report), flush=True)
                os._exit(0)   # this process is lost before it finishes
            yield i, np.random.default_rng(i).normal(1.0 if i == changed else 0.0, 0.5, (1 + (i * 5) % 7, 4))

    def attempt(name, data, chunk_size=2, timeout=120):
        try:
            stream.explain_stream(lrp, params, data, os.path.join(out, name), "pred", buckets=(4, 8),
                                  chunk_size=chunk_size, timeout=timeout)
            report[name] = "ok"
        except stream.StreamError as error:
            report[name] = str(error)

    attempt("chunk_size", items(), chunk_size=2 + 2 * process)
    attempt("values", items(changed=7 if process == 1 else None))   # same lengths, other values
    attempt("lost", items(lost=9 if process == 1 else None), timeout=4)
    print(json.dumps(report), flush=True)
    os._exit(0)   # not jax.distributed.shutdown(): its peer is gone
""")


@pytest.mark.slow   # two jax.distributed processes, each importing jax and compiling
def test_processes_that_disagree_or_are_lost_are_named_and_nothing_is_marked_complete(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = [subprocess.Popen([sys.executable, "-c", CHILD, str(k), str(port), str(tmp_path)], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    reports = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=180)
            assert process.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)
    for report in reports:
        assert "process 1 has other arguments than process 0 (run.config.chunk_size: 2 in process 0, 4 in " \
               "process 1)" in report["chunk_size"]
        assert "process 1 has other input than process 0 (input_crc32" in report["values"]
    assert "lost" not in reports[1]
    assert "process 1 of 2 did not finish within 4 s" in reports[0]["lost"] and "resume=True" in reports[0]["lost"]
    for name in ("chunk_size", "values", "lost"):    # nothing claims to be complete
        assert not (tmp_path / name / "_manifest.json").exists()
        logs = sorted((tmp_path / name).glob("_log-*.jsonl"))
        assert all('"complete"' not in log.read_text() for log in logs)


# --- numbers that should warn -------------------------------------------------------------------------

def test_relevance_far_beyond_the_score_is_flagged_warned_and_counted(tmp_path):
    from lrpjax.methods.results import NumericalWarning, health

    # LRP-prop without a stabiliser in float32: shares z_g / (z_g + z_s) near a cancelling denominator.
    params = bilstm.init(jax.random.PRNGKey(25), 4, 3, 3, jnp.float32)
    x = np.random.default_rng(25).normal(0.0, 1.0, (6, 4)).astype(np.float32)
    prop = explain.lrp(bilstm.apply, preset("lrp-prop", 0.0))
    with pytest.warns(NumericalWarning, match=r"times the target's score .*raise eps"):
        flagged = prop.full(params, x, 0)
    assert "times the target's score" in flagged.health
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalWarning)
        assert explain.lrp(bilstm.apply, preset("lrp-all", 1e-3)).full(params, x, 0).health is None
        with pytest.warns(NumericalWarning, match=r"1 of 2 sequence\(s\)"):
            summary = stream.explain_stream(prop, params, [x, x[:2]], tmp_path / "out", 0, buckets=(8,), chunk_size=1)
    assert summary.flagged == 1
    assert '"flagged": 1' in (tmp_path / "out" / "_log-00000-of-00001.jsonl").read_text()
    # Non-finite values and a residual beyond the tolerance are flagged too.
    assert "NaN or infinity" in health(np.array([1.0, np.nan]), 1.0)
    assert "residual" in health(np.ones(3), 1.0, residual=50.0) and health(np.ones(3), 3.0, residual=0.1) is None


def test_parameters_given_as_nested_lists_are_refused_naming_the_parameter(params):
    nested = jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), params)
    with pytest.raises(TypeError, match=r"`params`: the parameter at \['left'\]\['U'\] is a nested list"):
        LRP(nested, np.ones((3, 4)), 0)
    with pytest.raises(TypeError, match=r"nested list"):
        list(stream.iter_stream(LRP, nested, [np.ones((3, 4))]))
