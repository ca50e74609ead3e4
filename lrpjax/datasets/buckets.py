"""Length buckets: each sequence is padded to a bucket edge, so one program per edge is compiled,
whatever the lengths in a dataset. The one bucketing rule of the package (datasets in memory, streams,
the SST application)."""

from __future__ import annotations

import bisect
from typing import Callable, Sequence

import numpy as np

__all__ = ["bucket_edges", "assign_buckets", "resolve_edges", "bucket_rule", "powers_of_two"]


def powers_of_two(max_length: int, smallest: int = 8) -> tuple[int, ...]:
    """Edges ``smallest, 2 * smallest, ...`` up to the first >= ``max_length``."""
    edges = [smallest]
    while edges[-1] < max_length:
        edges.append(2 * edges[-1])
    return tuple(edges)


def bucket_edges(lengths: Sequence[int] | np.ndarray, n_buckets: int, chunk_size: int = 1) -> tuple[int, ...]:
    """The ``n_buckets`` edges that minimise the padded work for these lengths.

    The work of a bucket with edge L holding n sequences is ``ceil(n / chunk_size) * chunk_size * L``
    (every chunk is padded to the chunk size and to L); a dynamic programme over the distinct lengths
    finds the exact optimum. The last edge is the longest length.

    Args:
        lengths: sequence lengths, (N,), each >= 1.
        n_buckets: the number of edges wanted (fewer when there are fewer distinct lengths).
        chunk_size: the chunk size the buckets will be processed with.

    Raises:
        ValueError: no lengths, a length < 1, or ``n_buckets`` / ``chunk_size`` < 1.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or lengths.size == 0 or np.any(lengths < 1):
        raise ValueError("`lengths` must be a non-empty list of lengths >= 1.")
    if n_buckets < 1 or chunk_size < 1:
        raise ValueError(f"`n_buckets` and `chunk_size` must be >= 1; got {n_buckets}, {chunk_size}.")
    values, counts = np.unique(lengths, return_counts=True)
    cum = np.concatenate([[0], np.cumsum(counts)])
    n, K = len(values), min(n_buckets, len(values))

    def cost(i, j):  # one bucket holding distinct lengths i..j-1, edge values[j-1]
        members = cum[j] - cum[i]
        return -(-members // chunk_size) * chunk_size * values[j - 1]

    best = np.full((K + 1, n + 1), np.inf)
    choice = np.zeros((K + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0
    for k in range(1, K + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):
                c = best[k - 1, i] + cost(i, j)
                if c < best[k, j]:
                    best[k, j], choice[k, j] = c, i
    k = int(np.argmin(best[1:, n])) + 1
    edges, j = [], n
    while k > 0:
        edges.append(int(values[j - 1]))
        j, k = choice[k, j], k - 1
    return tuple(sorted(edges))


def resolve_edges(buckets, lengths: np.ndarray | None = None, chunk_size: int = 1) -> tuple[int, ...] | None:
    """The edges ``buckets`` asks for: None (powers of two from 8, as far as ``lengths`` need; None when
    the lengths are not known in advance), a number of buckets (:func:`bucket_edges` for ``lengths``)
    or the edges themselves.

    Raises:
        ValueError: a number of buckets < 1 or without ``lengths``; edges that are not increasing lengths >= 1.
        TypeError: anything else.
    """
    if buckets is None:
        return None if lengths is None else powers_of_two(int(np.max(lengths)))
    if isinstance(buckets, (int, np.integer)) and not isinstance(buckets, bool):
        if buckets < 1:
            raise ValueError(f"`buckets` as a number of buckets must be >= 1; got {buckets}.")
        if lengths is None:
            raise ValueError("`buckets` as a number of buckets needs every length in advance; give the edges "
                             "(e.g. lrpjax.datasets.bucket_edges(lengths of a sample, n)) or None for powers of two.")
        return bucket_edges(lengths, int(buckets), chunk_size)
    if isinstance(buckets, (str, bytes)):
        raise TypeError(f"`buckets` must be None, a number of buckets or a sequence of edges; got {buckets!r}.")
    try:
        edges = tuple(int(e) for e in buckets)
    except (TypeError, ValueError):
        raise TypeError("`buckets` must be None, a number of buckets or a sequence of int edges; "
                        f"got {buckets!r}.") from None
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"`buckets` edges must be increasing lengths >= 1; got {edges}.")
    return edges


def assign_buckets(lengths: Sequence[int] | np.ndarray, edges: Sequence[int] | np.ndarray) -> np.ndarray:
    """Padded length of each sequence: the smallest edge >= T; beyond the last edge, the next multiple of it.

    Args:
        lengths: (N,) lengths >= 1.
        edges: ascending bucket edges.

    Returns:
        (N,) padded lengths.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.int64)
    position = np.searchsorted(edges, lengths, side="left")
    inside = position < len(edges)
    beyond = -(-lengths // edges[-1]) * edges[-1]
    return np.where(inside, edges[np.minimum(position, len(edges) - 1)], beyond)


def bucket_rule(edges: tuple[int, ...] | None) -> Callable[[int], int]:
    """The padded length of one T-step sequence, as :func:`assign_buckets` gives it; ``edges`` None:
    powers of two from 8 (whatever T)."""
    if edges is None:
        return lambda T: max(8, 1 << (int(T) - 1).bit_length())

    def bucket(T: int) -> int:
        position = bisect.bisect_left(edges, T)
        return edges[position] if position < len(edges) else -(-T // edges[-1]) * edges[-1]
    return bucket
