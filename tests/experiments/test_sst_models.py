"""The SST models of other families (train_sst.py --arch attention|xlstm|mamba) and their word-deletion
studies (sst_attention.py, sst_recurrent_models.py): the shipped checkpoints load and explain, the studies'
quick forms write their files, and the batched relevance of the studies equals the methods' own per-sentence
results."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lrpjax.app import bundle
from lrpjax.data.sst import LABEL_NAMES, load_sst

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = {arch: ROOT / "checkpoints" / f"sst_{arch}.npz" for arch in ("attention", "xlstm", "mamba")}
SENTENCE = "a gorgeous , witty , seductive movie ."


def _module(name):
    """The experiment script as a module (imported by name, as the scripts import one another)."""
    if str(ROOT / "experiments") not in sys.path:
        sys.path.insert(0, str(ROOT / "experiments"))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def common():
    return _module("sst_recurrent_models")


@pytest.fixture(scope="module")
def attention_study():
    return _module("sst_attention")


@pytest.mark.parametrize("arch", sorted(CHECKPOINTS))
def test_shipped_checkpoint_loads_and_explains(arch):
    """What `lrpjax explain --checkpoint checkpoints/sst_<arch>.npz` runs: the model over token ids, its
    vocabulary, tokenizer and class names; LRP relevance per word, finite, summing near the target's score
    (LRP-all with eps absorbs only the biases' and stabilisers' shares)."""
    model = bundle.load(CHECKPOINTS[arch])
    assert isinstance(model, bundle.TextModel)
    assert model.labels == list(LABEL_NAMES)
    meta = model.metadata
    assert meta["training"]["arch"] == arch and not meta["quick"]
    assert 0.2 < meta["test_accuracy"]["five_class"] < 1 and 0.5 < meta["test_accuracy"]["binary"] < 1
    result = model.explain_sentence(SENTENCE, "lrp-all")
    assert result.tokens == SENTENCE.split() and result.relevance.shape == (len(result.tokens),)
    assert np.all(np.isfinite(result.relevance))
    assert result.prediction == int(np.argmax(result.scores))


def test_command_line_explains_the_attention_checkpoint(capsys):
    from lrpjax.app import cli

    assert cli.main(["explain", "--checkpoint", str(CHECKPOINTS["attention"]), "a film"]) == 0
    out = capsys.readouterr().out
    assert "film" in out


def test_batched_relevance_equals_per_sentence(common, attention_study):
    """The studies' padded, masked, vmapped batches give each sentence's own result: LRP (an attention rule
    that reaches the scores), occlusion and the attention weights against unpadded single calls."""
    import jax.numpy as jnp
    import lrpjax
    from lrpjax.models.attention import AttentionPool
    from lrpjax.models import Sequential

    model = common.TextClassifier.load(CHECKPOINTS["attention"])
    model.grid = (16,)
    sentences = [s for s in load_sst("test") if len(s.tokens) == 9][:3]    # one length: one compilation per call
    ids_list = [model.encode(s.tokens) for s in sentences]
    targets = np.asarray([s.label for s in sentences])
    apply = model.inner.apply
    for method in (lrpjax.lrp(apply, lrpjax.rules.preset("lrp-all", eps=0.0019, attention="attnlrp")),
                   lrpjax.occlusion(apply, "f")):
        batched = common.word_relevance(method, model, ids_list, targets, batch_size=4, grid=model.grid)
        for ids, target, got in zip(ids_list, targets, batched):
            want = np.asarray(method.tokens(model.params, model.table[ids], int(target)))
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    weights = attention_study.attention_weights(model, batch_size=4)(ids_list, targets)
    pool = model.inner.layers[1]
    assert isinstance(pool, AttentionPool)
    before = Sequential(model.inner.layers[:1])
    for ids, got in zip(ids_list, weights):
        h = before.apply({k: model.params[k] for k in before.keys}, jnp.asarray(model.table[ids]))
        want = np.asarray(pool.weights(model.params, h))[:, 0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        assert abs(got.sum() - 1) < 1e-5


def test_agreement_oracle(attention_study):
    """Spearman's rho of the attention weights with a relevance vector, against the textbook formula."""
    a = [np.array([0.1, 0.5, 0.2, 0.2001]), np.array([0.3, 0.7])]
    r = [np.array([-1.0, 3.0, 0.5, 0.0]), np.array([1.0, -1.0])]
    got = attention_study.agreement(a, r)
    # ranks a: [0, 3, 1, 2]; r: [0, 3, 2, 1]; d = [0, 0, -1, 1]; rho = 1 - 6*2/(4*15) = 0.8. Second: -1.
    assert got["spearman"] == pytest.approx((0.8 - 1.0) / 2)
    assert got["top1"] == pytest.approx(0.5)


def test_attention_study_quick(tmp_path, attention_study):
    out = tmp_path / "attention"
    assert attention_study.main(["--quick", "--out", str(out), "--methods", "LRP-all (attention attnlrp)"]) == 0
    results = json.loads((out / "sst_attention.json").read_text())
    assert results["quick"] and results["sentences"] == 24
    assert set(results["accuracy"]) == {"LRP-all (attention attnlrp)", "Attention weights", "random"}
    for curves in results["accuracy"].values():
        assert len(curves["correct"]) == len(curves["false"]) == 6
        assert curves["correct"][0] == 1.0 and curves["false"][0] == 0.0
    agree = results["agreement"]["LRP-all (attention attnlrp)"]
    assert -1 <= agree["spearman"] <= 1 and 0 <= agree["top1"] <= 1
    assert "Attention weights" in (out / "sst_attention.md").read_text()
    for name in ("sst_attention.png", "sst_attention_rules.png"):
        assert (out / name).stat().st_size > 1000
    with pytest.raises(SystemExit):
        attention_study.main(["--quick", "--out", str(out), "--methods", "LRP-everything"])


def test_recurrent_models_study_quick(tmp_path, common):
    out = tmp_path / "recurrent"
    assert common.main(["--quick", "--out", str(out), "--methods", "MambaLRP,xLSTM-LRP"]) == 0
    results = json.loads((out / "sst_recurrent_models.json").read_text())
    assert set(results["models"]) == {"xlstm", "mamba"}
    assert set(results["models"]["mamba"]["accuracy"]) == {"MambaLRP", "random"}
    assert set(results["models"]["xlstm"]["accuracy"]) == {"xLSTM-LRP", "random"}
    assert results["models"]["mamba"]["nonfinite"] == {"MambaLRP": 0}
    for name in ("xlstm", "mamba"):
        assert (out / f"sst_recurrent_models_{name}.png").stat().st_size > 1000
    assert "| mamba | MambaLRP |" in (out / "sst_recurrent_models.md").read_text()


def test_train_attention_quick_writes_an_explainable_checkpoint(tmp_path):
    """The --arch path end to end on a tiny model: trained, saved with its vocabulary, read by the
    command line's loader, explained."""
    train = _module("train_sst")
    path = tmp_path / "tiny.npz"
    assert train.main(["--quick", "--arch", "attention", "--E", "6", "--H", "4", "--attention-units", "3",
                       "--out", str(path)]) == 0
    model = bundle.load(path)
    assert model.metadata["quick"] and model.metadata["training"]["arch"] == "attention"
    result = model.explain_sentence("a film", "gi")
    assert np.all(np.isfinite(result.relevance)) and result.relevance.shape == (2,)
