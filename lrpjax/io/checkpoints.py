"""Checkpoints: one ``.npz`` file holding a parameter pytree, JSON metadata and extra arrays. No pickle.

Layout of the archive (a zip of ``.npy`` members, as written by ``np.savez_compressed``):

    params/<k1>/<k2>/...   one array per leaf of the nested params dict, e.g. "params/left/W"
    extra/<name>           optional extra arrays, e.g. a vocabulary as a numpy unicode array
    __metadata__           a 0-d unicode array holding a JSON object

The metadata object always has ``"kind"`` (a string naming the model, e.g. "bilstm"), ``"format_version"``
(`FORMAT_VERSION`) and ``"lrpjax_version"``; everything else is the caller's (sizes, configuration, data
description, metrics), strict JSON (no NaN or Infinity). Arrays are stored byte for byte, so a round trip
is bit-exact in every dtype.

Writing is atomic: `save` writes a temporary file beside the target, flushes and fsyncs it and renames it
into place, so a full disk or an interruption leaves the previous checkpoint intact. Reading is bounded
and checked before any array data is read: every member's declared size and their total must stay within
`load`'s ``max_bytes`` (default `MAX_BYTES`, 1 GiB), every ``.npy`` header must match its member's size
(a tiny file cannot make numpy allocate gigabytes), and ``expect`` / ``expect_extra`` describe the arrays
the caller needs (`ArraySpec`): a missing, unexpected or ill-shaped array is an error naming the file and
the array, e.g. "checkpoint 'm.npz': array 'params/left/W' is missing".

Models: `save_model` also stores the model's config (``model.config()``) in the metadata (`MODEL_CONFIG`),
and `load_model` rebuilds the model from it (the class `MODEL_TYPES` names by the config's ``"type"``:
:class:`~lrpjax.models.Sequential`, :class:`~lrpjax.models.Seq2Seq`) and checks the parameters against the
model itself, so any composition of layers, and any encoder-decoder, saves and loads as a model, with no
hand-written layout. Parameter sub-trees that are empty dicts (the attention of dot scores has no
parameters) hold no array; the metadata lists them (`EMPTY_PARAMS`) and `load_model` puts them back.
A checkpoint may hold more than the model: with ``key="model"`` the model's parameters are stored under
"params/model/" (`MODEL_KEY` says so) and other arrays beside them ("params/embed"), as in the SST bundle.
Checkpoints written before configs were stored are recognised by their kind (:mod:`lrpjax.io.legacy`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from lrpjax.io.files import atomic_write
from lrpjax.io.legacy import LEGACY_KINDS, legacy_config
from lrpjax.models.seq2seq import Seq2Seq
from lrpjax.models.sequential import Sequential, network_of

__all__ = ["EMPTY_PARAMS", "FORMAT_VERSION", "MAX_BYTES", "MODEL_CONFIG", "MODEL_KEY", "MODEL_TYPES", "ArraySpec",
           "Checkpoint", "CheckpointError", "ModelCheckpoint", "OUTPUT_KINDS", "TOKENIZER_SPLITS", "describe_text",
           "flatten", "load", "load_model", "read_metadata", "save", "save_model", "unflatten"]

FORMAT_VERSION = 1
MAX_BYTES = 1 << 30
"""Default bound of `load` on the uncompressed size of a checkpoint (each member and their total): 1 GiB."""
METADATA_KEY = "__metadata__"
PARAMS_PREFIX = "params/"
EXTRA_PREFIX = "extra/"
MODEL_CONFIG = "model_config"
"""Metadata key of the model's config (:meth:`~lrpjax.models.Sequential.config`,
:meth:`~lrpjax.models.Seq2Seq.config`), written by `save_model`."""
MODEL_KEY = "model_key"
"""Metadata key naming where the model's parameters are ("params/<model_key>/..."); absent: all of "params/"."""
EMPTY_PARAMS = "empty_params"
"""Metadata key listing the model's parameter sub-trees that are empty dicts, as slash paths ("attention"):
an archive holds arrays only, so `save_model` names them and `load_model` puts them back."""
MODEL_TYPES: dict[str, Any] = {"sequential": Sequential, "seq2seq": Seq2Seq}
"""The model classes a stored config may name, by its ``"type"``. Each offers what checkpoints use and nothing
more is asked: ``config()`` and ``from_config(config)`` (which invert each other), ``input_size(params)`` and
``output_size(params)`` (which check every parameter's key and shape, naming the one at fault) and
``takes_ids``."""
_RESERVED_METADATA = ("format_version", "lrpjax_version")
# Only plain numeric, boolean and unicode data: nothing that would need pickle to read back.
_ALLOWED_KINDS = frozenset("biufcU")
_DTYPE_CLASSES = {"floating": "f", "integer": "iu", "bool": "b", "unicode": "U", "complex": "c"}


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


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
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


