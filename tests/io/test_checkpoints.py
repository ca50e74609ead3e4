"""Tests for .npz checkpoints (lrpjax.io.checkpoints): bit-exact round trips and clear errors."""

import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.io import checkpoints as ck


def nested_params(rng):
    weird = np.array([np.nan, -0.0, np.inf, 1e-310], dtype=np.float64)  # NaN, signed zero, subnormal
    return {
        "left": {"W": rng.normal(size=(3, 8)).astype(np.float32), "b": jnp.asarray(rng.normal(size=(8,)))},
        "right": {"deep": {"U": rng.normal(size=(2, 8)), "flags": np.array([True, False])}},
        "out": np.arange(6, dtype=np.int32).reshape(2, 3),
        "steps": np.int64(7),
        "special": weird,
        "half": np.array([1.5, -2.25], dtype=np.float16),
    }


def assert_bit_equal(a, b):
    assert isinstance(b, dict) and set(a) == set(b)
    for key in a:
        if isinstance(a[key], dict):
            assert_bit_equal(a[key], b[key])
        else:
            expected = np.asarray(a[key])
            assert b[key].dtype == expected.dtype and b[key].shape == expected.shape, key
            assert b[key].tobytes() == expected.tobytes(), key


def test_round_trip_is_bit_exact(tmp_path, rng):
    params = nested_params(rng)
    vocab = np.array(["the", "movie", "was", "großartig", "👍"])
    metadata = {"kind": "bilstm", "sizes": {"E": 3, "H": 4}, "val_mse": np.float64(1.25e-5), "dims": (1, 2)}
    path = ck.save(tmp_path / "model.npz", params, metadata, extra={"vocab": vocab})
    loaded = ck.load(path, expect_kind="bilstm")
    assert_bit_equal(params, loaded.params)
    assert loaded.extra["vocab"].dtype.kind == "U"
    np.testing.assert_array_equal(loaded.extra["vocab"], vocab)
    assert loaded.metadata["sizes"] == {"E": 3, "H": 4}
    assert loaded.metadata["val_mse"] == 1.25e-5 and loaded.metadata["dims"] == [1, 2]
    assert loaded.metadata["format_version"] == ck.FORMAT_VERSION
    assert isinstance(loaded.metadata["lrpjax_version"], str)


def test_archive_layout_and_suffix(tmp_path, rng):
    path = ck.save(tmp_path / "model", {"a": {"b": np.ones(2)}}, {"kind": "toy"})
    assert path.endswith("model.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["__metadata__", "params/a/b"]
        assert json.loads(str(archive["__metadata__"]))["kind"] == "toy"
    assert ck.load(path).extra == {}


def test_flatten_and_unflatten_are_inverse(rng):
    params = nested_params(rng)
    flat = ck.flatten(params)
    assert "left/W" in flat and "right/deep/U" in flat
    assert_bit_equal(params, ck.unflatten(flat))


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="nothing.npz.*does not exist"):
        ck.load(tmp_path / "nothing.npz")


def test_random_bytes_are_not_a_checkpoint(tmp_path, rng):
    path = tmp_path / "random.npz"
    path.write_bytes(rng.integers(0, 256, size=500, dtype=np.uint8).tobytes())
    with pytest.raises(ck.CheckpointError, match="random.npz.*not an .npz archive"):
        ck.load(path)


def test_truncated_file_is_an_error(tmp_path, rng):
    path = ck.save(tmp_path / "full.npz", nested_params(rng), {"kind": "toy"})
    data = open(path, "rb").read()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        ck.load(cut)


def test_damaged_array_inside_a_valid_zip_is_an_error(tmp_path):
    # A stored (uncompressed) member whose bytes are flipped: the zip directory is intact, the CRC is not.
    path = tmp_path / "damaged.npz"
    np.savez(path, **{"params/w": np.arange(1000.0), "__metadata__": np.array('{"kind": "toy", "format_version": 1}')})
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 16] = bytes(16)
    path.write_bytes(bytes(data))
    assert zipfile.is_zipfile(path)
    with pytest.raises(ck.CheckpointError, match="damaged.npz.*'params/w' cannot be loaded"):
        ck.load(path)


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, **{"params/w": np.array([{"a": 1}], dtype=object), "__metadata__": np.array('{"kind": "toy"}')})
    with pytest.raises(ck.CheckpointError, match="objects.npz.*cannot be loaded"):
        ck.load(path)


