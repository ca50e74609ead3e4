"""PyTorch importer against PyTorch itself: forward scores and input gradients (autograd) of stacked,
uni- and bidirectional LSTMs and GRUs with heads; the gate reordering shown to matter; LRP conservation,
masked batches and .full() on imported models; every refused configuration."""

import gc
import importlib.util
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lrpjax  # noqa: E402
from lrpjax import interop  # noqa: E402
from lrpjax.rules import preset  # noqa: E402
from framework_parity import rel_err  # noqa: E402

E, H, T, C = 4, 3, 5, 3


@pytest.fixture(autouse=True)
def _release_programs():
    """Each imported structure compiles anew; free the programs (see conftest: memory mappings)."""
    yield
    jax.clear_caches()
    gc.collect()


def make(kind, bidirectional, layers, head, dtype=torch.float64, seed=0, bias=True):
    """A seeded torch rnn and head (``None``, ``"linear"``, ``"mlp"``, ``"acts"`` or ``"steps"``)."""
    torch.manual_seed(seed)
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    rnn = cls(E, H, num_layers=layers, bidirectional=bidirectional, bias=bias).to(dtype).eval()
    D = 2 * H if bidirectional else H
    heads = {
        None: None,
        "linear": lambda: torch.nn.Linear(D, C),
        "steps": lambda: torch.nn.Linear(D, C),
        "mlp": lambda: torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.ReLU(), torch.nn.Linear(4, C)),
        "acts": lambda: torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                                            torch.nn.Linear(4, C), torch.nn.Sigmoid()),
    }
    module = None if heads[head] is None else heads[head]().to(dtype).eval()
    return rnn, module


def torch_reference(rnn, head, x, sequence_output, target):
    """PyTorch's output for the unbatched x (T, E) and autograd's d output[target] / d x."""
    xt = torch.tensor(x, requires_grad=True)
    output, h_n = rnn(xt)
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n
    if sequence_output:
        features = output
    else:
        features = torch.cat([h_n[-2], h_n[-1]]) if rnn.bidirectional else h_n[-1]
    scores = features if head is None else head(features)
    scores[target].backward()
    return scores.detach().numpy(), xt.grad.numpy()


def check_parity(kind, bidirectional, layers, head, dtype, tol, seed=0):
    rnn, module = make(kind, bidirectional, layers, head, dtype, seed)
    steps = head == "steps"
    model, params = interop.from_torch(rnn, module, sequence_output=steps)
    x = np.random.default_rng(seed).normal(0, 1, (T, E)).astype(np.float32 if dtype == torch.float32 else np.float64)
    target = (2, 1) if steps else 1
    want, want_grad = torch_reference(rnn, module, x, steps, target)
    got = jax.jit(model.apply)(params, x)
    grad = lrpjax.gradient(model.apply)(params, x, target)
    assert got.dtype == x.dtype and grad.dtype == x.dtype
    assert got.shape == want.shape
    assert rel_err(got, want) <= tol
    assert rel_err(grad, want_grad) <= tol
    return model, params, x, target


# every kind x direction x depth with a linear head; every head at depth 2
STRUCTURES = ([(k, b, n, "linear") for k, b, n in itertools.product(("lstm", "gru"), (False, True), (1, 2, 3))]
              + [(k, b, 2, h) for k, b, h in itertools.product(("lstm", "gru"), (False, True), (None, "mlp", "steps"))]
              + [("gru", True, 1, "acts")])


@pytest.mark.parametrize("kind,bidirectional,layers,head", STRUCTURES)
def test_float64_scores_and_input_gradient_equal_torch(kind, bidirectional, layers, head):
    check_parity(kind, bidirectional, layers, head, torch.float64, 1e-10, seed=layers)


@pytest.mark.parametrize("kind,bidirectional", list(itertools.product(("lstm", "gru"), (False, True))))
def test_float32_scores_and_input_gradient_equal_torch(kind, bidirectional):
    check_parity(kind, bidirectional, 2, "mlp", torch.float32, 1e-5)


@pytest.mark.parametrize("kind", ("lstm", "gru"))
def test_bias_false_imports_zero_biases(kind):
    rnn, head = make(kind, True, 2, "linear", bias=False)
    model, params = interop.from_torch(rnn, head)
    assert not any(np.any(params[key]["b"]) for key in model.keys if key.startswith(kind))
    x = np.random.default_rng(3).normal(0, 1, (T, E))
    want, _ = torch_reference(rnn, head, x, False, 0)
    assert rel_err(model.apply(params, x), want) <= 1e-10


