"""Pictures of relevance over multivariate time series: time x feature heatmaps and relevance over time.

* :func:`time_heatmap`: one panel per method, a (E features x T steps) image of the relevance in the
  diverging red (for the explained output) / blue (against it) scale, symmetric around 0, padded steps
  cut off; the input itself optionally drawn as a panel of its own;
* :func:`relevance_over_time`: the relevance of every step summed over the features (or of chosen
  features), one line per method, with the input's valid length.

Both return the matplotlib ``Figure`` when ``path`` is None, else write it (PNG, PDF or SVG by the
extension) and return None. matplotlib is imported only when a figure is drawn (the Agg backend).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["time_heatmap", "relevance_over_time"]

_FORMATS = ("png", "pdf", "svg")


def _maps(maps: Mapping[str, Any], mask: Any) -> tuple[dict[str, np.ndarray], int]:
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError("`maps` must be a non-empty mapping of method name -> relevance (T, E).")
    arrays = {str(k): np.asarray(v, dtype=np.float64) for k, v in maps.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"`maps` must all have one shape (T, E); got {sorted(shapes)}.")
    T = next(iter(shapes))[0]
    if mask is None:
        length = T
    else:
        mask = np.asarray(mask)
        if mask.shape != (T,) or mask.dtype != bool:
            raise ValueError(f"`mask` must be bool of shape (T,) = ({T},); got {mask.dtype} {mask.shape}.")
        length = int(mask.sum())
    for name, a in arrays.items():
        if not np.all(np.isfinite(a[:length])):
            raise ValueError(f"`maps[{name!r}]` contains non-finite values.")
    return {k: a[:length] for k, a in arrays.items()}, length


def _finish(fig: Any, path: str | os.PathLike | None, dpi: float) -> Any:
    if path is None:
        return fig
    fmt = os.fspath(path).rsplit(".", 1)[-1].lower()
    if fmt not in _FORMATS:
        raise ValueError(f"`path` must end in one of {_FORMATS}; got {os.fspath(path)!r}.")
    fig.savefig(path, dpi=dpi, bbox_inches="tight", format=fmt)
    return None


def time_heatmap(maps: Mapping[str, Any], path: str | os.PathLike | None = None, *, x: Any = None,
                 mask: Any = None, features: Sequence[str] | None = None, title: str | None = None,
                 dpi: float = 150) -> Any:
    """Time x feature heatmaps of relevance, one panel per method (each on its own symmetric scale).

    Args:
        maps: method name -> relevance (T, E) of one series.
        path: where to write the figure (``.png``, ``.pdf``, ``.svg``); None returns the figure.
        x: the series (T, E), drawn as a first panel (grey scale), or None.
        mask: valid steps (T,) bool; padded steps are left out.
        features: E feature names (default ``0 .. E-1``).
        title: a title above the panels.

    Raises:
        ValueError: maps of different shapes or not (T, E), a bad mask, feature names or path.
    """
    arrays, length = _maps(maps, mask)
    E = next(iter(arrays.values())).shape[1]
    if features is not None and len(features) != E:
        raise ValueError(f"`features` must name the E = {E} features; got {len(features)} names.")
    from matplotlib.figure import Figure

    panels = ([("input", np.asarray(x, np.float64)[:length])] if x is not None else []) + list(arrays.items())
    fig = Figure(figsize=(max(4.0, 0.22 * length + 2.5), (0.18 * E + 0.9) * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, a) in zip(axes, panels):
        if name == "input":
            image = ax.imshow(a.T, aspect="auto", cmap="Greys", interpolation="nearest")
        else:
            scale = float(np.max(np.abs(a))) or 1.0
            image = ax.imshow(a.T, aspect="auto", cmap="bwr", vmin=-scale, vmax=scale, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks(range(E))
        ax.set_yticklabels(list(features) if features is not None else [str(i) for i in range(E)], fontsize=5)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1].set_xlabel("time step")
    if title:
        fig.suptitle(title, fontsize=9)
    return _finish(fig, path, dpi)


def relevance_over_time(maps: Mapping[str, Any], path: str | os.PathLike | None = None, *, mask: Any = None,
                        features: Sequence[int] | None = None, normalise: bool = True, title: str | None = None,
                        dpi: float = 150) -> Any:
    """Relevance of each step, summed over the features (or over ``features`` only), one line per method.

    Args:
        maps: method name -> relevance (T, E) of one series.
        path: where to write the figure; None returns it.
        mask: valid steps (T,) bool.
        features: indices of the features summed (default all).
        normalise: divide each method's curve by its largest absolute value (methods on one axis).
        title: a title.

    Raises:
        ValueError: as for :func:`time_heatmap`, or a feature index out of range.
    """
    arrays, length = _maps(maps, mask)
    E = next(iter(arrays.values())).shape[1]
    chosen = list(range(E)) if features is None else [int(f) for f in features]
    if not chosen or any(not 0 <= f < E for f in chosen):
        raise ValueError(f"`features` must be indices in [0, {E}); got {features!r}.")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 2.8))
    ax = fig.subplots()
    for name, a in arrays.items():
        curve = a[:, chosen].sum(axis=1)
        if normalise:
            curve = curve / (np.max(np.abs(curve)) or 1.0)
        ax.plot(np.arange(length), curve, marker=".", label=name)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("time step")
    ax.set_ylabel("relevance" + (" (scaled)" if normalise else ""))
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    return _finish(fig, path, dpi)
