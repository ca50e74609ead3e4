"""Pictures of word-level relevance: terminal colours, a standalone HTML page, matplotlib figures.

Relevance is shown on a diverging scale, red for positive (evidence for the target class), blue for
negative (evidence against), white for zero, each sentence normalised by its largest absolute
relevance, as in the heatmaps of the chapter (Fig. 11.3). Only numpy is needed for the text forms;
matplotlib is imported when a figure is drawn (with the non-interactive Agg backend).
"""

from __future__ import annotations

import html
import os
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "relevance_colors",
    "ansi_sentence",
    "plain_sentence",
    "relevance_table",
    "use_color",
    "html_page",
    "relevance_figure",
    "deletion_figure",
]


def _check(tokens: Sequence[str], relevance) -> np.ndarray:
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim != 1 or r.shape[0] != len(tokens):
        raise ValueError(f"`relevance` must have shape (T,) = ({len(tokens)},) to match `tokens`; got {r.shape}.")
    if not np.all(np.isfinite(r)):
        raise ValueError("`relevance` contains non-finite values.")
    return r


def relevance_colors(relevance) -> np.ndarray:
    """RGB colours (T, 3) in 0..255 on the diverging white-red / white-blue scale.

    ``a = R_t / max |R|``: a > 0 gives (255, 255(1-a), 255(1-a)), a < 0 gives
    (255(1-|a|), 255(1-|a|), 255). All-zero relevance is white.
    """
    r = np.asarray(relevance, dtype=np.float64)
    scale = np.max(np.abs(r)) if r.size else 0.0
    a = r / scale if scale > 0 else np.zeros_like(r)
    fade = np.round(255 * (1 - np.abs(a))).astype(int)
    full = np.full_like(fade, 255)
    red = np.where(a >= 0, full, fade)
    blue = np.where(a >= 0, fade, full)
    return np.stack([red, fade, blue], axis=-1)


def ansi_sentence(tokens: Sequence[str], relevance) -> str:
    """The sentence with each word on a 24-bit (truecolor) ANSI background, black text."""
    r = _check(tokens, relevance)
    parts = []
    for word, (red, green, blue) in zip(tokens, relevance_colors(r)):
        parts.append(f"\x1b[48;2;{red};{green};{blue}m\x1b[38;2;0;0;0m{word}\x1b[0m")
    return " ".join(parts)


def plain_sentence(tokens: Sequence[str], relevance) -> str:
    """The sentence with each word's relevance after it: ``good[+1.23] movie[-0.04]``."""
    r = _check(tokens, relevance)
    return " ".join(f"{word}[{value:+.3g}]" for word, value in zip(tokens, r))


def relevance_table(tokens: Sequence[str], relevance, unknown: Sequence[str] = ()) -> str:
    """A fixed-width table: position, word, relevance, share of the total absolute relevance."""
    r = _check(tokens, relevance)
    total = np.sum(np.abs(r))
    width = max([4] + [len(t) for t in tokens])
    lines = [f"{'pos':>3}  {'word':<{width}}  {'relevance':>11}  {'|share|':>7}"]
    unknown = set(unknown)
    for t, (word, value) in enumerate(zip(tokens, r)):
        share = abs(value) / total if total > 0 else 0.0
        flag = "  <unk>" if word in unknown else ""
        lines.append(f"{t:>3}  {word:<{width}}  {value:>+11.4e}  {share:>7.1%}{flag}")
    lines.append(f"{'':>3}  {'sum':<{width}}  {np.sum(r):>+11.4e}")
    return "\n".join(lines)


def use_color(stream: Any, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only on a terminal and only when ``NO_COLOR`` is unset (https://no-color.org)."""
    if environ.get("NO_COLOR", "") != "":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):
        return False


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; line-height: 2.2; }}
.sentence span {{ padding: 0.15em 0.25em; border-radius: 0.2em; color: #000; }}
.meta {{ color: #555; font-size: 0.9em; line-height: 1.4; }}
.item {{ border-bottom: 1px solid #ddd; padding: 0.5em 0; }}
.error {{ color: #a00; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="meta">Red: relevance for the target class; blue: against it. Colours are scaled per sentence by
the largest absolute relevance; hover a word for its value.</p>
{items}
</body>
</html>
"""


def html_page(records: Sequence[Mapping[str, Any]], title: str = "lrpjax relevance") -> str:
    """A standalone HTML page, one block per sentence.

    Args:
        records: dicts with "tokens" (T,), "relevance" (T,) and optionally "prediction_name",
            "target_name", "method", "probabilities", "unknown", or "error" and "sentence" for a
            sentence that could not be explained (as written by ``SentenceExplanation.to_json``).
        title: the page title.
    """
    items = []
    for record in records:
        if "error" in record:
            items.append(f'<div class="item error">{html.escape(str(record.get("sentence", "")))} '
                         f'&mdash; {html.escape(str(record["error"]))}</div>')
            continue
        tokens, relevance = record["tokens"], _check(record["tokens"], record["relevance"])
        spans = []
        for word, value, (red, green, blue) in zip(tokens, relevance, relevance_colors(relevance)):
            spans.append(f'<span style="background-color: rgb({red},{green},{blue})" '
                         f'title="{value:+.4g}">{html.escape(word)}</span>')
        meta = []
        if "prediction_name" in record:
            meta.append(f"prediction: <b>{html.escape(record['prediction_name'])}</b>")
        if "probabilities" in record:
            meta.append("p = " + ", ".join(f"{p:.3f}" for p in record["probabilities"]))
        if "target_name" in record:
            meta.append(f"explained class: <b>{html.escape(record['target_name'])}</b>")
        if "method" in record:
            eps = record.get("eps")
            meta.append(f"method: {html.escape(record['method'])}" + (f" (eps {eps:g})" if eps is not None else ""))
        if record.get("unknown"):
            meta.append("unknown words: " + html.escape(", ".join(record["unknown"])))
        items.append(f'<div class="item"><div class="sentence">{" ".join(spans)}</div>'
                     f'<div class="meta">{" &middot; ".join(meta)}</div></div>')
    return _PAGE.format(title=html.escape(title), items="\n".join(items))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def relevance_figure(tokens: Sequence[str], relevance, path: str | os.PathLike, title: str = "") -> None:
    """Saves a bar chart of word-level relevance (one bar per word, coloured like the text)."""
    r = _check(tokens, relevance)
    plt = _pyplot()
    width = max(4.0, 0.45 * len(tokens) + 1.5, 0.07 * len(title) + 1.0)
    fig, ax = plt.subplots(figsize=(width, 3.2))
    ax.bar(np.arange(len(tokens)), r, color=relevance_colors(r) / 255.0, edgecolor="0.3", linewidth=0.5)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xticks(np.arange(len(tokens)))
    ax.set_xticklabels(tokens, rotation=60, ha="right")
    ax.set_ylabel("relevance")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def deletion_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike,
                    panels: Sequence[tuple[str, str]] = (("correct", "initially correct: most relevant deleted first"),
                                                         ("false", "initially false: least relevant deleted first")),
                    stds: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> None:
    """Saves the word-deletion curves (Fig. 11.5): accuracy after 0..K deletions, one panel per part.

    Args:
        curves: ``{method: {panel key: accuracies (K+1,)}}``.
        path: the PNG to write.
        panels: (panel key, panel title) pairs, left to right.
        stds: optional ``{method: {panel key: std (K+1,)}}`` drawn as a band (the random baseline).
    """
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
