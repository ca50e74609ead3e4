"""Tests for .npz checkpoints (lrpjax.io.checkpoints): bit-exact round trips and clear errors."""

import json
import zipfile

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
