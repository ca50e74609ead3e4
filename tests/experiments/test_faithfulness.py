"""The time-series study (both sets) and the faithfulness benchmark in their --quick forms write what they
promise; the benchmark's registry takes any checkpoint, over vectors or token ids, and --update keeps the
other models' results."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(script, out, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / script), "--quick", "--out", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _benchmark_module():
    name = "_benchmark_faithfulness_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / "benchmark_faithfulness.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module                       # dataclasses look their module up while defined
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["JapaneseVowels", "BasicMotions"])
def test_timeseries_study_quick(tmp_path, dataset):
    # BasicMotions' 100 steps make TSR cost 100 + 600 explanations per series and metric: 4 series there
    _run("timeseries_japanese_vowels.py", tmp_path, "--dataset", dataset,
         "--n-explain", "8" if dataset == "JapaneseVowels" else "4", "--checkpoint", str(tmp_path / "model.npz"))
    stem = "japanese_vowels" if dataset == "JapaneseVowels" else "basic_motions"
    summary = json.loads((tmp_path / f"timeseries_{stem}.json").read_text())
    assert summary["config"]["dataset"] == dataset
    assert summary["test_accuracy"] > 1.5 / {"JapaneseVowels": 9, "BasicMotions": 4}[dataset]   # above chance
    lrp_all, random = summary["metrics"]["lrp-all"], summary["metrics"]["random"]
    assert lrp_all["faithfulness correlation"]["mean"] > random["faithfulness correlation"]["mean"]
    figures = ("timeseries_heatmap.png", "timeseries_over_time.png") if dataset == "JapaneseVowels" else \
        ("timeseries_basic_motions_heatmap.png", "timeseries_basic_motions_over_time.png")
    for name in figures + (f"timeseries_{stem}.md",):
        assert (tmp_path / name).stat().st_size > 500
    from lrpjax.io import checkpoints

    saved = checkpoints.load_model(tmp_path / "model.npz")
    assert saved.metadata["dataset"] == dataset and saved.metadata["config"]["dataset"] == dataset


@pytest.fixture(scope="module")
def tiny_ids_checkpoint(tmp_path_factory):
    """A small LSTM over token ids (random weights) with a vocabulary of frequent SST words and <unk>."""
    from lrpjax.core.cells import StandardCell
    from lrpjax.io import checkpoints
    from lrpjax.models import Dense, Embedding, Recurrent, Sequential

    words = ["<pad>", "<unk>", "the", ",", "a", "and", "of", ".", "to", "is", "'s", "it", "that", "in", "film"]
    model = Sequential((Embedding(4, name="embed"), Recurrent(StandardCell(), 4), Dense(5)))
    params = model.init(jax.random.PRNGKey(0), len(words))
    path = tmp_path_factory.mktemp("ids") / "tiny.npz"
    checkpoints.save_model(path, model, jax.tree.map(np.asarray, params), {"kind": "tiny-ids-lstm"}, vocab=words,
                           labels=["0", "1", "2", "3", "4"], tokenizer={"split": "sst", "lowercase": True,
                                                                         "unknown": "<unk>"})
    return path


@pytest.mark.slow
def test_benchmark_quick_with_registry_and_update(tmp_path, tiny_ids_checkpoint):
    bf = _benchmark_module()
    _run("benchmark_faithfulness.py", tmp_path, "--n", "6", "--models", "japanese-vowels-gru", "--speedup-examples", "4")
    _run("benchmark_faithfulness.py", tmp_path, "--n", "6", "--checkpoint", f"tiny={tiny_ids_checkpoint}",
         "--models", "tiny", "--update", "--speedup-examples", "4")
    summary = json.loads((tmp_path / "benchmark_faithfulness.json").read_text())
    assert set(summary["results"]) == {"JapaneseVowels GRU", "tiny"}          # --update kept the first model
    assert summary["removals"] == {"JapaneseVowels GRU": ["zero", "road"], "tiny": ["unk", "delete"]}
    assert summary["errors"] == {"JapaneseVowels GRU": {}, "tiny": {}}
    for model, per_method in summary["results"].items():
        first, second = summary["removals"][model]
        assert set(per_method) == set(bf.QUICK_METHODS)
        expected = {c.format(first, second) for c in bf.FAITHFULNESS} | set(bf.SANITY)
        assert set(per_method["lrp-all eps=0.001"]) == expected
        assert per_method["lrp-all eps=0.001"]["faithfulness corr."]["mean"] > \
            per_method["random"]["faithfulness corr."]["mean"]
        cascade = summary["layers"][model]["lrp-all eps=0.001"]["cascading"]
        assert len(cascade["layers"]) == len(cascade["rho"]) >= 2
        assert summary["speedup"][model]["method"] == "lrp-all eps=0.001"
        rows = summary["speedup"][model]["rows"]                              # measured, not asserted: a timing
        assert all(isinstance(r["speedup"], float) and r["speedup"] > 0 for r in rows.values())
    for name in ("benchmark_faithfulness.png", "benchmark_faithfulness_sanity.png", "benchmark_faithfulness.md"):
        assert (tmp_path / name).stat().st_size > 1000


def test_benchmark_refuses_unknown_or_missing_models(tmp_path, capsys):
    bf = _benchmark_module()
    with pytest.raises(SystemExit):
        bf.main(["--models", "no-such-model", "--out", str(tmp_path)])
    assert "unknown ['no-such-model']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bf.main(["--checkpoint", f"gone={tmp_path / 'gone.npz'}", "--models", "gone", "--out", str(tmp_path)])
    assert "no checkpoint for ['gone']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bf.main(["--checkpoint", "no-equals-sign", "--out", str(tmp_path)])
    assert "NAME=PATH" in capsys.readouterr().err