def test_missing_metadata_is_an_error(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez_compressed(path, w=np.ones(3))
    with pytest.raises(ck.CheckpointError, match="plain.npz.*no '__metadata__'"):
        ck.load(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json {", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"kind": "toy"}', "format_version None"),
        ('{"kind": "toy", "format_version": 99}', "format_version 99"),
        ('{"format_version": 1}', "no 'kind'"),
    ],
)
def test_invalid_metadata_is_an_error(tmp_path, text, message):
    path = tmp_path / "meta.npz"
    np.savez_compressed(path, **{"params/w": np.ones(3), "__metadata__": np.array(text)})
    with pytest.raises(ck.CheckpointError, match=f"meta.npz.*{message}"):
        ck.load(path)


def test_metadata_must_be_a_string(tmp_path):
    path = tmp_path / "meta.npz"
    np.savez_compressed(path, **{"params/w": np.ones(3), "__metadata__": np.ones(2)})
    with pytest.raises(ck.CheckpointError, match="unicode string"):
        ck.load(path)


def test_wrong_kind_says_what_was_found(tmp_path):
    path = ck.save(tmp_path / "m.npz", {"w": np.ones(2)}, {"kind": "markov_lstm"})
    with pytest.raises(ck.CheckpointError, match="m.npz.*kind 'markov_lstm'.*expected 'bilstm'"):
        ck.load(path, expect_kind="bilstm")


def test_unexpected_entry_is_an_error(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez_compressed(path, **{"other": np.ones(1), "__metadata__": np.array('{"kind": "t", "format_version": 1}')})
    with pytest.raises(ck.CheckpointError, match="unexpected entry 'other'"):
        ck.load(path)


def test_save_validates_its_arguments(tmp_path):
    target = tmp_path / "x.npz"
    with pytest.raises(ValueError, match="kind"):
        ck.save(target, {"w": np.ones(1)}, {"sizes": 3})
    with pytest.raises(ValueError, match="format_version"):
        ck.save(target, {"w": np.ones(1)}, {"kind": "t", "format_version": 2})
    with pytest.raises(TypeError, match="metadata"):
        ck.save(target, {"w": np.ones(1)}, "bilstm")
    with pytest.raises(ValueError, match="'/'"):
        ck.save(target, {"a/b": np.ones(1)}, {"kind": "t"})
    with pytest.raises(TypeError, match="strings"):
        ck.save(target, {1: np.ones(1)}, {"kind": "t"})
    with pytest.raises(ValueError, match="empty dict at 'a'"):
        ck.save(target, {"a": {}}, {"kind": "t"})
    with pytest.raises(TypeError, match="dtype object"):
        ck.save(target, {"w": np.array([None])}, {"kind": "t"})
    with pytest.raises(TypeError, match="must be an array"):
        ck.save(target, {"w": [1.0, 2.0]}, {"kind": "t"})
    with pytest.raises(TypeError, match="JSON"):
        ck.save(target, {"w": np.ones(1)}, {"kind": "t", "fn": print})
    with pytest.raises(TypeError, match="params"):
        ck.save(target, [np.ones(1)], {"kind": "t"})
    assert not target.exists()


# --- models: save_model / load_model --------------------------------------------------------------

import dataclasses  # noqa: E402 - the model tests' imports, kept beside them
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from lrpjax.core.cells import GRUCell, GatelessCell, MarkovCell, NondecreasingCell, StandardCell  # noqa: E402
from lrpjax.models import LSTM, MLP, Dense, Pool, Recurrent, Sequential, bilstm, network_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

COMPOSITIONS = {
    "gru-bi-stack": lambda: Sequential((Recurrent(GRUCell(), 4, bidirectional=True, sequences=True),
                                        Recurrent(StandardCell(), 3), Dense(5, "relu"), Dense(3))),
    "nondecreasing-maxpool": lambda: Sequential((Recurrent(NondecreasingCell(a_g=1.5), 4, sequences=True),
                                                 Pool("max"), Dense(2, "tanh"))),
    "markov-bi-per-step": lambda: Sequential((Recurrent(MarkovCell(a_g=1.0, a_h=0.5), 3, bidirectional=True,
                                                        sequences=True, name="enc"),
                                              Dense(4, "sigmoid", bias=False, name="head"))),
    "gateless-meanpool": lambda: Sequential((Recurrent(GatelessCell(), 3, sequences=True), Pool("mean"),
                                             Dense(2))),
}


def init_model(name, key):
    """(model, float64 params, input size) of a named test composition or named model."""
    if name == "mlp":
        model = MLP((6, 7, 5, 3), "tanh")
        return model, model.init(key, jnp.float64), 6
    if name == "bilstm":
        return bilstm.model, bilstm.init(key, 5, 4, 3, jnp.float64), 5
    if name == "lstm-markov":
        model = LSTM(MarkovCell(a_g=2.0, a_h=1.0))
        return model, model.init(key, 5, 3, 1, jnp.float64), 5
    model = COMPOSITIONS[name]()
    return model, model.init(key, 5, jnp.float64), 5


@pytest.mark.parametrize("name", [*COMPOSITIONS, "mlp", "bilstm", "lstm-markov"])
def test_any_composition_round_trips_as_a_model(tmp_path, key, rng, name):
    model, params, E = init_model(name, key)
    path = ck.save_model(tmp_path / "m.npz", model, params, {"note": name})
    loaded = ck.load_model(path)
    assert loaded.model == network_of(model) and loaded.beside == {} and loaded.extra == {}
    assert_bit_equal(jax.tree_util.tree_map(np.asarray, params), loaded.params)
    assert loaded.metadata["kind"] == getattr(model, "kind", "sequential") and loaded.metadata["note"] == name
    assert_bit_equal(loaded.params, ck.load(path).params)   # still a plain parameter file
    network = network_of(model)
    x = rng.normal(size=(E,) if not network.sequence_input else (6, E))
    expected = model.apply(params, x)
    np.testing.assert_array_equal(np.asarray(loaded.model.apply(loaded.params, x)), np.asarray(expected))
    if network.sequence_input:
        mask = np.arange(6) < 4
        np.testing.assert_array_equal(np.asarray(loaded.model.apply(loaded.params, x, mask=mask)),
                                      np.asarray(network.apply(params, x, mask=mask)))


def test_a_model_under_a_key_with_arrays_beside_it(tmp_path, key, rng):
    params = bilstm.init(key, 4, 3, 5, jnp.float64)
    embed = rng.normal(size=(10, 4))
    vocab = np.array([f"w{k}" for k in range(10)])
    path = ck.save_model(tmp_path / "bundle", bilstm.model, params, {"kind": "bundle"}, key="model",
                         beside={"embed": embed, "aux": {"scale": np.float32(2.0)}}, extra={"vocab": vocab})
    with np.load(path, allow_pickle=False) as archive:
        assert {"params/embed", "params/aux/scale", "params/model/left/W", "extra/vocab"} <= set(archive.files)
    loaded = ck.load_model(path, "bundle")
    assert loaded.metadata[ck.MODEL_KEY] == "model" and loaded.model == bilstm.model.network
    assert_bit_equal(jax.tree_util.tree_map(np.asarray, params), loaded.params)
    assert_bit_equal({"embed": embed, "aux": {"scale": np.float32(2.0)}}, loaded.beside)
    np.testing.assert_array_equal(loaded.extra["vocab"], vocab)


def test_save_model_refuses_what_would_not_load(tmp_path, key):
    target = tmp_path / "x.npz"
    model, params, _ = init_model("bilstm", key)
    with pytest.raises(ValueError, match="'right'"):
        ck.save_model(target, model, {k: v for k, v in params.items() if k != "right"})
    with pytest.raises(ValueError, match="model_config"):
        ck.save_model(target, model, params, {"model_config": {}})
    with pytest.raises(ValueError, match="`beside` needs `key`"):
        ck.save_model(target, model, params, beside={"embed": np.ones((2, 5))})
    with pytest.raises(ValueError, match="must not hold 'model'"):
        ck.save_model(target, model, params, key="model", beside={"model": np.ones(2)})
    with pytest.raises(TypeError, match="Sequential"):
        ck.save_model(target, bilstm.apply, params)

    @dataclasses.dataclass(frozen=True)
    class MyCell(StandardCell):   # a cell the config cannot name: it would load as a StandardCell
        pass

    custom = Sequential((Recurrent(MyCell(), 2), Dense(1)))
    with pytest.raises(ValueError, match="does not describe it"):
        ck.save_model(target, custom, custom.init(key, 3))
    assert not target.exists()


def save_with_config(path, params, config, kind="custom"):
    """A checkpoint whose metadata states `config`, written with the plain `save` (to tamper with it)."""
    return ck.save(path, jax.tree_util.tree_map(np.asarray, params), {"kind": kind, ck.MODEL_CONFIG: config})


def test_a_config_naming_an_unknown_layer_or_cell_is_refused(tmp_path, key):
    model, params, _ = init_model("gru-bi-stack", key)
    config = model.config()
    config["layers"][2] = {"type": "attention", "units": 5}
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*cannot be rebuilt.*'attention'"):
        ck.load_model(save_with_config(tmp_path / "m.npz", params, config))
    config = model.config()
    config["layers"][0]["cell"]["kind"] = "peephole"
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*unknown cell kind 'peephole'"):
        ck.load_model(save_with_config(tmp_path / "m.npz", params, config))
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*cannot be rebuilt.*sequential"):
        ck.load_model(save_with_config(tmp_path / "m.npz", params, {"type": "graph"}))


@pytest.mark.parametrize("change, message", [
    (lambda p: p["lstm_0"].update(U=np.ones((3, 13))), r"'params/'.*params\['lstm_0'\]\['U'\].*\(3, 12\).*got \(3, 13\)"),
    (lambda p: p.pop("out"), r"missing keys \['out'\]"),
    (lambda p: p.update(stray={"W": np.ones(2)}), r"keys \['stray'\] that belong to no layer"),
    (lambda p: p["dense_0"].update(W=np.ones((3, 5), np.int32)), r"'params/dense_0/W' has dtype int32"),
])
def test_parameters_that_do_not_fit_the_config_are_refused(tmp_path, key, change, message):
    model, params, _ = init_model("gru-bi-stack", key)
    params = jax.tree_util.tree_map(np.asarray, params)
    change(params)
    with pytest.raises(ck.CheckpointError, match=r"checkpoint '.*m\.npz'.*" + message):
        ck.load_model(save_with_config(tmp_path / "m.npz", params, model.config()))


def test_a_file_without_a_config_or_a_legacy_kind_is_refused(tmp_path):
    path = ck.save(tmp_path / "m.npz", {"w": np.ones(2)}, {"kind": "trained-params"})
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*no model config.*'trained-params'.*legacy kinds"):
        ck.load_model(path)
    path = ck.save(tmp_path / "m.npz", {"w": np.ones(2)}, {"kind": "mlp-relu"})
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*legacy kind 'mlp-relu'.*'widths'"):
        ck.load_model(path)
    path = ck.save(tmp_path / "m.npz", {"w": np.ones(2)}, {"kind": "lstm-markov", "cell": "standard"})
    with pytest.raises(ck.CheckpointError, match=r"m\.npz.*cell 'standard'.*markov"):
        ck.load_model(path)


def test_an_expect_callable_may_return_none(tmp_path):
    path = ck.save(tmp_path / "m.npz", {"w": np.ones(2)}, {"kind": "toy"})
    assert ck.load(path, expect=lambda metadata: None).params["w"].shape == (2,)


# --- the shipped checkpoints, written before configs were stored ----------------------------------

def current_loading(path, metadata):
    """The model each shipped checkpoint was loaded as before it held a config, and its params' key."""
    kind = metadata["kind"]
    if kind == "sst-bilstm":
        return bilstm.model, "model"          # lrpjax.app.model: bilstm.apply(params["model"], ...)
    if kind == "lstm":
        return LSTM(StandardCell()), None     # experiments/toy_arithmetic.py: MODEL
    if kind == "lstm-markov":               # experiments/markov_reward.py: make_model(config)
        return LSTM(MarkovCell(a_g=metadata["config"]["a_g"], a_h=metadata["config"]["a_h"])), None
    return MLP(tuple(metadata["widths"]), metadata["activation"]), None  # experiments/digits_pixel_flipping.py


SHIPPED = ["checkpoints/sst_bilstm.npz", "checkpoints/toy_add.npz", "checkpoints/toy_sub.npz",
           "checkpoints/markov_lstm.npz", "checkpoints/digits_mlp.npz", "lrpjax/_assets/sst_bilstm.npz"]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_checkpoints_load_as_their_models(name, rng):
    path = ROOT / name
    plain = ck.load(path)
    assert ck.MODEL_CONFIG not in plain.metadata   # legacy: recognised by its kind
    loaded = ck.load_model(path)
    model, key = current_loading(path, plain.metadata)
    assert loaded.model == network_of(model)
    params = plain.params if key is None else plain.params[key]
    assert_bit_equal(params, loaded.params)
    assert set(loaded.beside) == (set() if key is None else set(plain.params) - {key})
    E = loaded.model.input_size(loaded.params)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    for T in (1, 7):
        x = rng.normal(size=(E,) if not loaded.model.sequence_input else (T, E)).astype(dtype)
        np.testing.assert_array_equal(np.asarray(loaded.model.apply(loaded.params, x)),
                                      np.asarray(model.apply(params, x)))


def test_a_model_checkpoint_with_non_finite_weights_is_refused_naming_the_array(tmp_path):
    from lrpjax.app.model import SSTModel

    good = SSTModel.load()
    params = jax.tree_util.tree_map(np.array, good.params)
    params["embed"][5, 2] = np.nan
    params["model"]["left"]["b"][0] = np.inf
    path = type(good)(good.vocab, params, good.metadata).save(tmp_path / "nan.npz")
    with pytest.raises(ck.CheckpointError, match=r"array 'params/embed' holds 1 non-finite value\(s\)"):
        SSTModel.load(path)
    with pytest.raises(ck.CheckpointError, match="non-finite"):
        ck.load_model(path)
