"""Pictures of word-level relevance: matplotlib text heatmaps and curves, and every text form.

Text heatmaps draw each word as a box coloured by its relevance (red for the explained class, blue
against it, white at 0), wrapping long sentences at a fixed figure width, several methods as
labelled rows, with a colour bar; written as PNG, PDF or SVG by the file's extension (text stays
text in PDF and SVG). The colour scale, terminal text, LaTeX and HTML forms live in
:mod:`lrpjax.viz.render` (numpy only) and are re-exported here, so ``lrpjax.viz.plot`` is the one place to
look. matplotlib is imported only when a figure is drawn (the non-interactive Agg backend).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from lrpjax.viz.render import (HTML_CSS, KINDS, SEQUENTIAL_END, _check, _check_scale, _rows, ansi_sentence,
                           explanation_html, explanation_summary, explanation_text, html_legend, html_page,
                           html_sentence, kind_caption, latex_escape, latex_heatmap, plain_sentence,
                           relevance_colors, relevance_table, shared_scale, text_colors, use_color, value_kind,
                           write_atomic)

__all__ = [
    "FIGURE_FORMATS",
    "HTML_CSS",
    "relevance_colors",
    "shared_scale",
    "text_colors",
    "ansi_sentence",
    "plain_sentence",
    "relevance_table",
    "use_color",
    "latex_escape",
    "latex_heatmap",
    "html_page",
    "html_sentence",
    "html_legend",
    "explanation_text",
    "explanation_html",
    "explanation_summary",
    "heatmap",
    "sentence_heatmap",
    "relevance_figure",
    "deletion_figure",
    "write_atomic",
]

# Figure formats by file extension; text is kept as text in PDF (embedded TrueType) and SVG.
FIGURE_FORMATS = ("png", "pdf", "svg")


def _figure_format(path: str | os.PathLike) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if ext not in FIGURE_FORMATS:
        raise ValueError(f"`path` must end in .png, .pdf or .svg (the format is taken from the extension); "
                         f"got {os.fspath(path)!r}.")
    return ext


def _save(fig: Any, path: str | os.PathLike, dpi: float) -> None:
    """Saves ``fig`` in the format of ``path``'s extension, atomically; text stays text in PDF/SVG."""
    import io

    import matplotlib

    fmt = _figure_format(path)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}):
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    write_atomic(path, buffer.getvalue())


