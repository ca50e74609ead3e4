"""Keras 3 importer against Keras itself (JAX backend): forward scores and input gradients (jax.grad
through the Keras model) of stacked, uni- and bidirectional LSTMs and GRUs (reset_after True and
False) with dense heads, per-step heads and pooling; the gate reordering shown to matter; a final
softmax left out; embeddings with mask_zero; LRP on imported models; every refused configuration."""

import gc
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("the Keras parity tests need KERAS_BACKEND=jax", allow_module_level=True)

import lrpjax  # noqa: E402
from lrpjax import interop  # noqa: E402
from lrpjax.rules import preset  # noqa: E402
from framework_parity import numpy_promotion as keras_context, rel_err  # noqa: E402

L = keras.layers
E, H, T, C = 4, 3, 5, 3


@pytest.fixture(autouse=True)
def _release_programs():
    """Each imported structure compiles anew; free the programs (see conftest: memory mappings)."""
    yield
    keras.backend.clear_session()
    jax.clear_caches()
    gc.collect()


def recurrent(cell, bidirectional, return_sequences, dtype):
    kinds = {"lstm": lambda: L.LSTM(H, return_sequences=return_sequences, dtype=dtype),
             "gru": lambda: L.GRU(H, return_sequences=return_sequences, dtype=dtype),
             "gru-v1": lambda: L.GRU(H, return_sequences=return_sequences, reset_after=False, dtype=dtype)}
    layer = kinds[cell]()
    return L.Bidirectional(layer, dtype=dtype) if bidirectional else layer


def build(cell, bidirectional, layers, head, dtype="float32", seed=0):
    """A Keras Sequential with random weights (biases too); heads ``dense``, ``mlp``, ``steps``, ``mean``,
    ``max``."""
    with keras_context():
        keras.utils.set_random_seed(seed)
        steps = head in ("steps", "mean", "max")
        stack = [recurrent(cell, bidirectional, k < layers - 1 or steps, dtype) for k in range(layers)]
        tail = {"dense": [L.Dense(C, dtype=dtype)],
                "mlp": [L.Dense(4, activation="relu", dtype=dtype), L.Dense(C, dtype=dtype)],
                "steps": [L.Dense(C, dtype=dtype)],
                "mean": [L.GlobalAveragePooling1D(dtype=dtype), L.Dense(C, dtype=dtype)],
                "max": [L.GlobalMaxPooling1D(dtype=dtype), L.Dense(C, dtype=dtype)]}[head]
        model = keras.Sequential([keras.Input((T, E), dtype=dtype), *stack, *tail])
        rng = np.random.default_rng(seed)
        model.set_weights([rng.normal(0, 0.5, w.shape).astype(dtype) for w in model.weights])
    return model


def keras_reference(model, x, target):
    """Keras's output for x (T, E) and jax.grad of output[target] through the Keras model."""
    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]

    def output(x_):
        return model.stateless_call(trainable, other, x_[None])[0][0]

    with keras_context():
        both = jax.jit(lambda x_: (output(x_), jax.grad(lambda x__: output(x__)[target])(x_)))
        scores, grad = both(x)
    return np.asarray(scores), np.asarray(grad)


def check_parity(cell, bidirectional, layers, head, dtype, tol, seed=0):
    keras_model = build(cell, bidirectional, layers, head, dtype, seed)
    model, params = interop.from_keras(keras_model)
    x = np.random.default_rng(seed).normal(0, 1, (T, E)).astype(dtype)
    target = (2, 1) if head == "steps" else 1
    want, want_grad = keras_reference(keras_model, x, target)
    got = jax.jit(model.apply)(params, x)
    grad = lrpjax.gradient(model.apply)(params, x, target)
    assert got.dtype == x.dtype and got.shape == want.shape
    assert rel_err(got, want) <= tol
    assert rel_err(grad, want_grad) <= tol
    return model, params


CELLS = ("lstm", "gru", "gru-v1")
# every cell, uni (1 layer) and bi (2 layers); depth 3; every head kind (the float64 test has the MLP head)
STRUCTURES = ([(c, b, 2 if b else 1, "dense") for c, b in itertools.product(CELLS, (False, True))]
              + [("lstm", True, 3, "dense"), ("gru", False, 3, "dense"), ("gru", True, 2, "mlp")]
              + [("lstm", False, 2, "steps"), ("gru-v1", True, 1, "steps"), ("gru", True, 2, "mean"),
                 ("lstm", False, 1, "max")])


@pytest.mark.parametrize("cell,bidirectional,layers,head", STRUCTURES)
def test_float32_scores_and_input_gradient_equal_keras(cell, bidirectional, layers, head):
    check_parity(cell, bidirectional, layers, head, "float32", 1e-5, seed=layers)