def _nonfinite_path(value: Any, where: str = "") -> str | None:
    """The path ("metrics/mse", "history/3/loss") of the first NaN or infinite number in `value`, or None."""
    if isinstance(value, np.generic) or (hasattr(value, "dtype") and hasattr(value, "tolist")):
        value = np.asarray(value).tolist()
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return where if isinstance(value, float) and not math.isfinite(value) else None
    for key, item in items:
        found = _nonfinite_path(item, f"{where}/{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _metadata_text(metadata: dict[str, Any]) -> str:
    try:
        return json.dumps(metadata, default=_json_default, sort_keys=True, allow_nan=False)
    except ValueError:
        where = _nonfinite_path(metadata)
        if where is None:
            raise
        raise ValueError(f"`metadata` value at {where!r} is not a finite number: JSON has no NaN or Infinity; "
                         "store None or a string instead.") from None


def _arrays_to_save(params: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, np.ndarray]:
    arrays = {PARAMS_PREFIX + key: value for key, value in flatten(params).items()}
    if extra is not None:
        if not isinstance(extra, dict):
            raise TypeError(f"`extra` must be a dict of arrays; got {type(extra).__name__}.")
        for name, value in extra.items():
            _check_key(name, "extra")
            arrays[EXTRA_PREFIX + name] = _to_numpy(value, EXTRA_PREFIX + name)
    return arrays


def save(
    path: str | os.PathLike[str],
    params: dict[str, Any],
    metadata: dict[str, Any],
    *,
    extra: dict[str, Any] | None = None,
) -> str:
    """Writes `params`, `metadata` and `extra` arrays to one compressed ``.npz`` file, atomically.

    The archive is written to a temporary file in the target's directory, flushed, fsync-ed and renamed
    over the target: if anything fails on the way (a full disk, Ctrl-C) the previous file at `path` is
    left intact and the temporary file is removed.

    Args:
        path: file to write; ".npz" is appended when missing, and the returned path says so.
        params: nested dict of arrays (see `flatten`); any dtype numpy stores natively.
        metadata: JSON-serialisable dict with at least "kind" (str). numpy/jax scalars and arrays are
            converted to numbers and lists; numbers must be finite (strict JSON). "format_version" and
            "lrpjax_version" are added here.
        extra: optional dict name -> array (e.g. ``np.array(vocabulary)``, a unicode array).

    Returns:
        The path written, as a string.

    Raises:
        TypeError: if `metadata` or `extra` is not a dict, a leaf is not an array or a value is not
            JSON-serialisable.
        ValueError: if "kind" is missing or not a non-empty string, a reserved key is given, or a metadata
            number is NaN or infinite (the message names its key).
        OSError: the file cannot be written (the message names it); the previous file is intact.
    """
    if not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict; got {type(metadata).__name__}.")
    kind = metadata.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"`metadata` must contain 'kind', a non-empty string naming the model; got {kind!r}.")
    reserved = [key for key in _RESERVED_METADATA if key in metadata]
    if reserved:
        raise ValueError(f"`metadata` must not set {reserved}: save() writes them.")
    text = _metadata_text(dict(metadata, format_version=FORMAT_VERSION, lrpjax_version=_lrpjax_version()))
    arrays = _arrays_to_save(params, extra)
    arrays[METADATA_KEY] = np.array(text)
    path = os.fspath(path)
    path = path if path.endswith(".npz") else path + ".npz"
    try:
        # numpy's stub lets **kwds be its keyword allow_pickle; these keys are array names.
        atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))  # type: ignore[arg-type]
    except OSError as error:
        raise type(error)(error.errno, f"cannot write checkpoint {path!r}: {error.strerror or error}") from error
    return path


# --- reading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArraySpec:
    """What `load` expects of one stored array.

    Attributes:
        shape: one entry per axis: an int (that size), None (any size) or a name such as "H" (any size,
            but the same wherever the name appears in one `load` call, e.g. ("E", "H") and ("H", "C")).
        dtype: None (any storable dtype), a dtype (exactly that one, e.g. "float32"), a tuple of dtypes
            (any of them), or a class: "floating", "integer", "bool", "complex" or "unicode" (e.g. a
            vocabulary, whatever its string length).

    Raises:
        TypeError: a shape entry that is not an int, None or a string, or a dtype numpy does not know.
    """

    shape: tuple
    dtype: Any = None

    def __post_init__(self):
        if not isinstance(self.shape, (tuple, list)):
            raise TypeError(f"`shape` of ArraySpec must be a tuple; got {type(self.shape).__name__}.")
        for size in self.shape:
            if not (size is None or isinstance(size, str) or (isinstance(size, int) and not isinstance(size, bool)
                                                             and size >= 0)):
                raise TypeError(f"`shape` of ArraySpec holds {size!r}; expected ints >= 0, None or size names.")
        object.__setattr__(self, "shape", tuple(self.shape))
        if self.dtype is None or (isinstance(self.dtype, str) and self.dtype in _DTYPE_CLASSES):
            return
        dtypes = self.dtype if isinstance(self.dtype, tuple) else (self.dtype,)
        try:
            object.__setattr__(self, "dtype", tuple(np.dtype(d) for d in dtypes) if isinstance(self.dtype, tuple)
                               else np.dtype(self.dtype))
        except TypeError as error:
            raise TypeError(f"`dtype` of ArraySpec must be None, a dtype, a tuple of dtypes or one of "
                            f"{sorted(_DTYPE_CLASSES)}; got {self.dtype!r}.") from error

    def accepts_dtype(self, dtype: np.dtype) -> bool:
        """Whether an array of `dtype` fits."""
        if self.dtype is None:
            return True
        if isinstance(self.dtype, str):
            return dtype.kind in _DTYPE_CLASSES[self.dtype]
        return dtype in (self.dtype if isinstance(self.dtype, tuple) else (self.dtype,))

    def describe(self, sizes: Mapping[str, int]) -> str:
        """The expectation in words, named sizes resolved where known: "(V=16583, E=60) float32"."""
        parts = []
        for size in self.shape:
            if isinstance(size, str):
                parts.append(f"{size}={sizes[size]}" if size in sizes else size)
            else:
                parts.append("any" if size is None else str(size))
        shape = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        if self.dtype is None:
            return shape
        if isinstance(self.dtype, tuple):
            return f"{shape} {' or '.join(str(d) for d in self.dtype)}"
        return f"{shape} {self.dtype}"


