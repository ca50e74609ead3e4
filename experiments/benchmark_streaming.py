"""Benchmark: streaming explanation of a million synthetic sentences to disk (``lrpjax.datasets.stream``).

The input: N synthetic sentences whose lengths follow the SST test set's length distribution
(``load_sst("test")``, 2210 sentences, 1..56 tokens), each token a random embedding of the shipped
model's size (E = 60: rows of a fixed table of 65,536 normal vectors with the mean and spread of the
shipped embedding table, picked at random), generated on the fly by one seeded generator (the
input is never in memory). The model: the shipped SST BiLSTM (``checkpoints/sst_bilstm.npz``), float32.
The method: LRP-all (eps 0.001), the predicted class, word-level relevance (``tokens=True``), chunks
of 128, buckets 8/16/32/64, npz shards. Every run is a subprocess of its own, so that its peak
resident memory (``ru_maxrss``) and its kill are its own. Measured:

* throughput (sentences per second, wall time of the whole call, compilation included) and peak
  memory for N = 10^5 and N = 10^6 (memory should not grow with N), and the size on disk;
* resume: a run SIGKILLed at about 40 % of its shards and started again with the same arguments, its
  extra wall time, and whether its directory equals the uninterrupted run's byte for byte;
* two processes under ``jax.distributed`` (coordinator 127.0.0.1, each explaining its own chunks on its
  own CPU device) against one process on the same machine, and whether the merged results equal the
  single-process results (a digest of every row in input order);
* the machine: cores, jax version, load average.

    python experiments/benchmark_streaming.py              # experiments/results/benchmark_streaming.{json,md}
    python experiments/benchmark_streaming.py --quick --out /tmp/bench     # N = 500 and 4,000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

E = 60
TABLE_ROWS = 65_536
BLOCK = 4096
CHUNK = 128
BUCKETS = (8, 16, 32, 64)


# --- the input (in every worker) -------------------------------------------------------------------

def sst_lengths() -> np.ndarray:
    from lrpjax.data.sst import load_sst

    return np.asarray([len(example.tokens) for example in load_sst("test")], np.int64)


def sentences(n: int, embed: np.ndarray, seed: int = 0):
    """N synthetic sentences (T_i, 60) float32, SST test-set lengths, one seeded generator, in blocks."""
    rng = np.random.default_rng(seed)
    lengths_pool = sst_lengths()
    table = rng.normal(embed.mean(), embed.std(), (TABLE_ROWS, E)).astype(np.float32)
    for start in range(0, n, BLOCK):
        lengths = rng.choice(lengths_pool, min(BLOCK, n - start))
        ids = rng.integers(0, TABLE_ROWS, int(lengths.sum()))
        rows = table[ids]
        for x in np.split(rows, np.cumsum(lengths)[:-1]):
            yield x


def worker(args) -> None:
    """One explanation run; prints a JSON line with its numbers."""
    if args.processes > 1:
        import jax
        jax.distributed.initialize(f"127.0.0.1:{args.port}", num_processes=args.processes, process_id=args.process,
                                   initialization_timeout=300)
    import jax

    from lrpjax import methods as explain
    from lrpjax.datasets import stream
    from lrpjax.models import bilstm
    from lrpjax.rules import preset
    from lrpjax.app.model import SSTModel

    model = SSTModel.load()
    method = explain.lrp(bilstm.apply, preset("lrp-all", 1e-3))
    start = time.perf_counter()
    summary = stream.explain_stream(method, model.params["model"], sentences(args.n, np.asarray(model.params["embed"])),
                                    args.dir, "pred", buckets=BUCKETS, chunk_size=CHUNK, tokens=True, resume=True,
                                    shard_bytes=args.shard_bytes)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "explained": summary.explained, "kept": summary.kept,
                      "sequences": summary.sequences, "shards": summary.shards, "compilations": summary.compilations,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "process": jax.process_index(), "processes": jax.process_count(),
                      "manifest": summary.manifest}), flush=True)
    if args.processes > 1:
        jax.distributed.shutdown()


# --- the driver ------------------------------------------------------------------------------------

SHARD_BYTES = {False: 8 << 20, True: 48 << 10}    # full, quick: about 14 and 10 shards
QUICK_N = (500, 4_000)                             # --quick: the small and the large run


def _command(n: int, directory: Path, process: int = 0, processes: int = 1, port: int = 0) -> list[str]:
    return [sys.executable, __file__, "--worker", "--n", str(n), "--dir", str(directory), "--process", str(process),
            "--processes", str(processes), "--port", str(port), "--shard-bytes", str(SHARD_BYTES[_QUICK[0]])]


_QUICK = [False]


def _env() -> dict:
    return {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}


def run_worker(n: int, directory: Path, timeout: float) -> dict:
    start = time.perf_counter()
    done = subprocess.run(_command(n, directory), env=_env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"worker failed: {done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["wall_seconds"] = time.perf_counter() - start   # with the start of Python, jax and the model
    return report


def _shards_logged(directory: Path) -> int:
    log = directory / "_log-00000-of-00001.jsonl"
    return log.read_text().count('"file"') if log.exists() else 0


def killed_and_resumed(n: int, directory: Path, kill_at_shard: int, timeout: float) -> dict:
    """SIGKILLs a run once its log names `kill_at_shard` shards, then resumes it to the end."""
    start = time.perf_counter()
    process = subprocess.Popen(_command(n, directory), env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while _shards_logged(directory) < kill_at_shard:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the run ended before it could be killed: {process.stderr.read()[-2000:]}")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.stderr.close()
    killed_after = time.perf_counter() - start
    resumed = run_worker(n, directory, timeout)
    return {"killed_after_seconds": killed_after, "shards_at_kill": kill_at_shard,
            "resumed": resumed, "total_wall_seconds": killed_after + resumed["wall_seconds"]}


def two_processes(n: int, directory: Path, timeout: float) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    processes = [subprocess.Popen(_command(n, directory, k, 2, port), env=_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for k in range(2)]
    reports = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise RuntimeError(f"a worker failed: {err[-3000:]}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            process.kill()
    return {"wall_seconds": time.perf_counter() - start, "workers": reports}


def digest(directory: Path) -> str:
    """sha256 over every row (index, length, scores, target, relevance) in input order."""
    from lrpjax.datasets import stream

    h = hashlib.sha256()
    for row in stream.open_results(directory):
        h.update(np.asarray([row.index, row.length], np.int64).tobytes())
        for value in (row.scores, row.target, row.relevance):
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def directory_bytes(directory: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def disk_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def machine() -> dict:
    import jax

    return {"cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "jax": jax.__version__,
            "device": str(jax.devices()[0].device_kind), "load_average": list(os.getloadavg())}


def measure(quick: bool, work: Path) -> dict:
    _QUICK[0] = quick
    small_n, big_n = QUICK_N if quick else (100_000, 1_000_000)
    timeout = 600 if quick else 7200
    result = {"machine_before": machine(), "model": "checkpoints/sst_bilstm.npz (float32)",
              "method": "lrp-all, eps 0.001, predicted class, word-level relevance",
              "input": f"synthetic, SST test-set lengths, E = {E} random embeddings",
              "chunk_size": CHUNK, "buckets": list(BUCKETS), "shard_format": "npz",
              "shard_bytes": SHARD_BYTES[quick], "runs": {}}
    for n in (small_n, big_n):
        report = run_worker(n, work / f"one_{n}", timeout)
        report["sentences_per_second"] = n / report["seconds"]
        report["disk_bytes"] = disk_size(work / f"one_{n}")
        report["disk_bytes_per_sentence"] = report["disk_bytes"] / n
        result["runs"][f"one_process_{n}"] = report
        print(f"N = {n}: {report['sentences_per_second']:.0f} sentences/s, peak RSS {report['peak_rss_mb']:.0f} MB, "
              f"{report['disk_bytes'] / 1e6:.1f} MB on disk", flush=True)
    shards = result["runs"][f"one_process_{big_n}"]["shards"]
    kill_at = max(1, int(0.4 * shards))
    resumed = killed_and_resumed(big_n, work / "killed", kill_at, timeout)
    resumed["identical_to_uninterrupted"] = directory_bytes(work / "killed") == directory_bytes(work / f"one_{big_n}")
    result["runs"]["killed_and_resumed"] = resumed
    print(f"killed at shard {kill_at}/{shards}, resumed: identical = {resumed['identical_to_uninterrupted']}",
          flush=True)
    two = two_processes(big_n, work / "two", timeout)
    two["sentences_per_second"] = big_n / max(w["seconds"] for w in two["workers"])
    start = time.perf_counter()
    two["merged_equals_one_process"] = digest(work / "two") == digest(work / f"one_{big_n}")
    result["reader_seconds_for_two_digests"] = time.perf_counter() - start
    result["runs"]["two_processes"] = two
    print(f"two processes: {two['sentences_per_second']:.0f} sentences/s, merged equals one process: "
          f"{two['merged_equals_one_process']}", flush=True)
    result["machine_after"] = machine()
    return result


def markdown(result: dict, command: str) -> str:
    runs = result["runs"]
    ones = sorted((k for k in runs if k.startswith("one_process_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    lines = ["# Streaming explanation benchmark", "", f"Command: `{command}`", "",
             f"Model: {result['model']}; method: {result['method']}; input: {result['input']}; chunks of "
             f"{result['chunk_size']}, buckets {result['buckets']}, {result['shard_format']} shards of "
             f"{result['shard_bytes'] / 2**20:g} MiB.", "",
             "| run | sentences | wall time of the call | sentences/s | peak RSS | on disk |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key in ones:
        r = runs[key]
        n = int(key.rsplit("_", 1)[1])
        lines.append(f"| one process | {n:,} | {r['seconds']:.1f} s | {r['sentences_per_second']:,.0f} | "
                     f"{r['peak_rss_mb']:,.0f} MB | {r['disk_bytes'] / 1e6:,.1f} MB ({r['disk_bytes_per_sentence']:.0f} B/sentence) |")
    two = runs["two_processes"]
    n = int(ones[-1].rsplit("_", 1)[1])
    lines.append(f"| two processes (jax.distributed) | {n:,} | {max(w['seconds'] for w in two['workers']):.1f} s | "
                 f"{two['sentences_per_second']:,.0f} | {max(w['peak_rss_mb'] for w in two['workers']):,.0f} MB each | |")
    k = runs["killed_and_resumed"]
    single = runs[ones[-1]]
    lines += ["", f"Resume: SIGKILLed after {k['killed_after_seconds']:.0f} s (at shard {k['shards_at_kill']} of "
              f"{single['shards']}), resumed with the same command: it kept {k['resumed']['kept']:,} sentences, "
              f"explained {k['resumed']['explained']:,} in {k['resumed']['seconds']:.1f} s; in all "
              f"{k['total_wall_seconds']:.0f} s of wall time against {single['wall_seconds']:.0f} s uninterrupted "
              "(both with process start). Directory byte-identical to the uninterrupted run's: "
              f"**{k['identical_to_uninterrupted']}**.",
              "", f"Two processes: merged results equal the one-process results (digest of every row in input "
              f"order): **{two['merged_equals_one_process']}**; each process explained "
              + ", ".join(f"{w['sequences']:,}" for w in two["workers"]) + " sentences.",
              "", f"Machine: {result['machine_before']['cores']} cores, {result['machine_before']['device']}, jax "
              f"{result['machine_before']['jax']}; load average before {result['machine_before']['load_average']}, "
              f"after {result['machine_after']['load_average']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"N = {QUICK_N[0]:,} and {QUICK_N[1]:,} instead of 10^5 and 10^6 (a check that every "
                             "part runs, not a measurement)")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="directory for the results")
    parser.add_argument("--work", default=None, help="directory for the runs' outputs (default: a temporary one, "
                                                     "removed at the end)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--process", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--shard-bytes", type=int, default=8 << 20, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lrpjax-stream-bench-"))
    try:
        result = measure(args.quick, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    command = "python experiments/benchmark_streaming.py" + (" --quick" if args.quick else "")
    result["command"] = command
    from lrpjax.io.files import atomic_write_text

    atomic_write_text(out / "benchmark_streaming.json", json.dumps(result, indent=1) + "\n")
    text = markdown(result, command)
    atomic_write_text(out / "benchmark_streaming.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