@pytest.mark.parametrize("cell", CELLS)
def test_float64_weights_stay_float64_and_match_keras(cell):
    """Keras 3's ``ops.tanh`` returns float32 for a float64 tensor (it casts to ``result_type(x, float)``,
    float32 whatever floatx is), so a float64 Keras LSTM/GRU is itself only float32-accurate in its tanh
    (1.4e-7 absolute on ``keras.ops.tanh``); the imported model computes in float64 throughout."""
    model, params = check_parity(cell, True, 2, "mlp", "float64", 1e-6)
    assert all(leaf.dtype == np.float64 for leaf in jax.tree_util.tree_leaves(params))


def test_lstm_columns_copied_without_reordering_do_not_match():
    keras_model = build("lstm", False, 1, "dense")
    model, params = interop.from_keras(keras_model)
    x = np.random.default_rng(0).normal(0, 1, (T, E)).astype(np.float32)
    want, _ = keras_reference(keras_model, x, 0)
    cell = keras_model.layers[0].cell
    naive = {**params, "lstm_0": {"W": np.asarray(cell.kernel.value), "U": np.asarray(cell.recurrent_kernel.value),
                                  "b": np.asarray(cell.bias.value)}}
    assert rel_err(model.apply(params, x), want) <= 1e-5
    assert rel_err(model.apply(naive, x), want) > 1e-2


def test_gru_columns_z_r_h_copied_as_r_z_n_do_not_match():
    keras_model = build("gru-v1", False, 1, "dense")
    model, params = interop.from_keras(keras_model)
    x = np.random.default_rng(1).normal(0, 1, (T, E)).astype(np.float32)
    want, _ = keras_reference(keras_model, x, 0)
    cell = keras_model.layers[0].cell
    naive = {**params, "gru_0": {"W": np.asarray(cell.kernel.value), "U": np.asarray(cell.recurrent_kernel.value),
                                 "b": np.asarray(cell.bias.value)}}
    assert rel_err(model.apply(params, x), want) <= 1e-5
    assert rel_err(model.apply(naive, x), want) > 1e-2


def test_final_softmax_and_activation_layers():
    """A final softmax is left out with a warning; Activation layers fold into the Dense before them."""
    with keras_context():
        keras.utils.set_random_seed(0)
        keras_model = keras.Sequential([keras.Input((T, E)), L.GRU(H), L.Dense(4), L.Activation("tanh"),
                                        L.Dropout(0.5), L.Dense(C, activation="softmax")])
    with pytest.warns(UserWarning, match="softmax.*logits"):
        model, params = interop.from_keras(keras_model)
    assert [(layer.name, getattr(layer, "activation", None)) for layer in model.layers] == [
        ("gru_0", None), ("dense_0", "tanh"), ("out", "identity")]
    x = np.random.default_rng(2).normal(0, 1, (T, E)).astype(np.float32)
    want, _ = keras_reference(keras_model, x, 0)
    assert rel_err(jax.nn.softmax(model.apply(params, x)), want) <= 1e-5
    with keras_context():
        keras_model = keras.Sequential([keras.Input((T, E)), L.LSTM(H), L.Dense(1), L.Activation("sigmoid")])
    with pytest.warns(UserWarning, match="sigmoid"):
        model, params = interop.from_keras(keras_model)
    want, _ = keras_reference(keras_model, x, 0)
    assert rel_err(jax.nn.sigmoid(model.apply(params, x)), want) <= 1e-5


def test_embedding_with_mask_zero_equals_the_masked_model():
    with keras_context():
        keras.utils.set_random_seed(3)
        keras_model = keras.Sequential([keras.Input((6,), dtype="int32"), L.Embedding(9, E, mask_zero=True),
                                        L.Bidirectional(L.GRU(H, return_sequences=True)),
                                        L.Bidirectional(L.LSTM(H)), L.Dense(C)])
        rng = np.random.default_rng(3)
        keras_model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in keras_model.weights])
    with pytest.warns(UserWarning, match="mask_zero"):
        imported = interop.from_keras(keras_model)
    model, params = imported
    np.testing.assert_array_equal(params["embedding"]["table"], np.asarray(keras_model.layers[0].embeddings.value))
    ids = np.array([4, 2, 8, 1, 0, 0], np.int32)
    with keras_context():
        want = np.asarray(keras_model(ids[None]))[0]
    got = model.apply(params, ids, mask=imported.mask(ids))
    assert rel_err(got, want) <= 1e-5
    assert rel_err(model.apply(params, ids[:4]), want) <= 1e-5


def test_lrp_conserves_on_imported_models_and_full_works():
    for cell, bidirectional in (("lstm", True), ("gru-v1", False)):
        model, params = interop.from_keras(build(cell, bidirectional, 2, "mlp", "float64"))
        x = np.random.default_rng(4).normal(0, 1, (T, E))
        full = lrpjax.lrp(model.apply, preset("lrp-all", eps=1e-3, share=True)).full(params, x, 0)
        explained = float(full.relevance.sum()) + sum(float(np.sum(v)) for v in jax.tree_util.tree_leaves(full.initial))
        np.testing.assert_allclose(explained, float(full.target_score), rtol=1e-9, atol=1e-12)
        assert abs(float(full.residual)) <= 1e-9 * max(1.0, abs(float(full.target_score)))


