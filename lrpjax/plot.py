"""Pictures of word-level relevance: colour scale, terminal text, LaTeX, HTML and matplotlib heatmaps.

Relevance is shown on one diverging scale everywhere: red for positive relevance (evidence for the
explained class), blue for negative (evidence against), white for zero, linear in ``R_t / s`` where
``s`` is the scale (by default the largest absolute relevance shown together; pass ``scale=`` to
share one scale across figures). Words are drawn as coloured boxes, the usual form of LRP text
heatmaps (Arras et al. 2017, and the chapter's SST examples).

Only numpy is needed for the text forms; matplotlib is imported when a figure is drawn (with the
non-interactive Agg backend). Every file is written to a temporary file beside the target and then
renamed over it, so an interrupted or failed write leaves the previous file intact.
"""

from __future__ import annotations

import html
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "FIGURE_FORMATS",
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


# --- the colour scale ------------------------------------------------------------------------------

def _check(tokens: Sequence[str], relevance: Any, name: str = "relevance") -> np.ndarray:
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim != 1 or r.shape[0] != len(tokens):
        raise ValueError(f"`{name}` must have shape (T,) = ({len(tokens)},) to match `tokens`; got {r.shape}.")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"`{name}` contains non-finite values.")
    return r


def _check_scale(scale: float | None) -> float | None:
    if scale is None:
        return None
    value = float(scale)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"`scale` must be a finite number > 0 (or None for the largest |relevance|); got {scale!r}.")
    return value


def shared_scale(*relevances: Any) -> float:
    """The largest absolute value over all given relevance arrays: one colour scale for all of them.

    Returns 0.0 when every value is zero (or nothing is given).
    """
    values = [np.max(np.abs(np.asarray(r, dtype=np.float64))) for r in relevances if np.size(r)]
    return float(max(values)) if values else 0.0


def relevance_colors(relevance: Any, scale: float | None = None) -> np.ndarray:
    """RGB colours (T, 3) in 0..255 on the diverging white-red / white-blue scale.

    ``a = clip(R_t / s, -1, 1)`` with ``s = scale`` or, if None, ``max |R|``: a > 0 gives
    (255, 255(1-a), 255(1-a)), a < 0 gives (255(1-|a|), 255(1-|a|), 255). All-zero relevance is
    white. Values beyond a given ``scale`` take the end colour (the colour bar says so).

    Args:
        relevance: word-level relevance, shape (T,).
        scale: the relevance that maps to full red / blue; None: the largest absolute relevance.
    """
    r = np.asarray(relevance, dtype=np.float64)
    s = _check_scale(scale)
    if s is None:
        s = float(np.max(np.abs(r))) if r.size else 0.0
    a = np.clip(r / s, -1.0, 1.0) if s > 0 else np.zeros_like(r)
    fade = np.round(255 * (1 - np.abs(a))).astype(int)
    full = np.full_like(fade, 255)
    red = np.where(a >= 0, full, fade)
    blue = np.where(a >= 0, fade, full)
    return np.stack([red, fade, blue], axis=-1)


def text_colors(colors: Any) -> list[str]:
    """``"#000"`` or ``"#fff"`` per background colour (T, 3) in 0..255: whichever contrasts more
    (WCAG relative luminance), so words on saturated red or blue stay legible."""
    c = np.asarray(colors, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722])
    # contrast with black (L + 0.05) / 0.05 against contrast with white 1.05 / (L + 0.05)
    return ["#000" if (L + 0.05) ** 2 >= 0.0525 else "#fff" for L in np.atleast_1d(luminance)]


# --- terminal text ---------------------------------------------------------------------------------

def ansi_sentence(tokens: Sequence[str], relevance: Any, scale: float | None = None) -> str:
    """The sentence with each word on a 24-bit (truecolor) ANSI background, black or white text."""
    r = _check(tokens, relevance)
    colors = relevance_colors(r, scale)
    parts = []
    for word, (red, green, blue), ink in zip(tokens, colors, text_colors(colors)):
        fg = "0;0;0" if ink == "#000" else "255;255;255"
        parts.append(f"\x1b[48;2;{red};{green};{blue}m\x1b[38;2;{fg}m{word}\x1b[0m")
    return " ".join(parts)


