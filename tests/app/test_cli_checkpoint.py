"""The command line and the report on a checkpoint a user saved (a model over token ids with a vocabulary
and labels): info, explain (one sentence, --methods, --figure/--latex naming what they wrote), a batch with
--resume that ends as an uninterrupted run, report; a per-step model's (step x token) view; records of any
model in report_html."""

import json

import jax
import numpy as np
import pytest

from lrpjax.app.bundle import TextModel, load
from lrpjax.app.cli import main
from lrpjax.io import checkpoints
from lrpjax.models import Dense, Embedding, Recurrent, Sequential
from lrpjax.viz.report import report_html

WORDS = ["<pad>", "<unk>", "a", "fine", "film", "dull", "movie", "not"]
LINES = ["a fine film", "not a dull movie", "", "dull dull film", "a zzz movie", "fine"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    model = Sequential((Embedding(3), Recurrent(units=2, bidirectional=True), Dense(2)))
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32),
                                    model.init(jax.random.PRNGKey(1), input_size=len(WORDS), dtype=np.float32))
    path = checkpoints.save_model(root / "mine.npz", model, params, vocab=WORDS, labels=["negative", "positive"],
                                  tokenizer={"lowercase": True, "unknown": "<unk>"}, metadata={"command": "by hand"})
    steps = Sequential((Embedding(3), Recurrent(units=2, sequences=True), Dense(2)))
    step_params = steps.init(jax.random.PRNGKey(2), input_size=len(WORDS))
    step_path = checkpoints.save_model(root / "steps.npz", steps, step_params, vocab=WORDS, labels=["x", "y"],
                                       tokenizer={"unknown": "<unk>"})
    return path, step_path, model, params


def test_save_model_checks_what_it_describes(saved, tmp_path):
    _, _, model, params = saved
    with pytest.raises(ValueError, match=r"`vocab` has 3 words; the model's embedding table has V = 8"):
        checkpoints.save_model(tmp_path / "x.npz", model, params, vocab=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"`labels` has 1 names; the model has C = 2"):
        checkpoints.save_model(tmp_path / "x.npz", model, params, labels=["only"])
    with pytest.raises(ValueError, match=r"`tokenizer\['unknown'\]` must be a word of `vocab`"):
        checkpoints.save_model(tmp_path / "x.npz", model, params, vocab=WORDS, tokenizer={"unknown": "?"})
    with pytest.raises(ValueError, match=r"distinct"):
        checkpoints.save_model(tmp_path / "x.npz", model, params, vocab=WORDS[:-1] + ["a"])
    bundle = load(saved[0])
    assert isinstance(bundle, TextModel) and bundle.labels == ["negative", "positive"]
    tokens, ids, unknown = bundle.encode("A zzz Film")
    assert tokens == ["a", "zzz", "film"] and ids.tolist() == [2, 1, 4] and unknown == ["zzz"]


def test_info_and_explain(saved, tmp_path, capsys):
    path = str(saved[0])
    assert main(["info", "--checkpoint", path]) == 0
    out = capsys.readouterr().out
    assert "vocabulary 8 words" in out and "negative, positive" in out and "trained with: by hand" in out
    figure, latex = tmp_path / "cmp.png", tmp_path / "cmp.tex"
    assert main(["explain", "--checkpoint", path, "--methods", "lrp-all,gi", "--target", "positive", "--color",
                 "never", "--figure", str(figure), "--latex", str(latex), "a fine film"]) == 0
    captured = capsys.readouterr()
    assert "method: lrp-all" in captured.out and "method: gi" in captured.out
    assert "relevance for: positive (1)" in captured.out
    assert f"wrote {figure}: a heatmap figure (2 row(s))" in captured.err and f"wrote {latex}" in captured.err
    assert figure.read_bytes()[:4] == b"\x89PNG" and latex.read_text().count("colorbox") >= 6
    with pytest.raises(SystemExit) as stop:
        main(["explain", "--checkpoint", path, "--target", "happy", "a film"])
    assert stop.value.code == 2 and "invalid target 'happy'" in capsys.readouterr().err


