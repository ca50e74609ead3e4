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
