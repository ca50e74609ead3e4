"""An offline HTML report: many sentences, several explanation methods side by side.

    from lrpjax.viz import report
    page = report.report_html(sentences, {"lrp-all": records, "gi": other_records})

``records`` are one dict per sentence (``tokens``, ``relevance`` and, when known, ``prediction``,
``probabilities``, ``scores``, ``target``, ``conservation``) or an error message; the SST application
writes such pages from raw sentences (:func:`lrpjax.app.report.write_report`, ``lrpjax report``). The page is one self-contained file (inline CSS and JavaScript, nothing fetched): a row per
sentence with the prediction, its probability, the explained class's score and one heatmap per
method (each word's relevance printed under it), a colour legend per method, the conservation
figures of the LRP methods (sum of relevance, what the biases absorbed, the residual), a search box
that keeps only the sentences containing every typed word, and sorting by input order, prediction,
probability, score, length or any method's total relevance (click a column's sort button; click
again to reverse).
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import numpy as np

from lrpjax.viz import render

__all__ = ["SCALES", "report_html"]

# "method": one colour scale per method for the whole page; "sentence": each heatmap its own.
SCALES = ("method", "sentence")


def _record(item: Any) -> dict[str, Any]:
    """A result as a dict: SentenceExplanation -> to_json(), an error message -> {"error": ...}."""
    if isinstance(item, str):
        return {"error": item}
    if isinstance(item, Mapping):
        return dict(item)
    if hasattr(item, "to_json"):
        return item.to_json()
    raise TypeError(f"results must be SentenceExplanation, dict or str (an error); got {type(item).__name__}.")


def _check_results(sentences: Sequence[str], results: Mapping[str, Sequence[Any]]) -> dict[str, list[dict]]:
    if isinstance(sentences, str):
        raise TypeError("`sentences` must be a sequence of sentences, not one str.")
    if not isinstance(results, Mapping) or not results:
        raise ValueError("`results` must map at least one method name to its results.")
    out = {}
    for name, items in results.items():
        if len(items) != len(sentences):
            raise ValueError(f"`results[{name!r}]` must hold one result per sentence ({len(sentences)}); "
                             f"got {len(items)}.")
        out[str(name)] = [_record(item) for item in items]
    return out


def _method_scales(records: dict[str, list[dict]], scale: str) -> dict[str, float | None]:
    if scale not in SCALES:
        raise ValueError(f"`scale` must be one of {', '.join(SCALES)}; got {scale!r}.")
    if scale == "sentence":
        return {name: None for name in records}
    return {name: render.shared_scale(*(r["relevance"] for r in recs if "error" not in r and "relevance" in r))
            or 1.0 for name, recs in records.items()}


def report_html(sentences: Sequence[str], results: Mapping[str, Sequence[Any]], *,
                title: str = "lrpjax report", scale: str = "method",
                notes: Sequence[str] = ()) -> str:
    """The report page for sentences explained by several methods.

    Args:
        sentences: the N sentences as given (shown for empty ones, searched by the search box).
        results: ``{method name: N results}``, each a ``SentenceExplanation``, its ``to_json()``
            dict (optionally with a "conservation" entry, see :func:`lrpjax.app.report.conservation`) or an error
            message (str) for a sentence that could not be explained. Prediction, probabilities
            and scores are read from the first method's results when they have them (records of any
            model: only "tokens" and "relevance" are needed; a per-step model's (steps, T) relevance is
            shown step by step).
        title: the page's title.
        scale: ``"method"``: one colour scale per method for the whole page (a legend per method);
            ``"sentence"``: each heatmap scaled by its own largest |relevance|.
        notes: lines shown under the title (e.g. the model and the options used).

    Returns:
        The page, a self-contained HTML document.

    Raises:
        ValueError: a method without one result per sentence, an empty ``results``, a bad ``scale``, a
            record without "tokens" and "relevance" (naming it).
    """
    records = _check_results(sentences, results)
    scales = _method_scales(records, scale)
    names = list(records)
    head = _header(names, scales)
    rows = [_row(n, sentence, [records[name][n] for name in names], names, scales)
            for n, sentence in enumerate(sentences)]
    meta = "".join(f"<p class=\"lrp-meta\">{html.escape(str(line))}</p>" for line in notes)
    return _PAGE.format(title=html.escape(title), css=render.HTML_CSS, meta=meta, head=head,
                        rows="\n".join(rows), count=len(sentences), script=_SCRIPT,
                        cols='<col class="num"><col class="info">' + "<col>" * len(names))


def _header(names: list[str], scales: dict[str, float | None]) -> str:
    def button(key: str, text: str) -> str:
        return f'<button class="sort" data-key="{key}" title="sort (click again to reverse)">{text}</button>'

    cells = [f"<th>{button('index', '#')}</th>",
             f"<th>{button('pred', 'prediction')} {button('prob', 'p')} {button('score', 'score')} "
             f"{button('length', 'length')}</th>"]
    for k, name in enumerate(names):
        scale = scales[name]
        kind = render.value_kind(name)
        legend = (render.html_legend(scale, kind=kind) if scale is not None
                  else f"colours scaled per sentence ({html.escape(render.KINDS[kind][1])})")
        cells.append(f'<th><div class="mname">{html.escape(name)} {button(f"r{k}", "sort by &Sigma; relevance")}'
                     f"</div><div>{legend}</div></th>")
    return "<tr>" + "".join(cells) + "</tr>"


def _summary(first: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The info cell's lines and the sort keys of a record of any model: only ``tokens`` and ``relevance``
    are required; the prediction, probabilities, scores and target are shown when the record has them
    (a per-step record: the prediction at every step)."""
    lines: list[str] = []
    data: dict[str, Any] = {"length": len(first["tokens"])}
    pred, target = first.get("prediction"), first.get("target")
    probabilities, scores = first.get("probabilities"), first.get("scores")
    if isinstance(pred, (int, np.integer)) and not isinstance(pred, bool):
        pred = int(pred)
        data["pred"] = pred
        lines.append(f"<b>{html.escape(str(first.get('prediction_name', pred)))}</b>")
        if isinstance(probabilities, Sequence) and 0 <= pred < len(probabilities) and \
                isinstance(probabilities[pred], (int, float)):
            data["prob"] = float(probabilities[pred])
            lines.append(f"p {float(probabilities[pred]):.3f}")
    elif isinstance(pred, Sequence) and pred:
        names = first.get("prediction_name")
        shown = names if isinstance(names, Sequence) and len(names) == len(pred) else pred
        lines.append("per step: " + html.escape(" ".join(map(str, shown))))
    if target is not None:
        lines.append(f"explained: {html.escape(str(first.get('target_name', target)))}")
    if isinstance(target, (int, np.integer)) and isinstance(scores, Sequence) and 0 <= int(target) < len(scores) \
            and isinstance(scores[int(target)], (int, float)):
        data["score"] = float(scores[int(target)])
        lines.append(f"score {float(scores[int(target)]):+.3f}")
    lines.append(f"{len(first['tokens'])} words")
    return lines, data


