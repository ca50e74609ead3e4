"""Word-level relevance as text: the colour scale, terminal text, LaTeX and HTML (numpy only).

Relevance is shown on one diverging scale everywhere: red for positive relevance (evidence for the
explained class), blue for negative (evidence against), white for zero, linear in ``R_t / s`` where
``s`` is the scale (by default the largest absolute relevance shown together; pass ``scale=`` to
share one scale across pictures). Words are drawn as coloured boxes, the usual form of LRP text
heatmaps (Arras et al. 2017). :mod:`lrpjax.viz.plot` re-exports every public name here beside the
matplotlib figures. Files are written to a temporary file beside the target and renamed over it
(:func:`write_atomic`), so a failed write leaves the previous file intact.
"""

from __future__ import annotations

import html
import os
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from lrpjax.io.files import atomic_write

__all__ = [
    "HTML_CSS",
    "relevance_colors",
    "shared_scale",
    "KINDS",
    "value_kind",
    "kind_caption",
    "text_colors",
    "ansi_sentence",
    "plain_sentence",
    "relevance_table",
    "use_color",
    "latex_escape",
    "latex_heatmap",
    "html_sentence",
    "html_legend",
    "conservation_html",
    "html_page",
    "explanation_summary",
    "explanation_text",
    "explanation_html",
    "write_atomic",
]



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


KINDS = {
    "relevance": ("relevance", "red: for the target, blue: against it, white: 0"),
    "gradient": ("gradient", "red: the score rises with the input, blue: it falls, white: 0"),
    "sensitivity": ("sensitivity (squared gradient)", "never negative: white 0 .. dark purple: the largest"),
}
"""The kinds of values a figure shows, each with its name and how its colours read: signed relevance
(LRP, Gradient x Input, Integrated Gradients, occlusion, CD, ...) and gradients on the diverging
blue-white-red scale centred at 0; sensitivities (squared gradients, never negative) on a sequential
white-purple scale from 0."""

SEQUENTIAL_END = (84, 39, 143)
"""The RGB colour of the largest value on the sequential (unsigned) scale; 0 is white."""


def value_kind(method: Any) -> str:
    """The kind of values (a key of :data:`KINDS`) a method gives: ``"sensitivity"`` for Sensitivity
    and SmoothGrad of the squared gradient, ``"gradient"`` for the gradient and SmoothGrad of it,
    ``"relevance"`` for everything else.

    Args:
        method: a :class:`~lrpjax.methods.base.Method` value, or a method's name or figure label (e.g.
            ``"sensitivity"`` or the command line's ``"sa"``, ``"Gradient"``, ``"smoothgrad"``, ``"LRP-all"``),
            read case-insensitively.
    """
    if isinstance(method, str):
        name = method.strip().lower().replace(" ", "_").replace("-", "_")
        smooth_map = "sensitivity" if "sensitivity" in name else "gradient" if name == "smoothgrad" else None
    else:
        name = str(getattr(method, "name", type(method).__name__)).lower()
        smooth_map = getattr(method, "map", None)
    if name.startswith("smoothgrad") or name.startswith("smooth_grad"):
        if smooth_map in ("gradient", "sensitivity"):
            return str(smooth_map)
        return "relevance"
    if name.startswith("sensitivity") or name == "sa":
        return "sensitivity"
    if name in ("gradient", "grad", "gradients"):
        return "gradient"
    return "relevance"


def kind_caption(kind: str, label: str | None = None) -> str:
    """The colour bar's caption of a kind of values, e.g. ``"relevance   (red: for the target, blue:
    against it, white: 0)"``; ``label`` replaces the kind's name."""
    _check_kind(kind)
    name, reading = KINDS[kind]
    return f"{label or name}   ({reading})"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {sorted(KINDS)}; got {kind!r}.")


