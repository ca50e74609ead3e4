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

from lrpjax.viz.render import (HTML_CSS, _check, _check_scale, _rows, ansi_sentence, explanation_html,
                           explanation_summary, explanation_text, html_legend, html_page, html_sentence,
                           latex_escape, latex_heatmap, plain_sentence, relevance_colors, relevance_table,
                           shared_scale, text_colors, use_color, write_atomic)

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

def _cmap():
    """The colour map of :func:`relevance_colors`: blue (-1) .. white (0) .. red (+1), linear."""
    from matplotlib.colors import LinearSegmentedColormap

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


def _row_scales(rows: list[tuple[str, list[str], np.ndarray]], scale: float | str | None) -> list[float]:
    if isinstance(scale, str):
        if scale != "row":
            raise ValueError(f"`scale` must be None (one scale per figure), 'row' or a number > 0; got {scale!r}.")
        return [shared_scale(r) or 1.0 for _, _, r in rows]
    s = _check_scale(scale) or shared_scale(*(r for _, _, r in rows)) or 1.0
    return [s] * len(rows)


def heatmap(rows: Sequence[tuple[str, Sequence[str], Any]], path: str | os.PathLike | None = None, *,
            scale: float | str | None = None, width: float = 6.5, font_size: float = 10.0, title: str = "",
            colorbar: bool = True, colorbar_label: str = "relevance", dpi: float = 200) -> Any:
    """Text heatmaps: each word a box coloured by its relevance (red for, blue against, white 0).

    Rows are drawn one under the other, each with its label on the left (a method's name, a sentence
    number); long rows wrap into lines at the figure's fixed width, so a 500-word sentence makes a
    taller figure, not a wider one. A horizontal colour bar under the rows shows the scale.

    Args:
        rows: ``(label, tokens (T,), relevance (T,))`` triples; labels may be empty.
        path: the file to write, PNG, PDF or SVG by its extension (text stays text in PDF and SVG);
            None returns the figure instead (e.g. to show it in a notebook).
        scale: None: one colour scale for the figure (its largest |relevance|); a number: that
            relevance is full red / blue (pass the same number to several figures to compare them,
            e.g. :func:`shared_scale` of all of them); ``"row"``: each row scaled by its own maximum.
        width: figure width in inches (6.5: a page's text width; 3.3: one column).
        font_size: word size in points.
        title: text above the rows.
        colorbar: draw the colour bar.
        colorbar_label: the colour bar's caption.
        dpi: resolution of PNG output.

    Returns:
        The matplotlib ``Figure`` when ``path`` is None, else None (the figure is written and closed).

    Raises:
        ValueError: bad rows (shapes, non-finite values), a bad ``scale``, an extension other than
            .png/.pdf/.svg, or a ``width`` too small for one word.
    """
    from matplotlib.figure import Figure

    checked = _rows(rows)
    if path is not None:
        _figure_format(path)
    scales = _row_scales(checked, scale)
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
    bar_h = 3.6 * fs if colorbar else 0.0
    height = 2 * margin + title_h + rows_h + bar_h
    fig = Figure(figsize=(width, height / 72.0), dpi=dpi)
    top = height - margin
    if title:
        _text(fig, margin, top - 1.1 * fs, title, 1.1 * fs, "#000", height=height)
    top -= title_h
    for (label, tokens, relevance), boxes, lines, s in zip(checked, layouts, n_lines, scales):
        colors = relevance_colors(relevance, s)
        inks = text_colors(colors)
        if label:
            _text(fig, margin, top - box_h + 0.45 * fs, label, fs, "#222", bold=True)
        for line, x, w, piece, index in boxes:
            y = top - line * (box_h + line_gap) - box_h
            _box(fig, margin + label_w + x, y, w, box_h, colors[index] / 255.0)
            _text(fig, margin + label_w + x + 0.28 * fs, y + 0.45 * fs, piece, fs, inks[index])
        top -= lines * box_h + (lines - 1) * line_gap + row_gap
    if colorbar:
        _colorbar(fig, scales, scale, colorbar_label, margin, height, fs)
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


def _colorbar(fig: Any, scales: list[float], scale: float | str | None, label: str, margin: float,
              height: float, fs: float) -> None:
    """A horizontal colour bar at the bottom: -s .. +s, or -1 .. +1 of each row's maximum."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    per_row = isinstance(scale, str)
    s = 1.0 if per_row else scales[0]
    W = fig.get_figwidth() * 72.0
    bar_w = min(W - 2 * margin, 16 * fs)
    cax = fig.add_axes(((W - bar_w) / 2 / W, (margin + 2.0 * fs) / height, bar_w / W, 0.7 * fs / height))
    bar = fig.colorbar(ScalarMappable(norm=Normalize(-s, s), cmap=_cmap()), cax=cax, orientation="horizontal")
    bar.set_ticks([-s, -s / 2, 0.0, s / 2, s])
    bar.set_ticklabels([f"{t:+.3g}" if t else "0" for t in (-s, -s / 2, 0.0, s / 2, s)])
    bar.ax.tick_params(labelsize=0.8 * fs, length=2)
    bar.outline.set_linewidth(0.5)
    caption = f"{label} / max |relevance| of its row" if per_row else label
    bar.set_label(caption + "   (blue: against, red: for)", fontsize=0.8 * fs, labelpad=2)


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