def _check_record(name: str, n: int, rec: Mapping[str, Any]) -> None:
    if "error" in rec:
        return
    missing = [key for key in ("tokens", "relevance") if key not in rec]
    if missing:
        raise ValueError(f"`results[{name!r}][{n}]` must have 'tokens' and 'relevance' (or 'error'); it lacks "
                         f"{missing}.")
    shape = np.shape(rec["relevance"])
    if len(shape) not in (1, 2) or shape[-1] != len(rec["tokens"]):
        raise ValueError(f"`results[{name!r}][{n}]['relevance']` must have shape (T,) or (steps, T) with T = "
                         f"{len(rec['tokens'])} tokens; got {shape}.")


def _row(n: int, sentence: str, recs: list[dict], names: list[str], scales: dict[str, float | None]) -> str:
    for name, rec in zip(names, recs):
        _check_record(name, n, rec)
    first = next((r for r in recs if "error" not in r), None)
    text = sentence if first is None else " ".join([sentence] + list(first["tokens"]))
    data = {"index": n, "text": text.lower()}
    if first is None:
        error = html.escape(str(recs[0]["error"]))
        error_cells = f'<td class="num">{n + 1}</td><td colspan="{len(names) + 1}" class="error">' \
                      f"{html.escape(sentence)} &mdash; {error}</td>"
        return f"<tr class=\"row\" {_data(data)}>{error_cells}</tr>"
    lines, keys = _summary(first)
    data.update(keys)
    cells = [f'<td class="num">{n + 1}</td>', f'<td class="info">{"<br>".join(lines)}</td>']
    for k, (name, rec) in enumerate(zip(names, recs)):
        if "error" in rec:
            cells.append(f'<td class="error">{html.escape(str(rec["error"]))}</td>')
            continue
        relevance = np.asarray(rec["relevance"], dtype=np.float64)
        kind = render.value_kind(name)
        data[f"r{k}"] = float(relevance.sum())
        unknown = rec.get("unknown", ())
        if relevance.ndim == 2:       # one output per step: a (step x token) view, one heatmap per step
            words = "".join(f"<div>step {step + 1}: "
                            f"{render.html_sentence(rec['tokens'], row, scales[name], unknown=unknown, kind=kind)}"
                            "</div>" for step, row in enumerate(relevance))
        else:
            words = render.html_sentence(rec["tokens"], relevance, scales[name], unknown=unknown, kind=kind)
        cells.append(f'<td class="m" data-method="{html.escape(name)}">{words}'
                     f"{_conservation_line(rec, float(relevance.sum()))}</td>")
    return f"<tr class=\"row\" {_data(data)}>{''.join(cells)}</tr>"


