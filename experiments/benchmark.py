"""Benchmark: explaining the SST test set (2210 sentences) at scale with ``lrpjax.datasets.explain_dataset``.

Measured in one run, float32, on the devices JAX sees (normally the CPU); every figure of
``benchmark.{json,md}`` comes from that run, with the load average at the start of each part:

* per configuration (LRP with each preset, gradient, forward only), each in a fresh subprocess:
  time of the first call (compilation included) and of a warm call (min over repeats), sentences per
  second for both, compilations, peak resident memory (``ru_maxrss``); the LRP-all / forward warm
  throughput ratio;
* LRP / ``jax.grad`` on identical padded batches (one per bucket length, the same jitted vmap shape;
  the gradient is a plain vjp seeded at the target), min over interleaved repeats;
* batched / one sentence at a time (the public per-sentence call ``method(params, x, target)``,
  warm, on a few hundred sentences);
* peak memory explaining the test set replicated 10x vs 1x, streamed chunk by chunk
  (``iter_chunks``: bounded by the chunk) and collected (``explain_dataset``: plus the results);
* Contextual Decomposition (``lrpjax.methods.decomposition.cd``) through ``explain_dataset`` and LRP-all on the same
  sentences (the whole test set, or an evenly spaced subset with ``--cd-sentences``);
* ``SSTModel.embed`` over every test sentence;
* direct calls without a user's ``jit`` (``model.apply``, a method's per-sentence call, on embedded vectors
  and on token ids) against ``jax.jit`` of the same call on the same input, warm (``--only direct`` runs
  this section alone and writes ``benchmark_direct.{json,md}``);
* the command line: wall time of ``lrpjax explain "<sentence>"`` in fresh processes with an empty
  compilation cache (``LRPJAX_CACHE_DIR``), then warm, then a sentence of another length in the same
  bucket; and of ``python -c "import lrpjax"``;
* a model imported from PyTorch (2-layer bidirectional ``nn.LSTM`` + ``nn.Linear``, seeded random
  weights) on seeded random inputs of the test set's lengths: forward, gradient, LRP-all, LRP-prop and
  LRP / ``jax.grad`` (skipped, with a note, when torch is not installed);
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ("forward", "gradient", "lrp-all", "lrp-prop", "lrp-abs", "lrp-half")
QUICK_CONFIGS = ("forward", "lrp-all")   # --quick: what LRP-all / forward needs (every row is one code path)
TORCH_CONFIGS = ("forward", "gradient", "lrp-all", "lrp-prop")
QUICK_TORCH_CONFIGS = ("lrp-all",)   # --quick: one preset on the imported model (its jax.grad in the ratios)
QUICK_SENTENCES = 64        # --quick: the first 64 test sentences
QUICK_CD_SENTENCES = 8      # --quick: CD on an evenly spaced subset of those
QUICK_REPLICAS = (2,)       # --quick: the peak-memory runs on the test set replicated twice only
# The command-line sentences: 8 and 6 tokens, both padded to the same bucket (lrpjax.app.model.bucket_length).
CLI_SENTENCE = "a gorgeous , witty , seductive movie ."
CLI_OTHER_SENTENCE = "a fine , witty film ."


# --- model and data (in every process) -------------------------------------------------------------

def load_setup(quick: bool):
    """(params float32, embedded test sentences list of (T, E) float32, description of the model)."""
    import jax
    from lrpjax.data.sst import load_sst
    from lrpjax.models import bilstm

    examples = load_sst("test")
    checkpoint = ROOT / "checkpoints" / "sst_bilstm.npz"
    if checkpoint.is_file():
        from lrpjax.app.model import SSTModel
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
        sentences = sentences[:QUICK_SENTENCES]
    return params, sentences, source


def evenly_spaced(n_total: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over ``range(n_total)`` (all of them when ``n`` is 0 or >= n_total)."""
    if n <= 0 or n >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(np.int64))


def forward_only(apply):
    """A method without relevance: with the scores every driver computes anyway, it times the forward pass."""
    from dataclasses import dataclass
    from typing import ClassVar

    from lrpjax.methods import Method

    @dataclass(frozen=True)
    class ForwardOnly(Method):
        per_position: ClassVar[bool] = True

        def relevance(self, params, x, target, mask, index):
            return jnp.zeros((x.shape[0],), x.dtype)

    return ForwardOnly(apply)


def make_method(name: str, apply=None):
    """The method of a configuration name for ``apply`` (default the BiLSTM's ``bilstm.apply``)."""
    from lrpjax import methods as explain
    from lrpjax.app.model import DEFAULT_EPS
    from lrpjax.methods.decomposition import cd
    from lrpjax.models import bilstm
    from lrpjax.rules import preset

    apply = bilstm.apply if apply is None else apply
    if name == "forward":
        return forward_only(apply)
    if name == "gradient":
        return explain.gradient(apply)
    if name == "cd":
        return cd(apply)
    return explain.lrp(apply, preset(name, DEFAULT_EPS[name]))


# --- workers (one subprocess each, so that peak memory is per configuration) ------------------------

