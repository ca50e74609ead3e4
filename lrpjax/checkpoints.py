"""Checkpoints: one ``.npz`` file holding a parameter pytree, JSON metadata and extra arrays. No pickle.

Layout of the archive (written with ``np.savez_compressed``, read with ``np.load(..., allow_pickle=False)``):

    params/<k1>/<k2>/...   one array per leaf of the nested params dict, e.g. "params/left/W"
    extra/<name>           optional extra arrays, e.g. a vocabulary as a numpy unicode array
    __metadata__           a 0-d unicode array holding a JSON object

The metadata object always has ``"kind"`` (a string naming the model, e.g. "bilstm"), ``"format_version"``
(`FORMAT_VERSION`) and ``"lrpjax_version"``; everything else is the caller's (sizes, configuration, data
description, metrics). Arrays are stored byte for byte, so a round trip is bit-exact in every dtype.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FORMAT_VERSION", "Checkpoint", "CheckpointError", "flatten", "load", "save", "unflatten"]

FORMAT_VERSION = 1
METADATA_KEY = "__metadata__"
PARAMS_PREFIX = "params/"
EXTRA_PREFIX = "extra/"
_RESERVED_METADATA = ("format_version", "lrpjax_version")
# Only plain numeric, boolean and unicode data: nothing that would need pickle to read back.
_ALLOWED_KINDS = frozenset("biufcU")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or does not match what the caller expects."""


@dataclass(frozen=True)
class Checkpoint:
    """What `load` returns.

    Attributes:
        params: the nested dict of numpy arrays exactly as saved (dtypes and bits preserved).
        metadata: the JSON metadata, including "kind", "format_version" and "lrpjax_version".
        extra: the extra arrays by name (empty dict when none were saved).
    """

    params: dict[str, Any]
    metadata: dict[str, Any]
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"keys must be strings; got {key!r} ({type(key).__name__}) at {where!r}.")
    if not key or "/" in key:
        raise ValueError(f"keys must be non-empty and contain no '/'; got {key!r} at {where!r}.")


def _to_numpy(value: Any, where: str) -> np.ndarray:
    if not hasattr(value, "dtype") and not isinstance(value, (int, float, bool, complex, str)):
        raise TypeError(f"leaf {where!r} must be an array; got {type(value).__name__}.")
    array = np.asarray(value)
    if array.dtype.kind not in _ALLOWED_KINDS:
        raise TypeError(
            f"leaf {where!r} has dtype {array.dtype}, which cannot be stored without pickle; "
            "use bool, integer, float, complex or unicode arrays."
        )
    return array


def flatten(params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Flattens a nested dict of arrays into {"a/b/c": array} (numpy copies of the leaves, dtypes kept).

    Args:
        params: nested dict with non-empty string keys without '/', leaves arrays (jax or numpy) or scalars.

    Returns:
        A flat dict from slash-joined paths to numpy arrays, in sorted-key order.

    Raises:
        TypeError: if `params` or a sub-tree is not a dict, a key is not a string or a leaf cannot be stored.
        ValueError: if a key is empty or contains '/', or a sub-dict is empty (it would not round-trip).
    """
    if not isinstance(params, dict):
        raise TypeError(f"`params` must be a dict of arrays; got {type(params).__name__}.")
    flat: dict[str, np.ndarray] = {}

    def visit(node: dict[str, Any], prefix: str) -> None:
        for key in sorted(node, key=str):
            _check_key(key, prefix + str(key))
            path = prefix + key
            value = node[key]
            if isinstance(value, dict):
                if not value:
                    raise ValueError(f"empty dict at {path!r} cannot be stored; remove it.")
                visit(value, path + "/")
            else:
                flat[path] = _to_numpy(value, path)

    visit(params, "")
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of `flatten`: {"a/b": x} -> {"a": {"b": x}}.

    Raises:
        ValueError: if a path is both a leaf and a prefix of another path, or has an empty component.
    """
    tree: dict[str, Any] = {}
    for path in sorted(flat):
        parts = path.split("/")
        if not all(parts):
            raise ValueError(f"invalid parameter path {path!r}: empty component.")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"parameter path {path!r} goes through the leaf {part!r}.")
            node = child
        if parts[-1] in node:
            raise ValueError(f"parameter path {path!r} is both a leaf and a sub-tree.")
        node[parts[-1]] = flat[path]
    return tree


def _lrpjax_version() -> str:
    package = sys.modules.get("lrpjax")
    version = getattr(package, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("lrpjax")
    except PackageNotFoundError:
        return "unknown"


def _json_default(value: Any) -> Any:
    # numpy and jax scalars/arrays (metrics, sizes) become plain JSON numbers and lists.
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return np.asarray(value).tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"metadata value {value!r} of type {type(value).__name__} is not JSON-serialisable.")