def _conservation_line(rec: Mapping[str, Any], total: float) -> str:
    parts = [f"&Sigma; {total:+.3g}"]
    cons = rec.get("conservation")
    if cons:
        parts += [f"biases {cons['bias']:+.3g}", f"residual {cons['residual']:+.3g}",
                  f"score {cons['target_score']:+.3g}"]
    eps = rec.get("eps")
    if eps is not None:
        parts.append(f"eps {eps:g}")
    return '<div class="cons">' + " &middot; ".join(parts) + "</div>"


def _data(values: Mapping[str, Any]) -> str:
    out = []
    for key, value in values.items():
        text = format(value, ".9g") if isinstance(value, float) else str(value)
        out.append(f'data-{key}="{html.escape(text, quote=True)}"')
    return " ".join(out)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table.report {{ border-collapse: collapse; width: 100%; table-layout: fixed; }}
col.num {{ width: 3em; }}
col.info {{ width: 11em; }}
table.report th, table.report td {{ border-bottom: 1px solid #ddd; padding: 0.4em; vertical-align: top;
  text-align: left; }}
table.report th {{ position: sticky; top: 0; background: #f6f6f6; }}
td.num {{ color: #666; }}
td.info {{ font-size: 0.85em; overflow-wrap: anywhere; }}
.mname {{ font-weight: bold; }}
.cons {{ font-size: 0.75em; color: #555; }}
.error {{ color: #a00; }}
button.sort {{ font-size: 0.8em; cursor: pointer; }}
button.sort.active {{ background: #333; color: #fff; }}
#controls {{ margin: 0.8em 0; display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; align-items: center; }}
#status {{ color: #444; }}
#search {{ width: 22em; font-size: 1em; }}
{css}
</style>
</head>
<body>
<h1>{title}</h1>
{meta}
<div id="controls"><input id="search" type="search" placeholder="search: only sentences with every word"
 aria-label="search sentences"> <label><input id="numbers" type="checkbox" checked> show numbers</label>
 <span id="status">{count} sentence(s)</span></div>
<table class="report">{cols}<thead>{head}</thead>
<tbody id="rows">
{rows}
</tbody></table>
<script>
{script}
</script>
</body>
</html>
"""

# Sorting and search run on the rows' data-* attributes; no network, no libraries.
_SCRIPT = """(function () {
  var body = document.getElementById('rows');
  var rows = Array.prototype.slice.call(body.querySelectorAll('tr.row'));
  var key = 'index', dir = 1;
  var names = {index: 'input order', pred: 'prediction', prob: 'probability', score: 'score',
               length: 'length'};
  function value(row, k) {
    var v = row.dataset[k];
    return (v === undefined || v === '') ? null : parseFloat(v);
  }
  function compare(a, b) {
    var x = value(a, key), y = value(b, key);
    if (x === null || y === null) {
      if (x !== y) { return x === null ? 1 : -1; }
    } else if (x !== y) { return (x - y) * dir; }
    return value(a, 'index') - value(b, 'index');
  }
  function update() {
    var terms = document.getElementById('search').value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.dataset.text || '';
      var ok = terms.every(function (t) { return text.indexOf(t) >= 0; });
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    rows.slice().sort(compare).forEach(function (row) { body.appendChild(row); });
    var label = names[key] || ('relevance of ' + (document.querySelector('button[data-key="' + key + '"]')
      .closest('th').querySelector('.mname').firstChild.textContent.trim()));
    document.getElementById('status').textContent = shown + ' of ' + rows.length + ' sentence(s) shown, sorted by '
      + label + (dir > 0 ? ' (ascending)' : ' (descending)');
    Array.prototype.forEach.call(document.querySelectorAll('button.sort'), function (b) {
      b.classList.toggle('active', b.dataset.key === key);
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('button.sort'), function (b) {
    b.addEventListener('click', function () {
      if (b.dataset.key === key) { dir = -dir; } else { key = b.dataset.key; dir = key === 'index' ? 1 : -1; }
      update();
    });
  });
  document.getElementById('search').addEventListener('input', update);
  document.getElementById('numbers').addEventListener('change', function () {
    document.body.classList.toggle('lrp-hide-numbers', !this.checked);
  });
  update();
})();"""