def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def timed_dataset(method, params, sentences, options: dict, repeats: int) -> dict:
    """First call (compilation included) and warm calls (min over ``repeats``) of ``explain_dataset``."""
    from lrpjax import datasets as scale

    start = time.perf_counter()
    first = scale.explain_dataset(method, params, sentences, "pred", **options)
    first_s = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        again = scale.explain_dataset(method, params, sentences, "pred", **options)
        warm.append(time.perf_counter() - start)
    if again.compilations != 0:
        raise RuntimeError(f"{method.name}: a warm call compiled {again.compilations} programs")
    n = len(sentences)
    return {"config": method.name, "sentences": n, "first_call_s": first_s,
            "warm_s": min(warm), "warm_all_s": warm, "sentences_per_s_with_compile": n / first_s,
            "sentences_per_s_warm": n / min(warm), "compilations": first.compilations,
            "edges": list(first.edges), "padded_steps": _padded_steps(first, options["chunk_size"]),
            "tokens": int(first.lengths.sum())}


def worker_throughput(job: dict) -> dict:
    params, sentences, _ = load_setup(job["quick"])
    method = make_method(job["config"])
    options = dict(buckets=job["buckets"], chunk_size=job["chunk_size"])
    rss_before = _maxrss_mb()
    row = timed_dataset(method, params, sentences, options, job["repeats"])
    return {**row, "config": job["config"], "maxrss_mb": _maxrss_mb(), "maxrss_before_mb": rss_before}


