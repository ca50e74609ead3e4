"""The sequence-to-sequence alignment study (experiments/seq2seq_alignment.py) in its quick form, and its
task's ground truth."""

import importlib.util
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _experiment():
    spec = importlib.util.spec_from_file_location("seq2seq_alignment", ROOT / "experiments" / "seq2seq_alignment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("seq2seq_alignment", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_reversal_task_knows_its_alignment():
    module = _experiment()
    config = module.QUICK
    sources, inputs = module.reversal_pairs(config, 5, 0)
    labels, aligned = module.labels_of(sources, config.max_len)
    for s, x, y, a in zip(sources, inputs, labels, aligned):
        assert x[0] == module.BOS and np.array_equal(x[1:], s[::-1][:-1])   # teacher forcing: BOS, then the output
        assert np.array_equal(y[:len(s)], s[a[:len(s)]])                   # output t copies source position a_t
        assert np.all(a[len(s):] == -1)
    matrices = np.zeros((1, 2, 3 + 2))
    matrices[0, 0, 1], matrices[0, 1, 0] = 1.0, 2.0                         # step 0 right; step 1 wrong
    result = module.alignment(matrices, np.array([[True, True, False, True, True]]), np.array([[1, 1]]), 3)
    assert result["accuracy"] == 0.5 and result["n_steps"] == 2


def test_the_quick_study_writes_its_results(tmp_path):
    module = _experiment()
    record = module.run(module.QUICK, str(tmp_path), str(tmp_path / "model.npz"), log=lambda *a: None)
    saved = json.loads((tmp_path / "seq2seq_alignment.json").read_text())
    assert saved["methods"].keys() == record["methods"].keys()
    assert {"Attention weights", "LRP-all, attention gate", "Occlusion (f-diff)"} <= set(saved["methods"])
    for result in saved["methods"].values():
        assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["source_share"] <= 1.0 + 1e-12
    assert saved["methods"]["Attention weights"]["source_share"] == 1.0
    assert (tmp_path / "seq2seq_alignment.png").stat().st_size > 0
    assert "| method |" in (tmp_path / "seq2seq_alignment.md").read_text()
    assert (tmp_path / "model.npz").exists()