def save(
    path: str | os.PathLike[str],
    params: dict[str, Any],
    metadata: dict[str, Any],
    *,
    extra: dict[str, Any] | None = None,
) -> str:
    """Writes `params`, `metadata` and `extra` arrays to one compressed ``.npz`` file.

    Args:
        path: file to write; numpy appends ".npz" when missing, and the returned path says so.
        params: nested dict of arrays (see `flatten`); any dtype numpy stores natively.
        metadata: JSON-serialisable dict with at least "kind" (str). numpy/jax scalars and arrays are
            converted to numbers and lists. "format_version" and "lrpjax_version" are added here.
        extra: optional dict name -> array (e.g. ``np.array(vocabulary)``, a unicode array).

    Returns:
        The path written, as a string.

    Raises:
        TypeError: if `metadata` or `extra` is not a dict, a leaf is not an array or a value is not
            JSON-serialisable.
        ValueError: if "kind" is missing or not a non-empty string, or a reserved key is given.
    """
    if not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict; got {type(metadata).__name__}.")
    kind = metadata.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"`metadata` must contain 'kind', a non-empty string naming the model; got {kind!r}.")
    reserved = [key for key in _RESERVED_METADATA if key in metadata]
    if reserved:
        raise ValueError(f"`metadata` must not set {reserved}: save() writes them.")
    full = dict(metadata, format_version=FORMAT_VERSION, lrpjax_version=_lrpjax_version())
    text = json.dumps(full, default=_json_default, sort_keys=True, allow_nan=True)
    arrays = {PARAMS_PREFIX + key: value for key, value in flatten(params).items()}
    if extra is not None:
        if not isinstance(extra, dict):
            raise TypeError(f"`extra` must be a dict of arrays; got {type(extra).__name__}.")
        for name, value in extra.items():
            _check_key(name, "extra")
            arrays[EXTRA_PREFIX + name] = _to_numpy(value, EXTRA_PREFIX + name)
    arrays[METADATA_KEY] = np.array(text)
    path = os.fspath(path)
    np.savez_compressed(path, **arrays)
    return path if path.endswith(".npz") else path + ".npz"


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist.")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} is not a file.")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path!r} is not an .npz archive (corrupt, truncated or another format).")
    arrays = {}
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - any failure to open means a damaged file
        raise CheckpointError(f"checkpoint {path!r} cannot be opened: {error}") from error
    with archive:
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except Exception as error:  # noqa: BLE001 - zlib, zip CRC, EOF and pickle refusals alike
                raise CheckpointError(f"checkpoint {path!r}: array {name!r} cannot be loaded: {error}") from error
    return arrays


def _parse_metadata(path: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if METADATA_KEY not in arrays:
        raise CheckpointError(f"checkpoint {path!r} has no {METADATA_KEY!r} entry; it is not an lrpjax checkpoint.")
    raw = arrays.pop(METADATA_KEY)
    if raw.dtype.kind != "U" or raw.shape != ():
        raise CheckpointError(f"checkpoint {path!r}: {METADATA_KEY!r} must be a unicode string; got {raw.dtype}.")
    try:
        metadata = json.loads(str(raw))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path!r}: metadata is not valid JSON: {error}") from error
    if not isinstance(metadata, dict):
        raise CheckpointError(f"checkpoint {path!r}: metadata must be a JSON object; got {type(metadata).__name__}.")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path!r} has format_version {version!r}; this lrpjax reads version {FORMAT_VERSION}."
        )
    if not isinstance(metadata.get("kind"), str):
        raise CheckpointError(f"checkpoint {path!r}: metadata has no 'kind' string.")
    return metadata


def load(path: str | os.PathLike[str], expect_kind: str | None = None) -> Checkpoint:
    """Reads a checkpoint written by `save` (with ``allow_pickle=False``).

    Args:
        path: the ``.npz`` file.
        expect_kind: if given, the metadata "kind" must equal it.

    Returns:
        A `Checkpoint` whose params are numpy arrays with the saved nested structure, dtypes and bits.
        (numpy rather than jax arrays, so that float64 survives when jax x64 is off; pass them to jax as is.)

    Raises:
        CheckpointError (a ValueError) naming the file: missing file, not an npz (corrupt or truncated),
            an array that fails to load, missing or invalid metadata, another format version, a kind other
            than `expect_kind`, or entries outside "params/", "extra/" and the metadata.
    """
    path = os.fspath(path)
    arrays = _read_arrays(path)
    metadata = _parse_metadata(path, arrays)
    if expect_kind is not None and metadata["kind"] != expect_kind:
        raise CheckpointError(
            f"checkpoint {path!r} holds a model of kind {metadata['kind']!r}; expected {expect_kind!r}."
        )
    flat, extra = {}, {}
    for name, array in arrays.items():
        if name.startswith(PARAMS_PREFIX):
            flat[name[len(PARAMS_PREFIX):]] = array
        elif name.startswith(EXTRA_PREFIX):
            extra[name[len(EXTRA_PREFIX):]] = array
        else:
            raise CheckpointError(f"checkpoint {path!r} has an unexpected entry {name!r}.")
    try:
        params = unflatten(flat)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path!r}: {error}") from error
    return Checkpoint(params=params, metadata=metadata, extra=extra)