def _padded_steps(result, chunk_size: int) -> int:
    from lrpjax.datasets import assign_buckets
    padded = assign_buckets(result.lengths, result.edges)
    return int(sum(-(-np.sum(padded == L) // chunk_size) * chunk_size * L for L in np.unique(padded)))


def worker_memory(job: dict) -> dict:
    from lrpjax import datasets as scale
    from lrpjax.datasets.buckets import resolve_edges

    params, sentences, _ = load_setup(job["quick"])
    # The edges of the 1x test set for every replica count: the same programs, so that only the data
    # size changes (a number of buckets would otherwise be re-optimised for the replicated lengths).
    edges = resolve_edges(job["buckets"], np.asarray([len(s) for s in sentences]), job["chunk_size"])
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


def grad_ratios(apply, params, sentences, job: dict, presets) -> dict:
    """LRP / ``jax.grad`` of ``apply`` on identical padded batches: one full chunk per bucket length, the
    same jitted vmap for both, min over interleaved repeats; the median over the bucket lengths."""
    import jax
    import jax.numpy as jnp
    from lrpjax.datasets.buckets import assign_buckets, resolve_edges
    from lrpjax.datasets.driver import pack

    B = job["chunk_size"]
    lengths = np.asarray([len(s) for s in sentences])
    edges = resolve_edges(job["buckets"], lengths, B)
    padded = assign_buckets(lengths, edges)
    rows = []
    for L in np.unique(padded):
        members = np.flatnonzero(padded == L)[:B]
        X, mask, _, _ = pack([sentences[i] for i in members], int(L), B, np.zeros(len(members), np.int32), members)
        X, mask = jnp.asarray(X), jnp.asarray(mask)
        targets = jnp.argmax(jax.vmap(lambda x, k: apply(params, x, mask=k))(X, mask), -1).astype(jnp.int32)

        def grad_one(x, k, t):
            return jax.grad(lambda x_: apply(params, x_, mask=k)[t])(x)

        fns = {"jax.grad": jax.jit(jax.vmap(grad_one))}
        for name in presets:
            m = make_method(name, apply)
            fns[name] = jax.jit(jax.vmap(lambda x, k, t, m=m: m.relevance(params, x, t, k, 0)))
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
    return {"per_bucket": rows,
            "ratio_to_grad": {n: float(np.median([r["ratio_to_grad"][n] for r in rows])) for n in presets}}


def worker_driver(job: dict) -> dict:
    """The dataset driver's overhead and the forward pass's limit, on the same padded chunks.

    * ``explain_dataset`` LRP-all on the sentences, warm (min over repeats), against the same method's
      per-example program (``lrpjax.methods.program.explain_chunk``) jit-compiled once per bucket and
      called on the same chunks, packed and placed on the device beforehand (pure compute);
    * the fastest forward pass over those chunks: ``jax.vmap`` of ``apply`` with the chunk's mask;
    * the forward pass with and without a mask on one batch of equal-length sentences (no padding).
    """
    import jax
    import jax.numpy as jnp
    from lrpjax import datasets
    from lrpjax.datasets.buckets import assign_buckets, resolve_edges
    from lrpjax.datasets.driver import pack
    from lrpjax.methods.program import Program, explain_chunk
    from lrpjax.models import bilstm

    params, sentences, _ = load_setup(job["quick"])
    B = job["chunk_size"]
    lengths = np.asarray([len(s) for s in sentences])
    edges = resolve_edges(job["buckets"], lengths, B)
    padded = assign_buckets(lengths, edges)
    method = make_method("lrp-all")
    chunks = []   # the chunks explain_dataset forms: bucket by bucket, input order within a bucket
    for L in np.unique(padded):
        members = np.flatnonzero(padded == L)
        for start in range(0, len(members), B):
            rows = members[start:start + B]
            X, mask, targets, index = pack([sentences[i] for i in rows], int(L), B, np.full(len(rows), -1), rows)
            chunks.append(tuple(jax.device_put(a) for a in (X, mask, targets, index)))
    program = jax.jit(lambda p, X, k, t, i: explain_chunk(Program((method,), "index"), p, X, k, t, i))
    forward = jax.jit(jax.vmap(lambda x, k: bilstm.apply(params, x, mask=k)))

    def run_program():
        return [program(params, *c).relevance for c in chunks]

    def run_forward():
        return [forward(c[0], c[1]) for c in chunks]

    def run_dataset():
        return datasets.explain_dataset(method, params, sentences, "pred", buckets=edges, chunk_size=B)

    times = {"dataset": [], "program": [], "forward": []}
    fns = {"dataset": run_dataset, "program": run_program, "forward": run_forward}
    for fn in fns.values():
        jax.block_until_ready(fn() if fn is not run_dataset else 0)
    for _ in range(job["repeats"]):
        for name, fn in fns.items():
            start = time.perf_counter()
            out = fn()
            if name != "dataset":
                jax.block_until_ready(out)
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    # One batch of equal-length sentences, forward with an all-true mask and without one.
    values, counts = np.unique(lengths, return_counts=True)
    T = int(values[np.argmax(counts)])
    X = jnp.asarray(np.stack([s for s in sentences if len(s) == T]))
    full = jnp.ones(X.shape[:2], bool)
    with_mask = jax.jit(jax.vmap(lambda x, k: bilstm.apply(params, x, mask=k)))
    without = jax.jit(jax.vmap(lambda x: bilstm.apply(params, x)))
    jax.block_until_ready((with_mask(X, full), without(X)))
    mask_times = {"with_mask": [], "without_mask": []}
    for _ in range(20 * job["repeats"]):
        for name, call in (("with_mask", lambda: with_mask(X, full)), ("without_mask", lambda: without(X))):
            start = time.perf_counter()
            jax.block_until_ready(call())
            mask_times[name].append(time.perf_counter() - start)
    mask_best = {name: float(np.median(t)) for name, t in mask_times.items()}
    return {"sentences": len(sentences), "chunks": len(chunks), "seconds": best,
            "driver_overhead": best["dataset"] / best["program"] - 1.0,
            "lrp_over_forward": best["forward"] / best["program"],
            "mask_batch": {"sentences": int(X.shape[0]), "length": T, "median_s": mask_best,
                           "without_over_with": mask_best["without_mask"] / mask_best["with_mask"]}}


def worker_ratios(job: dict) -> dict:
    """LRP / jax.grad on identical batches, and batched / one at a time."""
    from lrpjax.models import bilstm

    params, sentences, _ = load_setup(job["quick"])
    presets = [c for c in job["configs"] if c.startswith("lrp-")]
    ratios = grad_ratios(bilstm.apply, params, sentences, job, presets)
    return {**ratios, "one_at_a_time": _one_at_a_time(params, sentences, job)}


def _one_at_a_time(params, sentences, job: dict) -> dict:
    import jax
    from lrpjax import datasets as scale

    method = make_method("lrp-all")
    chosen = sentences
    if job.get("single_lengths"):  # only the most common lengths: fewer per-length compilations
        values, counts = np.unique([len(x) for x in sentences], return_counts=True)
        common = set(values[np.argsort(-counts, kind="stable")[: job["single_lengths"]]].tolist())
        chosen = [x for x in sentences if len(x) in common]
    chosen = chosen[: job["singles"]]
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
    return {"sentences": len(chosen), "lengths": len({len(x) for x in chosen}),
            "most_common_lengths_only": bool(job.get("single_lengths")), "one_at_a_time_per_s": len(chosen) / single_s,
            "batched_per_s": len(chosen) / batched_s, "speedup": single_s / batched_s}


def worker_cd(job: dict) -> dict:
    """Contextual Decomposition and LRP-all through ``explain_dataset`` on the same sentences."""
    params, sentences, _ = load_setup(job["quick"])
    chosen = evenly_spaced(len(sentences), job["cd_sentences"])
    subset = [sentences[i] for i in chosen]
    options = dict(buckets=job["buckets"], chunk_size=job["chunk_size"])
    rows = {name: {**timed_dataset(make_method(name), params, subset, options, job["repeats"]), "config": name}
            for name in ("cd", "lrp-all")}
    return {"sentences": len(subset), "of": len(sentences), "subset": len(subset) < len(sentences),
            "cd": rows["cd"], "lrp-all": rows["lrp-all"],
            "lrp_over_cd": rows["lrp-all"]["sentences_per_s_warm"] / rows["cd"]["sentences_per_s_warm"]}


def worker_embed(job: dict) -> dict:
    """``SSTModel.embed`` over every test sentence (token lists, as the dataset holds them)."""
    from lrpjax.data.sst import load_sst
    from lrpjax.app.model import SSTModel, default_checkpoint

    checkpoint = default_checkpoint()
    if not checkpoint.is_file():
        return {"skipped": f"no SST checkpoint at {checkpoint}"}
    model = SSTModel.load(checkpoint)
    sentences = [list(e.tokens) for e in load_sst("test")]
    times = []
    for _ in range(1 + job["repeats"]):
        start = time.perf_counter()
        embedded = [model.embed(tokens) for tokens in sentences]
        times.append(time.perf_counter() - start)
    return {"sentences": len(embedded), "tokens": int(sum(len(x) for x in embedded)), "first_s": times[0],
            "warm_s": min(times[1:]), "warm_all_s": times[1:]}


def torch_model(seed: int):
    """The imported model: a seeded 2-layer bidirectional ``nn.LSTM`` (E = H = 60) + ``nn.Linear`` (5 classes)."""
    import torch
    from lrpjax.interop import from_torch

    torch.manual_seed(seed)
    rnn = torch.nn.LSTM(60, 60, num_layers=2, bidirectional=True, batch_first=True).eval()
    head = torch.nn.Linear(120, 5, bias=True).eval()
    model, params = from_torch(rnn, head)
    return model, {k: {n: np.asarray(a, np.float32) for n, a in v.items()} for k, v in params.items()}


def worker_torch(job: dict) -> dict:
    """The imported PyTorch model on seeded random inputs (normal, std 0.4) of the test set's lengths."""
    try:
        import torch  # noqa: F401
    except ImportError as error:
        return {"skipped": f"torch is not installed ({error})"}
    from lrpjax.data.sst import load_sst

    model, params = torch_model(job["seed"])
    lengths = [len(e.tokens) for e in load_sst("test")]
    if job["quick"]:
        lengths = lengths[:QUICK_SENTENCES]
    rng = np.random.default_rng(job["seed"])
    sentences = [rng.normal(0.0, 0.4, (T, 60)).astype(np.float32) for T in lengths]
    options = dict(buckets=job["buckets"], chunk_size=job["chunk_size"])
    configs = QUICK_TORCH_CONFIGS if job["quick"] else TORCH_CONFIGS
    throughput = [{**timed_dataset(make_method(name, model.apply), params, sentences, options, job["repeats"]),
                   "config": name} for name in configs]
    ratios = grad_ratios(model.apply, params, sentences, {**job, "repeats": 2 * job["repeats"]},
                         [c for c in configs if c.startswith("lrp-")])
    return {"model": "torch.nn.LSTM(60, 60, num_layers=2, bidirectional=True, batch_first=True) + "
                     f"nn.Linear(120, 5), torch.manual_seed({job['seed']}), lrpjax.interop.from_torch",
            "torch": torch.__version__, "sentences": len(sentences), "throughput": throughput, "ratios": ratios}


def _median_ms(call, repeats: int) -> float:
    """Median wall time of ``call()`` (its result blocked on) over ``repeats`` calls, in milliseconds."""
    import jax

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def worker_direct(job: dict) -> dict:
    """Direct (un-jitted) calls against ``jax.jit`` of the same call on the same input, warm: the shipped
    BiLSTM's ``apply`` on one embedded sentence (the first test sentence of at least ``min_tokens``
    tokens), a seeded model over token ids (``Embedding`` first) on random ids of that length, and
    LRP-all's per-sentence call on both."""
    import jax
    import lrpjax
    from lrpjax.models import Dense, Embedding, Recurrent, Sequential, bilstm

    params, sentences, _ = load_setup(True)
    x = next(s for s in sentences if len(s) >= job["min_tokens"])
    T, E = x.shape
    ids_model = Sequential((Embedding(E), Recurrent(units=60, bidirectional=True), Dense(5)))
    ids_params = jax.tree_util.tree_map(np.asarray, ids_model.init(jax.random.PRNGKey(job["seed"]), input_size=1000))
    ids = np.random.default_rng(job["seed"]).integers(0, 1000, T).astype(np.int32)
    explain = lrpjax.lrp(bilstm.apply, "lrp-all")
    explain_ids = lrpjax.lrp(ids_model.apply, "lrp-all")
    cases = [("bilstm.apply(params, x)", lambda: bilstm.apply(params, x),
              jax.jit(bilstm.apply), (params, x)),
             ("model.apply(params, ids) (Embedding first)", lambda: ids_model.apply(ids_params, ids),
              jax.jit(ids_model.apply), (ids_params, ids)),
             ("lrp(bilstm.apply)(params, x, 0)", lambda: explain(params, x, 0),
              jax.jit(lambda p, v: explain(p, v, 0)), (params, x)),
             ("lrp(model.apply)(params, ids, 0) (Embedding first)", lambda: explain_ids(ids_params, ids, 0),
              jax.jit(lambda p, v: explain_ids(p, v, 0)), (ids_params, ids))]
    rows = []
    for name, direct, jitted, args in cases:
        start = time.perf_counter()
        jax.block_until_ready(direct())
        first = time.perf_counter() - start
        jax.block_until_ready(jitted(*args))
        direct_ms = _median_ms(direct, job["calls"])
        jit_ms = _median_ms(lambda: jitted(*args), job["calls"])
        rows.append({"call": name, "first_s": first, "direct_ms": direct_ms, "jit_ms": jit_ms,
                     "ratio": direct_ms / jit_ms})
    return {"tokens": T, "calls": job["calls"], "rows": rows}


WORKERS = {"direct": worker_direct, "throughput": worker_throughput, "memory": worker_memory, "ratios": worker_ratios, "driver": worker_driver,
           "cd": worker_cd,
           "embed": worker_embed, "torch": worker_torch}


def _timed_command(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(ROOT))
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return seconds


def cli_latency(warm_runs: int) -> dict:
    """Wall time of ``lrpjax explain`` in fresh processes: an empty compilation cache, then warm; and of
    ``python -c "import lrpjax"``."""
    from lrpjax.data.sst import tokenize
    from lrpjax.app.model import bucket_length

    script = Path(sys.executable).with_name("lrpjax")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "lrpjax.app.cli"]
    with tempfile.TemporaryDirectory(prefix="lrpjax-bench-cache-") as cache:
        env = {**os.environ, "LRPJAX_CACHE_DIR": cache}
        cold = _timed_command(command + ["explain", CLI_SENTENCE], env)
        cached_files = sum(1 for p in Path(cache).rglob("*") if p.is_file())
        warm = [_timed_command(command + ["explain", CLI_SENTENCE], env) for _ in range(warm_runs)]
        other = _timed_command(command + ["explain", CLI_OTHER_SENTENCE], env)
    imports = [_timed_command([sys.executable, "-c", "import lrpjax"], dict(os.environ)) for _ in range(warm_runs)]
    tokens = [len(tokenize(s)) for s in (CLI_SENTENCE, CLI_OTHER_SENTENCE)]
    return {"command": shlex.join([Path(command[0]).name] + command[1:] + ["explain", "..."]),
            "sentence": CLI_SENTENCE, "other_sentence": CLI_OTHER_SENTENCE, "tokens": tokens,
            "buckets": [bucket_length(t) for t in tokens], "cold_s": cold, "cache_files_after_cold": cached_files,
            "warm_s": warm, "warm_min_s": min(warm), "warm_median_s": statistics.median(warm),
            "other_length_warm_s": other, "import_s": imports, "import_min_s": min(imports),
            "import_median_s": statistics.median(imports)}


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


def _met(value: float, target: float, at_least: bool = False) -> str:
    """Whether a figure meets its target: ``value <= target`` (``>=`` with ``at_least``)."""
    return "met" if (value >= target if at_least else value <= target) else "not met"


def _load(report: dict, part: str) -> str:
    return f"load average {report['load'][part]:.1f} at the start"


def _throughput_table(rows: list[dict], memory: bool = True) -> list[str]:
    head = ("| configuration | sentences | first call (s, incl. compile) | sent/s incl. compile | warm (s) "
            "| sent/s warm | compilations |" + (" peak RSS (MB) |" if memory else ""))
    lines = [head, "| --- |" + " ---: |" * (head.count("|") - 2)]
    for r in rows:
        lines.append(f"| {r['config']} | {r['sentences']} | {r['first_call_s']:.2f} | "
                     f"{r['sentences_per_s_with_compile']:.0f} | {r['warm_s']:.3f} | {r['sentences_per_s_warm']:.0f} | "
                     f"{r['compilations']} |" + (f" {r['maxrss_mb']:.0f} |" if memory else ""))
    return lines


def _ratio_table(ratios: dict) -> list[str]:
    names = list(ratios["ratio_to_grad"])
    lines = ["| bucket length | batch | jax.grad (ms) | " + " | ".join(names) + " |",
             "| ---: | ---: | ---: | " + " | ".join("---:" for _ in names) + " |"]
    for row in ratios["per_bucket"]:
        lines.append(f"| {row['length']} | {row['batch']} | {1e3 * row['seconds']['jax.grad']:.1f} | "
                     + " | ".join(f"{row['ratio_to_grad'][n]:.2f}" for n in names) + " |")
    lines.append("| median | | | " + " | ".join(f"**{ratios['ratio_to_grad'][n]:.2f}**" for n in names) + " |")
    return lines


def _driver_lines(report: dict) -> list[str]:
    d = report["driver"]
    s, m = d["seconds"], d["mask_batch"]
    return ["## The dataset driver and the forward pass", "",
            f"LRP-all on the same {d['chunks']} padded chunks of the {d['sentences']} sentences (warm, min over "
            f"interleaved repeats; {_load(report, 'driver')}): through `explain_dataset` (checks, packing, transfers, "
            "results cropped per sentence), as the per-example program jit-compiled and called on the chunks already "
            "on the device (`lrpjax.methods.program.explain_chunk`), and the forward pass alone on the same chunks "
            "(`jax.vmap` of `bilstm.apply` with the chunk's mask).", "",
            "| | seconds | |", "| --- | ---: | --- |",
            f"| `explain_dataset` LRP-all | {s['dataset']:.3f} | |",
            f"| the same program on the same chunks | {s['program']:.3f} | |",
            f"| forward pass on the same chunks | {s['forward']:.3f} | |",
            f"| driver overhead (`explain_dataset` / program - 1) | **{100 * d['driver_overhead']:+.1f} %** | target ≤ 5 %: "
            f"{_met(d['driver_overhead'], 0.05)} |",
            f"| LRP-all / forward throughput on the same chunks | **{d['lrp_over_forward']:.2f}** | target ≥ 0.75: "
            f"{_met(d['lrp_over_forward'], 0.75, True)} |", "",
            f"The forward pass on one batch of {m['sentences']} test sentences of {m['length']} words (no padding), "
            f"median over repeats: with an all-true mask {1e3 * m['median_s']['with_mask']:.2f} ms, without a mask "
            f"{1e3 * m['median_s']['without_mask']:.2f} ms; without / with **{m['without_over_with']:.2f}** "
            f"(target: the same cost, ≤ 1.10: {_met(m['without_over_with'], 1.10)}).", ""]


def _cd_lines(report: dict) -> list[str]:
    cd = report["cd"]
    which = (f"an evenly spaced subset of {cd['sentences']} of the {cd['of']} sentences (chosen by "
             f"`{report['cd_subset_reason']}`)" if cd["subset"] else f"all {cd['sentences']} sentences")
    return ["## Contextual Decomposition", "",
            "`lrpjax.methods.decomposition.cd(bilstm.apply)` (one relevance per word, every position of a sentence in one vmapped "
            f"call) and LRP-all through `explain_dataset` on the same sentences: {which}; {_load(report, 'cd')}. "
            "Target: CD within 3x of LRP-all's warm throughput.", "",
            *_throughput_table([cd["cd"], cd["lrp-all"]], memory=False), "",
            f"LRP-all / CD warm throughput: **{cd['lrp_over_cd']:.1f}x** (target ≤ 3x: "
            f"{_met(cd['lrp_over_cd'], 3.0)}).", ""]


def _embed_lines(report: dict) -> list[str]:
    e = report["embed"]
    lines = ["## Embedding", ""]
    if "skipped" in e:
        return lines + [f"Skipped: {e['skipped']}.", ""]
    return lines + [f"`SSTModel.embed` (tokens to the (T, E) rows the BiLSTM reads) over every test sentence, one "
                    f"call per sentence; {_load(report, 'embed')}. Target: ≤ 0.1 s.", "",
                    "| sentences | tokens | first pass (s) | warm pass (s, min) | target (s) | |",
                    "| ---: | ---: | ---: | ---: | ---: | --- |",
                    f"| {e['sentences']} | {e['tokens']} | {e['first_s']:.3f} | **{e['warm_s']:.3f}** | 0.1 | "
                    f"{_met(e['warm_s'], 0.1)} |", ""]


def _direct_lines(report: dict) -> list[str]:
    d = report["direct"]
    lines = ["## Direct calls without a user's jit", "",
             f"One sentence of {d['tokens']} tokens, each call warm (its first call, which compiles, timed "
             f"separately); the median of {d['calls']} calls without `jax.jit` against the median of "
             f"{d['calls']} calls of `jax.jit` of the same call on the same input; {_load(report, 'direct')}. "
             "A direct call reuses a program compiled once per model, options and shapes; what it adds is the "
             "Python-side checks of the parameters and the input.", "",
             "| call | first call (s) | direct (ms, median) | `jax.jit` (ms, median) | direct / jit |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in d["rows"]:
        lines.append(f"| `{r['call']}` | {r['first_s']:.2f} | {r['direct_ms']:.2f} | {r['jit_ms']:.2f} | "
                     f"**{r['ratio']:.1f}x** |")
    return lines + [""]


def direct_report(direct: dict, load: dict, command: str) -> dict:
    """The report of the direct-call section run on its own (``--only direct``)."""
    return {"machine": machine(), "command": command, "load": load, "direct": direct}


def write_direct(report: dict, out: Path) -> str:
    """Writes ``benchmark_direct.{json,md}`` (the direct-call section run on its own); returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    m = report["machine"]
    table = "\n".join(["# Direct calls without a user's jit", "",
                        f"Machine: {m['cores_available']} cores ({m['processor']}), devices "
                        f"{', '.join(m['devices'])}, jax {m['jax']}; command `{report['command']}`.", "",
                        *_direct_lines(report)[2:]]).rstrip("\n") + "\n"
    for name, text in (("benchmark_direct.json", json.dumps(report, indent=2) + "\n"), ("benchmark_direct.md", table)):
        partial = out / (name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out / name)
    return table


def _cli_lines(report: dict) -> list[str]:
    c = report["cli"]
    n = len(c["warm_s"])
    return ["## Command-line latency", "",
            f"Wall time of `{c['command']}` in a fresh process (model loading, jax start-up, compilation or "
            "loading the compiled program, printing), with `LRPJAX_CACHE_DIR` set to a new empty directory: the "
            f"first run fills the compilation cache ({c['cache_files_after_cold']} files), later runs load from "
            f"it; {_load(report, 'cli')}. Sentence \"{c['sentence']}\" ({c['tokens'][0]} tokens); the other length: "
            f"\"{c['other_sentence']}\" ({c['tokens'][1]} tokens, the same bucket of {c['buckets'][1]}). "
            "Targets: warm ≤ 1.0 s, cold ≤ 2.5 s.", "",
            "| run | seconds | target (s) | |", "| --- | ---: | ---: | --- |",
            f"| cold cache (first run) | **{c['cold_s']:.2f}** | 2.5 | {_met(c['cold_s'], 2.5)} |",
            f"| warm, min of {n} | **{c['warm_min_s']:.2f}** | 1.0 | {_met(c['warm_min_s'], 1.0)} |",
            f"| warm, median of {n} | {c['warm_median_s']:.2f} | 1.0 | {_met(c['warm_median_s'], 1.0)} |",
            f"| warm, another length in the same bucket | {c['other_length_warm_s']:.2f} | 1.0 | "
            f"{_met(c['other_length_warm_s'], 1.0)} |",
            f"| `python -c \"import lrpjax\"`, min / median of {len(c['import_s'])} | "
            f"{c['import_min_s']:.2f} / {c['import_median_s']:.2f} | | |", ""]


def _torch_lines(report: dict) -> list[str]:
    t = report["torch"]
    lines = ["## A model imported from PyTorch", ""]
    if "skipped" in t:
        return lines + [f"Skipped: {t['skipped']} (`pip install -e \".[interop]\"`).", ""]
    lrp = t["ratios"]["ratio_to_grad"]
    return lines + [f"`{t['model']}` (torch {t['torch']}), explained through `explain_dataset` on seeded random "
                    f"inputs (normal, std 0.4) of the test set's lengths ({t['sentences']} sentences); "
                    f"{_load(report, 'torch')}. Target: LRP / `jax.grad` ≤ 1.2.", "",
                    *_throughput_table(t["throughput"], memory=False), "",
                    "LRP / `jax.grad` on identical padded batches (min over interleaved repeats):", "",
                    *_ratio_table(t["ratios"]), "",
                    "Median LRP / `jax.grad`: " + ", ".join(f"{n} **{v:.2f}** ({_met(v, 1.2)})" for n, v in lrp.items())
                    + " (target ≤ 1.2).", ""]


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Explaining the SST test set at scale ({report['sentences']} sentences, float32)", "",
             f"Model: {report['model']}.  ",
             f"Machine: {m['cores_available']} cores ({m['processor']}), devices {', '.join(m['devices'])}, "
             f"jax {m['jax']}; load average {report['load_before'][0]:.1f} before, "
             f"{report['load_after'][0]:.1f} after (1-minute averages; the machine may be shared).  ",
             f"Buckets {report['options']['buckets']!r}, chunk size {report['options']['chunk_size']}; "
             f"command `{report['command']}`. Every figure below comes from this one run.", "",
             "## Throughput", "",
             "Forward pass, gradient and LRP presets through `explain_dataset` on the test set, each in a fresh "
             f"process; warm = min over repeats; {_load(report, 'throughput')}.", "",
             *_throughput_table(report["throughput"]), ""]
    if report["lrp_over_forward"] is not None:
        ratio = report["lrp_over_forward"]
        lines += [f"LRP-all / forward warm throughput: **{ratio:.2f}** "
                  f"(target ≥ 0.85: {_met(ratio, 0.85, True)}).", ""]
    lines += _driver_lines(report)
    lines += ["## LRP / jax.grad", "",
              "Each LRP preset against `jax.grad` of the target score on identical padded batches (one full "
              f"chunk per bucket length; min over interleaved repeats); {_load(report, 'ratios')}.", "",
              *_ratio_table(report["ratios"]), ""]
    single = report["ratios"]["one_at_a_time"]
    common = "the most common length" if single["lengths"] == 1 else f"the {single['lengths']} most common lengths"
    which = (f"the first {single['sentences']} sentences of {common} (`--quick`)"
             if single.get("most_common_lengths_only") else f"the first {single['sentences']} sentences")
    lines += ["## Batched vs one sentence at a time", "",
              f"LRP-all, warm, on {which}: `explain_dataset` against the per-sentence call "
              "`method(params, x, target)` in a loop (every length compiled before timing).", "",
              "| sentences | batched (sent/s) | one at a time (sent/s) | speedup |", "| ---: | ---: | ---: | ---: |",
              f"| {single['sentences']} | {single['batched_per_s']:.0f} | {single['one_at_a_time_per_s']:.0f} | "
              f"**{single['speedup']:.1f}x** |", "",
              "## Peak memory", "",
              "LRP-all on the test set and on it replicated, streamed (`iter_chunks`, nothing kept) and collected "
              f"(`explain_dataset`); one fresh process each; {_load(report, 'memory')}.", "",
              "| mode | replicas | sentences | time (s, incl. compile) | peak RSS (MB) | inputs held (MB) | kept results (MB) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["memory"]:
        lines.append(f"| {r['mode']} | {r['replicas']} | {r['sentences']} | {r['seconds']:.1f} | "
                     f"{r['maxrss_mb']:.0f} | {r['input_mb']:.0f} | {r['result_mb']:.0f} |")
    lines += ["", *_cd_lines(report), *_embed_lines(report)]
    if "direct" in report:
        lines += _direct_lines(report)
    lines += [*_cli_lines(report), *_torch_lines(report)]
    return "\n".join(lines).rstrip("\n") + "\n"


def lrp_over_forward(throughput: list[dict]) -> float | None:
    """LRP-all / forward warm throughput (None when either was not run)."""
    rate = {r["config"]: r["sentences_per_s_warm"] for r in throughput}
    return rate["lrp-all"] / rate["forward"] if {"lrp-all", "forward"} <= set(rate) else None


def write_report(report: dict, out: Path) -> str:
    """Writes ``benchmark.json`` and ``benchmark.md`` into ``out``, each replacing the old file only once
    the new one is complete; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(report)
    for name, text in (("benchmark.json", json.dumps(report, indent=2) + "\n"), ("benchmark.md", table)):
        partial = out / (name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out / name)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SENTENCES} sentences, {len(QUICK_CONFIGS)} configurations, 1 bucket, fewer repeats, runs "
                             "and processes (a check that every part runs, not a measurement)")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="output directory")
    parser.add_argument("--buckets", default=None,
                        help="number of buckets, comma-separated edges, or 'pow2' (default 4; 1 with --quick)")
    parser.add_argument("--chunk-size", type=int, default=128, help="sentences per compiled call")
    parser.add_argument("--repeats", type=int, default=None, help="warm repeats, the minimum is reported "
                        "(default 5; 1 with --quick)")
    parser.add_argument("--cd-sentences", type=int, default=None,
                        help="CD on an evenly spaced subset of this many sentences (default all; "
                             f"{QUICK_CD_SENTENCES} with --quick)")
    parser.add_argument("--cd-repeats", type=int, default=None,
                        help="warm repeats of the CD part (default 2; 1 with --quick)")
    parser.add_argument("--cli-runs", type=int, default=None, help="warm command-line runs (default 5; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the imported PyTorch model and its inputs")
    parser.add_argument("--only", choices=("direct",), default=None,
                        help="run only this section and write benchmark_<section>.{json,md} (direct: un-jitted "
                             "calls against jax.jit of the same call)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        job = json.loads(args.worker)
        print(json.dumps(WORKERS[job["kind"]](job)))
        return 0
    for name in ("chunk_size", "repeats", "cd_repeats", "cli_runs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {value}")
    if args.cd_sentences is not None and args.cd_sentences < 1:
        parser.error(f"--cd-sentences must be >= 1; got {args.cd_sentences}")

    spec = args.buckets or ("1" if args.quick else "4")
    try:
        buckets = None if spec == "pow2" else (int(spec) if "," not in spec else [int(e) for e in spec.split(",")])
    except ValueError:
        parser.error(f"--buckets must be a number, comma-separated edges or 'pow2'; got {spec!r}")
    repeats = args.repeats or (1 if args.quick else 5)
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    base = {"quick": args.quick, "buckets": buckets, "chunk_size": args.chunk_size}
    load_before = os.getloadavg()
    load = {}
    _, sentences, source = load_setup(args.quick)

    def part(name):
        load[name] = os.getloadavg()[0]
        print(f"[{time.strftime('%H:%M:%S')}] {name} (load {load[name]:.1f})", file=sys.stderr)

    direct_job = {**base, "kind": "direct", "min_tokens": 19, "seed": args.seed, "calls": 5 if args.quick else 100}
    command = "python experiments/benchmark.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.only == "direct":
        part("direct")
        print(write_direct(direct_report(run_worker(direct_job), load, command), Path(args.out)))
        return 0

    part("throughput")
    throughput = []
    for config in configs:
        throughput.append(run_worker({**base, "kind": "throughput", "config": config, "repeats": repeats}))
        print(f"  {config}: {throughput[-1]['sentences_per_s_warm']:.0f} sent/s warm", file=sys.stderr)
    part("ratios")
    ratios = run_worker({**base, "kind": "ratios", "configs": list(configs), "repeats": 2 * repeats,
                         "singles": 40 if args.quick else 300, "single_lengths": 1 if args.quick else None})
    part("driver")
    driver = run_worker({**base, "kind": "driver", "repeats": 2 * repeats})
    print(f"  driver overhead {100 * driver['driver_overhead']:+.1f} %, LRP-all / forward "
          f"{driver['lrp_over_forward']:.2f}", file=sys.stderr)
    part("memory")
    memory = [run_worker({**base, "kind": "memory", "mode": mode, "replicas": replicas})
              for mode in ("stream", "collect") for replicas in (QUICK_REPLICAS if args.quick else (1, 10))]
    part("cd")
    cd_sentences = args.cd_sentences or (QUICK_CD_SENTENCES if args.quick else 0)
    cd = run_worker({**base, "kind": "cd", "cd_sentences": cd_sentences,
                     "repeats": args.cd_repeats or (1 if args.quick else 2)})
    cd_subset_reason = f"--cd-sentences {args.cd_sentences}" if args.cd_sentences else "--quick"
    part("embed")
    embed = run_worker({**base, "kind": "embed", "repeats": repeats})
    part("direct")
    direct = run_worker(direct_job)
    part("cli")
    cli = cli_latency(args.cli_runs or (2 if args.quick else 5))
    part("torch")
    torch_part = run_worker({**base, "kind": "torch", "seed": args.seed, "repeats": repeats})
    if "skipped" in torch_part:
        print(f"  imported PyTorch model skipped: {torch_part['skipped']}", file=sys.stderr)
    report = {"sentences": len(sentences), "model": source, "machine": machine(), "options": base,
              "repeats": repeats,
              "command": "python experiments/benchmark.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
              "load_before": load_before, "load_after": os.getloadavg(), "load": load, "throughput": throughput,
              "lrp_over_forward": lrp_over_forward(throughput), "ratios": ratios, "driver": driver,
              "memory": memory, "cd": cd,
              "cd_subset_reason": cd_subset_reason,
              "embed": embed, "direct": direct, "cli": cli, "torch": torch_part}
    print(write_report(report, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