def test_lstm_gates_copied_without_reordering_do_not_match():
    """PyTorch's rows i, f, g, o read as lrpjax's i, z, f, o: the reordering is what makes parity."""
    rnn, head = make("lstm", False, 1, "linear")
    model, params = interop.from_torch(rnn, head)
    x = np.random.default_rng(0).normal(0, 1, (T, E))
    want, _ = torch_reference(rnn, head, x, False, 0)
    naive = dict(params)
    naive["lstm_0"] = {"W": rnn.weight_ih_l0.detach().numpy().T, "U": rnn.weight_hh_l0.detach().numpy().T,
                       "b": (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy()}
    assert rel_err(model.apply(params, x), want) <= 1e-10
    assert rel_err(model.apply(naive, x), want) > 1e-2


def test_gru_recurrent_candidate_bias_merged_into_b_does_not_match():
    """b_hn sits inside the reset product: adding it to the input bias (as for r, z) breaks parity."""
    rnn, head = make("gru", False, 1, "linear")
    with torch.no_grad():
        rnn.bias_hh_l0[2 * H:] = torch.linspace(-1, 1, H, dtype=torch.float64)
    model, params = interop.from_torch(rnn, head)
    x = np.random.default_rng(1).normal(0, 1, (T, E))
    want, _ = torch_reference(rnn, head, x, False, 0)
    merged = {**params, "gru_0": {**params["gru_0"], "b_hn": np.zeros(H)}}
    merged["gru_0"]["b"] = params["gru_0"]["b"] + np.concatenate([np.zeros(2 * H), params["gru_0"]["b_hn"]])
    assert rel_err(model.apply(params, x), want) <= 1e-10
    assert rel_err(model.apply(merged, x), want) > 1e-3


def test_keys_and_head_weights_split_by_direction():
    rnn, head = make("lstm", True, 2, "mlp")
    model, params = interop.from_torch(rnn, head)
    assert model.keys == ("lstm_0_forward", "lstm_0_backward", "lstm_1_forward", "lstm_1_backward", "dense_0", "out")
    W = head[0].weight.detach().numpy().T
    np.testing.assert_array_equal(params["dense_0"]["W_lstm_1_forward"], W[:H])
    np.testing.assert_array_equal(params["dense_0"]["W_lstm_1_backward"], W[H:])
    assert model.layers[-2].activation == "relu" and model.layers[-1].activation == "identity"
    G = rnn.weight_ih_l0.detach().numpy()
    i, f, g, o = np.split(G, 4)
    np.testing.assert_array_equal(params["lstm_0_forward"]["W"], np.concatenate([i, g, f, o]).T)


@pytest.mark.parametrize("kind,bidirectional", list(itertools.product(("lstm", "gru"), (False, True))))
def test_lrp_runs_and_conserves_on_imported_models(kind, bidirectional):
    rnn, head = make(kind, bidirectional, 2, "mlp")
    model, params = interop.from_torch(rnn, head)
    x = np.random.default_rng(5).normal(0, 1, (T, E))
    full = lrpjax.lrp(model.apply, preset("lrp-all", eps=1e-3, share=True)).full(params, x, 2)
    explained = float(full.relevance.sum()) + sum(float(np.sum(v)) for v in jax.tree_util.tree_leaves(full.initial))
    np.testing.assert_allclose(explained, float(full.target_score), rtol=1e-9, atol=1e-12)
    assert abs(float(full.residual)) <= 1e-9 * max(1.0, abs(float(full.target_score)))
    for name in ("lrp-prop", "lrp-abs", "lrp-half"):
        R = lrpjax.lrp(model.apply, preset(name, eps=1e-3))(params, x, 2)
        assert R.shape == (T, E) and np.all(np.isfinite(R))


def test_per_step_head_lrp_conserves_and_explains_every_output():
    rnn, head = make("gru", True, 2, "steps")
    model, params = interop.from_torch(rnn, head, sequence_output=True)
    x = np.random.default_rng(6).normal(0, 1, (T, E))
    assert model.apply(params, x).shape == (T, C)
    full = lrpjax.lrp(model.apply, preset("lrp-all", eps=1e-3, share=True)).full(params, x, (3, 0))
    assert abs(float(full.residual)) <= 1e-9 * max(1.0, abs(float(full.target_score)))
    everything = lrpjax.lrp(model.apply, preset("lrp-all", eps=1e-3)).all(params, x)
    assert everything.shape == (T, C, T, E)


def test_masked_padded_batch_equals_each_example_for_a_stacked_bigru():
    rnn, head = make("gru", True, 2, "linear")
    model, params = interop.from_torch(rnn, head)
    rng = np.random.default_rng(7)
    sequences = [rng.normal(0, 1, (n, E)) for n in (5, 2, 4)]
    X, mask = lrpjax.pad(sequences)
    targets = np.array([0, 2, 1])
    for method in (lrpjax.lrp(model.apply, preset("lrp-all", eps=1e-3)), lrpjax.gradient(model.apply)):
        batch = method.batch(params, X, targets, mask=mask)
        for b, x in enumerate(sequences):
            np.testing.assert_allclose(batch[b, :len(x)], method(params, x, int(targets[b])), rtol=1e-10, atol=1e-12)
            assert not np.any(batch[b, len(x):])
    # and torch's packed batch gives the per-example scores the masked model gives
    want = np.stack([torch_reference(rnn, head, x, False, 0)[0] for x in sequences])
    got = jax.vmap(lambda x, m: model.apply(params, x, mask=m))(X, mask)
    assert rel_err(got, want) <= 1e-10


def test_embedding_goes_into_the_model_which_takes_ids_as_torch_does():
    rnn, head = make("lstm", True, 1, "linear")
    torch.manual_seed(1)
    embedding = torch.nn.Embedding(11, E, padding_idx=0).double()
    model, params = interop.from_torch(rnn, head, embedding)
    assert model.takes_ids
    table = params["embedding"]["table"]
    np.testing.assert_array_equal(table, embedding.weight.detach().numpy())
    ids = np.array([3, 1, 7, 10])
    with torch.no_grad():
        output, (h_n, _) = rnn(embedding(torch.tensor(ids)))
        want = head(torch.cat([h_n[-2], h_n[-1]])).numpy()
    assert rel_err(model.apply(params, ids), want) <= 1e-10
    inner, inner_params = model.vector_model(params)     # the embedded vectors, explained directly
    assert rel_err(inner.apply(inner_params, table[ids]), want) <= 1e-10


def test_no_head_gives_the_final_states_and_the_output_sequence():
    rnn, _ = make("lstm", True, 2, None)
    x = np.random.default_rng(2).normal(0, 1, (T, E))
    with torch.no_grad():
        output, (h_n, _) = rnn(torch.tensor(x))
    model, params = interop.from_torch(rnn)
    assert rel_err(model.apply(params, x), torch.cat([h_n[-2], h_n[-1]]).numpy()) <= 1e-10
    model, params = interop.from_torch(rnn, sequence_output=True)
    assert rel_err(model.apply(params, x), output.numpy()) <= 1e-10


def test_training_mode_dropout_warns():
    rnn = torch.nn.GRU(E, H, num_layers=2, dropout=0.3).double()
    with pytest.warns(UserWarning, match="training mode"):
        interop.from_torch(rnn)
    head = torch.nn.Sequential(torch.nn.Linear(H, C), torch.nn.Dropout(0.2)).double()
    with pytest.warns(UserWarning, match="Dropout"):
        interop.from_torch(rnn.eval(), head)


@pytest.mark.parametrize("build,error,match", [
    (lambda: (torch.nn.RNN(E, H),), TypeError, "rnn"),
    (lambda: (torch.nn.LSTM(E, H, proj_size=2),), ValueError, "proj_size"),
    (lambda: (torch.nn.LSTM(E, H), torch.nn.Sequential(torch.nn.Linear(H, C), torch.nn.GELU())), TypeError,
     r"head\[1\].*GELU.*nn.Linear"),
    (lambda: (torch.nn.LSTM(E, H), torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(H, C))), ValueError,
     r"head\[0\].*must follow an nn.Linear"),
    (lambda: (torch.nn.LSTM(E, H), torch.nn.Sequential(torch.nn.Linear(H, C), torch.nn.ReLU(), torch.nn.Tanh())),
     ValueError, r"head\[2\]"),
    (lambda: (torch.nn.LSTM(E, H), torch.nn.Sequential(torch.nn.Linear(H, C), torch.nn.Softmax(-1))), TypeError,
     "softmax is not needed"),
    (lambda: (torch.nn.LSTM(E, H), torch.nn.Sequential()), ValueError, "empty"),
    (lambda: (torch.nn.LSTM(E, H), torch.nn.Sequential(torch.nn.Dropout()).eval()), ValueError, "no nn.Linear"),
    (lambda: (torch.nn.LSTM(E, H, bidirectional=True), torch.nn.Linear(H, C)), ValueError, r"head.weight.*6 features"),
    (lambda: (torch.nn.LSTM(E, H), None, torch.nn.Embedding(5, E + 1)), ValueError, "embedding_dim"),
    (lambda: (torch.nn.LSTM(E, H), None, torch.nn.Embedding(5, E, max_norm=1.0)), ValueError, "max_norm"),
    (lambda: (torch.nn.LSTM(E, H), None, torch.nn.EmbeddingBag(5, E)), TypeError, "nn.Embedding"),
    (lambda: (torch.nn.LSTM(E, H), torch.nn.Linear(H, C).double()), TypeError, "one dtype"),
    (lambda: (torch.nn.LSTM(E, H).half(),), TypeError, "float32 or float64"),
])
def test_refused_configurations_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        interop.from_torch(*build())


