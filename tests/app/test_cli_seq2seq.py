"""The command line on encoder-decoder checkpoints (lrpjax.app.pairs): ``lrpjax info`` describes one,
``lrpjax explain --source ... [--target ...]`` decodes greedily or takes the given output and prints, tabulates
and draws the (output step x (source + decoder inputs)) relevance matrix; the matrix of the application
equals Gradient x Input computed here with jax.jacrev; clear errors for what cannot be explained."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.app.bundle import load
from lrpjax.app.cli import main
from lrpjax.app.pairs import EncoderDecoderModel
from lrpjax.core.cells import StandardCell
from lrpjax.io import checkpoints
from lrpjax.models import Dense, Embedding, Recurrent, Seq2Seq, Sequential

SHIPPED = str(pathlib.Path(__file__).resolve().parents[2] / "checkpoints" / "seq2seq_reversal.npz")
WORDS = ["<pad>", "<s>", "</s>", "a", "b", "c"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    model = Seq2Seq(3, StandardCell(), encoder_units=2, units=3)
    rng = np.random.default_rng(3)                  # drawn here in NumPy (an eager float64 init compiles op by op)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(3), len(WORDS), 2, jnp.float64))
    params = jax.tree_util.tree_map(lambda a: rng.uniform(-0.8, 0.8, a.shape), shapes)
    for part in ("combine", "decoder", "encoder_backward", "encoder_forward"):
        params[part]["b"] = np.zeros_like(params[part]["b"])
    params["out"]["b"] = np.array([0.3, -0.2, 0.5, -0.4, 0.1, 0.6])     # the only bias not 0
    paths = {
        "tiny": checkpoints.save_model(root / "tiny.npz", model, params, vocab=WORDS, tokenizer={"lowercase": True},
                                       decoding={"bos": "<s>", "eos": "</s>", "steps": 4}),
        "no-vocab": checkpoints.save_model(root / "no_vocab.npz", model, params),
        "no-decoding": checkpoints.save_model(root / "no_decoding.npz", model, params, vocab=WORDS),
    }
    vectors = Seq2Seq(3, StandardCell(), encoder_units=2, units=3, reads_ids=False)
    shapes = jax.eval_shape(lambda: vectors.init(jax.random.PRNGKey(3), len(WORDS), 2, jnp.float64))
    paths["vectors"] = checkpoints.save_model(root / "vectors.npz", vectors,
                                              jax.tree_util.tree_map(lambda a: rng.normal(size=a.shape), shapes))
    text = Sequential((Embedding(2), Recurrent(units=2), Dense(2)))
    paths["text"] = checkpoints.save_model(root / "text.npz", text, text.init(jax.random.PRNGKey(1), len(WORDS)),
                                           vocab=WORDS)
    return paths, model, params


def test_info_describes_the_shipped_encoder_decoder(capsys):
    assert main(["info", "--checkpoint", SHIPPED]) == 0
    out = capsys.readouterr().out
    for part in ("encoder-decoder (Seq2Seq) with attention", "token ids (V = 12), embedded E = 16",
                 "up to S = 8 tokens", "bidirectional LSTM, 16 units per direction: states D = 32",
                 "decoder: LSTM, H = 32", "general scores", "M = 32", "vocabulary: 12 words",
                 "decoding: greedy from '<bos>', as many tokens as the source has", "exact_reversal 1"):
        assert part in out, part


def test_explain_decodes_greedily_and_prints_tabulates_and_draws_the_matrix(tmp_path, capsys):
    figure = tmp_path / "matrix.png"
    assert main(["explain", "--checkpoint", SHIPPED, "--source", "3 5 7 2", "--color", "never", "--table",
                 "--figure", str(figure)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[:2] == ["source: 3 5 7 2", "output (greedy from '<bos>'): 2 7 5 3"]   # reversed
    assert "method: lrp-all, eps 0.001" in lines[2]
    assert lines[3].startswith("  step 1 -> 2 (p ") and lines[3].endswith("| <bos>[" + lines[3].split("<bos>[")[1])
    assert lines[6].startswith("  step 4 -> 3 (p ") and lines[6].count("[") == 4 + 4     # 4 source, 4 read
    table = lines[lines.index("method: lrp-all, eps 0.001"):]
    assert table[1].split() == ["step", "output", "3", "5", "7", "2", "|", "<bos>", "2", "7", "5", "sum", "bias",
                                "residual", "score"]
    for t, row in enumerate(table[2:6]):
        values = [float(v) for v in row.split("|")[1].split()]
        assert len(values) == (t + 1) + 4                     # the inputs read so far, sum, bias, residual, score
        source = [float(v) for v in row.split("|")[0].split()[2:]]
        assert int(np.argmax(source)) == 3 - t                # output t copies source position L - 1 - t
        total, bias, residual, score = values[-4:]
        assert total == pytest.approx(sum(source) + sum(values[:-4]), abs=0.1)      # 3 significant digits
        assert total + bias + residual == pytest.approx(score, abs=0.1)
    assert f"wrote {figure}: a relevance matrix figure (1 panel(s))" in captured.err
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_explain_a_given_target(capsys):
    assert main(["explain", "--checkpoint", SHIPPED, "--source", "3 5 7 2", "--target", "2 7 5 4",
                 "--color", "never"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "output (given): 2 7 5 4"
    assert lines[2] == "  the model's best token at each step: 2 7 5 3"
    assert lines[-1].startswith("  step 4 -> 4 (p ")


def test_the_matrix_is_gradient_times_input_over_the_positions_read(saved):
    paths, model, params = saved
    bundle = load(paths["tiny"])
    assert isinstance(bundle, EncoderDecoderModel)
    result = bundle.explain_pair("A b", method="gi")          # lower-cased by the checkpoint's tokenizer
    ids = np.asarray(model.greedy(params, np.array([3, 4]), 1, 4)).tolist()
    ids = ids[:ids.index(2) + 1] if 2 in ids else ids           # at most 4 steps, cut after '</s>'
    T = len(ids)
    assert (result.source, result.greedy) == (["a", "b"], True)
    assert result.output == result.predictions == [WORDS[i] for i in ids]
    assert result.inputs == ["<s>"] + result.output[:-1]
    # Independently: d score[t, y_t] / d embedded input, times the input, summed over E (jax.jacrev).
    x, mask = model.pack([[3, 4]], [[1] + ids[:-1]])
    inner, inner_params = model.vector_model(params)
    embedded = model.embed(params, x[0])

    def explained(e):
        scores = inner.apply(inner_params, e, mask=mask[0])
        return scores[jnp.arange(T), jnp.asarray(ids)], scores

    jac, scores = jax.jit(jax.jacrev(explained, has_aux=True))(embedded)
    positions = [0, 1] + [3 + t for t in range(T)]                # valid source positions, then S + t
    expected = (jac * embedded[None]).sum(-1)[:, positions]
    np.testing.assert_allclose(result.relevance, expected, rtol=1e-12, atol=1e-14)
    assert all(result.relevance[t, 2 + t + 1:].tolist() == [0.0] * (T - t - 1) for t in range(T))   # causal
    np.testing.assert_array_equal(result.target_scores, np.asarray(scores)[np.arange(T), ids])


def test_lrp_rows_conserve_the_score_up_to_the_biases_and_the_residual(saved):
    """With every bias 0 but the output layer's, LRP at a vanishing eps gives each step's score to the source
    and decoder inputs read, except the output bias of the explained token (the column ``bias``); the padded
    source position and the inputs not yet read get exactly 0."""
    paths, model, params = saved
    result = load(paths["tiny"]).explain_pair("a", target="b c </s>", method="lrp-all", eps=1e-9)
    ids = [WORDS.index(w) for w in ("b", "c", "</s>")]
    np.testing.assert_allclose(result.bias, params["out"]["b"][ids], rtol=1e-7)
    np.testing.assert_allclose(result.residual, 0.0, atol=1e-7)
    np.testing.assert_allclose(result.relevance.sum(-1) + result.bias + result.residual, result.target_scores,
                               rtol=1e-12)
    assert result.relevance.shape == (3, 1 + 3)
    assert all(result.relevance[t, 1 + t + 1:].tolist() == [0.0] * (2 - t) for t in range(3))
    record = result.to_json()
    assert (record["source"], record["output"], record["inputs"]) == (["a"], ["b", "c", "</s>"], ["<s>", "b", "c"])
    assert record["bias"] == result.bias.tolist() and record["eps"] == 1e-9


def test_what_cannot_be_explained_is_refused_clearly(saved, tmp_path, capsys):
    paths = saved[0]
    cases = [
        (["explain", "--checkpoint", paths["tiny"], "a b"], "give the source with --source TEXT"),
        (["explain", "--checkpoint", paths["text"], "--source", "a b"], "--source is for an encoder-decoder"),
        (["explain", "--checkpoint", paths["no-vocab"], "--source", "a b"], "holds no vocabulary ('extra/vocab')"),
        (["explain", "--checkpoint", paths["no-decoding"], "--source", "a b"], "states no decoding"),
        (["info", "--checkpoint", paths["vectors"]], "holds an encoder-decoder over embedded vectors"),
        (["explain", "--checkpoint", paths["tiny"], "--source", "a b c a"], "source has 4 tokens; this model reads "
                                                                            "1 to S = 3"),
        (["explain", "--checkpoint", paths["tiny"], "--source", "a zzz"],
         "the source: the word 'zzz' is not in the vocabulary"),
        (["explain", "--checkpoint", paths["tiny"], "--source", "a", "--target", "yy b xx yy"],
         "the target: the words 'yy', 'xx' are not in the vocabulary"),
        (["report", "--checkpoint", paths["tiny"], "--input", "LINES", "--output", str(tmp_path / "r.html")],
         "lrpjax report is for models over one sentence"),
        (["explain", "--checkpoint", paths["tiny"], "--input", "LINES"], "batch mode (--input) is for models"),
    ]
    lines = tmp_path / "lines.txt"
    lines.write_text("a b\n")
    for argv, message in cases:
        argv = [str(lines) if a == "LINES" else a for a in argv]
        assert main(argv) == 1, argv
        assert message in capsys.readouterr().err, argv
    for argv in (["--source", "a", "--input", str(lines)], ["--source", "a", "--html", str(tmp_path / "p.html")],
                 ["--source", "a", "a b"]):
        with pytest.raises(SystemExit) as stop:
            main(["explain", "--checkpoint", paths["tiny"], *argv])
        assert stop.value.code == 2 and "--source" in capsys.readouterr().err