def plain_sentence(tokens: Sequence[str], relevance: Any) -> str:
    """The sentence with each word's relevance after it: ``good[+1.23] movie[-0.04]``."""
    r = _check(tokens, relevance)
    return " ".join(f"{word}[{value:+.3g}]" for word, value in zip(tokens, r))


def relevance_table(tokens: Sequence[str], relevance: Any, unknown: Sequence[str] = (),
                    conservation: Mapping[str, float] | None = None) -> str:
    """A fixed-width table: position, word, relevance, share of the total absolute relevance.

    Args:
        tokens: the words (T,).
        relevance: their relevance (T,).
        unknown: words flagged ``<unk>`` (not in the vocabulary).
        conservation: optional LRP bookkeeping (see :func:`explanation_summary`): adds the target's
            score, what the biases (and initial states) absorbed and the residual under the sum.
    """
    r = _check(tokens, relevance)
    total = np.sum(np.abs(r))
    width = max([14] + [len(t) for t in tokens])
    lines = [f"{'pos':>3}  {'word':<{width}}  {'relevance':>11}  {'|share|':>7}"]
    unknown = set(unknown)
    for t, (word, value) in enumerate(zip(tokens, r)):
        share = abs(value) / total if total > 0 else 0.0
        flag = "  <unk>" if word in unknown else ""
        lines.append(f"{t:>3}  {word:<{width}}  {value:>+11.4e}  {share:>7.1%}{flag}")
    lines.append(f"{'':>3}  {'sum':<{width}}  {np.sum(r):>+11.4e}")
    for label, value in _conservation_rows(conservation):
        lines.append(f"{'':>3}  {label:<{width}}  {value:>+11.4e}")
    return "\n".join(lines)


def _conservation_rows(conservation: Mapping[str, float] | None) -> list[tuple[str, float]]:
    """(label, value) rows of the LRP bookkeeping that are present, in a fixed order."""
    if not conservation:
        return []
    labels = (("target_score", "target score"), ("bias", "biases"), ("initial", "initial states"),
              ("residual", "residual"))
    return [(label, float(conservation[key])) for key, label in labels if conservation.get(key) is not None]


def use_color(stream: Any, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only on a terminal and only when ``NO_COLOR`` is unset (https://no-color.org)."""
    if environ.get("NO_COLOR", "") != "":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):
        return False


# --- LaTeX -----------------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "#": r"\#", "$": r"\$", "%": r"\%", "&": r"\&",
    "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
    ">": r"\textgreater{}", "|": r"\textbar{}",
}


def latex_escape(text: str) -> str:
    r"""``text`` with LaTeX's special characters written as commands (``50%`` -> ``50\%``)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _rows(rows: Sequence[Any]) -> list[tuple[str, list[str], np.ndarray]]:
    """Checks heatmap rows ``(label, tokens, relevance)``; returns them with float arrays."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or len(rows) == 0:
        raise ValueError("`rows` must be a non-empty sequence of (label, tokens, relevance) triples.")
    out = []
    for n, row in enumerate(rows):
        if not (isinstance(row, (tuple, list)) and len(row) == 3):
            raise ValueError(f"`rows[{n}]` must be a (label, tokens, relevance) triple; got {type(row).__name__}.")
        label, tokens, relevance = row
        if isinstance(tokens, str):
            raise TypeError(f"`rows[{n}]` tokens must be a sequence of words, not a str.")
        tokens = [str(t) for t in tokens]
        out.append((str(label), tokens, _check(tokens, relevance, f"rows[{n}] relevance")))
    return out