def test_masked_padded_batch_equals_each_example_for_a_stacked_bigru():
    model, params = interop.from_keras(build("gru", True, 2, "dense", "float64"))
    rng = np.random.default_rng(5)
    sequences = [rng.normal(0, 1, (n, E)) for n in (5, 3, 1)]
    X, mask = lrpjax.pad(sequences)
    method = lrpjax.lrp(model.apply, preset("lrp-half", eps=1e-3))
    batch = method.batch(params, X, 2, mask=mask)
    for b, x in enumerate(sequences):
        np.testing.assert_allclose(batch[b, :len(x)], method(params, x, 2), rtol=1e-10, atol=1e-12)


def _sequential(*layers, shape=(T, E)):
    with keras_context():
        return keras.Sequential([keras.Input(shape), *layers])


@pytest.mark.parametrize("make,error,match", [
    (lambda: _sequential(L.LSTM(H, activation="relu"), L.Dense(C)), ValueError, "activation = 'relu'"),
    (lambda: _sequential(L.GRU(H, recurrent_activation="hard_sigmoid")), ValueError, "recurrent_activation"),
    (lambda: _sequential(L.Bidirectional(L.LSTM(H), merge_mode="sum")), ValueError, "merge_mode"),
    (lambda: _sequential(L.LSTM(H, go_backwards=True)), ValueError, "go_backwards"),
    (lambda: _sequential(L.LSTM(H), L.Dense(C, activation="gelu")), ValueError, "activation 'gelu'"),
    (lambda: _sequential(L.LSTM(H), L.Softmax(), L.Dense(C)), ValueError, "softmax is supported only as the last"),
    (lambda: _sequential(L.LSTM(H), L.Activation("relu")), ValueError, "must follow a Dense"),
    (lambda: _sequential(L.Dense(C)), ValueError, "no LSTM, GRU"),
    (lambda: _sequential(L.Dense(C), shape=(E,)), ValueError, r"embedded sequences \(B, T, E\)"),
    (lambda: _sequential(L.LSTM(H, return_state=True)), ValueError, "return_state"),
    (lambda: _sequential(L.Bidirectional(L.SimpleRNN(H))), TypeError, "wraps a SimpleRNN"),
    (lambda: _sequential(L.Bidirectional(L.LSTM(H), backward_layer=L.GRU(H, go_backwards=True))), ValueError,
     "one LSTM forward and one backward"),
    (lambda: _sequential(L.Bidirectional(L.LSTM(H), backward_layer=L.LSTM(H - 1, go_backwards=True))), ValueError,
     "same units"),
    (lambda: _sequential(L.LSTM(H), L.Dense(C), L.Activation("gelu")), ValueError, r"\(activation\).*'gelu'"),
    (lambda: _sequential(L.LSTM(H, return_sequences=True), L.GlobalAveragePooling1D(keepdims=True), L.Dense(C)),
     ValueError, "keepdims=False"),
    (lambda: _sequential(L.LSTM(H, dtype="float64"), L.Dense(C)), TypeError, "one dtype"),
    (lambda: _sequential(L.LayerNormalization(), L.LSTM(H)), TypeError, "LayerNormalization; supported layers"),
    (lambda: _sequential(L.LSTM(H, return_sequences=True), L.Embedding(3, 2)), ValueError, "Embedding.*after"),
])
def test_refused_configurations_name_the_layer(make, error, match):
    keras_model = make()
    with pytest.raises(error, match=match):
        interop.from_keras(keras_model)


def test_stateful_unbuilt_and_functional_models_are_refused():
    with keras_context():
        stateful = keras.Sequential([keras.Input(batch_shape=(1, T, E)), L.LSTM(H, stateful=True)])
        unbuilt = keras.Sequential([L.LSTM(H)])
        inputs = keras.Input((T, E))
        functional = keras.Model(inputs, L.Dense(C)(L.LSTM(H)(inputs)))
    with pytest.raises(ValueError, match="stateful"):
        interop.from_keras(stateful)
    with pytest.raises(ValueError, match="not built"):
        interop.from_keras(unbuilt)
    with pytest.raises(TypeError, match="keras.Sequential"):
        interop.from_keras(functional)


def test_a_model_built_by_calling_it_imports():
    with keras_context():
        keras_model = keras.Sequential([L.GRU(H), L.Dense(C)])
        x = np.random.default_rng(8).normal(0, 1, (T, E)).astype(np.float32)
        want = np.asarray(keras_model(x[None]))[0]
    model, params = interop.from_keras(keras_model)
    assert rel_err(model.apply(params, x), want) <= 1e-5


def test_readme_snippet_explain_your_own_keras_model_runs(tmp_path):
    """As a user runs it: a fresh interpreter (default 32-bit JAX, no test configuration)."""
    text = (Path(__file__).resolve().parents[2] / "examples" / "README.md").read_text()
    block = re.search(r"### Explain your own Keras model.*?```python\n(.*?)```", text, re.S)
    assert block, "no Keras snippet in examples/README.md"
    result = subprocess.run([sys.executable, "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "relevance per step" in result.stdout and "softmax" in result.stderr
