"""The SST application's report: raw sentences explained with several methods and written as one offline
HTML page (:func:`lrpjax.viz.report.report_html`), with the LRP bookkeeping of every sentence.

    from lrpjax.app import report
    report.write_report("report.html", ["a fine film", "a dull , boring film"],
                        methods=("lrp-all", "gi", "occlusion-f"))
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from lrpjax.app import model as sst
from lrpjax.viz import render
from lrpjax.viz.report import SCALES, report_html

__all__ = ["SCALES", "conservation", "explain_report", "report_html", "write_report"]


def conservation(model: Any, result: Any) -> dict[str, float] | None:
    """The LRP bookkeeping of one explained sentence: ``.full()`` on its embedded words.

    Args:
        model: the :class:`lrpjax.app.model.SSTModel` that explained it, or a model with a
            ``conservation(result)`` method of its own (:class:`lrpjax.app.bundle.TextModel`).
        result: its :class:`lrpjax.app.model.SentenceExplanation` (an LRP method; others give None).

    Returns:
        ``{"target_score", "relevance_sum", "bias", "initial", "residual"}``: the explained class's
        score, the total input relevance, what the biases absorbed, what reached the initial states
        and what the stabilisers absorbed (``target_score = relevance_sum + bias + initial +
        residual``); None for a method without a conservation residual (only LRP has one). The sentence is padded to its bucket length
        (the same few lengths as batch explanation), so only a handful of compilations happen.
    """
    import jax.numpy as jnp

    own = getattr(model, "conservation", None)
    if callable(own):          # a model of its own (lrpjax.app.bundle.TextModel)
        return own(result)
    method = sst.make_method(result.method, result.eps)
    if not method.has_residual:
        return None
    x = model.embed(result.tokens)
    T = x.shape[0]
    length = sst.bucket_length(T)
    x = jnp.concatenate([x, jnp.zeros((length - T, x.shape[1]), x.dtype)])
    mask = jnp.arange(length) < T
    full = method.full(model.params["model"], x, int(result.target), mask=mask)
    summary = render.explanation_summary(full, int(result.target))
    return {key: summary[key] for key in ("target_score", "relevance_sum", "bias", "initial", "residual")}


def explain_report(sentences: Sequence[str], methods: Sequence[str] = ("lrp-all", "gi", "occlusion-f"), *,
                   model: Any = None, target: int | str = "pred", eps: float | None = None,
                   batch_size: int = 64, with_conservation: bool = True,
                   progress: Callable[[int], None] | None = None) -> dict[str, list[Any]]:
    """Explains every sentence with every method (batched, :meth:`~lrpjax.app.model.SSTModel.explain_many`).

    Args:
        sentences: raw sentences; empty ones become error messages.
        methods: names from :data:`lrpjax.app.model.METHODS`, distinct.
        model: an :class:`lrpjax.app.model.SSTModel` (None: the shipped one).
        target: ``"pred"`` or a class for every sentence.
        eps: LRP stabiliser (None: each LRP method's default).
        batch_size: sentences per compiled batch.
        with_conservation: add the LRP bookkeeping (:func:`conservation`) to each LRP record.
        progress: called with the number of sentences finished, per method and batch.

    Returns:
        ``{method: [record dict or error str per sentence]}``.

    Raises:
        ValueError: no methods, a repeated or unknown method, a bad target.
    """
    methods = list(methods)
    if not methods:
        raise ValueError("`methods` must name at least one method.")
    unknown = [m for m in methods if m not in sst.METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))} in `methods`; choose from "
                         f"{', '.join(sst.METHODS)}.")
    if len(set(methods)) != len(methods):
        raise ValueError(f"`methods` must be distinct; got {', '.join(methods)}.")
    model = sst.SSTModel.load() if model is None else model
    out: dict[str, list[Any]] = {}
    for name in methods:
        results = model.explain_many(list(sentences), name, target, eps if name.startswith("lrp-") else None,
                                     batch_size=batch_size, progress=progress)
        records: list[Any] = []
        for result in results:
            if isinstance(result, str):
                records.append(result)
                continue
            record = result.to_json()
            if with_conservation:
                books = conservation(model, result)
                if books is not None:
                    record["conservation"] = books
            records.append(record)
        out[name] = records
    return out


def write_report(path: str | os.PathLike, sentences: Sequence[str],
                 methods: Sequence[str] = ("lrp-all", "gi", "occlusion-f"), *, model: Any = None,
                 target: int | str = "pred", eps: float | None = None, scale: str = "method",
                 title: str | None = None, batch_size: int = 64, with_conservation: bool = True,
                 progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Explains ``sentences`` with ``methods`` and writes the offline report page to ``path``.

    The arguments are those of :func:`explain_report` and :func:`report_html`. The page is written
    to a temporary file and renamed, so a previous report survives a failure.

    Returns:
        ``{"sentences": N, "errors": number of sentences that could not be explained}``.
    """
    if scale not in SCALES:
        raise ValueError(f"`scale` must be one of {', '.join(SCALES)}; got {scale!r}.")
    results = explain_report(sentences, methods, model=model, target=target, eps=eps, batch_size=batch_size,
                             with_conservation=with_conservation, progress=progress)
    first = results[next(iter(results))]
    errors = sum(isinstance(r, str) for r in first)
    target_text = "the predicted class" if target == "pred" else f"class {target}"
    notes = [f"{len(sentences)} sentence(s), methods: {', '.join(results)}; explained class: {target_text}; "
             f"colour scale: {'one per method' if scale == 'method' else 'per sentence'}."]
    page = report_html(sentences, results, title=title or "lrpjax report", scale=scale, notes=notes)
    render.write_atomic(path, page)
    return {"sentences": len(sentences), "errors": errors}