def _metadata(fmt: str) -> dict[str, Any]:
    # No creation date: the same figure gives the same bytes.
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "lrpjax"}
    if fmt == "svg":
        return {"Date": None, "Creator": "lrpjax"}
    return {"Software": "lrpjax"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# --- matplotlib word heatmaps ----------------------------------------------------------------------

def _cmap(kind: str = "relevance"):
    """The colour map of :func:`relevance_colors` for ``kind``: blue (-1) .. white (0) .. red (+1) for
    signed values, white (0) .. purple (1) for sensitivities; linear."""
    from matplotlib.colors import LinearSegmentedColormap

    if kind == "sensitivity":
        end = tuple(c / 255.0 for c in SEQUENTIAL_END)
        return LinearSegmentedColormap.from_list("lrpjax-unsigned", [(1.0, 1.0, 1.0), end], N=256)
    return LinearSegmentedColormap.from_list("lrpjax", [(0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0)], N=511)


class _Metrics:
    """Text widths in points (unhinted font metrics, the same for PNG, PDF and SVG)."""

    def __init__(self, font_size: float):
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import TextToPath

        self._engine = TextToPath()
        self.regular = FontProperties(size=font_size)
        self.bold = FontProperties(size=font_size, weight="bold")

    def width(self, text: str, bold: bool = False) -> float:
        if not text:
            return 0.0
        w, _, _ = self._engine.get_text_width_height_descent(text, self.bold if bold else self.regular, ismath=False)
        return float(w)


def _chunks(word: str, metrics: _Metrics, room: float) -> list[str]:
    """``word`` split into pieces no wider than ``room`` points (one piece if it fits): a word longer
    than a line is broken across lines rather than cut off."""
    if metrics.width(word) <= room or len(word) <= 1:
        return [word]
    pieces, current = [], ""
    for ch in word:
        if current and metrics.width(current + ch) > room:
            pieces.append(current)
            current = ""
        current += ch
    return pieces + [current]


def _layout_row(tokens: Sequence[str], metrics: _Metrics, room: float, fs: float) -> list[tuple[int, float, float, str, int]]:
    """Places a row's words left to right, wrapping at ``room`` points.

    Returns:
        ``(line, x, box width, text, token index)`` per box, x in points from the row's left edge.
    """
    pad, gap = 0.28 * fs, 0.28 * fs
    boxes, line, x = [], 0, 0.0
    for index, word in enumerate(tokens):
        for piece in _chunks(word, metrics, room - 2 * pad):
            w = metrics.width(piece) + 2 * pad
            if x > 0 and x + w > room:
                line, x = line + 1, 0.0
            boxes.append((line, x, w, piece, index))
            x += w + gap
    return boxes


def _per_row(rows: list[Any], scale: float | str | None) -> bool:
    """Whether each row has its own colour scale (module docstring of :func:`heatmap`'s ``scale``)."""
    if isinstance(scale, str):
        if scale not in ("row", "figure"):
            raise ValueError(f"`scale` must be None (one scale per row when there are several rows), 'row', "
                             f"'figure' (one scale for all rows) or a number > 0; got {scale!r}.")
        return scale == "row"
    return scale is None and len(rows) > 1


def _row_scales(rows: list[tuple[str, list[str], np.ndarray]], scale: float | str | None) -> list[float]:
    if _per_row(rows, scale):
        return [shared_scale(r) or 1.0 for _, _, r in rows]
    s = _check_scale(None if isinstance(scale, str) else scale) or shared_scale(*(r for _, _, r in rows)) or 1.0
    return [s] * len(rows)


def _row_kinds(rows: list[tuple[str, list[str], np.ndarray]], kinds: Any) -> list[str]:
    """Each row's kind of values: given for all rows (a str), per row (a sequence), or read off the labels."""
    if kinds is None:
        found = [value_kind(label) for label, _, _ in rows]
    elif isinstance(kinds, str):
        found = [kinds] * len(rows)
    else:
        found = [str(k) for k in kinds]
        if len(found) != len(rows):
            raise ValueError(f"`kinds` must give one kind per row ({len(rows)}); got {len(found)}.")
    for n, kind in enumerate(found):
        if kind not in KINDS:
            raise ValueError(f"`kinds` row {n}: must be one of {sorted(KINDS)}; got {kind!r}.")
    return found


def heatmap(rows: Sequence[tuple[str, Sequence[str], Any]], path: str | os.PathLike | None = None, *,
            scale: float | str | None = None, kinds: str | Sequence[str] | None = None, width: float = 6.5,
            font_size: float = 10.0, title: str = "", colorbar: bool = True, colorbar_label: str | None = None,
            dpi: float = 200) -> Any:
    """Text heatmaps: each word a box coloured by its value, on the colour map of the row's kind.

    Signed relevance (red for the target, blue against it, white 0) and gradients (red: the score
    rises with the input) are drawn on the diverging map centred at 0; sensitivities (squared
    gradients, never negative) on a sequential white-purple map from 0 (:data:`~lrpjax.viz.render.KINDS`).
    Rows are drawn one under the other, each with its label on the left (a method's name, a sentence
    number); long rows wrap into lines at the figure's fixed width, so a 500-word sentence makes a
    taller figure, not a wider one. Under the rows, one horizontal colour bar per kind shown, its
    caption saying what the colours mean.

    Args:
        rows: ``(label, tokens (T,), relevance (T,))`` triples; labels may be empty.
        path: the file to write, PNG, PDF or SVG by its extension (text stays text in PDF and SVG);
            None returns the figure instead (e.g. to show it in a notebook).
        scale: None (default): each row scaled by its own largest |value| when there are several rows
            (methods differ by orders of magnitude: a gradient row next to LRP would be white on a
            shared scale), the figure's largest |value| for one row; ``"row"``: always per row;
            ``"figure"``: one scale for all rows; a number: that value is the end colour (pass the
            same number to several figures to compare them, e.g. :func:`shared_scale` of all of them).
            The colour bar's caption says which.
        kinds: each row's kind of values (``"relevance"``, ``"gradient"``, ``"sensitivity"``): one for
            all rows, one per row, or None to read it off each row's label
            (:func:`~lrpjax.viz.render.value_kind`: "Sensitivity" rows are sensitivities, ...).
        width: figure width in inches (6.5: a page's text width; 3.3: one column).
        font_size: word size in points.
        title: text above the rows.
        colorbar: draw the colour bar.
        colorbar_label: the name of the values on the relevance colour bar (default ``"relevance"``),
            e.g. ``"relevance for 'positive'"``; the other kinds keep their own names.
        dpi: resolution of PNG output.

    Returns:
        The matplotlib ``Figure`` when ``path`` is None, else None (the figure is written and closed).

    Raises:
        ValueError: bad rows (shapes, non-finite values), a bad ``scale`` or ``kinds``, a negative value in a
            sensitivity row, an extension other than
            .png/.pdf/.svg, or a ``width`` too small for one word.
    """
    from matplotlib.figure import Figure

    checked = _rows(rows)
    if path is not None:
        _figure_format(path)
    scales = _row_scales(checked, scale)
    row_kinds = _row_kinds(checked, kinds)
    shown = list(dict.fromkeys(row_kinds))
    if not (np.isfinite(width) and width > 0 and font_size > 0):
        raise ValueError(f"`width` and `font_size` must be > 0; got {width!r}, {font_size!r}.")
    fs, metrics = float(font_size), _Metrics(float(font_size))
    margin, box_h, line_gap, row_gap = 0.6 * fs, 1.45 * fs, 0.3 * fs, 0.8 * fs
    label_w = max([metrics.width(label, bold=True) for label, _, _ in checked] + [0.0])
    label_w = label_w + 0.8 * fs if label_w > 0 else 0.0
    room = width * 72.0 - 2 * margin - label_w
    if room < 3 * fs:
        raise ValueError(f"`width` = {width} in leaves {room:.0f} pt for the words after the labels; "
                         f"need at least {3 * fs:.0f} pt: make the figure wider or the labels shorter.")
    layouts = [_layout_row(tokens, metrics, room, fs) for _, tokens, _ in checked]
    n_lines = [max([b[0] for b in boxes] + [0]) + 1 for boxes in layouts]
    title_h = 1.8 * fs if title else 0.0
    rows_h = sum(n * box_h + (n - 1) * line_gap for n in n_lines) + row_gap * (len(checked) - 1)
    bar_h = 3.6 * fs * len(shown) if colorbar else 0.0
    height = 2 * margin + title_h + rows_h + bar_h
    fig = Figure(figsize=(width, height / 72.0), dpi=dpi)
    top = height - margin
    if title:
        _text(fig, margin, top - 1.1 * fs, title, 1.1 * fs, "#000", height=height)
    top -= title_h
    for (label, tokens, relevance), boxes, lines, s, kind in zip(checked, layouts, n_lines, scales, row_kinds):
        try:
            colors = relevance_colors(relevance, s, kind)
        except ValueError as error:
            raise ValueError(f"`rows` row {label!r}: {error}") from None
        inks = text_colors(colors)
        if label:
            _text(fig, margin, top - box_h + 0.45 * fs, label, fs, "#222", bold=True)
        for line, x, w, piece, index in boxes:
            y = top - line * (box_h + line_gap) - box_h
            _box(fig, margin + label_w + x, y, w, box_h, colors[index] / 255.0)
            _text(fig, margin + label_w + x + 0.28 * fs, y + 0.45 * fs, piece, fs, inks[index])
        top -= lines * box_h + (lines - 1) * line_gap + row_gap
    if colorbar:
        per_row = _per_row(checked, scale)
        for n, kind in enumerate(reversed(shown)):
            s = scales[row_kinds.index(kind)]
            bar_label = (colorbar_label or "relevance") if kind == "relevance" else None
            _colorbar(fig, kind, 1.0 if per_row else s, per_row, bar_label, margin + n * 3.6 * fs, height, fs)
    if path is None:
        return fig
    _save(fig, path, dpi=dpi)
    return None


def _text(fig: Any, x: float, y: float, text: str, size: float, color: str, bold: bool = False,
          height: float | None = None) -> None:
    """Draws ``text`` with its baseline at (x, y) points from the figure's bottom left."""
    fig.text(x / 72.0, y / 72.0, text, transform=fig.dpi_scale_trans, fontsize=size, color=color,
             ha="left", va="baseline", fontweight="bold" if bold else "normal", parse_math=False)


def _box(fig: Any, x: float, y: float, w: float, h: float, color: np.ndarray) -> None:
    from matplotlib.patches import Rectangle

    fig.add_artist(Rectangle((x / 72.0, y / 72.0), w / 72.0, h / 72.0, transform=fig.dpi_scale_trans,
                             facecolor=tuple(color), edgecolor="none", linewidth=0))


def _colorbar(fig: Any, kind: str, s: float, per_row: bool, label: str | None, bottom: float, height: float,
              fs: float) -> None:
    """A horizontal colour bar ``bottom`` points above the figure's bottom: -s .. +s for signed kinds,
    0 .. s for sensitivities (s = 1: a fraction of each row's largest |value|), captioned by its kind."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    W = fig.get_figwidth() * 72.0
    margin = 0.6 * fs
    bar_w = min(W - 2 * margin, 16 * fs)
    cax = fig.add_axes(((W - bar_w) / 2 / W, (bottom + 2.0 * fs) / height, bar_w / W, 0.7 * fs / height))
    low = 0.0 if kind == "sensitivity" else -s
    bar = fig.colorbar(ScalarMappable(norm=Normalize(low, s), cmap=_cmap(kind)), cax=cax, orientation="horizontal")
    ticks = list(np.linspace(low, s, 5))
    bar.set_ticks(ticks)
    signed = kind != "sensitivity"
    bar.set_ticklabels([(f"{t:+.3g}" if signed else f"{t:.3g}") if t else "0" for t in ticks])
    bar.ax.tick_params(labelsize=0.8 * fs, length=2)
    bar.outline.set_linewidth(0.5)
    name = label or KINDS[kind][0]
    if per_row:
        name = f"{name} / its row's largest |value|"
    bar.set_label(kind_caption(kind, name), fontsize=0.8 * fs, labelpad=2)


def sentence_heatmap(tokens: Sequence[str], relevance: Any, path: str | os.PathLike | None = None,
                     **options: Any) -> Any:
    """One sentence as a text heatmap; several methods' relevance as labelled rows of one figure.

    Args:
        tokens: the words (T,).
        relevance: (T,) for one row, or ``{label: (T,)}`` (e.g. ``{"LRP-all": r1, "Gradient x Input":
            r2}``) for one row per method, drawn in the mapping's order.
        path: PNG, PDF or SVG file (None returns the figure).
        **options: passed to :func:`heatmap` (``scale``, ``width``, ``font_size``, ``title``, ...).

    Returns:
        See :func:`heatmap`.
    """
    if isinstance(relevance, Mapping):
        if not relevance:
            raise ValueError("`relevance` must hold at least one row; got an empty mapping.")
        rows = [(str(label), tokens, r) for label, r in relevance.items()]
    else:
        rows = [("", tokens, relevance)]
    return heatmap(rows, path, **options)


def relevance_figure(tokens: Sequence[str], relevance: Any, path: str | os.PathLike, title: str = "") -> None:
    """Saves a bar chart of word-level relevance (one bar per word, coloured like the text).

    The format is taken from ``path``'s extension (PNG, PDF or SVG). Long sentences wrap into several
    panels of at most 40 words, so the figure keeps a fixed width.
    """
    r = _check(tokens, relevance)
    _figure_format(path)
    plt = _pyplot()
    per_panel = 40
    n_panels = max(1, -(-len(tokens) // per_panel))
    width = min(max(4.0, 0.45 * min(len(tokens), per_panel) + 1.5, 0.07 * len(title) + 1.0), 19.5)
    fig, axes = plt.subplots(n_panels, 1, figsize=(width, 3.2 * n_panels), squeeze=False)
    colors = relevance_colors(r) / 255.0
    lim = shared_scale(r) or 1.0
    for p, ax in enumerate(axes[:, 0]):
        part = slice(p * per_panel, (p + 1) * per_panel)
        x = np.arange(len(tokens))[part]
        ax.bar(x, r[part], color=colors[part], edgecolor="0.3", linewidth=0.5)
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(list(tokens)[part], rotation=60, ha="right")
        ax.set_ylim(-1.1 * lim, 1.1 * lim)
        ax.set_ylabel("relevance")
    if title:
        axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi=120)
    plt.close(fig)


def deletion_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike,
                    panels: Sequence[tuple[str, str]] = (("correct", "initially correct: most relevant deleted first"),
                                                         ("false", "initially false: least relevant deleted first")),
                    stds: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> None:
    """Saves the word-deletion curves (Fig. 11.5): accuracy after 0..K deletions, one panel per part.

    Args:
        curves: ``{method: {panel key: accuracies (K+1,)}}``.
        path: the figure to write (PNG, PDF or SVG by extension).
        panels: (panel key, panel title) pairs, left to right.
        stds: optional ``{method: {panel key: std (K+1,)}}`` drawn as a band (the random baseline).
    """
    _figure_format(path)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.6))
    axes = np.atleast_1d(axes)
    styles = ["-o", "-s", "-^", "-v", "-D", "-P", "-X", "-*", "-<", "->", "--"]
    for ax, (key, title) in zip(axes, panels):
        for n, (method, parts) in enumerate(curves.items()):
            y = np.asarray(parts[key], dtype=np.float64)
            x = np.arange(len(y))
            style = "k--" if method == "random" else styles[n % len(styles)]
            ax.plot(x, y, style, label=method, markersize=4, linewidth=1.3)
            if stds and method in stds:
                s = np.asarray(stds[method][key], dtype=np.float64)
                ax.fill_between(x, y - s, y + s, color="0.7", alpha=0.4)
        ax.set_xlabel("# words deleted")
        ax.set_ylabel("accuracy")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, path, dpi=120)
    plt.close(fig)


# Time-series figures (time x feature heatmaps, relevance over time) live in lrpjax.viz.timeseries.
from lrpjax.viz.timeseries import relevance_over_time, time_heatmap  # noqa: E402,F401