def _as_spec(leaf: Any, where: str) -> ArraySpec:
    if isinstance(leaf, ArraySpec):
        return leaf
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):  # jax.ShapeDtypeStruct, numpy or jax arrays
        return ArraySpec(tuple(leaf.shape), np.dtype(leaf.dtype))
    if isinstance(leaf, tuple) and len(leaf) == 2 and isinstance(leaf[0], (tuple, list)):
        return ArraySpec(tuple(leaf[0]), leaf[1])
    raise TypeError(f"expected layout: the entry {where!r} must be an ArraySpec, a (shape, dtype) pair or "
                    f"have .shape and .dtype (e.g. jax.ShapeDtypeStruct); got {type(leaf).__name__}.")


def _flatten_layout(tree: Any, prefix: str) -> dict[str, ArraySpec]:
    """{"params/left/W": ArraySpec, ...} from a nested dict of spec leaves."""
    if not isinstance(tree, Mapping):
        raise TypeError(f"the expected layout must be a nested dict of array specs; got {type(tree).__name__}.")
    flat: dict[str, ArraySpec] = {}
    for key in sorted(tree, key=str):
        value = tree[key]
        if isinstance(value, Mapping):
            flat.update(_flatten_layout(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = _as_spec(value, f"{prefix}{key}")
    return flat


@dataclass(frozen=True)
class _Header:
    """An ``.npy`` member's header: what the array will be, known before its data is read."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions, as an array's (layers check shapes with ``jnp.ndim``; without it
        ``np.ndim`` of a header is 0 and a Mamba checkpoint is refused)."""
        return len(self.shape)


def _member_error(path: str, key: str, reason: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path!r}: array {key!r} cannot be loaded: {reason}")


def _open_archive(path: str) -> zipfile.ZipFile:
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist.")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} is not a file.")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path!r} is not an .npz archive (corrupt, truncated or another format).")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"checkpoint {path!r} cannot be opened: {error}") from error


