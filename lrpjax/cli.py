"""The ``lrpjax`` command line: explain sentiment predictions of the shipped SST BiLSTM.

    lrpjax explain "a gorgeous , witty , seductive movie ."
    lrpjax explain --method occlusion-p --target negative --table "not a bad film"
    lrpjax explain --input sentences.txt --output relevance.jsonl
    lrpjax explain --figure heatmap.pdf --latex heatmap.tex "a gorgeous , witty , seductive movie ."
    lrpjax report --input sentences.txt --methods lrp-all,gi,occlusion-f --output report.html
    lrpjax info

Exit status: 0 on success, 2 for bad options (argparse), 1 for bad input (an unreadable file or
checkpoint, an empty sentence). The model and jax are loaded only after the options are checked, so
``--help`` and option errors are quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

_METHODS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half", "gradient", "sa", "gi",
            "occlusion-f", "occlusion-p", "cd", "random")
_CLASS_NAMES = ("very negative", "negative", "neutral", "positive", "very positive")

_METHOD_HELP = """methods:
  lrp-all      LRP, signal-take-all product rule (Arras et al. 2017; the chapter's recommendation)
  lrp-prop     LRP, proportional product rule (default eps 0.2, as in the chapter)
  lrp-abs      LRP, absolute product rule
  lrp-half     LRP, half-half product rule
  gradient     d score[target] / d embedding, summed over the embedding (signed)
  sa           Sensitivity Analysis: squared gradient norm (the chapter's "Gradient")
  gi           Gradient x Input, summed over the embedding
  occlusion-f  score[target] minus the score with the word's embedding set to zero
  occlusion-p  the same on the softmax probability
  cd           Contextual Decomposition (Murdoch et al. 2018)
  random       seeded standard-normal noise (a baseline)

Red marks relevance for the explained class, blue against it. Colour is used on a terminal unless
NO_COLOR is set; otherwise each word is followed by its relevance, e.g. good[+1.2].

eps: the command line uses eps 0.001 for the LRP methods (0.2 for lrp-prop) and prints the eps it
used in its header. The Python API's lrpjax.rules.preset(name, eps=0.0) defaults to eps 0 (the
plain z-rule); pass eps=1e-3 there to get the command line's numbers.
"""


class _UsageError(Exception):
    """An option problem found after parsing (reported through argparse: exit status 2)."""


def _target(value: str) -> str:
    """argparse type of --target: 'pred', 0..4 or a class name; returns the value normalised."""
    text = value.strip().lower().replace("_", " ").replace("-", " ")
    if text in ("pred", "prediction", "predicted"):
        return "pred"
    if text.isdigit() and int(text) < len(_CLASS_NAMES):
        return text
    if text in _CLASS_NAMES:
        return text
    raise argparse.ArgumentTypeError(
        f"invalid target {value!r}: use 'pred', a class index 0..4 or a class name "
        f"({', '.join(_CLASS_NAMES)})")


def _eps(value: str) -> float:
    try:
        eps = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid eps {value!r}: expected a number >= 0") from None
    if not eps >= 0 or eps == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid eps {value!r}: expected a finite number >= 0")
    return eps


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a positive integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a positive integer")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lrpjax`` (sub-commands ``explain`` and ``info``)."""
    parser = argparse.ArgumentParser(
        prog="lrpjax",
        description="Layer-wise Relevance Propagation for LSTMs in JAX: explain the sentiment BiLSTM "
                    "shipped with the package (Stanford Sentiment Treebank, five classes: "
                    + ", ".join(_CLASS_NAMES) + ").",
        epilog='example: lrpjax explain "a gorgeous , witty , seductive movie ."  '
               "(see 'lrpjax explain --help')")
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    explain = commands.add_parser(
        "explain", help="classify sentences and show each word's relevance",
        description="Classify a sentence with the SST BiLSTM and colour each word by its relevance for the "
                    "explained class; or, with --input, explain a file of sentences (one per line) in "
                    "jit-compiled batches and write JSON lines.",
        epilog=_METHOD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    explain.add_argument("sentence", nargs="*", help="the sentence (several words are joined by spaces)")
    explain.add_argument("--method", "-m", choices=_METHODS, default="lrp-all", metavar="METHOD",
                         help="explanation method (default lrp-all); one of: " + ", ".join(_METHODS))
    explain.add_argument("--target", "-t", type=_target, default="pred",
                         help="class to explain: 'pred' (the predicted class, default), an index 0..4 "
                              "or a name such as 'positive' or 'very negative'")
    explain.add_argument("--eps", type=_eps, default=None,
                         help="LRP stabiliser eps (default 0.001, the reference implementation's value; "
                              "0.2 for lrp-prop as in the chapter; the word-deletion study uses 0.0019). "
                              "Note: the Python API's lrpjax.rules.preset(name, eps=0.0) defaults to 0")
    explain.add_argument("--checkpoint", default=None,
                         help="model checkpoint (.npz; default: $LRPJAX_SST_CHECKPOINT, else the shipped "
                              "checkpoints/sst_bilstm.npz)")
    explain.add_argument("--table", action="store_true",
                         help="also print a table of per-word relevance; for LRP methods also the target's "
                              "score, what the biases absorbed and the residual")
    explain.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                         help="colour the words (auto: on a terminal unless NO_COLOR is set)")
    _add_figure_options(explain)
    explain.add_argument("--input", "-i", metavar="FILE",
                         help="batch mode: explain every line of FILE ('-' for stdin)")
    explain.add_argument("--output", "-o", metavar="FILE",
                         help="batch mode: JSON lines output (default stdout)")
    explain.add_argument("--batch-size", type=_positive_int, default=64, help="sentences per compiled batch")
    explain.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    explain.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                         help="progress bar on stderr in batch mode (auto: only on a terminal)")
    info = commands.add_parser("info", help="describe the model checkpoint (sizes, accuracy, training command)",
                               description="Print the metadata of the model checkpoint.")
    info.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped one)")
    parser.commands = {"explain": explain, "info": info, "report": _add_report_parser(commands)}
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (argparse exits with 2 on bad options)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "info":
            return _info(args)
        if args.command == "report":
            return _report(args)
        _check_explain_options(args)
        return _explain(args)
    except _UsageError as error:
        parser.commands[args.command].error(str(error))  # usage + message, exit status 2
    except _InputError as error:
        sys.stderr.write(f"lrpjax: error: {error}\n")
        return 1
    except BrokenPipeError:
        return 0


