"""The decoy-training study (experiments/decoy_training.py): its data, statistics and a quick run."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "experiments"))

import decoy_training  # noqa: E402


@pytest.mark.parametrize("decoy", decoy_training.TESTS)
def test_the_decoy_step_is_planted_as_described(decoy):
    rng = np.random.default_rng(0)
    split = decoy_training.make_split(2000, rng, decoy, flip=0.1)
    x, mask, marked, y = split["x"], split["mask"], split["decoy"], split["y"]
    lengths = mask.sum(1)
    assert x.shape == (2000, 13, 3) and set(np.unique(lengths)) <= set(range(9, 14))
    assert np.all(marked.sum(1) == 1) and np.all(mask[marked])   # one decoy step, a valid one
    d = x[marked]                                               # (B, 3): the decoy steps
    assert np.all(d[:, [0, 2]] == 0)
    assert np.all(x[:, :, 1][~marked] == 0)                     # the decoy feature is zero elsewhere
    if decoy == "agree":
        np.testing.assert_array_equal(d[:, 1], 2.0 * y - 1.0)
    elif decoy == "free":
        assert np.all(d[:, 1] == 0)
    else:
        assert set(np.unique(d[:, 1])) == {-1.0, 1.0} and abs(np.mean(d[:, 1] == 2.0 * y - 1.0) - 0.5) < 0.05
    # The signal decides the unflipped label; about `flip` of the labels disagree with it.
    np.testing.assert_array_equal(split["signal_label"], (x[:, :, 0].sum(1) > 0).astype(np.int32))
    assert abs(np.mean(split["signal_label"] != y) - 0.1) < 0.025


def test_decoy_share_and_groups():
    split = {"mask": np.array([[True, True, True, False]]), "decoy": np.array([[False, True, False, False]])}
    R = np.array([[1.0, -3.0, 0.0, 7.0]])
    assert decoy_training.decoy_share(R, split)[0] == pytest.approx(0.75)   # padding does not count
    cfg = decoy_training.Config(weights="1,10")
    names = [g[0] for g in decoy_training.groups_of(cfg)]
    assert names[0] == "plain" and len(names) == 1 + 2 * len(decoy_training.PENALISED)
    for bad in ("", "a", "-1"):
        with pytest.raises(ValueError, match="weights"):
            decoy_training.weights_of(decoy_training.Config(weights=bad))
    with pytest.raises(SystemExit):
        decoy_training.main(["--weights", "x"])
    with pytest.raises(SystemExit):
        decoy_training.main(["--flip", "0.7"])


@pytest.mark.slow
def test_quick_run_writes_every_group_and_statistic(tmp_path, capsys):
    decoy_training.main(["--quick", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "decoy_training.json").read_text())
    assert (tmp_path / "decoy_training.png").stat().st_size > 0
    assert list(results["groups"]) == [g[0] for g in decoy_training.groups_of(decoy_training.QUICK)]
    for info in results["groups"].values():
        for key in decoy_training.STAT_LABELS:
            assert len(info["per_model"][key]) == decoy_training.QUICK.n_models
            assert 0 <= info["summary"][key]["mean"] <= 100
        assert len(info["history"]["acc_shuffled"]) == decoy_training.QUICK.epochs
    plain = results["groups"]["plain"]["summary"]
    assert plain["acc_agree"]["mean"] > 95 and plain["share_lrp-all"]["mean"] > 50   # the decoy is used
    assert "| plain |" in capsys.readouterr().out