def _members(path: str, archive: zipfile.ZipFile, max_bytes: int | None) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name ("params/left/W"), after the size bounds are checked."""
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in archive.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key in members:
            raise CheckpointError(f"checkpoint {path!r}: the entry {key!r} appears twice; the file is damaged.")
        if max_bytes is not None and info.file_size > max_bytes:
            raise CheckpointError(f"checkpoint {path!r}: array {key!r} declares {info.file_size} bytes "
                                  f"uncompressed, more than max_bytes = {max_bytes}; pass a larger `max_bytes` "
                                  "to load it if the file is trusted.")
        total += info.file_size
        members[key] = info
    if max_bytes is not None and total > max_bytes:
        raise CheckpointError(f"checkpoint {path!r} declares {total} bytes uncompressed in all, more than "
                              f"max_bytes = {max_bytes}; pass a larger `max_bytes` to load it if the file is trusted.")
    return members


def _read_header(path: str, archive: zipfile.ZipFile, key: str, info: zipfile.ZipInfo) -> _Header:
    """Parses an ``.npy`` header and checks that the data it announces is exactly what the member holds."""
    if not info.filename.endswith(".npy"):
        raise CheckpointError(f"checkpoint {path!r} has an unexpected entry {key!r} (not an .npy array).")
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f".npy format version {version} is not supported")
            data_start = stream.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as error:
        raise _member_error(path, key, f"bad .npy header ({error})") from error
    if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS:
        raise _member_error(path, key, f"dtype {dtype} would need pickle; only bool, integer, float, complex "
                                       "and unicode arrays are read")
    data_bytes = math.prod(shape) * dtype.itemsize
    if data_start + data_bytes != info.file_size:
        raise _member_error(path, key, f"its header announces shape {shape} {dtype} ({data_bytes} bytes) but "
                                       f"the entry holds {info.file_size - data_start} bytes of data; the file is "
                                       "damaged")
    return _Header(tuple(shape), dtype)


def _read_array(path: str, archive: zipfile.ZipFile, key: str, info: zipfile.ZipInfo) -> np.ndarray:
    try:
        with archive.open(info) as stream:
            return np.lib.format.read_array(stream, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - zlib, zip CRC, EOF and malformed data alike
        raise _member_error(path, key, str(error)) from error


def _parse_metadata(path: str, raw: np.ndarray) -> dict[str, Any]:
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


def _read_metadata(path: str, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo],
                   headers: dict[str, _Header]) -> dict[str, Any]:
    if METADATA_KEY not in members:
        raise CheckpointError(f"checkpoint {path!r} has no {METADATA_KEY!r} entry; it is not an lrpjax checkpoint.")
    header = headers[METADATA_KEY]
    if header.dtype.kind != "U" or header.shape != ():
        raise CheckpointError(f"checkpoint {path!r}: {METADATA_KEY!r} must be a unicode string; got {header.dtype}.")
    return _parse_metadata(path, _read_array(path, archive, METADATA_KEY, members[METADATA_KEY]))


def _resolve_layout(path: str, expect: Any, metadata: dict[str, Any], prefix: str) -> dict[str, ArraySpec] | None:
    """The flat layout `expect` describes; None when a callable `expect` returns None (nothing to check)."""
    if callable(expect):
        try:
            expect = expect(metadata)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise CheckpointError(f"checkpoint {path!r}: its metadata does not describe the expected arrays "
                                  f"({type(error).__name__}: {error}).") from error
        if expect is None:
            return None
    return _flatten_layout(expect, prefix)


def _check_shape(path: str, key: str, spec: ArraySpec, shape: tuple[int, ...], sizes: dict[str, int],
                 named_by: dict[str, str]) -> None:
    expected = f"expected {spec.describe(sizes)}"
    if len(shape) != len(spec.shape):
        raise CheckpointError(f"checkpoint {path!r}: array {key!r} has shape {shape}; {expected}.")
    for size, wanted in zip(shape, spec.shape):
        if isinstance(wanted, str):
            if wanted in sizes and sizes[wanted] != size:
                raise CheckpointError(f"checkpoint {path!r}: array {key!r} has shape {shape}, so {wanted} = {size}; "
                                      f"but {named_by[wanted]!r} gives {wanted} = {sizes[wanted]}.")
            sizes.setdefault(wanted, size)
            named_by.setdefault(wanted, key)
        elif wanted is not None and wanted != size:
            raise CheckpointError(f"checkpoint {path!r}: array {key!r} has shape {shape}; {expected}.")


def _check_layout(path: str, layout: dict[str, ArraySpec], headers: dict[str, _Header], prefix: str,
                  strict: bool) -> None:
    """Every expected array is present with a fitting shape and dtype; with `strict`, nothing else is."""
    missing = [key for key in layout if key not in headers]
    if missing:
        shown = ", ".join(repr(key) for key in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise CheckpointError(f"checkpoint {path!r}: array {shown} {'is' if len(missing) == 1 else 'are'} missing "
                              f"(expected {missing[0]!r}: {layout[missing[0]].describe({})}).")
    extra = [key for key in headers if key.startswith(prefix) and key not in layout]
    if strict and extra:
        raise CheckpointError(f"checkpoint {path!r}: array {extra[0]!r} is not part of the expected layout "
                              f"(expected the arrays {', '.join(repr(k) for k in layout)}).")
    sizes: dict[str, int] = {}
    named_by: dict[str, str] = {}
    for key, spec in layout.items():
        header = headers[key]
        _check_shape(path, key, spec, header.shape, sizes, named_by)
        if not spec.accepts_dtype(header.dtype):
            raise CheckpointError(f"checkpoint {path!r}: array {key!r} has dtype {header.dtype}; "
                                  f"expected {spec.describe(sizes)}.")


def _split_entries(path: str, keys: list[str]) -> None:
    for key in keys:
        if key != METADATA_KEY and not key.startswith((PARAMS_PREFIX, EXTRA_PREFIX)):
            raise CheckpointError(f"checkpoint {path!r} has an unexpected entry {key!r}.")


def _read(path: str, expect_kind: str | None, max_bytes: int | None,
          check: Callable[[dict[str, Any], dict[str, _Header]], Any]) -> tuple[dict[str, Any], dict[str, np.ndarray], Any]:
    """Opens `path`, checks the bounds, the headers, the metadata and its kind, then `check(metadata,
    headers)` (before any array data is read), then reads every array.

    Returns:
        (metadata, arrays by entry name such as "params/left/W", what `check` returned).
    """
    if max_bytes is not None and (not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1):
        raise ValueError(f"`max_bytes` must be a positive int or None; got {max_bytes!r}.")
    with _open_archive(path) as archive:
        members = _members(path, archive, max_bytes)
        headers = {key: _read_header(path, archive, key, info) for key, info in members.items()}
        metadata = _read_metadata(path, archive, members, headers)
        if expect_kind is not None and metadata["kind"] != expect_kind:
            raise CheckpointError(
                f"checkpoint {path!r} holds a model of kind {metadata['kind']!r}; expected {expect_kind!r}."
            )
        _split_entries(path, list(members))
        checked = check(metadata, headers)
        arrays = {key: _read_array(path, archive, key, info) for key, info in members.items() if key != METADATA_KEY}
    return metadata, arrays, checked


def read_metadata(path: str | os.PathLike[str], max_bytes: int | None = MAX_BYTES) -> dict[str, Any]:
    """A checkpoint's metadata alone (its "kind", the model config, labels, ...), no array data read.

    Raises:
        CheckpointError: a missing, damaged or foreign file, as `load`.
    """
    path = os.fspath(path)
    with _open_archive(path) as archive:
        members = _members(path, archive, max_bytes)
        headers = {key: _read_header(path, archive, key, info) for key, info in members.items()}
        return _read_metadata(path, archive, members, headers)


def _check_layouts(path: str, metadata: dict[str, Any], headers: dict[str, _Header], expect: Any,
                   expect_extra: Any) -> None:
    for prefix, layout, strict in ((PARAMS_PREFIX, expect, True), (EXTRA_PREFIX, expect_extra, False)):
        flat = None if layout is None else _resolve_layout(path, layout, metadata, prefix)
        if flat is not None:
            _check_layout(path, flat, headers, prefix, strict)


def _tree(path: str, arrays: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
    """The arrays under `prefix` as a nested dict."""
    try:
        return unflatten({key[len(prefix):]: array for key, array in arrays.items() if key.startswith(prefix)})
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path!r}: {error}") from error


def load(
    path: str | os.PathLike[str],
    expect_kind: str | None = None,
    *,
    expect: Any = None,
    expect_extra: Any = None,
    max_bytes: int | None = MAX_BYTES,
) -> Checkpoint:
    """Reads a checkpoint written by `save`, checking sizes, structure and dtypes before reading any data.

    Args:
        path: the ``.npz`` file.
        expect_kind: if given, the metadata "kind" must equal it.
        expect: the parameter layout the caller needs: a nested dict shaped like the params whose leaves
            are `ArraySpec`, ``(shape, dtype)`` pairs or objects with ``.shape`` and ``.dtype`` (e.g. the
            ``jax.ShapeDtypeStruct`` tree of ``jax.eval_shape(init, ...)``); or a callable
            ``expect(metadata) -> that dict``, for sizes the metadata states (returning None: no check).
            Every array must be present with a fitting shape and dtype, and no other "params/" array may
            be stored. None: no check.
        expect_extra: the same for the extra arrays (by name); arrays not listed are allowed.
        max_bytes: bound on the uncompressed size, checked on the sizes the archive declares for each
            member and for all of them before anything is decompressed (default `MAX_BYTES`, 1 GiB);
            None for no bound (trusted files only).

    Returns:
        A `Checkpoint` whose params are numpy arrays with the saved nested structure, dtypes and bits.
        (numpy rather than jax arrays, so that float64 survives when jax x64 is off; pass them to jax as is.)

    Raises:
        CheckpointError (a ValueError) naming the file and, where one is at fault, the array: missing file,
            not an npz (corrupt or truncated), a member larger than `max_bytes` or a total above it, an
            ``.npy`` header that does not match its data, an array that fails to load or would need pickle,
            missing or invalid metadata, another format version, a kind other than `expect_kind`, entries
            outside "params/", "extra/" and the metadata, or arrays that do not match `expect` /
            `expect_extra` ("... array 'params/left/W' is missing").
        TypeError: `expect` or `expect_extra` is not a layout (a programming error, not a bad file).
    """
    path = os.fspath(path)
    metadata, arrays, _ = _read(path, expect_kind, max_bytes, lambda metadata, headers: _check_layouts(
        path, metadata, headers, expect, expect_extra))
    extra = {key[len(EXTRA_PREFIX):]: array for key, array in arrays.items() if key.startswith(EXTRA_PREFIX)}
    return Checkpoint(params=_tree(path, arrays, PARAMS_PREFIX), metadata=metadata, extra=extra)


# --- models ----------------------------------------------------------------------------------------------


class ModelCheckpoint(NamedTuple):
    """What `load_model` returns.

    Attributes:
        model: the model rebuilt from the checkpoint's config (a :class:`~lrpjax.models.Sequential` or a
            :class:`~lrpjax.models.Seq2Seq`, `MODEL_TYPES`).
        params: the model's parameters, numpy arrays exactly as saved (dtypes and bits preserved).
        metadata: the JSON metadata, including "kind", "format_version", "lrpjax_version" and, for files
            written by `save_model`, `MODEL_CONFIG` (and `MODEL_KEY`).
        beside: the parameter arrays stored beside the model's under "params/" (e.g. ``{"embed": (V, E)}``
            of the SST bundle); empty when the model's parameters are all of them.
        extra: the extra arrays by name.
    """

    model: Any
    params: dict[str, Any]
    metadata: dict[str, Any]
    beside: dict[str, Any]
    extra: dict[str, np.ndarray]


def _stored_model(model: Any) -> Any:
    """The model whose config `save_model` stores: the ``network`` of a named model (``LSTM``, ``MLP``), or
    the model itself when its class is one of `MODEL_TYPES`."""
    network = network_of(model)
    if network is not None:
        return network
    if type(model) in MODEL_TYPES.values():
        return model
    raise TypeError(f"`model` must be a Sequential, a named model with a Sequential `network` (LSTM, MLP) or a "
                    f"Seq2Seq (the model types {sorted(MODEL_TYPES)}); got {type(model).__name__}.")


def _rebuildable_config(model: Any) -> dict[str, Any]:
    """``model.config()``, after checking that it survives JSON and rebuilds the same model."""
    config = model.config()
    cls = type(model)
    try:
        rebuilt = cls.from_config(json.loads(json.dumps(config, allow_nan=False)))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the model's config cannot be stored and rebuilt ({type(error).__name__}: {error}); "
                         "save_model stores models of the layers and cells lrpjax knows.") from error
    if rebuilt != model:
        raise ValueError(f"the model's config does not describe it: {cls.__name__}.from_config(model.config()) "
                         "differs from the model (a layer or cell outside lrpjax.models.layers and "
                         "lrpjax.core.cells?).")
    return config


def _empty_paths(params: Any, prefix: str = "") -> list[str]:
    """The slash paths of the empty dicts in a nested dict of parameters (sorted)."""
    if not isinstance(params, dict):
        return []
    if not params and prefix:
        return [prefix[:-1]]
    return [path for key in sorted(params, key=str) for path in _empty_paths(params[key], f"{prefix}{key}/")]


def _without_empty(params: Any) -> Any:
    """``params`` without its empty sub-dicts (the archive holds arrays only; `EMPTY_PARAMS` names them)."""
    if not isinstance(params, dict):
        return params
    kept = {key: _without_empty(value) for key, value in params.items()}
    return {key: value for key, value in kept.items() if not (isinstance(value, dict) and not value)}


def save_model(
    path: str | os.PathLike[str],
    model: Any,
    params: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    beside: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    vocab: Any = None,
    labels: Any = None,
    tokenizer: Any = None,
    outputs: Any = None,
    decoding: Any = None,
) -> str:
    """Writes a model's parameters and its config to one ``.npz`` file, atomically (as `save`).

    What the command line and the report need to explain text with the model goes in too (every part
    optional): the vocabulary (``vocab``, row ``i`` of the embedding table is word ``vocab[i]``), how text
    becomes tokens (``tokenizer``), and the names of the outputs and what they are (``labels``,
    ``outputs``)::

        checkpoints.save_model("mine.npz", model, params, vocab=words, labels=["negative", "positive"])

    An encoder-decoder (:class:`~lrpjax.models.Seq2Seq`) over token ids saves the same way, with how the
    command line decodes a source greedily (``decoding``)::

        checkpoints.save_model("pairs.npz", seq2seq, params, vocab=words, decoding={"bos": "<s>", "eos": "</s>"})

    The metadata gets the model's config under `MODEL_CONFIG` (``model.config()``; for a named model such
    as ``LSTM`` or ``MLP`` that of its ``network``), so that `load_model` rebuilds the model from the file
    alone. A checkpoint may hold more than the model: with `key` the model's parameters
    are stored under "params/<key>/" and the arrays of `beside` next to them ("params/<name>"), e.g. an
    embedding table; `extra` arrays (a vocabulary) go to "extra/" as with `save`.

    Args:
        path: file to write; ".npz" is appended when missing.
        model: a :class:`~lrpjax.models.Sequential`, a named model with a ``network`` (``LSTM``, ``MLP``) or a
            :class:`~lrpjax.models.Seq2Seq` (`MODEL_TYPES`).
        params: the model's parameters; checked against the model before anything is written. Arrays are
            stored as they are (float64 stays float64, bit for bit).
        metadata: JSON-able dict as for `save`; "kind" defaults to the model's ``kind`` (its config's type).
        key: where the model's parameters go under "params/" (None: they are all of "params/").
        beside: other parameter arrays or sub-trees stored beside the model's (needs `key`).
        extra: extra arrays, as for `save`.
        vocab: the vocabulary, a sequence of distinct non-empty strings, one per embedding row (stored as
            the unicode array ``extra/vocab``); a model that starts with an Embedding needs V of them.
        labels: the names of the output's last axis (C strings: class names, or the quantities a
            regression predicts), stored in the metadata under ``"labels"``.
        tokenizer: how text becomes tokens (metadata ``"tokenizer"``), a dict: ``"split"`` --
            ``"whitespace"`` (default) or ``"sst"`` (the treebank tokenizer of :func:`lrpjax.data.sst.tokenize`);
            ``"lowercase"`` (default False); ``"unknown"`` -- the vocabulary word that stands for a word
            outside it (None, the default: such a word is an error).
        outputs: what the outputs are (metadata ``"outputs"``): ``"classes"`` (default for a vector
            output: the prediction is the largest score, probabilities by softmax) or ``"regression"`` (the
            values are printed as they are); a per-step output (T, C) is read step by step.
        decoding: for an encoder-decoder over token ids, how to decode a source greedily (metadata
            ``"decoding"``), a dict: ``"bos"`` -- the vocabulary word the decoder reads first (required);
            ``"eos"`` -- the word that ends an output (None, the default: none ends it); ``"steps"`` -- the
            most tokens decoded, a positive int or ``"source"`` (as many as the source has; the default).

    Returns:
        The path written, as a string.

    Raises:
        TypeError: `model` is none of the model types, or an argument of the wrong type.
        ValueError: `params` that do not fit the model (naming the key), a model whose config does not
            rebuild it, metadata that sets `MODEL_CONFIG`, `MODEL_KEY` or `EMPTY_PARAMS`, `beside` without
            `key` or holding `key`, or any error of `save`.
        OSError: the file cannot be written; the previous file is intact.
    """
    network = _stored_model(model)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict; got {type(metadata).__name__}.")
    reserved = [name for name in (MODEL_CONFIG, MODEL_KEY, EMPTY_PARAMS) if name in metadata]
    if reserved:
        raise ValueError(f"`metadata` must not set {reserved}: save_model() writes them.")
    output_size = network.output_size(params)          # checks every parameter against the model
    described = describe_text(network, network.input_size(params), output_size, vocab, labels, tokenizer, outputs,
                              decoding=decoding)
    clash = sorted(set(described) & set(metadata))
    if clash:
        raise ValueError(f"`metadata` must not set {clash}: give them as save_model's arguments.")
    if vocab is not None:
        if isinstance(extra, dict) and "vocab" in extra:
            raise ValueError("`extra` must not hold 'vocab' when `vocab` is given (it is stored there).")
        extra = {**(extra or {}), "vocab": np.asarray(list(vocab), dtype=np.str_)}
    config = _rebuildable_config(network)
    meta = {"kind": getattr(model, "kind", None) or config["type"], **metadata, **described, MODEL_CONFIG: config}
    empty = _empty_paths(params)
    if empty:
        meta[EMPTY_PARAMS] = empty
        params = _without_empty(params)
    beside = {} if beside is None else beside
    if not isinstance(beside, dict):
        raise TypeError(f"`beside` must be a dict of arrays; got {type(beside).__name__}.")
    if key is None:
        if beside:
            raise ValueError("`beside` needs `key`: the arrays beside the model's parameters go next to "
                             "'params/<key>/'.")
        return save(path, params, meta, extra=extra)
    _check_key(key, "key")
    if key in beside:
        raise ValueError(f"`beside` must not hold {key!r}, the key of the model's parameters.")
    meta[MODEL_KEY] = key
    return save(path, {**beside, key: params}, meta, extra=extra)


TOKENIZER_SPLITS = ("whitespace", "sst")
OUTPUT_KINDS = ("classes", "regression")


def describe_text(network: Any, input_size: int, output_size: int, vocab: Any, labels: Any, tokenizer: Any,
                  outputs: Any, *, decoding: Any = None) -> dict[str, Any]:
    """The checked metadata entries of `save_model`'s ``labels``, ``tokenizer``, ``outputs`` and ``decoding``
    (those given), for the model ``network`` (a Sequential or a Seq2Seq) of ``input_size`` (V for token ids)
    and ``output_size``.

    Raises:
        TypeError, ValueError: naming the argument and what was expected.
    """
    meta: dict[str, Any] = {}
    if vocab is not None:
        if isinstance(vocab, (str, bytes)) or not all(isinstance(w, str) and w for w in vocab):
            raise TypeError("`vocab` must be a sequence of non-empty strings, one per embedding row.")
        words = list(vocab)
        if len(set(words)) != len(words):
            raise ValueError("`vocab` must hold distinct words; "
                             f"{next(w for w in words if words.count(w) > 1)!r} appears more than once.")
        if not network.takes_ids:
            raise ValueError("`vocab` is for a model that takes token ids (an Embedding first); this model reads "
                             "embedded vectors.")
        if len(words) != input_size:
            raise ValueError(f"`vocab` has {len(words)} words; the model's embedding table has V = {input_size} rows.")
    if labels is not None:
        if isinstance(labels, (str, bytes)) or not all(isinstance(n, str) and n for n in labels):
            raise TypeError("`labels` must be a sequence of non-empty strings, one per output.")
        if len(list(labels)) != output_size:
            raise ValueError(f"`labels` has {len(list(labels))} names; the model has C = {output_size} outputs.")
        meta["labels"] = list(labels)
    if tokenizer is not None:
        if not isinstance(tokenizer, dict) or set(tokenizer) - {"split", "lowercase", "unknown"}:
            raise ValueError("`tokenizer` must be a dict with the keys 'split', 'lowercase', 'unknown' (any of "
                             f"them); got {tokenizer!r}.")
        split = tokenizer.get("split", "whitespace")
        if split not in TOKENIZER_SPLITS:
            raise ValueError(f"`tokenizer['split']` must be one of {TOKENIZER_SPLITS}; got {split!r}.")
        lowercase = tokenizer.get("lowercase", False)
        if not isinstance(lowercase, bool):
            raise TypeError(f"`tokenizer['lowercase']` must be a bool; got {lowercase!r}.")
        unknown = tokenizer.get("unknown")
        if unknown is not None and (vocab is None or unknown not in list(vocab)):
            raise ValueError(f"`tokenizer['unknown']` must be a word of `vocab`; got {unknown!r}.")
        meta["tokenizer"] = {"split": split, "lowercase": lowercase, "unknown": unknown}
    if outputs is not None:
        if outputs not in OUTPUT_KINDS:
            raise ValueError(f"`outputs` must be one of {OUTPUT_KINDS}; got {outputs!r}.")
        meta["outputs"] = outputs
    if decoding is not None:
        meta["decoding"] = _decoding(network, vocab, decoding)
    return meta


def _decoding(model: Any, vocab: Any, decoding: Any) -> dict[str, Any]:
    """The checked ``decoding`` entry of `save_model` (see there)."""
    if not callable(getattr(model, "greedy", None)):
        raise ValueError("`decoding` is for an encoder-decoder (a model that decodes greedily, such as Seq2Seq); "
                         "this model has no decoder.")
    if vocab is None:
        raise ValueError("`decoding` names words of the vocabulary: give `vocab` too.")
    if not isinstance(decoding, dict) or "bos" not in decoding or set(decoding) - {"bos", "eos", "steps"}:
        raise ValueError("`decoding` must be a dict with 'bos' (the word the decoder reads first) and optionally "
                         f"'eos' and 'steps'; got {decoding!r}.")
    words = list(vocab)
    bos, eos, steps = decoding["bos"], decoding.get("eos"), decoding.get("steps", "source")
    if bos not in words:
        raise ValueError(f"`decoding['bos']` must be a word of `vocab`; got {bos!r}.")
    if eos is not None and eos not in words:
        raise ValueError(f"`decoding['eos']` must be a word of `vocab` or None; got {eos!r}.")
    if steps != "source" and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ValueError(f"`decoding['steps']` must be a positive int or 'source' (as many tokens as the source "
                         f"has); got {steps!r}.")
    return {"bos": bos, "eos": eos, "steps": steps}


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if isinstance(error, KeyError) else str(error)


def _model_of(path: str, metadata: dict[str, Any]) -> tuple[Any, str | None]:
    """The model a checkpoint states (its `MODEL_CONFIG`, else its legacy kind) and its parameter key."""
    if MODEL_CONFIG in metadata:
        config, key = metadata[MODEL_CONFIG], metadata.get(MODEL_KEY)
    else:
        kind = metadata["kind"]
        try:
            found = legacy_config(metadata)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"checkpoint {path!r} (legacy kind {kind!r}, no model config): its metadata does "
                                  f"not describe the model: {_reason(error)}") from error
        if found is None:
            raise CheckpointError(f"checkpoint {path!r} holds no model config (metadata {MODEL_CONFIG!r}) and its "
                                  f"kind {kind!r} is none of the legacy kinds {sorted(LEGACY_KINDS)}; a file of "
                                  "parameters only (written by save) is read with load.")
        config, key = found
    if key is not None and (not isinstance(key, str) or not key or "/" in key):
        raise CheckpointError(f"checkpoint {path!r}: metadata {MODEL_KEY!r} must be a key without '/' or null; "
                              f"got {key!r}.")
    kind = config.get("type") if isinstance(config, dict) else None
    if kind not in MODEL_TYPES:
        raise CheckpointError(f"checkpoint {path!r}: its model config cannot be rebuilt: its type {kind!r} is none "
                              f"of the model types {sorted(MODEL_TYPES)}.")
    try:
        return MODEL_TYPES[kind].from_config(config), key
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path!r}: its model config cannot be rebuilt: {_reason(error)}") from error


def _empty_of(path: str, metadata: dict[str, Any]) -> list[str]:
    """The paths of the model's empty parameter sub-trees (`EMPTY_PARAMS`), checked."""
    empty = metadata.get(EMPTY_PARAMS, [])
    if not isinstance(empty, list) or not all(isinstance(p, str) and p and all(p.split("/")) for p in empty):
        raise CheckpointError(f"checkpoint {path!r}: metadata {EMPTY_PARAMS!r} must be a list of parameter paths "
                              f"such as 'attention'; got {empty!r}.")
    return empty


