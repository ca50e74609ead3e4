"""Multivariate time-series classification sets of the UEA archive, read from ``data/timeseries``.

Two sets are shipped (their files and licences are in ``data/timeseries/README.md``; nothing is
downloaded):

* ``"JapaneseVowels"`` (Kudo, Toyama and Shimbo 1999; UCI): 9 speakers saying /ae/, 12 LPC cepstrum
  coefficients per frame, 7 to 29 frames: variable length; 270 training and 370 test utterances;
* ``"BasicMotions"`` (UEA archive, Bagnall et al. 2018): 4 activities (standing, running, walking,
  badminton), 3-D accelerometer and gyroscope of a smart watch (6 channels), 100 steps at 10 Hz; 40 and 40.

The files are in the archive's ``.ts`` format (``@`` header lines, then one series per line: the
channels separated by ``:``, the values of a channel by ``,``, the class label last). :func:`load`
returns a padded batch (N, T, E) with its mask, ready for :meth:`lrpjax.methods.Method.batch` and the
trainer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["NAMES", "TimeSeries", "load", "read_ts", "standardise"]

NAMES = ("JapaneseVowels", "BasicMotions")
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class TimeSeries:
    """A padded set of multivariate series.

    Attributes:
        X: the series, (N, T, E) float32, padded with zeros after each series' end.
        mask: valid steps (N, T) bool (a prefix of each row).
        y: class indices (N,) int32, into ``classes``.
        classes: the class labels as the file names them.
        name: the set's name; split: ``"train"`` or ``"test"``.
    """

    X: np.ndarray
    mask: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    name: str
    split: str

    @property
    def lengths(self) -> np.ndarray:
        """The number of valid steps of each series (N,)."""
        return self.mask.sum(axis=1)

    def __len__(self) -> int:
        return len(self.y)


def _default_root() -> Path:
    """$LRPJAX_DATA/timeseries if set, else the repository's data/timeseries."""
    if os.environ.get("LRPJAX_DATA"):
        return Path(os.environ["LRPJAX_DATA"]) / "timeseries"
    return Path(__file__).resolve().parents[2] / "data" / "timeseries"


def read_ts(path: str | os.PathLike) -> tuple[list[np.ndarray], list[str], tuple[str, ...]]:
    """Reads a ``.ts`` file of a multivariate classification set.

    Returns:
        (series, labels, classes): each series (T_n, E) float64, its label, the ``@classLabel`` list.

    Raises:
        ValueError: a line with a different number of channels, channels of different lengths, a
            label outside ``@classLabel`` or a missing value, naming the file and line.
    """
    path = Path(path)
    series: list[np.ndarray] = []
    labels: list[str] = []
    classes: tuple[str, ...] = ()
    in_data = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                lower = line.lower()
                if lower.startswith("@classlabel"):
                    classes = tuple(line.split()[2:])
                elif lower.startswith("@data"):
                    in_data = True
                continue
            *channels, label = line.split(":")
            where = f"{path.name}, line {number}"
            if "?" in line:
                raise ValueError(f"{where}: missing values ('?') are not supported.")
            values = [np.array([float(v) for v in channel.split(",")]) for channel in channels]
            if len({len(v) for v in values}) != 1:
                raise ValueError(f"{where}: the channels have different lengths {[len(v) for v in values]}.")
            if series and len(values) != series[0].shape[1]:
                raise ValueError(f"{where}: {len(values)} channels; the file's first series has {series[0].shape[1]}.")
            if classes and label not in classes:
                raise ValueError(f"{where}: label {label!r} is not one of @classLabel {classes}.")
            series.append(np.stack(values, axis=1))
            labels.append(label)
    if not series:
        raise ValueError(f"{path}: no series after @data.")
    return series, labels, classes or tuple(sorted(set(labels)))


def load(name: str, split: str, root: str | os.PathLike | None = None, dtype=np.float32) -> TimeSeries:
    """One split of a shipped set, padded.

    Args:
        name: one of :data:`NAMES`.
        split: ``"train"`` or ``"test"``.
        root: the directory holding ``<name>/<name>_TRAIN.ts``; default ``data/timeseries``.
        dtype: the series' dtype.

    Raises:
        ValueError: an unknown name or split.
        FileNotFoundError: the file is missing.
    """
    if name not in NAMES:
        raise ValueError(f"`name` must be one of {NAMES}; got {name!r}.")
    if split not in _SPLITS:
        raise ValueError(f"`split` must be one of {_SPLITS}; got {split!r}.")
    directory = Path(root) if root is not None else _default_root()
    path = directory / name / f"{name}_{split.upper()}.ts"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; the shipped sets are under data/timeseries of the repository "
                                "(or $LRPJAX_DATA/timeseries).")
    series, labels, classes = read_ts(path)
    T = max(len(s) for s in series)
    X = np.zeros((len(series), T, series[0].shape[1]), dtype)
    mask = np.zeros((len(series), T), bool)
    for n, s in enumerate(series):
        X[n, :len(s)] = s
        mask[n, :len(s)] = True
    y = np.array([classes.index(label) for label in labels], np.int32)
    return TimeSeries(X, mask, y, classes, name, split)


def standardise(train: TimeSeries, *others: TimeSeries) -> tuple[TimeSeries, ...]:
    """Every set standardised per channel by the mean and standard deviation of ``train``'s valid steps
    (padding stays 0)."""
    valid = train.X[train.mask]
    mean, std = valid.mean(axis=0), valid.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    out = []
    for ts in (train, *others):
        X = np.where(ts.mask[..., None], (ts.X - mean) / std, 0).astype(ts.X.dtype)
        out.append(TimeSeries(X, ts.mask, ts.y, ts.classes, ts.name, ts.split))
    return tuple(out)