def latex_heatmap(rows: Sequence[tuple[str, Sequence[str], Any]], *, scale: float | None = None,
                  standalone: bool = False) -> str:
    r"""A LaTeX heatmap: one ``\colorbox[RGB]{r,g,b}{word}`` per word, ready to ``\input``.

    Needs ``\usepackage{xcolor}`` in the document (``standalone=True`` writes a complete document
    that compiles with ``pdflatex``). Words are escaped (``50%``, ``&``, ``$``, ``_``, ``\`` ...), so
    the snippet is safe for any input. Boxes are separated by spaces, so long rows break into lines.

    Args:
        rows: ``(label, tokens (T,), relevance (T,))`` triples; a non-empty label is written in bold
            before its row (e.g. the method's name).
        scale: relevance of full red / blue; None: the largest absolute relevance over all rows.
        standalone: a whole ``article`` document instead of a snippet.

    Returns:
        The LaTeX source.
    """
    checked = _rows(rows)
    s = _check_scale(scale) or shared_scale(*(r for _, _, r in checked)) or 1.0
    lines = [f"% lrpjax relevance heatmap: full red = +{s:.4g} (for the class), full blue = -{s:.4g} "
             "(against); needs \\usepackage{xcolor}",
             "{\\setlength{\\fboxsep}{1.5pt}%"]
    for label, tokens, relevance in checked:
        colors = relevance_colors(relevance, s)
        boxes = []
        for word, rgb, ink in zip(tokens, colors, text_colors(colors)):
            text = latex_escape(word)
            if ink == "#fff":
                text = f"\\textcolor{{white}}{{{text}}}"
            boxes.append(f"\\colorbox[RGB]{{{rgb[0]},{rgb[1]},{rgb[2]}}}{{\\strut {text}}}")
        head = f"\\textbf{{{latex_escape(label)}}}: " if label else ""
        lines.append("\\noindent " + head + " ".join(boxes) + "\\par")
    lines.append("}")
    body = "\n".join(lines) + "\n"
    if not standalone:
        return body
    return ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n"
            "\\usepackage{xcolor}\n\\begin{document}\n" + body + "\\end{document}\n")


# --- HTML ------------------------------------------------------------------------------------------

HTML_CSS = """
.lrp-words { line-height: 1.2; }
.lrp-w { display: inline-block; margin: 0 0.12em 0.35em 0; padding: 0.1em 0.3em; border-radius: 0.2em;
  text-align: center; vertical-align: top; }
.lrp-w .v { display: block; font-size: 0.68em; opacity: 0.85; font-variant-numeric: tabular-nums; }
.lrp-hide-numbers .lrp-w .v { display: none; }
.lrp-legend { display: inline-flex; flex-wrap: wrap; align-items: center; gap: 0.3em 0.4em; font-size: 0.85em; }
.lrp-bar { width: 10em; height: 0.9em; border: 1px solid #999;
  background: linear-gradient(to right, rgb(0,0,255), rgb(255,255,255), rgb(255,0,0)); }
.lrp-meta { color: #444; font-size: 0.9em; }
"""


def html_sentence(tokens: Sequence[str], relevance: Any, scale: float | None = None, *,
                  unknown: Sequence[str] = ()) -> str:
    """An HTML fragment: each word a coloured box with its relevance printed under it.

    Args:
        tokens: the words (T,).
        relevance: their relevance (T,).
        scale: relevance of full red / blue (None: this sentence's largest |relevance|).
        unknown: words to mark as not in the vocabulary (dotted underline, a tooltip).

    Returns:
        ``<span class="lrp-words">...</span>``; style it with :data:`HTML_CSS`.
    """
    r = _check(tokens, relevance)
    colors = relevance_colors(r, scale)
    unknown = set(unknown)
    spans = []
    for word, value, rgb, ink in zip(tokens, r, colors, text_colors(colors)):
        unk = ' style="text-decoration: underline dotted"' if word in unknown else ""
        tip = " (not in the vocabulary)" if word in unknown else ""
        spans.append(f'<span class="lrp-w" style="background-color: rgb({rgb[0]},{rgb[1]},{rgb[2]}); '
                     f'color: {ink}" title="{value:+.4g}{tip}" data-r="{value:.6g}"><span{unk}>'
                     f'{html.escape(word)}</span><span class="v">{value:+.3g}</span></span>')
    return '<span class="lrp-words">' + "".join(spans) + "</span>"


def html_legend(scale: float, label: str = "relevance") -> str:
    """An HTML colour bar from ``-scale`` (blue, against) through 0 (white) to ``+scale`` (red, for)."""
    s = float(scale)
    return (f'<span class="lrp-legend"><span>{html.escape(label)}</span><span>&minus;{s:.3g}</span>'
            f'<span class="lrp-bar" title="blue: against the class, red: for it"></span>'
            f'<span>+{s:.3g}</span><span>(blue: against, white: 0, red: for)</span></span>')


