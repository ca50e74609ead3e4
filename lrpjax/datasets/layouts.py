"""What one item of a dataset is, and how it is laid out in a padded row of a chunk.

The drivers of :mod:`lrpjax.datasets` learn it from the model: a model with a ``dataset_layout()``
method says how its items are laid out (an encoder-decoder, :class:`~lrpjax.models.seq2seq.Seq2Seq`,
takes pairs: :class:`Pairs`); any other model takes single sequences (:data:`SEQUENCES`). A layout
answers, for one item as the user gives it:

* ``check(item, where)`` -- the item as host arrays, its structure checked (an error names ``where``);
* ``parts(item)`` / ``join(parts)`` -- its (n, E) arrays and back (the driver casts and hashes parts);
* ``length(item)`` -- the length it is bucketed by; ``source_length(item)`` -- a pair's source length;
* ``width(L)`` -- the positions of a padded row of bucket length L (the model's input, (width, E));
* ``place(item, x_row, mask_row)`` -- writes the item into a zeroed row of ``width(L)`` positions;
* ``dummy(mask)`` -- marks the valid positions of dummy rows (one step of every part, so that no row is
  empty and nothing divides by zero; their results are dropped);
* ``positions(length, source_length)`` -- where the item's input positions lie in its padded row, in
  the order its cropped relevance keeps them;
* ``crc(index, item, crc)`` -- a checksum of the item, by which a resumed stream recognises its input;
* ``symbol`` -- the name of the input axis in the shape templates of stream shards (``"T"``: T_i
  positions; ``"S+T"``: S_i + T_i positions) and ``describe()`` what a stream's header records.

A layout never changes what a model computes: it only places an item where a single call of the
method would see it (:meth:`lrpjax.methods.Method.every_step` on the packed pair, for a Seq2Seq).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from lrpjax.methods.base import model_of

__all__ = ["Sequences", "Pairs", "SEQUENCES", "layout_of"]


def _is_pair(item: Any) -> bool:
    """Whether ``item`` looks like a pair of sequences: a tuple or list of two arrays of 2 axes each."""
    return isinstance(item, (tuple, list)) and len(item) == 2 and all(np.ndim(p) == 2 for p in item)


@dataclass(frozen=True)
class Sequences:
    """Items are single sequences (T_i, E), padded at the end to the bucket length L; relevance (..., T_i[, E])."""

    symbol = "T"

    def check(self, item: Any, where: str) -> np.ndarray:
        """The sequence as a host array (T, E) with T >= 1.

        Raises:
            ValueError: a pair of sequences (for encoder-decoders), or another shape.
        """
        if _is_pair(item):
            raise ValueError(f"{where} is a pair of arrays (source, target); this model takes single sequences "
                             "(T, E) (pairs are items of encoder-decoders such as lrpjax.models.seq2seq.Seq2Seq).")
        x = np.asarray(item)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{where} must have shape (T, E) with T >= 1; got {x.shape}.")
        return x

    def parts(self, item: np.ndarray) -> tuple[np.ndarray, ...]:
        return (item,)

    def join(self, parts: tuple[np.ndarray, ...]) -> np.ndarray:
        return parts[0]

    def length(self, item: np.ndarray) -> int:
        return int(item.shape[0])

    def source_length(self, item: np.ndarray) -> None:
        return None

    def width(self, L: int) -> int:
        return int(L)

    def place(self, item: np.ndarray, x_row: np.ndarray, mask_row: np.ndarray) -> None:
        x_row[:item.shape[0]] = item
        mask_row[:item.shape[0]] = True

    def dummy(self, mask: np.ndarray) -> None:
        mask[:, 0] = True

    def positions(self, length: int, source_length: int | None = None) -> slice:
        return slice(0, int(length))

    def crc(self, index: int, item: np.ndarray, crc: int = 0) -> int:
        """crc32 of the item (its index, length and values), continuing ``crc``."""
        head = np.asarray([index, item.shape[0]], np.int64).tobytes()
        return zlib.crc32(np.ascontiguousarray(item).tobytes(), zlib.crc32(head, crc))

    def describe(self) -> dict | None:
        return None


SEQUENCES = Sequences()
"""The layout of every model that does not say otherwise."""


@dataclass(frozen=True)
class Pairs:
    """Items are pairs ``(source (S_i, E), target (T_i, E))`` of embedded vectors, 1 <= S_i <= S, T_i >= 1,
    for a model that reads a packed pair (:class:`~lrpjax.models.seq2seq.Seq2Seq`).

    A pair is bucketed by its target length T_i; in a row of bucket length L it is packed as the model's
    ``pack`` packs ids: the source at positions 0..S_i-1 (padded to S), the target at S..S+T_i-1 (padded
    to L), S + L positions in all, the mask marking one prefix of each part. Its relevance is cropped to
    the output steps 0..T_i-1 and to the input positions of the pair, source first: (T_i, S_i + T_i[, E])
    per explained class (the first S_i input positions are the source tokens, the last T_i the target
    tokens the decoder read, BOS first).

    Attributes:
        source_steps: S, the model's padded source length.
    """

    source_steps: int
    symbol = "S+T"

    def __post_init__(self):
        if not isinstance(self.source_steps, int) or isinstance(self.source_steps, bool) or self.source_steps < 1:
            raise ValueError(f"`source_steps` of a pair layout must be a positive int; got {self.source_steps!r}.")

    def check(self, item: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
        """The pair as host arrays, each (n, E) with n >= 1, the source at most S steps, one E.

        Raises:
            ValueError: a single sequence (for models that take them), a part of another shape, an
                empty part, a source longer than S, parts of different E.
        """
        S = self.source_steps
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            got = f"an array of shape {np.shape(item)}" if hasattr(item, "shape") else \
                f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
            raise ValueError(f"{where} must be a pair (source (S_i, E), target (T_i, E)) for this encoder-decoder "
                             f"(S_i <= S = {S}); got {got}.")
        source, target = (np.asarray(p) for p in item)
        for name, part in (("source", source), ("target", target)):
            if part.ndim != 2 or part.shape[0] == 0:
                raise ValueError(f"{where}: its {name} must have shape (n, E) with n >= 1; got {part.shape}.")
        if source.shape[0] > S:
            raise ValueError(f"{where}: its source has {source.shape[0]} steps; the model's source_steps S = {S} is "
                             "the most it reads.")
        if source.shape[1] != target.shape[1]:
            raise ValueError(f"{where}: its source and target must have one E; got {source.shape[1]} and "
                             f"{target.shape[1]}.")
        return source, target

    def parts(self, item: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
        return tuple(item)

    def join(self, parts: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        return parts[0], parts[1]

    def length(self, item: tuple[np.ndarray, np.ndarray]) -> int:
        return int(item[1].shape[0])

    def source_length(self, item: tuple[np.ndarray, np.ndarray]) -> int:
        return int(item[0].shape[0])

    def width(self, L: int) -> int:
        return self.source_steps + int(L)

    def place(self, item: tuple[np.ndarray, np.ndarray], x_row: np.ndarray, mask_row: np.ndarray) -> None:
        source, target = item
        S = self.source_steps
        x_row[:source.shape[0]] = source
        mask_row[:source.shape[0]] = True
        x_row[S:S + target.shape[0]] = target
        mask_row[S:S + target.shape[0]] = True

    def dummy(self, mask: np.ndarray) -> None:
        mask[:, 0] = True
        mask[:, self.source_steps] = True

    def positions(self, length: int, source_length: int | None = None) -> np.ndarray:
        if source_length is None:
            raise ValueError("a pair's input positions need its source length.")
        return np.concatenate([np.arange(int(source_length)), self.source_steps + np.arange(int(length))])

    def crc(self, index: int, item: tuple[np.ndarray, np.ndarray], crc: int = 0) -> int:
        """crc32 of the pair (its index, both lengths and both parts' values), continuing ``crc``."""
        source, target = item
        crc = zlib.crc32(np.asarray([index, target.shape[0], source.shape[0]], np.int64).tobytes(), crc)
        return zlib.crc32(np.ascontiguousarray(target).tobytes(), zlib.crc32(np.ascontiguousarray(source).tobytes(), crc))

    def describe(self) -> dict:
        return {"kind": "pair", "source_steps": self.source_steps}


def layout_of(method: Any) -> Any:
    """The layout of the model a method (or the first of a list of methods) explains: the model's
    ``dataset_layout()`` when its ``apply`` is a bound method of a model that has one, else
    :data:`SEQUENCES`.

    Raises:
        TypeError: whatever the model's hook raises (e.g. a Seq2Seq reading ids, whose datasets take
            embedded pairs).
    """
    first = method[0] if isinstance(method, (list, tuple)) and len(method) else method
    apply = getattr(first, "apply", None)
    hook = getattr(None if apply is None else model_of(apply), "dataset_layout", None)
    return SEQUENCES if hook is None else hook()
