"""A tiny run of the fidelity study with sLSTM cells beside the LSTM (experiments/recurrent_fidelity.py)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "experiments"))

import recurrent_fidelity  # noqa: E402


@pytest.mark.slow
def test_quick_run_writes_every_model_method_and_statistic(tmp_path):
    recurrent_fidelity.main(["--quick", "--out", str(tmp_path), "--tasks", "add", "--models", "lstm,slstm"])
    result = json.loads((tmp_path / "recurrent_fidelity.json").read_text())
    assert (tmp_path / "recurrent_fidelity.png").stat().st_size > 0
    assert "| sLSTM (sigmoid forget) | LRP-all |" in (tmp_path / "recurrent_fidelity.md").read_text()
    for kind in ("lstm", "slstm"):
        entry = result["tasks"]["add"][kind]
        assert len(entry["train"]["val_mse"]) == recurrent_fidelity.QUICK.n_models
        for method in recurrent_fidelity.METHODS:
            for stat in recurrent_fidelity.STATS:
                assert len(entry["per_model"][method][stat]) == recurrent_fidelity.QUICK.n_models
                assert set(entry["summary"][method][stat]) == {"mean", "std", "n_nan"}


def test_unknown_models_are_refused(capsys):
    with pytest.raises(SystemExit):
        recurrent_fidelity.main(["--quick", "--models", "lstm,gru"])
    assert "--models: unknown ['gru']" in capsys.readouterr().err


def test_the_blocks_add_their_own_rules_and_mambalrp_is_reported_as_lrp_half():
    assert recurrent_fidelity.methods_of("lstm") == recurrent_fidelity.METHODS
    assert recurrent_fidelity.methods_of("mamba") == recurrent_fidelity.METHODS   # mamba_lrp() is LRP-half, eps 0
    assert recurrent_fidelity.methods_of("mlstm") == recurrent_fidelity.METHODS + ("xlstm-lrp",)


def test_a_merged_run_keeps_the_other_models_and_draws_every_one(tmp_path):
    """--merge with nothing to train: the previous results are rewritten with their own configuration,
    in the models' order, with the blocks' own rules in the table."""
    rng = __import__("numpy").random.default_rng(0)
    previous = {"config": {"epochs": 30}, "tasks": {"add": {}}}
    for kind in ("mamba", "mlstm", "lstm"):
        methods = recurrent_fidelity.methods_of(kind)
        previous["tasks"]["add"][kind] = {
            "train": {"seconds": 1.0, "val_mse": [0.1]},
            "per_model": {m: {s: [float(rng.normal())] for s in recurrent_fidelity.STATS} for m in methods},
            "summary": {m: {s: {"mean": float(rng.uniform(0, 100)), "std": 1.0, "n_nan": 0}
                            for s in recurrent_fidelity.STATS} for m in methods}}
    (tmp_path / "previous.json").write_text(json.dumps(previous))
    out = tmp_path / "out"
    recurrent_fidelity.run(recurrent_fidelity.QUICK, str(out), tasks=(), kinds=(), merge=str(tmp_path / "previous.json"))
    result = json.loads((out / "recurrent_fidelity.json").read_text())
    assert list(result["tasks"]["add"]) == ["lstm", "mlstm", "mamba"]
    assert all(entry["config"] == {"epochs": 30} for entry in result["tasks"]["add"].values())
    table = (out / "recurrent_fidelity.md").read_text()
    assert "| mLSTM block | xLSTM-LRP (xlstm_lrp) |" in table and "| Mamba block | LRP-half = MambaLRP |" in table
    assert (out / "recurrent_fidelity.png").stat().st_size > 0