def test_batch_with_resume_ends_as_one_run_and_report(saved, tmp_path, capsys):
    path = str(saved[0])
    source = tmp_path / "in.txt"
    source.write_text("\n".join(LINES) + "\n")
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    for out in (whole, part):
        assert main(["explain", "--checkpoint", path, "--input", str(source), "--output", str(out),
                     "--method", "smoothgrad", "--chunk-size", "2", "--batch-size", "2"]) == 1   # one empty line
    records = [json.loads(line) for line in whole.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[2]["failed"] is True and "error" in records[2]
    assert records[4]["unknown"] == ["zzz"] and records[0]["target_name"] in ("negative", "positive")
    assert all(len(r["relevance"]) == len(r["tokens"]) for r in records if "error" not in r)
    lines = part.read_bytes().splitlines(keepends=True)
    part.write_bytes(b"".join(lines[:3]) + lines[3][:10])          # an interrupted run: a record cut short
    capsys.readouterr()
    assert main(["explain", "--checkpoint", path, "--input", str(source), "--output", str(part), "--method",
                 "smoothgrad", "--chunk-size", "2", "--batch-size", "2", "--resume"]) == 1
    assert "after 3 kept from the previous run" in capsys.readouterr().err
    assert part.read_bytes() == whole.read_bytes()
    page = tmp_path / "report.html"
    assert main(["report", "--checkpoint", path, "--input", str(source), "--output", str(page), "--methods",
                 "lrp-all"]) == 0
    assert f"wrote {page}: 6 sentence(s) (1 could not be explained)" in capsys.readouterr().err
    text = page.read_text()
    assert "positive" in text and "dull" in text and "biases" in text


def test_per_step_outputs_show_a_step_by_token_view(saved, tmp_path, capsys):
    html = tmp_path / "steps.html"
    assert main(["explain", "--checkpoint", str(saved[1]), "--target", "y", "--color", "never", "--html", str(html),
                 "a fine film"]) == 0
    out = capsys.readouterr().out.splitlines()
    steps = [line for line in out if line.startswith("  step ")]
    assert len(steps) == 3 and steps[0].startswith("  step 1 (a): a[")
    assert steps[0].split()[4:] == ["fine[+0]", "film[+0]"]      # step 1 reads only the first token
    result = load(saved[1]).explain_sentence("a fine film", "gi", "y")
    assert result.relevance.shape == (3, 3) and np.all(np.triu(result.relevance, 1) == 0)
    assert "step 3" in html.read_text()


def test_report_html_takes_records_of_any_model():
    page = report_html(["a b", "c"], {"m": [{"tokens": ["a", "b"], "relevance": [0.5, -1.0]},
                                           {"tokens": ["c"], "relevance": [2.0], "scores": [1.0], "target": 0}]})
    assert "a" in page and "score +1.000" in page
    with pytest.raises(ValueError, match=r"`results\['m'\]\[0\]` must have 'tokens' and 'relevance'"):
        report_html(["a"], {"m": [{"tokens": ["a"], "prediction": 0}]})
    with pytest.raises(ValueError, match=r"shape \(T,\) or \(steps, T\) with T = 2"):
        report_html(["a b"], {"m": [{"tokens": ["a", "b"], "relevance": [1.0]}]})


def test_the_sst_model_as_a_checkpoint_of_any_model(tmp_path, capsys):
    from lrpjax.app.model import SSTModel

    sst = SSTModel.load()
    text = "the plot is dull but the actors are wonderful"
    want = sst.explain_sentence(text, "lrp-all")
    path = TextModel.from_sst(sst).save(tmp_path / "sst_ids.npz")
    bundle = load(path)
    assert isinstance(bundle, TextModel) and bundle.labels == sst.labels
    got = bundle.explain_sentence(text, "lrp-all")
    assert got.tokens == want.tokens and got.prediction == want.prediction
    np.testing.assert_allclose(got.relevance, want.relevance, rtol=1e-4, atol=1e-5)
    assert main(["explain", "--checkpoint", str(path), "--color", "never", text]) == 0
    assert f"prediction: {sst.labels[want.prediction]}" in capsys.readouterr().out
