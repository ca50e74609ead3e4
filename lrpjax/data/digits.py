"""The 8x8 handwritten digits (UCI optical recognition test set, 1797 images, classes 0-9).

The repository holds them as ``data/digits/digits.csv.gz``: one image per line, 64 integer pixels in
0..16 (row-major 8x8) then the label, no header (``data/digits/DESCR.rst`` describes the set). Nothing
is downloaded.

    X, y = load_digits()                       # (1797, 64) float64 in [0, 1], (1797,) int
    train, test = split(len(y), test_fraction=0.2, seed=0)
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["load_digits", "split", "SIDE", "N_PIXELS", "N_CLASSES", "MAX_VALUE"]

SIDE = 8
N_PIXELS = SIDE * SIDE
N_CLASSES = 10
MAX_VALUE = 16


def _default_path() -> Path:
    """$LRPJAX_DATA/digits/digits.csv.gz if that variable is set, else the repository's copy."""
    if os.environ.get("LRPJAX_DATA"):
        return Path(os.environ["LRPJAX_DATA"]) / "digits" / "digits.csv.gz"
    return Path(__file__).resolve().parents[2] / "data" / "digits" / "digits.csv.gz"


def load_digits(path: str | os.PathLike | None = None, scaled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Reads the digits.

    Args:
        path: the ``.csv.gz`` (or plain ``.csv``) file; default the repository's
            ``data/digits/digits.csv.gz`` ($LRPJAX_DATA/digits/ when that variable is set).
        scaled: divide the pixels by 16, giving values in [0, 1] (else the raw counts 0..16).

    Returns:
        images (N, 64) float64, row-major 8x8; labels (N,) int64 in 0..9.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line without 65 integers, a pixel outside 0..16 or a label outside 0..9,
            naming the file and line; a file that is not text or a damaged .gz, naming the file.
    """
    path = Path(path) if path is not None else _default_path()
    if not path.is_file():
        raise FileNotFoundError(f"digits file not found at {path}; pass `path` or set LRPJAX_DATA.")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        rows = _read_rows(opener, path)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a text file of integers (byte 0x{error.object[error.start]:02x} is "
                         "not UTF-8).") from None
    except (OSError, EOFError) as error:  # a damaged or truncated .gz
        raise ValueError(f"{path}: cannot be read: {error}") from None
    if not rows:
        raise ValueError(f"{path}: no images.")
    data = np.asarray(rows, dtype=np.int64)
    images = data[:, :N_PIXELS].astype(np.float64)
    return (images / MAX_VALUE if scaled else images), data[:, N_PIXELS]


def _read_rows(opener, path: Path) -> list[list[int]]:
    """The checked rows (64 pixels, label) of the file; lines end with "\n" (CRLF and a BOM tolerated)."""
    rows = []
    with opener(path, "rt", encoding="utf-8-sig", newline="\n") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            if not line.isascii():
                raise ValueError(f"{path}:{number}: expected {N_PIXELS + 1} integers; got non-ASCII text "
                                 f"{line.strip()[:60]!r}.")
            fields = line.strip().split(",")
            try:
                values = [int(f) for f in fields]
            except ValueError:
                raise ValueError(f"{path}:{number}: expected {N_PIXELS + 1} integers; got {line.strip()[:60]!r}.")
            if len(values) != N_PIXELS + 1:
                raise ValueError(f"{path}:{number}: expected {N_PIXELS + 1} values (64 pixels, label); "
                                 f"got {len(values)}.")
            if not all(0 <= v <= MAX_VALUE for v in values[:-1]):
                raise ValueError(f"{path}:{number}: pixels must be in 0..{MAX_VALUE}.")
            if not 0 <= values[-1] < N_CLASSES:
                raise ValueError(f"{path}:{number}: label must be in 0..{N_CLASSES - 1}; got {values[-1]}.")
            rows.append(values)
    return rows


def split(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` example indices.

    Args:
        n: number of examples.
        test_fraction: share of the test part, in (0, 1); its size is ``round(n * test_fraction)``.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        (train indices, test indices), each sorted, disjoint, together ``range(n)``.

    Raises:
        ValueError: ``n < 2`` or a fraction leaving either part empty.
    """
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"`n` must be an int >= 2; got {n!r}.")
    n_test = int(round(n * test_fraction)) if 0 < test_fraction < 1 else 0
    if not 0 < n_test < n:
        raise ValueError(f"`test_fraction` must leave both parts non-empty for n = {n}; got {test_fraction!r}.")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])
