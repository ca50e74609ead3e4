"""Benchmark: explaining the SST test set (2210 sentences) at scale with ``lrpjax.scale.explain_dataset``.

Measured in one run, float32, on the devices JAX sees (normally the CPU):

* per configuration (LRP with each preset, gradient, forward only), each in a fresh subprocess:
  time of the first call (compilation included) and of a warm call (min over repeats), sentences per
  second for both, compilations, peak resident memory (``ru_maxrss``);
* LRP / ``jax.grad`` on identical padded batches (one per bucket length, the same jitted vmap shape;
  the gradient is a plain vjp seeded at the target), min over interleaved repeats;
* batched / one sentence at a time (the public per-sentence call ``method(params, x, target)``,
  warm, on a few hundred sentences);
* peak memory explaining the test set replicated 10x vs 1x, streamed chunk by chunk
  (``iter_chunks``: bounded by the chunk) and collected (``explain_dataset``: plus the results);
* the machine: cores, device, jax version, load average before and after.

    python experiments/benchmark.py                  # writes experiments/results/benchmark.{json,md}
    python experiments/benchmark.py --quick --out /tmp/bench

Uses the shipped model ``checkpoints/sst_bilstm.npz`` when present, else the reference BiLSTM
(tests/data/ref_bilstm.npz) with seeded random embeddings (normal, std 0.4); the output says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ("forward", "gradient", "lrp-all", "lrp-prop", "lrp-abs", "lrp-half")
QUICK_CONFIGS = ("forward", "gradient", "lrp-all")


# --- model and data (in every process) -------------------------------------------------------------

def load_setup(quick: bool):
    """(params float32, embedded test sentences list of (T, E) float32, description of the model)."""
    import jax
    from lrpjax.data.sst import load_sst
    from lrpjax.models import bilstm

    examples = load_sst("test")
    checkpoint = ROOT / "checkpoints" / "sst_bilstm.npz"
    if checkpoint.is_file():
        from lrpjax.sst import SSTModel
        model = SSTModel.load(checkpoint)
        embed = np.asarray(model.params["embed"], np.float32)
        params = model.params["model"]
        ids = [model.vocab.encode(list(e.tokens))[0] for e in examples]
        source = f"shipped checkpoint {checkpoint.relative_to(ROOT)} ({model.metadata.get('command', '?')})"
    else:
        params = bilstm.from_reference(np.load(ROOT / "tests" / "data" / "ref_bilstm.npz"))
        words = sorted({w for e in examples for w in e.tokens})
        index = {w: i for i, w in enumerate(words)}
        embed = np.random.default_rng(0).normal(0.0, 0.4, (len(words), 60)).astype(np.float32)
        ids = [np.asarray([index[w] for w in e.tokens]) for e in examples]
        source = "reference BiLSTM (tests/data/ref_bilstm.npz) with seeded random embeddings (std 0.4)"
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), params)
    sentences = [embed[i] for i in ids]
    if quick:
        sentences = sentences[:400]
    return params, sentences, source


def _forward_only_fn(method, params, x, target, mask, index):
    """No relevance: with the scores the dataset driver computes anyway, this times the forward pass."""
    return jnp.zeros((x.shape[0],), x.dtype)


def make_method(name: str):
    from lrpjax import explain
    from lrpjax.models import bilstm
    from lrpjax.rules import preset
    from lrpjax.sst import DEFAULT_EPS

    if name == "forward":
        return explain.Method("forward", _forward_only_fn, bilstm.apply)
    if name == "gradient":
        return explain.gradient(bilstm.apply)
    return explain.lrp(bilstm.apply, preset(name, DEFAULT_EPS[name]))


# --- workers (one subprocess each, so that peak memory is per configuration) ------------------------

def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def worker_throughput(job: dict) -> dict:
    from lrpjax import scale

    params, sentences, _ = load_setup(job["quick"])
    method = make_method(job["config"])
    options = dict(buckets=job["buckets"], chunk_size=job["chunk_size"])
    rss_before = _maxrss_mb()
    start = time.perf_counter()
    first = scale.explain_dataset(method, params, sentences, "pred", **options)
    first_s = time.perf_counter() - start
    warm = []
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        again = scale.explain_dataset(method, params, sentences, "pred", **options)
        warm.append(time.perf_counter() - start)
    assert again.compilations == 0
    n = len(sentences)
    return {"config": job["config"], "sentences": n, "first_call_s": first_s, "warm_s": min(warm),
            "warm_all_s": warm, "sentences_per_s_with_compile": n / first_s,
            "sentences_per_s_warm": n / min(warm), "compilations": first.compilations,
            "edges": list(first.edges), "padded_steps": _padded_steps(first, job["chunk_size"]),
            "tokens": int(first.lengths.sum()), "maxrss_mb": _maxrss_mb(), "maxrss_before_mb": rss_before}


def _padded_steps(result, chunk_size: int) -> int:
    from lrpjax.scale import assign_buckets
    padded = assign_buckets(result.lengths, result.edges)
    return int(sum(-(-np.sum(padded == L) // chunk_size) * chunk_size * L for L in np.unique(padded)))


def worker_memory(job: dict) -> dict:
    from lrpjax import scale

    params, sentences, _ = load_setup(job["quick"])
    # The edges of the 1x test set for every replica count: the same programs, so that only the data
    # size changes (a number of buckets would otherwise be re-optimised for the replicated lengths).
    edges = scale._resolve_edges(job["buckets"], np.asarray([len(s) for s in sentences]), job["chunk_size"])
    sentences = sentences * job["replicas"]  # the list repeats references: the inputs are not copied
    method = make_method("lrp-all")
    options = dict(buckets=edges, chunk_size=job["chunk_size"])
    start = time.perf_counter()
    if job["mode"] == "stream":
        tokens = 0.0
        for chunk in scale.iter_chunks(method, params, sentences, "pred", **options):
            tokens += float(np.abs(chunk.relevance).sum())  # consume, keep nothing
        result_mb = 0.0
    else:
        result = scale.explain_dataset(method, params, sentences, "pred", **options)
        result_mb = sum(r.nbytes for r in result.relevance) / 2**20
    input_mb = sum(s.nbytes for s in sentences[: len(sentences) // job["replicas"]]) / 2**20
    return {"mode": job["mode"], "replicas": job["replicas"], "sentences": len(sentences),
            "seconds": time.perf_counter() - start, "maxrss_mb": _maxrss_mb(), "input_mb": input_mb,
            "result_mb": result_mb}


def worker_ratios(job: dict) -> dict:
    """LRP / jax.grad on identical batches, and batched / one at a time."""
    import jax
    import jax.numpy as jnp
    from lrpjax import explain, scale
    from lrpjax.models import bilstm

    params, sentences, _ = load_setup(job["quick"])
    B = job["chunk_size"]
    lengths = np.asarray([len(s) for s in sentences])
    edges = scale._resolve_edges(job["buckets"], lengths, B)
    padded = scale.assign_buckets(lengths, edges)
    presets = [c for c in job["configs"] if c.startswith("lrp-")]
    rows = []
    for L in np.unique(padded):
        members = np.flatnonzero(padded == L)[:B]
        X, mask, _, _ = scale._fill_chunk(sentences, lengths, members, int(L), B, np.zeros(len(sentences), np.int32))
        X, mask = jnp.asarray(X), jnp.asarray(mask)
        targets = jnp.argmax(jax.vmap(lambda x, k: bilstm.apply(params, x, mask=k))(X, mask), -1).astype(jnp.int32)

        def grad_one(x, k, t):
            return jax.grad(lambda x_: bilstm.apply(params, x_, mask=k)[t])(x)

        fns = {"jax.grad": jax.jit(jax.vmap(grad_one))}
        for name in presets:
            m = make_method(name)
            fns[name] = jax.jit(jax.vmap(lambda x, k, t, m=m: m.fn(m, params, x, t, k, 0)))
        times = {name: [] for name in fns}
        for fn in fns.values():
            jax.block_until_ready(fn(X, mask, targets))
        for _ in range(job["repeats"]):
            for name, fn in fns.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(X, mask, targets))
                times[name].append(time.perf_counter() - start)
        best = {name: min(t) for name, t in times.items()}
        rows.append({"length": int(L), "batch": B, "seconds": best,
                     "ratio_to_grad": {n: best[n] / best["jax.grad"] for n in presets}})
    single = _one_at_a_time(params, sentences, job)
    return {"per_bucket": rows, "one_at_a_time": single,
            "ratio_to_grad": {n: float(np.median([r["ratio_to_grad"][n] for r in rows])) for n in presets}}


def _one_at_a_time(params, sentences, job: dict) -> dict:
    import jax
    from lrpjax import scale

    method = make_method("lrp-all")
    chosen = sentences[: job["singles"]]
    for x in {len(x): x for x in chosen}.values():  # compile every length first: warm timing
        jax.block_until_ready(method(params, x, 0))
    start = time.perf_counter()
    for x in chosen:
        jax.block_until_ready(method(params, x, 0))
    single_s = time.perf_counter() - start
    options = dict(buckets=job["buckets"], chunk_size=job["chunk_size"])
    scale.explain_dataset(method, params, chosen, 0, **options)
    start = time.perf_counter()
    scale.explain_dataset(method, params, chosen, 0, **options)
    batched_s = time.perf_counter() - start
    return {"sentences": len(chosen), "one_at_a_time_per_s": len(chosen) / single_s,
            "batched_per_s": len(chosen) / batched_s, "speedup": single_s / batched_s}


WORKERS = {"throughput": worker_throughput, "memory": worker_memory, "ratios": worker_ratios}


def run_worker(job: dict) -> dict:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)],
                          capture_output=True, text=True, cwd=str(ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report -----------------------------------------------------------------------------------------

def machine() -> dict:
    import jax
    return {"cpu_count": os.cpu_count(), "cores_available": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(), "platform": platform.platform(),
            "python": platform.python_version(), "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend()}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Explaining the SST test set at scale ({report['sentences']} sentences, float32)", "",
             f"Model: {report['model']}.  ",
             f"Machine: {m['cores_available']} cores ({m['processor']}), devices {', '.join(m['devices'])}, "
             f"jax {m['jax']}; load average {report['load_before'][0]:.1f} before, "
             f"{report['load_after'][0]:.1f} after (the machine was shared).  ",
             f"Buckets {report['options']['buckets']!r}, chunk size {report['options']['chunk_size']}; "
             f"command `{report['command']}`.", "",
             "| configuration | first call (s, incl. compile) | sent/s incl. compile | warm (s) | sent/s warm "
             "| compilations | peak RSS (MB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["throughput"]:
        lines.append(f"| {r['config']} | {r['first_call_s']:.2f} | {r['sentences_per_s_with_compile']:.0f} | "
                     f"{r['warm_s']:.3f} | {r['sentences_per_s_warm']:.0f} | {r['compilations']} | "
                     f"{r['maxrss_mb']:.0f} |")
    ratios = report["ratios"]
    lines += ["", "LRP / `jax.grad` on identical padded batches (min over interleaved repeats; median over "
              "bucket lengths):", "",
              "| bucket length | batch | jax.grad (ms) | " + " | ".join(ratios["ratio_to_grad"]) + " |",
              "| ---: | ---: | ---: | " + " | ".join("---:" for _ in ratios["ratio_to_grad"]) + " |"]
    for row in ratios["per_bucket"]:
        lines.append(f"| {row['length']} | {row['batch']} | {1e3 * row['seconds']['jax.grad']:.1f} | "
                     + " | ".join(f"{row['ratio_to_grad'][n]:.2f}" for n in ratios["ratio_to_grad"]) + " |")
    lines.append("| median | | | " + " | ".join(f"**{v:.2f}**" for v in ratios["ratio_to_grad"].values()) + " |")
    single = ratios["one_at_a_time"]
    lines += ["", f"Batched vs one sentence at a time (LRP-all, {single['sentences']} sentences, warm): "
              f"{single['batched_per_s']:.0f} vs {single['one_at_a_time_per_s']:.0f} sentences/s, "
              f"**{single['speedup']:.1f}x**.", "",
              "Peak memory (LRP-all) on the test set and on it replicated 10x:", "",
              "| mode | replicas | sentences | time (s, incl. compile) | peak RSS (MB) | inputs held (MB) | kept results (MB) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["memory"]:
        lines.append(f"| {r['mode']} | {r['replicas']} | {r['sentences']} | {r['seconds']:.1f} | "
                     f"{r['maxrss_mb']:.0f} | {r['input_mb']:.0f} | {r['result_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="400 sentences, three configurations")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="output directory")
    parser.add_argument("--buckets", default="4", help="number of buckets, comma-separated edges, or 'pow2'")
    parser.add_argument("--chunk-size", type=int, default=128, help="sentences per compiled call")
    parser.add_argument("--repeats", type=int, default=5, help="warm repeats (the minimum is reported)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        job = json.loads(args.worker)
        print(json.dumps(WORKERS[job["kind"]](job)))
        return 0

    buckets = None if args.buckets == "pow2" else (int(args.buckets) if "," not in args.buckets
                                                   else [int(e) for e in args.buckets.split(",")])
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    base = {"quick": args.quick, "buckets": buckets, "chunk_size": args.chunk_size}
    load_before = os.getloadavg()
    _, sentences, source = load_setup(args.quick)
    throughput = []
    for config in configs:
        throughput.append(run_worker({**base, "kind": "throughput", "config": config, "repeats": args.repeats}))
        print(f"{config}: {throughput[-1]['sentences_per_s_warm']:.0f} sent/s warm", file=sys.stderr)
    ratios = run_worker({**base, "kind": "ratios", "configs": list(configs), "repeats": 2 * args.repeats,
                         "singles": 100 if args.quick else 300})
    memory = [run_worker({**base, "kind": "memory", "mode": mode, "replicas": replicas})
              for mode in ("stream", "collect") for replicas in (1, 10)]
    report = {"sentences": len(sentences), "model": source, "machine": machine(), "options": base,
              "command": "python experiments/benchmark.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
              "load_before": load_before, "load_after": os.getloadavg(), "throughput": throughput,
              "ratios": ratios, "memory": memory}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / "benchmark.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
