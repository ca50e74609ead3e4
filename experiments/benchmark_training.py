"""Benchmark: training 50 one-cell toy LSTMs at once (vmap over seeds) against one model at a time.

For each toy task the same training (data, optimiser, batch order, a fixed number of epochs, no early
stopping) is run twice: once as one ``lrpjax.train.fit_many`` call over N stacked models, once as N
``lrpjax.train.fit`` calls. Wall times include compilation, as a user would see them (``fit`` compiles
its loop once per call; one warm-up call of each kind runs first); a second figure excludes compilation:
the per-epoch cost ``(time(E epochs) - time(1 epoch)) / (E - 1)`` of the vmapped run and of one model
(the first of the sequential runs), times N for the sequential estimate.

    python experiments/benchmark_training.py                 # 50 models, 3 epochs, both tasks
    python experiments/benchmark_training.py --models 4 --epochs 2 --out /tmp/b

Writes OUT/benchmark_training.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lrpjax import train  # noqa: E402
from lrpjax.data import toy  # noqa: E402
from toy_arithmetic import MODEL, _arrays, _predict  # noqa: E402


def _setup(task: str, n_models: int, lr: float):
    data = toy.load_toy(task, "train")
    keys = jnp.stack([jax.random.PRNGKey(k) for k in range(n_models)])
    params = jax.vmap(lambda k: MODEL.init(k, 2, 1, 1, jnp.float32))(keys)
    return _arrays(data), params, train.make_loss(_predict, "mse"), optax.adam(lr)


def _time(fn) -> float:
    start = time.perf_counter()
    result = fn()
    jax.block_until_ready(result.params)
    return time.perf_counter() - start


def benchmark(task: str, n_models: int, epochs: int, lr: float = 0.03, batch_size: int = 32) -> dict:
    data, params, loss, optimizer = _setup(task, n_models, lr)

    def config(e):
        return train.TrainConfig(epochs=e, batch_size=batch_size, progress=False)

    def many(e):
        return _time(lambda: train.fit_many(loss, params, data, config=config(e), optimizer=optimizer))

    def one(n, e):
        single = jax.tree.map(lambda a: a[n], params)
        return _time(lambda: train.fit(loss, single, data, config=config(e), optimizer=optimizer))

    many(1), one(0, 1)  # warm-up: the jit-compiled helpers shared by every call (data order, merge, ...)
    vmapped = many(epochs)
    sequential = [one(n, epochs) for n in range(n_models)]
    vmapped_1, single_1 = many(1), one(0, 1)
    per_epoch_vmapped = (vmapped - vmapped_1) / (epochs - 1)
    per_epoch_single = (sequential[0] - single_1) / (epochs - 1)
    return {"task": task, "models": n_models, "epochs": epochs, "batch_size": batch_size,
            "steps_per_epoch": len(data["y"]) // batch_size,
            "vmapped_seconds": vmapped, "sequential_seconds": float(np.sum(sequential)),
            "sequential_seconds_per_model": sequential,
            "ratio_with_compile": float(np.sum(sequential)) / vmapped,
            "vmapped_seconds_per_epoch": per_epoch_vmapped,
            "single_model_seconds_per_epoch": per_epoch_single,
            "ratio_per_epoch": n_models * per_epoch_single / per_epoch_vmapped}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tasks", default="add,sub")
    parser.add_argument("--out", default="experiments/results")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the per-epoch cost is a difference of two runs)")
    rows = [benchmark(t, args.models, args.epochs) for t in args.tasks.split(",")]
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                          "devices": [str(d) for d in jax.devices()], "load_average": os.getloadavg()},
              "command": "python experiments/benchmark_training.py " + " ".join(argv or sys.argv[1:]),
              "results": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "benchmark_training.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("| task | models | epochs | vmapped (s) | one at a time (s) | ratio | per epoch: vmapped (s) | "
          "per epoch: N x one model (s) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['task']} | {r['models']} | {r['epochs']} | {r['vmapped_seconds']:.1f} | "
              f"{r['sequential_seconds']:.1f} | {r['ratio_with_compile']:.1f} | {r['vmapped_seconds_per_epoch']:.2f} | "
              f"{r['models'] * r['single_model_seconds_per_epoch']:.2f} | {r['ratio_per_epoch']:.1f} |")


if __name__ == "__main__":
    main()