def _with_empty(path: str, params: dict[str, Any], empty: list[str]) -> dict[str, Any]:
    """``params`` with an empty dict at each path of `empty` (`EMPTY_PARAMS`)."""
    for entry in empty:
        node = params
        *parents, last = entry.split("/")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"checkpoint {path!r}: metadata {EMPTY_PARAMS!r} names {entry!r}, which goes "
                                      f"through the array {part!r}.")
        if last in node:
            raise CheckpointError(f"checkpoint {path!r}: metadata {EMPTY_PARAMS!r} names {entry!r} as empty, but "
                                  "the file holds arrays there.")
        node[last] = {}
    return params


def _check_model_arrays(path: str, model: Any, key: str | None, headers: dict[str, _Header],
                        empty: list[str]) -> None:
    """The stored parameters fit the model (``model.output_size`` on the headers, which checks every key and
    shape: no data is read)."""
    prefix = PARAMS_PREFIX + ("" if key is None else key + "/")
    stored = {name: header for name, header in headers.items() if name.startswith(prefix)}
    for name, header in stored.items():
        if header.dtype.kind != "f":
            raise CheckpointError(f"checkpoint {path!r}: array {name!r} has dtype {header.dtype}; the model's "
                                  "parameters must be floating point.")
    try:
        model.output_size(_with_empty(path, unflatten({name[len(prefix):]: header for name, header in stored.items()}),
                                      empty))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path!r}: the arrays under {prefix!r} do not fit the model of its "
                              f"config: {error}") from error