def _conservation_html(conservation: Mapping[str, float] | None, relevance_sum: float) -> str:
    """One line: the sum of relevance and, when known, the target's score, biases, residual."""
    parts = [f"sum of relevance <b>{relevance_sum:+.4g}</b>"]
    parts += [f"{html.escape(label)} <b>{value:+.4g}</b>" for label, value in _conservation_rows(conservation)]
    return '<div class="lrp-meta">' + " &middot; ".join(parts) + "</div>"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 62em; margin: 2em auto; padding: 0 1em; }}
.item {{ border-bottom: 1px solid #ddd; padding: 0.6em 0; }}
.error {{ color: #a00; }}
{css}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="lrp-meta">{legend} &nbsp; One colour scale for the whole page. Each word's relevance is
printed under it. <label><input type="checkbox" checked
onchange="document.body.classList.toggle('lrp-hide-numbers', !this.checked)"> show numbers</label></p>
{items}
</body>
</html>
"""


def html_page(records: Sequence[Mapping[str, Any]], title: str = "lrpjax relevance",
              scale: float | None = None) -> str:
    """A self-contained HTML page (inline CSS, no network) for one or a few explained sentences.

    One colour scale for the page (a legend shows it); each word's relevance is printed under it.

    Args:
        records: dicts with "tokens" (T,), "relevance" (T,) and optionally "prediction_name",
            "probabilities", "scores", "target_name", "method", "eps", "unknown" and
            "conservation" (``{"target_score", "bias", "initial", "residual"}``, LRP only), as
            written by ``SentenceExplanation.to_json``; or "error" and "sentence" for a sentence
            that could not be explained.
        title: the page title.
        scale: relevance of full red / blue; None: the largest |relevance| on the page.

    Returns:
        The page as a string.
    """
    good = [r for r in records if "error" not in r]
    checked = [_check(r["tokens"], r["relevance"], f"records[{n}] relevance") for n, r in enumerate(good)]
    s = _check_scale(scale) or shared_scale(*checked) or 1.0
    items, arrays = [], iter(checked)
    for record in records:
        if "error" in record:
            items.append(f'<div class="item error">{html.escape(str(record.get("sentence", "")))} '
                         f'&mdash; {html.escape(str(record["error"]))}</div>')
            continue
        items.append(_html_item(record, next(arrays), s))
    return _PAGE.format(title=html.escape(title), css=HTML_CSS, legend=html_legend(s), items="\n".join(items))


def _html_item(record: Mapping[str, Any], relevance: np.ndarray, scale: float) -> str:
    meta = []
    if "prediction_name" in record:
        meta.append(f"prediction: <b>{html.escape(str(record['prediction_name']))}</b>")
    if "target_name" in record:
        meta.append(f"explained class: <b>{html.escape(str(record['target_name']))}</b>")
    if "method" in record:
        eps = record.get("eps")
        meta.append(f"method: {html.escape(str(record['method']))}" + (f", eps {eps:g}" if eps is not None else ""))
    lines = [" &middot; ".join(meta)] if meta else []
    for key, label, fmt in (("probabilities", "probabilities", ".3f"), ("scores", "scores", "+.3f")):
        if key in record:
            lines.append(f"{label}: " + ", ".join(format(float(v), fmt) for v in record[key]))
    if record.get("unknown"):
        lines.append("not in the vocabulary (read as &lt;unk&gt;): " + html.escape(", ".join(record["unknown"])))
    body = "".join(f'<div class="lrp-meta">{line}</div>' for line in lines)
    words = html_sentence(record["tokens"], relevance, scale, unknown=record.get("unknown", ()))
    return (f'<div class="item"><div>{words}</div>{body}'
            f'{_conservation_html(record.get("conservation"), float(np.sum(relevance)))}</div>')


# --- library explanations (notebook reprs) ---------------------------------------------------------

def explanation_summary(explanation: Any, target: int | None = None) -> dict[str, Any]:
    """The bookkeeping of an LRP :class:`lrpjax.Explanation` as plain floats.

    Args:
        explanation: the result of ``lrpjax.lrp(...).full(...)``.
        target: the explained class; None: ``explanation.target`` if it has one, else the class
            whose score equals ``target_score`` (None if no score does).

    Returns:
        ``{"target", "target_score", "relevance_sum", "bias", "initial", "residual", "scores"}``;
        ``bias`` is what the biases absorbed, ``initial`` what reached the initial states.
    """
    import jax

    scores = np.asarray(explanation.scores, dtype=np.float64).reshape(-1)
    target_score = float(np.asarray(explanation.target_score))
    if target is None:
        target = getattr(explanation, "target", None)
    if target is None:
        matches = np.flatnonzero(scores == target_score)
        target = int(matches[0]) if matches.size else None
    leaf_sum = lambda tree: float(sum(np.sum(np.asarray(leaf, dtype=np.float64))  # noqa: E731
                                      for leaf in jax.tree_util.tree_leaves(tree)))
    return {"target": None if target is None else int(target), "target_score": target_score,
            "relevance_sum": float(np.sum(np.asarray(explanation.relevance, dtype=np.float64))),
            "bias": leaf_sum(explanation.params), "initial": leaf_sum(explanation.initial),
            "residual": float(np.asarray(explanation.residual)), "scores": scores.tolist()}


def _explanation_words(explanation: Any, tokens: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    """Word-level relevance (summed over the last axis of a (T, E) relevance) and its labels."""
    relevance = np.asarray(explanation.relevance, dtype=np.float64)
    words = relevance.sum(-1) if relevance.ndim >= 2 else relevance.reshape(-1)
    words = words.reshape(-1) if words.ndim > 1 else words
    labels = [str(t) for t in tokens] if tokens is not None else [str(t) for t in range(words.shape[0])]
    return labels, _check(labels, words, "explanation.relevance (summed per token)")


def explanation_text(explanation: Any, tokens: Sequence[str] | None = None, target: int | None = None) -> str:
    """A few lines for ``repr``: the target and its score, the conservation figures, the words.

    Args:
        explanation: an :class:`lrpjax.Explanation` (``lrpjax.lrp(...).full(...)``).
        tokens: labels of the T positions (words); None numbers them.
        target: the explained class (see :func:`explanation_summary`).
    """
    summary = explanation_summary(explanation, target)
    labels, words = _explanation_words(explanation, tokens)
    shape = "x".join(str(n) for n in np.shape(explanation.relevance))
    head = "target ?" if summary["target"] is None else f"target {summary['target']}"
    return (f"Explanation({head}, score {summary['target_score']:+.4g}, relevance {shape})\n"
            f"  sum of relevance {summary['relevance_sum']:+.4g}, biases {summary['bias']:+.4g}, "
            f"initial states {summary['initial']:+.4g}, residual {summary['residual']:+.4g}\n"
            f"  {plain_sentence(labels, words)}")


def explanation_html(explanation: Any, tokens: Sequence[str] | None = None, target: int | None = None) -> str:
    """An HTML fragment for notebooks (``_repr_html_``): coloured words with their numbers, a legend
    and the conservation figures (target score, sum of relevance, biases, residual).

    Args:
        explanation: an :class:`lrpjax.Explanation` (``lrpjax.lrp(...).full(...)``).
        tokens: labels of the T positions (words); None numbers them.
        target: the explained class (see :func:`explanation_summary`).
    """
    summary = explanation_summary(explanation, target)
    labels, words = _explanation_words(explanation, tokens)
    s = shared_scale(words) or 1.0
    head = "target ?" if summary["target"] is None else f"target {summary['target']}"
    conservation = {k: summary[k] for k in ("bias", "initial", "residual", "target_score")}
    return (f'<div class="lrpjax-explanation"><style>{HTML_CSS}</style>'
            f'<div><b>Explanation</b>: {head}, score {summary["target_score"]:+.4g} &nbsp; {html_legend(s)}</div>'
            f'<div>{html_sentence(labels, words, s)}</div>'
            f'{_conservation_html(conservation, summary["relevance_sum"])}</div>')


# --- files -----------------------------------------------------------------------------------------

def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Writes ``data`` (str as UTF-8) to a temporary file beside ``path``, then renames it over
    ``path``: the previous file survives any failure.

    Raises:
        OSError: the directory is missing or not writable.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