def relevance_colors(relevance: Any, scale: float | None = None, kind: str = "relevance") -> np.ndarray:
    """RGB colours (T, 3) in 0..255: on the diverging white-red / white-blue scale for signed values,
    on the sequential white-purple scale for sensitivities.

    Signed (``kind`` ``"relevance"`` or ``"gradient"``): ``a = clip(R_t / s, -1, 1)`` with ``s = scale``
    or, if None, ``max |R|``: a > 0 gives (255, 255(1-a), 255(1-a)), a < 0 gives
    (255(1-|a|), 255(1-|a|), 255). Unsigned (``"sensitivity"``): ``a = clip(R_t / s, 0, 1)`` mixes
    white and :data:`SEQUENTIAL_END`. All-zero values are white. Values beyond a given ``scale`` take
    the end colour (the colour bar says so).

    Args:
        relevance: word-level values, shape (T,).
        scale: the value that maps to the end colour; None: the largest absolute value.
        kind: a key of :data:`KINDS`.

    Raises:
        ValueError: an unknown ``kind``, or a negative value of an unsigned kind.
    """
    r = np.asarray(relevance, dtype=np.float64)
    _check_kind(kind)
    s = _check_scale(scale)
    if s is None:
        s = float(np.max(np.abs(r))) if r.size else 0.0
    if kind == "sensitivity":
        if r.size and np.min(r) < 0:
            raise ValueError(f"`relevance` of kind 'sensitivity' must be >= 0 (squared gradients); got "
                             f"{float(np.min(r)):.3g}: draw signed values with kind 'relevance' or 'gradient'.")
        a = np.clip(r / s, 0.0, 1.0) if s > 0 else np.zeros_like(r)
        white, end = np.array([255.0, 255.0, 255.0]), np.array(SEQUENTIAL_END, dtype=np.float64)
        return np.round(white + a[:, None] * (end - white)).astype(int)
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