def _check_finite(path: str, arrays: dict[str, np.ndarray]) -> None:
    """A model's parameters must be finite: NaN or infinite weights would explain to NaN (named, counted)."""
    for name, array in arrays.items():
        if name.startswith(PARAMS_PREFIX) and array.dtype.kind in "fc" and not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise CheckpointError(f"checkpoint {path!r}: array {name!r} holds {bad} non-finite value(s) (NaN or "
                                  f"infinite) of its {array.size}; a model with them computes NaN scores and "
                                  "explanations. Retrain or repair the weights.")


def load_model(
    path: str | os.PathLike[str],
    expect_kind: str | None = None,
    *,
    expect: Any = None,
    expect_extra: Any = None,
    max_bytes: int | None = MAX_BYTES,
) -> ModelCheckpoint:
    """Reads a checkpoint as a model: the model rebuilt from its config, and its parameters.

    The model comes from the metadata's `MODEL_CONFIG` (written by `save_model`) or, for a checkpoint
    written before configs were stored, from its kind (:data:`lrpjax.io.legacy.LEGACY_KINDS`); the config's
    ``"type"`` picks the class (`MODEL_TYPES`: a Sequential or a Seq2Seq). Before any array data is read,
    the stored parameters are checked against the model itself (``model.output_size``: every layer's or
    part's keys and shapes, the error naming the array) and must be floating point; `expect` and
    `expect_extra` add the caller's own checks, as in `load`. Empty parameter sub-trees (`EMPTY_PARAMS`)
    are put back.

    Args:
        path: the ``.npz`` file.
        expect_kind: if given, the metadata "kind" must equal it.
        expect: optional layout of all "params/" arrays (the model's and those beside it), as in `load`.
        expect_extra: optional layout of the extra arrays, as in `load`.
        max_bytes: bound on the uncompressed size, as in `load`.

    Returns:
        A `ModelCheckpoint` ``(model, params, metadata, beside, extra)``; arrays are numpy, as saved.

    Raises:
        CheckpointError (a ValueError) naming the file: every error of `load`; no config and a kind that
            is none of the legacy kinds; a config naming an unknown layer type or cell kind (named);
            parameters that do not fit the model (naming the key and the shape); or parameters that are not
            all finite (naming the array).
    """
    path = os.fspath(path)

    def check(metadata: dict[str, Any], headers: dict[str, _Header]) -> tuple[Any, str | None, list[str]]:
        _check_layouts(path, metadata, headers, expect, expect_extra)
        model, key = _model_of(path, metadata)
        empty = _empty_of(path, metadata)
        _check_model_arrays(path, model, key, headers, empty)
        return model, key, empty

    metadata, arrays, (model, key, empty) = _read(path, expect_kind, max_bytes, check)
    _check_finite(path, arrays)
    params = _tree(path, arrays, PARAMS_PREFIX)
    extra = {name[len(EXTRA_PREFIX):]: array for name, array in arrays.items() if name.startswith(EXTRA_PREFIX)}
    if key is None:
        return ModelCheckpoint(model, _with_empty(path, params, empty), metadata, {}, extra)
    return ModelCheckpoint(model, _with_empty(path, params.pop(key), empty), metadata, params, extra)