def test_sequence_output_must_be_a_bool():
    with pytest.raises(TypeError, match="sequence_output"):
        interop.from_torch(torch.nn.GRU(E, H), sequence_output="steps")


def test_float64_weights_need_64_bit_jax():
    rnn = torch.nn.GRU(E, H).double()
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match="jax_enable_x64"):
            interop.from_torch(rnn)


def test_non_finite_weights_are_refused():
    rnn = torch.nn.LSTM(E, H).double()
    with torch.no_grad():
        rnn.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(ValueError, match="weight_hh_l0.*non-finite"):
        interop.from_torch(rnn)


def test_importing_lrpjax_imports_no_framework():
    code = ("import sys, lrpjax, lrpjax.interop; "
            "assert not {'torch', 'keras', 'flax'} & set(sys.modules), sorted({'torch', 'keras', 'flax'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], check=True)


ROOT = Path(__file__).resolve().parents[2]


def readme_snippet(heading: str) -> str:
    """The first ```python block after ``heading`` in examples/README.md."""
    text = (ROOT / "examples" / "README.md").read_text()
    block = re.search(re.escape(heading) + r".*?```python\n(.*?)```", text, re.S)
    assert block, f"no python block after {heading!r} in examples/README.md"
    return block.group(1)


def test_readme_snippet_explain_your_own_pytorch_model_runs(tmp_path):
    """As a user runs it: a fresh interpreter (default 32-bit JAX, no test configuration)."""
    result = subprocess.run([sys.executable, "-c", readme_snippet("### Explain your own PyTorch model")],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "relevance per step" in result.stdout


@pytest.mark.slow
def test_worked_example_quick_run_writes_results(tmp_path):
    spec = importlib.util.spec_from_file_location("torch_sst_bigru", ROOT / "examples" / "torch_sst_bigru.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    report = example.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "torch_sst_bigru.json").read_text())
    assert saved["parity"] == report["parity"]
    assert saved["parity"]["max_abs_difference"] <= 1e-5 * max(1.0, saved["parity"]["max_abs_score"])
    assert saved["dataset"]["max_abs_score_difference_to_torch"] <= 1e-5 * max(1.0, saved["parity"]["max_abs_score"])
    assert saved["dataset"]["sentences"] == 300
    for sentence in saved["sentences"]:
        assert set(sentence["relevance"]) == {"LRP-all", "LRP-prop", "LRP-abs", "LRP-half", "Gradient", "Sensitivity",
                                              "Gradient x Input", "Occlusion f-diff", "Occlusion P-diff", "Random"}
        assert all(len(r) == len(sentence["tokens"]) for r in sentence["relevance"].values())
        assert abs(sentence["lrp_all_share_residual"]) <= 1e-4
        assert sentence["max_abs_difference_padded_vs_alone"] <= 1e-5
        assert (tmp_path / sentence["figure"]).stat().st_size > 0