class _InputError(Exception):
    """Bad input: an unreadable file or checkpoint, an empty sentence (exit status 1)."""


def _check_explain_options(args: argparse.Namespace) -> None:
    if args.input is not None and args.sentence:
        raise _UsageError("give either a sentence or --input FILE, not both")
    if args.input is None and not args.sentence:
        raise _UsageError('give a sentence (lrpjax explain "a fine film") or --input FILE')
    if args.input is None and args.output is not None:
        raise _UsageError("--output is for batch mode (--input FILE)")
    if args.input is not None and (args.figure is not None or args.latex is not None):
        raise _UsageError("--figure/--png and --latex draw one sentence; use --html for a batch")
    _check_figure_path(args.figure)
    if args.eps is not None and not args.method.startswith("lrp-"):
        raise _UsageError(f"--eps applies to the LRP methods, not to {args.method}")


def _load_model(path: str | None):
    from lrpjax.checkpoints import CheckpointError
    from lrpjax.sst import SSTModel

    try:
        return SSTModel.load(path)
    except (CheckpointError, OSError) as error:
        raise _InputError(f"cannot load the model: {error}") from None


def _info(args: argparse.Namespace) -> int:
    model = _load_model(args.checkpoint)
    meta = model.metadata
    E, H, C = model.sizes
    print(f"SST BiLSTM: vocabulary {len(model.vocab)} words, embeddings E = {E}, hidden H = {H} per "
          f"direction, {C} classes")
    for split in ("dev", "test"):
        acc = meta.get(f"{split}_accuracy")
        if acc:
            print(f"{split} sentences: five-class accuracy {acc['five_class']:.1%}, binary {acc['binary']:.1%}")
    if "command" in meta:
        print(f"trained with: {meta['command']}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    if args.input is not None:
        lines = _read_lines(args.input)
    model = _load_model(args.checkpoint)
    if args.input is None:
        return _explain_one(model, args)
    return _explain_file(model, args, lines)


def _explain_one(model, args: argparse.Namespace) -> int:
    from lrpjax import plot

    text = " ".join(args.sentence)
    tokens, _, unknown = model.encode(text)
    if not tokens:
        raise _InputError("the sentence is empty: nothing to explain")
    if unknown:
        _warn_unknown(unknown)
    result = model.explain_sentence(text, args.method, args.target, args.eps, seed=args.seed)
    names = _CLASS_NAMES
    probs = ", ".join(f"{name} {p:.3f}" for name, p in zip(names, result.probabilities))
    print(f"prediction: {names[result.prediction]} ({result.prediction})   probabilities: {probs}")
    eps = f", eps {result.eps:g}" if result.eps is not None else ""
    print(f"relevance for: {names[result.target]} ({result.target})   method: {result.method}{eps}")
    if args.color == "always" or (args.color == "auto" and plot.use_color(sys.stdout)):
        print(plot.ansi_sentence(result.tokens, result.relevance))
    else:
        print(plot.plain_sentence(result.tokens, result.relevance))
    _write_explanation(model, result, args)
    return 0


# --- figures, pages and the report (the version option, --table's conservation, `lrpjax report`) ---

def _add_version(parser: argparse.ArgumentParser) -> None:
    from lrpjax import __version__

    parser.add_argument("--version", action="version", version=f"lrpjax {__version__}")


def _add_figure_options(explain: argparse.ArgumentParser) -> None:
    explain.add_argument("--html", metavar="FILE",
                         help="write a self-contained HTML page (colours, numbers, legend, probabilities)")
    explain.add_argument("--figure", "--png", dest="figure", metavar="FILE",
                         help="write a text heatmap of the sentence; PNG, PDF or SVG by the extension "
                              "(single sentence)")
    explain.add_argument("--latex", metavar="FILE",
                         help="write a LaTeX snippet, one \\colorbox per word (needs \\usepackage{xcolor}; "
                              "single sentence)")


def _check_figure_path(path: str | None) -> None:
    if path is not None and os.path.splitext(path)[1].lower() not in (".png", ".pdf", ".svg"):
        raise _UsageError(f"--figure {path!r}: the file must end in .png, .pdf or .svg")


def _conservation(model, result) -> dict | None:
    """LRP bookkeeping for --table and --html (None for the other methods)."""
    from lrpjax.report import conservation

    return conservation(model, result)


def _write_explanation(model, result, args: argparse.Namespace) -> None:
    """--table (with the LRP bookkeeping), --html, --figure and --latex for one explained sentence."""
    from lrpjax import plot

    names = _CLASS_NAMES
    needs = args.table or args.html
    result.conservation = _conservation(model, result) if needs else None
    if args.table:
        print(plot.relevance_table(result.tokens, result.relevance, result.unknown, result.conservation))
    title = f"{result.method} relevance for '{names[result.target]}' (predicted: {names[result.prediction]})"
    outputs = []
    if args.html:
        outputs.append((args.html, lambda: plot.write_atomic(
            args.html, plot.html_page([result.to_json()], title="lrpjax: " + title))))
    if args.figure:
        outputs.append((args.figure, lambda: plot.sentence_heatmap(
            result.tokens, {result.method: result.relevance}, args.figure, title=title,
            colorbar_label=f"relevance for '{names[result.target]}'")))
    if args.latex:
        outputs.append((args.latex, lambda: plot.write_atomic(
            args.latex, plot.latex_heatmap([(result.method, result.tokens, result.relevance)]))))
    for path, write in outputs:
        try:
            write()
        except OSError as error:
            raise _InputError(f"cannot write {path!r}: {error}") from None


def _methods_list(value: str) -> list[str]:
    """argparse type of report --methods: comma-separated method names, distinct."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    bad = [name for name in names if name not in _METHODS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"invalid methods {value!r}: give comma-separated names from {', '.join(_METHODS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"invalid methods {value!r}: a method is named twice")
    return names


def _add_report_parser(commands) -> argparse.ArgumentParser:
    report = commands.add_parser(
        "report", help="write one offline HTML page: many sentences, several methods side by side",
        description="Explain every line of a file with several methods and write one self-contained HTML "
                    "page (no network needed): heatmaps with the numbers, legends, predictions, the LRP "
                    "conservation figures, a search box and sorting by score, prediction, length or a "
                    "method's relevance.",
        epilog=_METHOD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("--input", "-i", metavar="FILE", required=True,
                        help="sentences, one per line ('-' for stdin)")
    report.add_argument("--output", "-o", metavar="FILE", required=True, help="the HTML page to write")
    report.add_argument("--methods", "-m", type=_methods_list, default=["lrp-all", "gi", "occlusion-f"],
                        help="comma-separated methods (default lrp-all,gi,occlusion-f)")
    report.add_argument("--target", "-t", type=_target, default="pred",
                        help="class to explain: 'pred' (default), an index 0..4 or a class name")
    report.add_argument("--eps", type=_eps, default=None,
                        help="LRP stabiliser (default 0.001, 0.2 for lrp-prop; the API's preset() defaults to 0)")
    report.add_argument("--scale", choices=("method", "sentence"), default="method",
                        help="colour scale: one per method for the whole page (default) or per sentence")
    report.add_argument("--title", default=None, help="the page's title")
    report.add_argument("--no-conservation", action="store_true",
                        help="skip the LRP conservation figures (one extra pass per sentence)")
    report.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped one)")
    report.add_argument("--batch-size", type=_positive_int, default=64, help="sentences per compiled batch")
    return report


def _report(args: argparse.Namespace) -> int:
    from lrpjax.report import write_report

    lines = _read_lines(args.input)
    if not lines:
        raise _InputError(f"input file {args.input!r} holds no lines")
    model = _load_model(args.checkpoint)
    target = int(args.target) if args.target.isdigit() else args.target
    title = args.title or f"lrpjax report: {args.input}"
    try:
        summary = write_report(args.output, lines, args.methods, model=model, target=target, eps=args.eps,
                               scale=args.scale, title=title, batch_size=args.batch_size,
                               with_conservation=not args.no_conservation)
    except OSError as error:
        raise _InputError(f"cannot write {args.output!r}: {error}") from None
    errors = f" ({summary['errors']} could not be explained)" if summary["errors"] else ""
    sys.stderr.write(f"lrpjax: wrote {args.output}: {summary['sentences']} sentence(s){errors}, methods "
                     f"{', '.join(args.methods)}\n")
    return 0


def _read_lines(path: str) -> list[str]:
    try:
        if path == "-":
            return sys.stdin.read().splitlines()
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise _InputError(f"cannot read input file {path!r}: {error}") from None


def _explain_file(model, args: argparse.Namespace, lines: list[str]) -> int:
    from lrpjax import plot
    from lrpjax.progress import ProgressBar

    if not lines:
        raise _InputError(f"input file {args.input!r} holds no lines")
    empty = [n for n, line in enumerate(lines, start=1) if not line.strip()]
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (", ..." if len(empty) > 20 else "")
        sys.stderr.write(f"lrpjax: warning: {len(empty)} empty line(s) ({shown}): written as records "
                         "with an 'error' field\n")
    force = {"auto": None, "always": True, "never": False}[args.progress]
    with ProgressBar(len(lines), "explain", force=force) as bar:
        results = model.explain_many(lines, args.method, args.target, args.eps, batch_size=args.batch_size,
                                     seed=args.seed, progress=bar.update)
        bar.update(len(empty))
    unknown = [word for r in results if not isinstance(r, str) for word in r.unknown]
    if unknown:
        _warn_unknown(unknown)
    records = []
    for number, (line, result) in enumerate(zip(lines, results), start=1):
        if isinstance(result, str):
            record = {"line": number, "sentence": line, "error": result}
        else:
            record = {"line": number, **result.to_json()}
        records.append(record)
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    if args.output is None or args.output == "-":
        sys.stdout.write(text)
    else:
        _write_text(args.output, text)
    if args.html:
        _write_text(args.html, plot.html_page(records, title=f"lrpjax: {args.method} relevance, {args.input}"))
    n_ok = len(lines) - len(empty)
    where = "stdout" if args.output in (None, "-") else args.output
    sys.stderr.write(f"lrpjax: explained {n_ok} sentence(s) with {args.method}; wrote {len(records)} "
                     f"record(s) to {where}\n")
    return 0


def _warn_unknown(words: list[str]) -> None:
    unique = list(dict.fromkeys(words))
    shown = ", ".join(unique[:30]) + (", ..." if len(unique) > 30 else "")
    sys.stderr.write(f"lrpjax: warning: {len(unique)} word(s) not in the vocabulary, read as <unk>: {shown}\n")


def _write_text(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        raise _InputError(f"cannot write {path!r}: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
