"""The adding and subtracting toy tasks of the fidelity study (Sec. 11.5.1, Table 11.2).

A variant of the adding problem (Hochreiter et al.) with *implicit* markers and no start/end positions.
A sequence of length T has two input columns: the first holds random numbers ``n_1 .. n_T``, the second
is 1 at the two relevant positions ``a < b`` (drawn uniformly among all pairs) and 0 elsewhere::

    x = [[n_1, 0], ..., [n_a, 1], ..., [n_b, 1], ..., [n_T, 0]]      target n_a + n_b  or  n_a - n_b

Addition ("add"): ``n_t ~ U([-1, -0.5] u [0.5, 1])``; subtraction ("sub"): ``n_t ~ U([0.5, 1])``.
The splits do not overlap in length: train 10000 sequences with T in {4..10}, validation 2500 with
T in {11, 12}, test 2500 with T in {13, 14} (T uniform in each set). Sequences are padded at the end to
the longest length of their split; ``mask`` marks the valid steps. Positions are 0-based.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TASKS", "SPLITS", "ToySplit", "make_split", "load_toy"]

TASKS = ("add", "sub")
# name -> (number of sequences, allowed lengths, index mixed into the seed)
SPLITS = {
    "train": (10000, tuple(range(4, 11)), 0),
    "val": (2500, (11, 12), 1),
    "test": (2500, (13, 14), 2),
}


@dataclass(frozen=True)
class ToySplit:
    """One split of a toy task (numpy arrays).

    Attributes:
        x: padded inputs, shape (B, T, 2): numbers in column 0, markers in column 1, zeros when padded.
        mask: valid steps, shape (B, T) bool.
        y: targets ``n_a + n_b`` or ``n_a - n_b``, shape (B,).
        a, b: the relevant positions (0-based, ``a < b < length``), shape (B,) int.
        lengths: sequence lengths, shape (B,) int.
        task: "add" or "sub".
    """

    x: np.ndarray
    mask: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    lengths: np.ndarray
    task: str

    @property
    def numbers(self) -> np.ndarray:
        """The numbers ``n_t``, shape (B, T) (0 when padded)."""
        return self.x[:, :, 0]


def _numbers(rng: np.random.Generator, task: str, shape: tuple[int, ...]) -> np.ndarray:
    magnitude = rng.uniform(0.5, 1.0, size=shape)
    if task == "sub":
        return magnitude
    # U([-1, -0.5] u [0.5, 1]): both halves have the same length, so a fair sign times U([0.5, 1]).
    return np.where(rng.random(size=shape) < 0.5, -magnitude, magnitude)


def make_split(task: str, n: int, lengths: tuple[int, ...], seed: int, dtype=np.float32) -> ToySplit:
    """Draws ``n`` sequences of a toy task.

    Args:
        task: "add" or "sub".
        n: number of sequences (>= 1).
        lengths: allowed lengths T (each >= 2), drawn uniformly.
        seed: seed of ``numpy.random.default_rng``.
        dtype: floating dtype of ``x`` and ``y``.

    Returns:
        A :class:`ToySplit` padded to ``max(lengths)``.

    Raises:
        ValueError: unknown task, ``n < 1`` or a length below 2.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}; got {task!r}.")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be a positive int; got {n!r}.")
    lengths = tuple(int(t) for t in lengths)
    if not lengths or min(lengths) < 2:
        raise ValueError(f"`lengths` must be non-empty with every T >= 2 (two relevant positions); got {lengths}.")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise TypeError(f"`dtype` must be a floating dtype; got {np.dtype(dtype)}.")
    rng = np.random.default_rng(seed)
    T_max = max(lengths)
    length = rng.choice(np.asarray(lengths), size=n)
    steps = np.arange(T_max)[None, :]
    mask = steps < length[:, None]
    numbers = np.where(mask, _numbers(rng, task, (n, T_max)), 0.0)
    # a < b uniform among pairs of {0..T-1}: rank T uniform keys and keep the two smallest ranks' positions.
    keys = np.where(mask, rng.random((n, T_max)), np.inf)
    first_two = np.sort(np.argsort(keys, axis=1)[:, :2], axis=1)
    a, b = first_two[:, 0], first_two[:, 1]
    rows = np.arange(n)
    markers = np.zeros((n, T_max))
    markers[rows, a] = 1.0
    markers[rows, b] = 1.0
    x = np.stack([numbers, markers], axis=-1).astype(dtype)
    n_a, n_b = x[rows, a, 0], x[rows, b, 0]
    y = (n_a + n_b) if task == "add" else (n_a - n_b)
    return ToySplit(x=x, mask=mask, y=y.astype(dtype), a=a, b=b, lengths=length.astype(np.int64), task=task)


def load_toy(task: str, split: str, seed: int = 0, dtype=np.float32, n: int | None = None) -> ToySplit:
    """One split of a toy task as in Sec. 11.5.1 (sizes and lengths of ``SPLITS``).

    Args:
        task: "add" or "sub".
        split: "train", "val" or "test".
        seed: data seed; each split mixes its own index into it, so splits are independent draws.
        dtype: floating dtype of ``x`` and ``y``.
        n: number of sequences; default the chapter's size (quick runs draw fewer with the same seed).

    Raises:
        ValueError: unknown task or split.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {tuple(SPLITS)}; got {split!r}.")
    size, lengths, index = SPLITS[split]
    task_index = TASKS.index(task) if task in TASKS else -1
    if task_index < 0:
        raise ValueError(f"`task` must be one of {TASKS}; got {task!r}.")
    seed_seq = np.random.SeedSequence([int(seed), task_index, index])
    return make_split(task, size if n is None else n, lengths, int(seed_seq.generate_state(1)[0]), dtype)