def relevance_table(tokens: Sequence[str], relevance: Any, unknown: Collection[str] = (),
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


def latex_heatmap(rows: Sequence[tuple[str, Sequence[str], Any]], *, scale: float | str | None = None,
                  kinds: str | Sequence[str] | None = None, standalone: bool = False) -> str:
    r"""A LaTeX heatmap: one ``\colorbox[RGB]{r,g,b}{word}`` per word, ready to ``\input``.

    Needs ``\usepackage{xcolor}`` in the document (``standalone=True`` writes a complete document
    that compiles with ``pdflatex``). Words are escaped (``50%``, ``&``, ``$``, ``_``, ``\`` ...), so
    the snippet is safe for any input. Boxes are separated by spaces, so long rows break into lines.

    Args:
        rows: ``(label, tokens (T,), relevance (T,))`` triples; a non-empty label is written in bold
            before its row (e.g. the method's name).
        scale: as :func:`lrpjax.viz.plot.heatmap`'s: None (each row scaled by its own largest |value|
            when there are several rows, else the row's), ``"row"``, ``"figure"`` (one scale for all
            rows) or a number (the value of the end colour).
        kinds: as :func:`lrpjax.viz.plot.heatmap`'s: each row's kind of values (:data:`KINDS`), one for all
            rows, one per row, or None to read it off the labels (:func:`value_kind`).
        standalone: a whole ``article`` document instead of a snippet.

    Returns:
        The LaTeX source; a comment line per row states its kind, scale and how its colours read.

    Raises:
        ValueError: bad rows, ``scale`` or ``kinds``, or a negative value in a sensitivity row.
    """
    checked = _rows(rows)
    if isinstance(scale, str) and scale not in ("row", "figure"):
        raise ValueError(f"`scale` must be None, 'row', 'figure' or a number > 0; got {scale!r}.")
    per_row = scale == "row" or (scale is None and len(checked) > 1)
    fixed = _check_scale(None if isinstance(scale, str) else scale) or shared_scale(*(r for _, _, r in checked)) or 1.0
    row_kinds = ([value_kind(label) for label, _, _ in checked] if kinds is None
                 else [kinds] * len(checked) if isinstance(kinds, str) else [str(k) for k in kinds])
    if len(row_kinds) != len(checked):
        raise ValueError(f"`kinds` must give one kind per row ({len(checked)}); got {len(row_kinds)}.")
    lines = ["% lrpjax heatmap; needs \\usepackage{xcolor}"]
    body = ["{\\setlength{\\fboxsep}{1.5pt}%"]
    for (label, tokens, relevance), kind in zip(checked, row_kinds):
        _check_kind(kind)
        s = (shared_scale(relevance) or 1.0) if per_row else fixed
        lines.append(f"% {label or 'row'}: {KINDS[kind][0]}, end colour = {s:.4g} ({KINDS[kind][1]})")
        try:
            colors = relevance_colors(relevance, s, kind)
        except ValueError as error:
            raise ValueError(f"`rows` row {label!r}: {error}") from None
        boxes = []
        for word, rgb, ink in zip(tokens, colors, text_colors(colors)):
            text = latex_escape(word)
            if ink == "#fff":
                text = f"\\textcolor{{white}}{{{text}}}"
            boxes.append(f"\\colorbox[RGB]{{{rgb[0]},{rgb[1]},{rgb[2]}}}{{\\strut {text}}}")
        head = f"\\textbf{{{latex_escape(label)}}}: " if label else ""
        body.append("\\noindent " + head + " ".join(boxes) + "\\par")
    body.append("}")
    text = "\n".join(lines + body) + "\n"
    if not standalone:
        return text
    return ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n"
            "\\usepackage{xcolor}\n\\begin{document}\n" + text + "\\end{document}\n")


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
.lrp-bar.lrp-unsigned { background: linear-gradient(to right, rgb(255,255,255), rgb(84,39,143)); }
.lrp-meta { color: #444; font-size: 0.9em; }
"""


def html_sentence(tokens: Sequence[str], relevance: Any, scale: float | None = None, *,
                  unknown: Collection[str] = (), kind: str = "relevance") -> str:
    """An HTML fragment: each word a coloured box with its relevance printed under it.

    Args:
        tokens: the words (T,).
        relevance: their relevance (T,).
        scale: relevance of full red / blue (None: this sentence's largest |relevance|).
        unknown: words to mark as not in the vocabulary (dotted underline, a tooltip).
        kind: the kind of values (a key of :data:`KINDS`): signed values on the diverging map, sensitivities
            on the sequential one (:func:`relevance_colors`).

    Returns:
        ``<span class="lrp-words">...</span>``; style it with :data:`HTML_CSS`.
    """
    r = _check(tokens, relevance)
    colors = relevance_colors(r, scale, kind)
    unknown = set(unknown)
    spans = []
    for word, value, rgb, ink in zip(tokens, r, colors, text_colors(colors)):
        unk = ' style="text-decoration: underline dotted"' if word in unknown else ""
        tip = " (not in the vocabulary)" if word in unknown else ""
        spans.append(f'<span class="lrp-w" style="background-color: rgb({rgb[0]},{rgb[1]},{rgb[2]}); '
                     f'color: {ink}" title="{value:+.4g}{tip}" data-r="{value:.6g}"><span{unk}>'
                     f'{html.escape(word)}</span><span class="v">{value:+.3g}</span></span>')
    return '<span class="lrp-words">' + "".join(spans) + "</span>"


def html_legend(scale: float, label: str | None = None, kind: str = "relevance") -> str:
    """An HTML colour bar of a kind of values (:data:`KINDS`) with its caption: for signed kinds from
    ``-scale`` (blue) through 0 (white) to ``+scale`` (red); for sensitivities from 0 (white) to ``scale``
    (dark purple).

    Args:
        scale: the value of the end colours.
        label: the bar's name; None: the kind's name.
        kind: a key of :data:`KINDS`.
    """
    _check_kind(kind)
    s = float(scale)
    name, reading = KINDS[kind]
    low, bar = ("0", "lrp-bar lrp-unsigned") if kind == "sensitivity" else (f"&minus;{s:.3g}", "lrp-bar")
    high = f"{s:.3g}" if kind == "sensitivity" else f"+{s:.3g}"
    return (f'<span class="lrp-legend"><span>{html.escape(label or name)}</span><span>{low}</span>'
            f'<span class="{bar}" title="{html.escape(reading)}"></span>'
            f'<span>{high}</span><span>({html.escape(reading)})</span></span>')


def conservation_html(conservation: Mapping[str, float] | None, relevance_sum: float) -> str:
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
<p class="lrp-meta">{legend} &nbsp; One colour scale for the whole page{per_kind}. Each word's value is
printed under it. <label><input type="checkbox" checked
onchange="document.body.classList.toggle('lrp-hide-numbers', !this.checked)"> show numbers</label></p>
{items}
</body>
</html>
"""


def html_page(records: Sequence[Mapping[str, Any]], title: str = "lrpjax relevance",
              scale: float | None = None) -> str:
    """A self-contained HTML page (inline CSS, no network) for one or a few explained sentences.

    One colour scale for the page per kind of values (:func:`value_kind` of each record's "method":
    signed relevance and gradients on the diverging map, sensitivities on the sequential one; a legend
    for each kind on the page); each word's value is printed under it.

    Args:
        records: dicts with "tokens" (T,), "relevance" (T,) and optionally "prediction_name",
            "probabilities", "scores", "target_name", "method", "eps", "unknown" and
            "conservation" (``{"target_score", "bias", "initial", "residual"}``, LRP only), as
            written by ``SentenceExplanation.to_json``; or "error" and "sentence" for a sentence
            that could not be explained.
        title: the page title.
        scale: relevance of full red / blue (of every kind); None: the largest |value| of each kind on the page.

    Returns:
        The page as a string.
    """
    good = [r for r in records if "error" not in r]
    checked = [_check(r["tokens"], r["relevance"], f"records[{n}] relevance") for n, r in enumerate(good)]
    kinds = [value_kind(str(r.get("method", "relevance"))) for r in good]
    given = _check_scale(scale)
    scales = {kind: given or shared_scale(*(r for r, k in zip(checked, kinds) if k == kind)) or 1.0
              for kind in dict.fromkeys(kinds or ["relevance"])}
    items, arrays = [], iter(zip(checked, kinds))
    for record in records:
        if "error" in record:
            items.append(f'<div class="item error">{html.escape(str(record.get("sentence", "")))} '
                         f'&mdash; {html.escape(str(record["error"]))}</div>')
            continue
        relevance, kind = next(arrays)
        items.append(_html_item(record, relevance, scales[kind], kind))
    legend = " &nbsp; ".join(html_legend(s, kind=kind) for kind, s in scales.items())
    return _PAGE.format(title=html.escape(title), css=HTML_CSS, legend=legend, items="\n".join(items),
                        per_kind=" per kind of values" if len(scales) > 1 else "")


def _html_item(record: Mapping[str, Any], relevance: np.ndarray, scale: float, kind: str = "relevance") -> str:
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
    words = html_sentence(record["tokens"], relevance, scale, unknown=record.get("unknown", ()), kind=kind)
    return (f'<div class="item"><div>{words}</div>{body}'
            f'{conservation_html(record.get("conservation"), float(np.sum(relevance)))}</div>')


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

    if not _is_single(explanation):
        raise ValueError("`explanation` must be one concrete example (scalar target_score, no tracers); got "
                         f"target_score of shape {np.shape(explanation.target_score)}.")
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


def _is_single(explanation: Any) -> bool:
    """One example with concrete values: not a batch (vmap) and not traced (inside jit)."""
    import jax

    fields = ("relevance", "scores", "target_score", "params", "initial", "residual")
    leaves = jax.tree_util.tree_leaves([getattr(explanation, f, None) for f in fields])
    return np.ndim(explanation.target_score) == 0 and not any(isinstance(v, jax.core.Tracer) for v in leaves)


def _shapes(explanation: Any) -> str:
    """The fallback repr of a batched or traced explanation: its fields' shapes."""
    fields = ("relevance", "scores", "target_score", "residual")
    return "Explanation(" + ", ".join(f"{f} {tuple(np.shape(getattr(explanation, f)))}" for f in fields) + ")"


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

    A batched (``vmap``) or traced explanation gives one line with the fields' shapes.
    """
    if not _is_single(explanation):
        return _shapes(explanation)
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

    A batched (``vmap``) or traced explanation gives its fields' shapes.
    """
    if not _is_single(explanation):
        return f"<pre>{html.escape(_shapes(explanation))}</pre>"
    summary = explanation_summary(explanation, target)
    labels, words = _explanation_words(explanation, tokens)
    s = shared_scale(words) or 1.0
    head = "target ?" if summary["target"] is None else f"target {summary['target']}"
    conservation = {k: summary[k] for k in ("bias", "initial", "residual", "target_score")}
    return (f'<div class="lrpjax-explanation"><style>{HTML_CSS}</style>'
            f'<div><b>Explanation</b>: {head}, score {summary["target_score"]:+.4g} &nbsp; {html_legend(s)}</div>'
            f'<div>{html_sentence(labels, words, s)}</div>'
            f'{conservation_html(conservation, summary["relevance_sum"])}</div>')


# --- files -----------------------------------------------------------------------------------------

def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Writes ``data`` (str as UTF-8) to a temporary file beside ``path``, then renames it over
    ``path``: the previous file survives any failure (:func:`lrpjax.io.files.atomic_write`).

    Raises:
        OSError: the directory is missing or not writable.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    atomic_write(path, lambda handle: handle.write(payload))
