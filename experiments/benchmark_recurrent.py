"""Benchmark of the newer recurrent layers: explanation throughput against the forward pass, scans compared.

One section per layer family, each a function ``section(quick) -> dict`` in :data:`SECTIONS`; every figure
of a run comes from that run, float32, on the devices JAX sees (normally the CPU), with the load average
at the start of each section. Each configuration is one ``jax.jit`` of a ``jax.vmap`` over a padded batch
(all sequences of one length, so the padding does not enter), warm, min over repeats:

* ``mamba``: a two-block Mamba classifier (``MambaBlock`` x 2, ``RMSNorm``, mean pooling, ``Dense``) with
  the sequential scan and with the parallel (associative) scan: the forward pass, ``jax.grad`` of the
  target score, LRP under MambaLRP's rules (``mamba_lrp()``) and under LRP-all; sequences per second,
  the explanation / forward ratio, and parallel / sequential per configuration; a ``Conv1D`` CNN-LSTM
  beside it (forward, LRP-all);
* ``xlstm``: an mLSTM-block classifier (``MLSTMBlock``, ``LayerNorm``, mean pooling, ``Dense``) with the
  memory in its parallel (attention-like) form and in its recurrent form, and an sLSTM-block classifier
  (``SLSTMBlock`` with the feed-forward): the forward pass, ``jax.grad``, LRP under the xLSTM analogue of
  MambaLRP (``xlstm_lrp()``) and under LRP-all. Relevance is defined on the recurrent form, so LRP runs
  the recurrent memory in both mLSTM models; the section reports the recurrent / parallel time ratio of the
  forward pass and the gradient, and LRP against the parallel form's forward pass.

    python experiments/benchmark_recurrent.py                   # experiments/results/benchmark_recurrent.*
    python experiments/benchmark_recurrent.py --quick --out /tmp/bench
    python experiments/benchmark_recurrent.py --only xlstm --merge experiments/results/benchmark_recurrent.json
                                                                # one section anew, the others kept
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _time(fn, args, repeats: int) -> float:
    """Seconds of one warm call (the compiled function called once first), min over ``repeats``."""
    import jax

    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def _programs(model, rules_by_name: dict):
    """The jitted batch programs: forward, gradient, and one LRP per rule set (a vjp seeded at the target)."""
    import jax
    import jax.numpy as jnp

    def score(params, x, target, rules=None):
        return model.apply(params, x, rules)[target]

    programs = {"forward": jax.jit(jax.vmap(lambda p, x, t: model.apply(p, x), (None, 0, 0))),
                "gradient": jax.jit(jax.vmap(jax.grad(score, argnums=1), (None, 0, 0)))}
    for name, rules in rules_by_name.items():
        def explain(p, x, t, rules=rules):
            out, pull = jax.vjp(lambda x_: model.apply(p, x_, rules), x)
            return pull(jax.nn.one_hot(t, out.shape[0], dtype=out.dtype))[0]

        programs[name] = jax.jit(jax.vmap(explain, (None, 0, 0)))
    del jnp
    return programs


def _inputs(quick: bool) -> tuple:
    """``(B, T, E, repeats, X, targets)``: the batch every section times (float32, seeded)."""
    import jax.numpy as jnp

    B, T, E = (8, 16, 16) if quick else (32, 64, 32)
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(B, T, E)).astype(np.float32))
    targets = jnp.asarray(rng.integers(0, 2, B).astype(np.int32))
    return B, T, E, 3 if quick else 15, X, targets


def _measure(result: dict, model: str, programs: dict, args: tuple, repeats: int) -> None:
    """Times each program on ``args`` and appends its row (seconds and sequences per second) to ``result``."""
    for name, fn in programs.items():
        seconds = _time(fn, args, repeats)
        result["rows"].append({"model": model, "config": name, "seconds": seconds,
                               "sequences_per_s": result["batch"] / seconds})


def _over_forward(result: dict) -> dict:
    """Adds each row's time over its model's forward pass; returns the seconds by (model, config)."""
    forward = {row["model"]: row["seconds"] for row in result["rows"] if row["config"] == "forward"}
    for row in result["rows"]:
        row["over_forward"] = row["seconds"] / forward[row["model"]]
    return {(row["model"], row["config"]): row["seconds"] for row in result["rows"]}


def mamba(quick: bool) -> dict:
    """The ``mamba`` section (module docstring)."""
    import jax

    import lrpjax
    from lrpjax.core.cells import StandardCell
    from lrpjax.models import Conv1D, Dense, MambaBlock, Pool, Recurrent, RMSNorm, Sequential
    from lrpjax.models.mamba import mamba_lrp

    B, T, E, repeats, X, targets = _inputs(quick)
    rules = {"lrp-mambalrp": mamba_lrp(), "lrp-all": lrpjax.rules.preset("lrp-all", eps=1e-3)}
    result: dict = {"batch": B, "T": T, "E": E, "repeats": repeats, "load_at_start": _load(), "rows": []}
    params = None
    for scan in ("sequential", "parallel"):
        model = Sequential((MambaBlock(d_state=16, d_conv=4, scan=scan), MambaBlock(d_state=16, d_conv=4, scan=scan),
                            RMSNorm(), Pool("mean"), Dense(2)))
        params = model.init(jax.random.PRNGKey(0), E) if params is None else params
        _measure(result, f"mamba ({scan} scan)", _programs(model, rules), (params, X, targets), repeats)
    cnn = Sequential((Conv1D(E, 3, "causal", activation="relu"), Recurrent(StandardCell(), E), Dense(2)))
    cnn_params = cnn.init(jax.random.PRNGKey(1), E)
    _measure(result, "Conv1D + LSTM", _programs(cnn, {"lrp-all": rules["lrp-all"]}), (cnn_params, X, targets), repeats)
    by = _over_forward(result)
    result["parallel_over_sequential"] = {config: by[("mamba (parallel scan)", config)] /
                                          by[("mamba (sequential scan)", config)]
                                          for config in ("forward", "gradient", "lrp-mambalrp", "lrp-all")}
    result["load_at_end"] = _load()
    return result


def xlstm(quick: bool) -> dict:
    """The ``xlstm`` section (module docstring)."""
    import jax

    import lrpjax
    from lrpjax.models import Dense, LayerNorm, MLSTMBlock, Pool, SLSTMBlock, Sequential
    from lrpjax.models.xlstm import xlstm_lrp

    B, T, E, repeats, X, targets = _inputs(quick)
    rules = {"lrp-xlstm": xlstm_lrp(), "lrp-all": lrpjax.rules.preset("lrp-all", eps=1e-3)}
    result: dict = {"batch": B, "T": T, "E": E, "repeats": repeats, "load_at_start": _load(), "rows": [],
                    "blocks": f"mLSTM: 4 heads, I = {2 * E}, K = 4, qkv blocks of 4; sLSTM: 4 heads, K = 4, "
                              f"feed-forward F = {-(-13 * E // 10)}"}
    params = None
    for form, parallel in (("parallel", True), ("recurrent", False)):
        model = Sequential((MLSTMBlock(heads=4, conv_kernel=4, qkv_blocksize=4, parallel=parallel, name="m"),
                            LayerNorm(), Pool("mean"), Dense(2)))
        params = model.init(jax.random.PRNGKey(0), E) if params is None else params
        # LRP always runs the recurrent memory (relevance is defined there): measured once, on that model
        _measure(result, f"mLSTM block ({form} form)", _programs(model, rules if form == "recurrent" else {}),
                 (params, X, targets), repeats)
    slstm = Sequential((SLSTMBlock(heads=4, conv_kernel=4), LayerNorm(), Pool("mean"), Dense(2)))
    slstm_params = slstm.init(jax.random.PRNGKey(1), E)
    _measure(result, "sLSTM block", _programs(slstm, rules), (slstm_params, X, targets), repeats)
    by = _over_forward(result)
    result["recurrent_over_parallel"] = {config: by[("mLSTM block (recurrent form)", config)] /
                                         by[("mLSTM block (parallel form)", config)]
                                         for config in ("forward", "gradient")}
    result["lrp_over_parallel_forward"] = {config: by[("mLSTM block (recurrent form)", config)] /
                                           by[("mLSTM block (parallel form)", "forward")] for config in rules}
    result["load_at_end"] = _load()
    return result


SECTIONS = {"mamba": mamba, "xlstm": xlstm}
"""The sections by name; each returns a JSON-able dict with a list of ``rows``."""


def markdown(results: dict) -> str:
    lines = [f"# Recurrent layers benchmark\n\nMachine: {results['machine']}.\n"]
    for name, section in results["sections"].items():
        lines.append(f"## {name}\n")
        lines.append(f"Batch {section['batch']} x T = {section['T']} x E = {section['E']}, float32, warm, min over "
                     f"{section['repeats']} repeats; load average {section['load_at_start']} at the start, "
                     f"{section['load_at_end']} at the end.\n")
        lines.append("| model | configuration | seconds per batch | sequences / s | / forward |")
        lines.append("| --- | --- | ---: | ---: | ---: |")
        for row in section["rows"]:
            lines.append(f"| {row['model']} | {row['config']} | {row['seconds']:.4f} | {row['sequences_per_s']:.1f} "
                         f"| {row['over_forward']:.2f} |")
        if "parallel_over_sequential" in section:
            lines.append("\nParallel / sequential scan (time ratio, below 1: the parallel scan is faster): "
                         + ", ".join(f"{k} {v:.2f}" for k, v in section["parallel_over_sequential"].items()) + ".")
        if "recurrent_over_parallel" in section:
            lines.append(f"\nBlocks: {section['blocks']}. LRP runs the mLSTM memory in its recurrent form.")
            lines.append("\nmLSTM recurrent / parallel form (time ratio, above 1: the parallel form is faster): "
                         + ", ".join(f"{k} {v:.2f}" for k, v in section["recurrent_over_parallel"].items())
                         + "; LRP / the parallel form's forward pass: "
                         + ", ".join(f"{k} {v:.2f}" for k, v in section["lrp_over_parallel_forward"].items()) + ".")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for section in results["sections"].values() for row in section["rows"]]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
    labels = [f"{row['model']}: {row['config']}" for row in rows]
    ax.barh(range(len(rows)), [row["over_forward"] for row in rows], color="tab:blue")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("time relative to the same model's forward pass (warm, one batch)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches, few repeats (about a minute)")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    parser.add_argument("--merge", type=Path, default=None,
                        help="a results JSON of this script whose sections that are not run now are kept")
    args = parser.parse_args(argv)
    import jax

    results = {"machine": f"{os.cpu_count()} cores, {jax.devices()[0].device_kind}, jax {jax.__version__}, "
                          f"{platform.machine()}", "quick": args.quick, "sections": {}}
    if args.merge is not None:
        previous = json.loads(args.merge.read_text(encoding="utf-8"))
        if previous["machine"] != results["machine"]:
            parser.error(f"--merge: {args.merge} was measured on {previous['machine']!r}, not on this machine "
                         f"({results['machine']!r})")
        results["sections"] = {name: section for name, section in previous["sections"].items()
                               if name not in (args.only or SECTIONS)}
    for name in args.only or SECTIONS:
        results["sections"][name] = SECTIONS[name](args.quick)
    results["sections"] = {name: results["sections"][name] for name in SECTIONS if name in results["sections"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark_recurrent.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    text = markdown(results)
    (args.out / "benchmark_recurrent.md").write_text(text, encoding="utf-8")
    plot(results, args.out / "benchmark_recurrent.png")
    print(text)
    return results


if __name__ == "__main__":
    main()
