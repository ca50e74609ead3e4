"""The ``lrpjax`` command line: explain sentiment predictions of the shipped SST BiLSTM, or of any checkpoint
over token ids (``--checkpoint``, :mod:`lrpjax.app.bundle`).

    lrpjax explain "a gorgeous , witty , seductive movie ."
    lrpjax explain --checkpoint mine.npz --methods lrp-all,gi --figure compare.png "a fine film"
    lrpjax explain --method occlusion-p --target negative --table "not a bad film"
    lrpjax explain --input sentences.txt --output relevance.jsonl [--resume]
    lrpjax explain --figure heatmap.pdf --latex heatmap.tex "a gorgeous , witty , seductive movie ."
    lrpjax report --input sentences.txt --methods lrp-all,gi,occlusion-f --output report.html
    lrpjax info
    lrpjax explain --checkpoint checkpoints/seq2seq_reversal.npz --source "3 5 7 2" [--target "2 7 5 3"]

An encoder-decoder checkpoint (a :class:`~lrpjax.models.Seq2Seq`, :mod:`lrpjax.app.pairs`) explains one
source given with ``--source``: the output is decoded greedily (or given with ``--target``) and every
output token's score is explained over the source and the tokens the decoder read, the (output step x
(source + decoder inputs)) matrix, printed row by row, as numbers (``--table``) or drawn (``--figure``).

Exit status: 0 on success; 2 for bad options (argparse); 1 for bad input (an unreadable file or
checkpoint, an empty sentence, a result that is not finite) and, in batch mode, when any record could not
be explained, an empty line included (its record carries the error and ``"failed": true``); 130 when interrupted (Ctrl-C). The model and jax are loaded
only after the options are checked, so ``--help`` and option errors are quick. An unexpected error prints
one line and a hint, never a traceback, unless ``LRPJAX_DEBUG=1`` is set.

Batch mode streams (:meth:`lrpjax.app.model.SSTModel.explain_stream`, on the :mod:`lrpjax.datasets.stream` engine):
each line goes into the batch of its length bucket, full batches run as they fill, and every
``--chunk-size`` lines the partly filled ones run and the records so far are written in line order and
flushed, so memory is bounded by the chunk and an interruption leaves a valid prefix (JSON lines, or
whole parts of a Parquet dataset for an output ending in ``.parquet``); ``--resume`` continues after the
last record of that prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from lrpjax.data.lines import Line

__all__ = ["main", "build_parser"]

_METHODS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half", "gradient", "sa", "gi",
            "occlusion-f", "occlusion-p", "cd", "ig", "smoothgrad", "random")
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
  ig           Integrated Gradients from the all-zero embedding (64 points), summed over the embedding
  smoothgrad   SmoothGrad: mean gradient over 32 noisy copies (noise 0.15 of the sentence's value
               range), summed over the embedding; seeded like random
  random       seeded standard-normal noise (a baseline)

Red marks relevance for the explained class, blue against it. Colour is used on a terminal unless
NO_COLOR is set; otherwise each word is followed by its relevance, e.g. good[+1.2].

eps: the command line uses eps 0.001 for the LRP methods (0.2 for lrp-prop) and prints the eps it
used in its header. The Python API's lrpjax.core.rules.preset(name, eps=0.0) defaults to eps 0 (the
plain z-rule); pass eps=1e-3 there to get the command line's numbers.
"""


class _UsageError(Exception):
    """An option problem found after parsing (reported through argparse: exit status 2)."""


class _Target(str):
    """A --target value, normalised; ``raw`` keeps the text as given (an encoder-decoder's output text)."""

    raw: str


def _target(value: str) -> str:
    """argparse type of --target: 'pred', an index or a name; returns the value normalised (with the text as
    given in ``.raw``). The index or name is checked against the checkpoint's classes once it is loaded
    (:func:`_check_target`); for an encoder-decoder the text is its output."""
    text = value.strip().lower().replace("_", " ")
    if text in ("pred", "prediction", "predicted"):
        text = "pred"
    if not text:
        raise argparse.ArgumentTypeError(f"invalid target {value!r}: use 'pred', a class index or a class name")
    target = _Target(text)
    target.raw = value.strip()
    return target


def _check_target(model, args: argparse.Namespace) -> None:
    """Resolves --target against the loaded model's classes (``args.target_index``: the index, or None for
    the prediction); a target the model does not have is a usage error (exit status 2)."""
    from lrpjax.app.model import SSTModel, resolve_target
    from lrpjax.app.pairs import EncoderDecoderModel

    if isinstance(model, EncoderDecoderModel):   # the target is the output text (_explain_pair)
        args.target_index = None
        return
    try:
        if isinstance(model, SSTModel):
            args.target_index = resolve_target(args.target.replace("-", " "))
        else:
            index = model.resolve_target(args.target)
            args.target_index = None if index < 0 else index
    except ValueError as error:
        raise _UsageError(f"invalid target {args.target!r}: {error}") from None


def _labels(model) -> list[str]:
    return list(getattr(model, "labels", _CLASS_NAMES))


def _method_of(model, name: str, eps, seed: int):
    """The method value a run uses (its fingerprint identifies the run)."""
    from lrpjax.app.model import SSTModel, make_method

    return make_method(name, eps, seed, apply=None if isinstance(model, SSTModel) else model.model.apply)


_MAX_EPS = 1e30  # lrpjax.core.rules.MAX_EPS, repeated so that option errors need no jax import
_SEED_RANGE = (-(2**31), 2**32 - 1)  # what jax.random.PRNGKey holds: int32 or uint32
_DEFAULT_CHUNK = 4096


def _eps(value: str) -> float:
    try:
        eps = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid eps {value!r}: expected a number >= 0") from None
    if not eps >= 0 or eps == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid eps {value!r}: expected a finite number >= 0")
    if eps > _MAX_EPS:
        raise argparse.ArgumentTypeError(f"invalid eps {value!r}: at most {_MAX_EPS:g} (a larger stabiliser "
                                         "overflows float32)")
    return eps


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a positive integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: expected a positive integer")
    return number


def _seed(value: str) -> int:
    low, high = _SEED_RANGE
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {value!r}: expected an integer") from None
    if not low <= number <= high:
        raise argparse.ArgumentTypeError(f"invalid seed {value!r}: --seed must fit int32 or uint32, "
                                         f"[{low}, {high}], as jax's PRNGKey needs")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lrpjax`` (sub-commands ``explain`` and ``info``)."""
    parser = argparse.ArgumentParser(
        prog="lrpjax",
        description="Layer-wise Relevance Propagation for LSTMs in JAX: explain the sentiment BiLSTM "
                    "shipped with the package (Stanford Sentiment Treebank, five classes: "
                    + ", ".join(_CLASS_NAMES) + ").",
        epilog='example: lrpjax explain "a gorgeous , witty , seductive movie ."  '
               "(see 'lrpjax explain --help'; set LRPJAX_DEBUG=1 to see tracebacks of unexpected errors)")
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    explain = commands.add_parser(
        "explain", help="classify sentences and show each word's relevance",
        description="Classify a sentence with the SST BiLSTM (or the model of --checkpoint) and colour each word "
                    "by its relevance for the explained class; or, with --input, explain a file of sentences (one "
                    "per line) in jit-compiled batches and stream JSON lines; or, with --source, explain the output "
                    "of an encoder-decoder checkpoint over its source and the tokens it has read.",
        epilog=_METHOD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    explain.add_argument("sentence", nargs="*", help="the sentence (several words are joined by spaces)")
    explain.add_argument("--method", "-m", choices=_METHODS, default="lrp-all", metavar="METHOD",
                         help="explanation method (default lrp-all); one of: " + ", ".join(_METHODS))
    explain.add_argument("--target", "-t", type=_target, default="pred",
                         help="class to explain: 'pred' (the predicted class, default), an index (0..4 for the "
                              "SST model) or a name such as 'positive' or 'very negative' (the checkpoint's "
                              "labels); with --source, the output text to explain ('pred', the default: the "
                              "output decoded greedily)")
    explain.add_argument("--source", metavar="TEXT", default=None,
                         help="for an encoder-decoder checkpoint (a Seq2Seq): the source text to explain; its "
                              "output is decoded greedily (or given with --target TEXT) and each output token's "
                              "score is explained over the source and the decoder's inputs, a (output step x "
                              "(source + decoder inputs)) matrix: printed row by row, numbers with --table, drawn "
                              "with --figure")
    explain.add_argument("--methods", type=_methods_list, default=None, metavar="A,B,C",
                         help="compare several methods on one sentence (instead of --method): one line each "
                              "and, with --figure or --latex, one heatmap row each")
    explain.add_argument("--eps", type=_eps, default=None,
                         help="LRP stabiliser eps (default 0.001, the reference implementation's value; "
                              "0.2 for lrp-prop as in the chapter; the word-deletion study uses 0.0019). "
                              "Note: the Python API's lrpjax.core.rules.preset(name, eps=0.0) defaults to 0")
    explain.add_argument("--checkpoint", default=None,
                         help="model checkpoint (.npz; default: $LRPJAX_SST_CHECKPOINT, else the shipped "
                              "checkpoints/sst_bilstm.npz); any checkpoint written by "
                              "lrpjax.io.checkpoints.save_model with a vocabulary (a model over token ids)")
    explain.add_argument("--table", action="store_true",
                         help="also print a table of per-word relevance; for LRP methods also the target's "
                              "score, what the biases absorbed and the residual")
    explain.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                         help="colour the words (auto: on a terminal unless NO_COLOR is set)")
    _add_figure_options(explain)
    explain.add_argument("--input", "-i", metavar="FILE",
                         help="batch mode: explain every line of FILE ('-' for stdin); lines end with '\\n' "
                              "(CRLF tolerated, a UTF-8 BOM ignored) and are numbered as by wc -l")
    explain.add_argument("--output", "-o", metavar="FILE",
                         help="batch mode: JSON lines output, streamed in line order (default stdout); a name "
                              "ending in .parquet writes a Parquet dataset (a directory of parts, one row per "
                              "line; needs pyarrow: pip install 'lrpjax[parquet]')")
    explain.add_argument("--resume", action="store_true",
                         help="batch mode: keep the records already in --output (from an interrupted run; every "
                              "kept record is checked against this run's options and input) and explain only the "
                              "lines after them")
    explain.add_argument("--overwrite", action="store_true",
                         help="batch mode: replace an existing --output; the new output is written under a "
                              "temporary name and replaces the old one only when complete (without --resume or "
                              "--overwrite an existing output is refused)")
    explain.add_argument("--batch-size", type=_positive_int, default=64, help="sentences per compiled batch")
    explain.add_argument("--chunk-size", type=_positive_int, default=_DEFAULT_CHUNK, metavar="LINES",
                         help=f"batch mode: lines read, explained and written at a time (default "
                              f"{_DEFAULT_CHUNK}); memory is bounded by it")
    explain.add_argument("--seed", type=_seed, default=0,
                         help=f"seed of the random baseline and of smoothgrad, in [{_SEED_RANGE[0]}, {_SEED_RANGE[1]}]")
    explain.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                         help="progress bar on stderr in batch mode (auto: only on a terminal)")
    info = commands.add_parser("info", help="describe the model checkpoint (sizes, accuracy, training command)",
                               description="Print the metadata of the model checkpoint.")
    info.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped one)")
    subcommands = {"explain": explain, "info": info, "report": _add_report_parser(commands)}
    parser.commands = subcommands  # type: ignore[attr-defined]  # for errors that print their usage
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (argparse exits with 2 on bad options).

    No Python traceback reaches the user: Ctrl-C exits with 130 and one line, an unexpected exception
    prints ``lrpjax: error: ...`` and a hint and exits with 1. With the environment variable
    ``LRPJAX_DEBUG=1`` unexpected exceptions propagate with their traceback.
    """
    _INTERRUPTED.clear()
    hook = sys.unraisablehook
    sys.unraisablehook = _quiet_interrupts(hook)
    try:
        with _first_interrupt_only():
            status = _main(argv)
        if _INTERRUPTED:   # a Ctrl-C whose KeyboardInterrupt was swallowed on the way
            sys.stderr.write("lrpjax: interrupted\n")
            return 130
        return status
    except KeyboardInterrupt:
        sys.stderr.write("lrpjax: interrupted\n")
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence of the command line
        if os.environ.get("LRPJAX_DEBUG", "") not in ("", "0"):
            raise
        message = " ".join(str(error).split()) or "(no message)"
        sys.stderr.write(f"lrpjax: error: {type(error).__name__}: {message}\n"
                         "lrpjax: hint: this is not an expected failure; run again with LRPJAX_DEBUG=1 to see "
                         "the Python traceback, and report it\n")
        return 1
    finally:
        sys.unraisablehook = hook


def _quiet_interrupts(previous):
    """An unraisable-exception hook that drops KeyboardInterrupt (a Ctrl-C raised inside a callback whose
    exceptions Python can only print, such as jax's garbage-collector hook: the handler has recorded it in
    :data:`_INTERRUPTED`, and the run stops at its next check) and passes the rest on."""
    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous(unraisable)
    return hook


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "info":
            return _info(args)
        if args.command == "report":
            _enable_cache()
            return _report_command(args)
        _check_explain_options(args)
        _enable_cache()
        return _explain(args)
    except _UsageError as error:
        subparser: argparse.ArgumentParser = parser.commands[args.command]  # type: ignore[attr-defined]
        subparser.error(str(error))  # usage + message, exit status 2
    except _InputError as error:
        sys.stderr.write(f"lrpjax: error: {error}\n")
        return 1
    except BrokenPipeError:
        _silence_stdout()
        return 0


def _enable_cache() -> None:
    """The persistent compilation cache (lrpjax.io.cache): later runs load the compiled programs."""
    from lrpjax.io.cache import enable_compilation_cache

    enable_compilation_cache()


def _silence_stdout() -> None:
    # The reader of a pipe went away (e.g. `| head`): point stdout at /dev/null so that the
    # interpreter's final flush does not fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class _InputError(Exception):
    """Bad input: an unreadable file or checkpoint, an empty sentence (exit status 1)."""


def _check_explain_options(args: argparse.Namespace) -> None:
    if args.source is not None:
        if args.sentence or args.input is not None:
            raise _UsageError("--source explains one source of an encoder-decoder: give no sentence and no --input "
                              "(batch mode is for models over one sentence)")
        if args.html is not None or args.latex is not None:
            raise _UsageError("--html and --latex draw sentences; an encoder-decoder's explanation is a matrix: use "
                              "--figure or --table")
        if not args.source.strip():
            raise _UsageError("--source is empty: give the source text")
    elif args.input is not None and args.sentence:
        raise _UsageError("give either a sentence or --input FILE, not both")
    if args.input is None and not args.sentence and args.source is None:
        raise _UsageError('give a sentence (lrpjax explain "a fine film") or --input FILE')
    if args.input is None and args.output is not None:
        raise _UsageError("--output is for batch mode (--input FILE)")
    if args.input is not None and (args.figure is not None or args.latex is not None):
        raise _UsageError("--figure/--png and --latex draw one sentence; use --html for a batch")
    _check_figure_path(args.figure)
    if args.methods is not None and args.input is not None:
        raise _UsageError("--methods compares methods on one sentence; for a file use lrpjax report --methods")
    used = args.methods or [args.method]
    if args.eps is not None and not any(name.startswith("lrp-") for name in used):
        raise _UsageError(f"--eps applies to the LRP methods, not to {', '.join(used)}")
    if args.resume and (args.input is None or args.output in (None, "-")):
        raise _UsageError("--resume continues a batch run written to a file: give --input FILE and --output FILE")
    if args.overwrite and (args.input is None or args.output in (None, "-")):
        raise _UsageError("--overwrite replaces a batch output file: give --input FILE and --output FILE")
    if args.overwrite and args.resume:
        raise _UsageError("give --resume (continue the output) or --overwrite (replace it), not both")
    for option, path in (("--output", args.output), ("--html", args.html), ("--figure", args.figure),
                         ("--latex", args.latex)):
        if path not in (None, "-"):
            _check_writable(option, path, args.input)


def _is_parquet(path: str | None) -> bool:
    return path is not None and path.lower().endswith(".parquet")


def _check_writable(option: str, path: str, input_path: str | None) -> None:
    """Fails before any work when an output cannot be written (nothing is created or truncated here)."""
    directory = os.path.dirname(os.path.abspath(path))
    dataset = option == "--output" and _is_parquet(path)   # a Parquet dataset is a directory
    if dataset:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise _InputError(f"cannot write --output {path!r}: a .parquet output needs pyarrow: "
                              "pip install 'lrpjax[parquet]' (or write JSON lines to a .jsonl file)") from None
    if os.path.isdir(path) and not dataset:
        raise _InputError(f"cannot write {option} {path!r}: it is a directory")
    if not os.path.isdir(directory):
        raise _InputError(f"cannot write {option} {path!r}: the directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK):
        raise _InputError(f"cannot write {option} {path!r}: the directory {directory!r} is not writable")
    if input_path not in (None, "-") and os.path.exists(path) and os.path.exists(input_path) \
            and os.path.samefile(path, input_path):
        raise _InputError(f"{option} {path!r} is the input file; writing it would destroy the input")


def _load_model(path: str | None, args: argparse.Namespace | None = None):
    """The application of the checkpoint (:func:`lrpjax.app.bundle.load`); with ``args``, --target checked
    against its classes."""
    from lrpjax.app.bundle import load
    from lrpjax.io.checkpoints import CheckpointError

    try:
        model = load(path)
    except (CheckpointError, OSError) as error:
        raise _InputError(f"cannot load the model: {error}") from None
    if args is not None and getattr(args, "target", None) is not None:
        _check_target(model, args)
    if args is not None:
        args.model_apply = getattr(getattr(model, "model", None), "apply", None)   # None: the SST BiLSTM
    return model


def _info(args: argparse.Namespace) -> int:
    model = _load_model(args.checkpoint)
    meta = model.metadata
    if hasattr(model, "describe"):
        print(model.describe())
        if "command" in meta:
            print(f"trained with: {meta['command']}")
        return 0
    E, H, C = model.sizes
    print(f"SST BiLSTM: vocabulary {len(model.vocab)} words, embeddings E = {E}, hidden H = {H} per "
          f"direction, {C} classes")
    for split in ("dev", "test"):
        acc = meta.get(f"{split}_accuracy")
        if isinstance(acc, dict) and {"five_class", "binary"} <= set(acc):
            print(f"{split} sentences: five-class accuracy {acc['five_class']:.1%}, binary {acc['binary']:.1%}")
    if "command" in meta:
        print(f"trained with: {meta['command']}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from lrpjax.app.pairs import EncoderDecoderModel

    if args.input is None:
        model = _load_model(args.checkpoint, args)
        if args.source is not None or isinstance(model, EncoderDecoderModel):
            return _explain_pair(model, args)
        return _explain_one(model, args)
    from lrpjax.data.lines import LineReader

    try:
        reader = LineReader(args.input)  # opened first: a missing input fails before the model loads
    except OSError as error:
        raise _InputError(f"cannot read input file {args.input!r}: {error.strerror or error}") from None
    with reader:
        model = _load_model(args.checkpoint, args)
        if isinstance(model, EncoderDecoderModel):
            raise _InputError("this checkpoint holds an encoder-decoder (Seq2Seq); batch mode (--input) is for models "
                              "over one sentence: explain one source at a time with --source TEXT")
        return _explain_file(model, args, reader)


def _explain_pair(model, args: argparse.Namespace) -> int:
    """One source of an encoder-decoder (--source, --target): the output and the relevance matrix per method
    (:mod:`lrpjax.app.pairs`), --table's numbers and --figure's heatmaps."""
    from lrpjax.app.pairs import EncoderDecoderModel, format_pair, pair_figure, pair_table
    from lrpjax.viz import plot

    if not isinstance(model, EncoderDecoderModel):
        raise _InputError("--source is for an encoder-decoder checkpoint (a Seq2Seq); this checkpoint's model reads "
                          "one sentence: give the sentence as the argument")
    if args.source is None:
        raise _InputError("this checkpoint holds an encoder-decoder (Seq2Seq): give the source with --source TEXT "
                          "(and its output with --target TEXT, or let it be decoded greedily)")
    target = None if args.target == "pred" else getattr(args.target, "raw", args.target)
    results = []
    for name in args.methods or [args.method]:
        eps = args.eps if name.startswith("lrp-") else None
        try:
            result = model.explain_pair(args.source, target, name, eps, seed=args.seed)
        except ValueError as error:
            raise _InputError(str(error)) from None
        if not result.finite:
            raise _InputError(f"{_NONFINITE}; nothing to show (check the checkpoint)")
        results.append(result)
    if results[0].unknown:
        _warn_unknown(results[0].unknown)
    colour = args.color == "always" or (args.color == "auto" and plot.use_color(sys.stdout))
    print(format_pair(results, colour))
    if args.table:
        for result in results:
            eps = f", eps {result.eps:g}" if result.eps is not None else ""
            print(f"method: {result.method}{eps}")
            print(pair_table(result))
    if args.figure:
        try:
            pair_figure(results, args.figure)
        except OSError as error:
            raise _InputError(f"cannot write {args.figure!r}: {error}") from None
        sys.stderr.write(f"lrpjax: wrote {args.figure}: a relevance matrix figure ({len(results)} panel(s))\n")
    return 0


_NONFINITE = ("the model gives non-finite scores or relevance (NaN or infinity) for this sentence: its weights "
              "overflow or hold NaN")


def _explain_one(model, args: argparse.Namespace) -> int:
    from lrpjax.viz import plot

    text = " ".join(args.sentence)
    try:
        tokens, _, unknown = model.encode(text)
    except ValueError as error:
        raise _InputError(str(error)) from None
    if not tokens:
        raise _InputError("the sentence is empty: nothing to explain")
    if unknown:
        _warn_unknown(unknown)
    names = _labels(model)
    colour = args.color == "always" or (args.color == "auto" and plot.use_color(sys.stdout))
    results = []
    for name in args.methods or [args.method]:
        eps = args.eps if name.startswith("lrp-") else None
        result = model.explain_sentence(text, name, args.target, eps, seed=args.seed)
        if not result.finite:
            raise _InputError(f"{_NONFINITE}; nothing to show (check the checkpoint)")
        results.append(result)
    first = results[0]
    per_step = bool(getattr(first, "per_step", False))
    if first.probabilities is None:
        values = ", ".join(f"{n} {float(v):+.4g}" for n, v in zip(names, first.scores))
        print(f"outputs: {values}")
    elif per_step:
        print("prediction per step: " + " ".join(f"{t}:{names[int(p)]}" for t, p in zip(first.tokens, first.prediction)))
    else:
        probs = ", ".join(f"{name} {p:.3f}" for name, p in zip(names, first.probabilities))
        print(f"prediction: {names[first.prediction]} ({first.prediction})   probabilities: {probs}")
    explained = "each step's predicted class" if first.target < 0 else f"{names[first.target]} ({first.target})"
    for result in results:
        eps = f", eps {result.eps:g}" if result.eps is not None else ""
        print(f"relevance for: {explained}   method: {result.method}{eps}")
        rows = result.relevance if per_step else [result.relevance]
        for step, row in enumerate(rows):
            line = plot.ansi_sentence(result.tokens, row) if colour else plot.plain_sentence(result.tokens, row)
            print(f"  step {step + 1} ({result.tokens[step]}): {line}" if per_step else line)
    _write_explanation(model, results, args)
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
    from lrpjax.app.report import conservation

    return conservation(model, result)


def _write_explanation(model, results, args: argparse.Namespace) -> None:
    """--table (with the LRP bookkeeping), --html, --figure and --latex for one explained sentence (one
    result per method of --methods); every file written is named on stderr ("lrpjax: wrote FILE ...")."""
    from lrpjax.viz import plot

    names = _labels(model)
    result = results[0]
    per_step = bool(getattr(result, "per_step", False))
    needs = args.table or args.html
    for r in results:
        r.conservation = _conservation(model, r) if needs else None
    if args.table and not per_step:
        for r in results:
            print(plot.relevance_table(r.tokens, r.relevance, r.unknown, r.conservation))
    explained = "each step's prediction" if result.target < 0 else names[result.target]
    predicted = "" if result.prediction is None or per_step else f" (predicted: {names[result.prediction]})"
    title = f"{', '.join(r.method for r in results)} relevance for '{explained}'{predicted}"
    if per_step:   # the (step x token) view: one row per output step
        rows = {f"{r.method}, step {t + 1} ({r.tokens[t]})": row for r in results for t, row in enumerate(r.relevance)}
        latex = [(label, result.tokens, row) for label, row in rows.items()]
    else:
        rows = {r.method: r.relevance for r in results}
        latex = [(r.method, r.tokens, r.relevance) for r in results]
    outputs = []
    if args.html and per_step:
        from lrpjax.viz.report import report_html

        outputs.append((args.html, "an HTML page (a heatmap per output step)", lambda: plot.write_atomic(
            args.html, report_html([result.text], {r.method: [r.to_json()] for r in results},
                                   title="lrpjax: " + title))))
    elif args.html:
        outputs.append((args.html, "an HTML page", lambda: plot.write_atomic(
            args.html, plot.html_page([r.to_json() for r in results], title="lrpjax: " + title))))
    if args.figure:
        outputs.append((args.figure, f"a heatmap figure ({len(rows)} row(s))", lambda: plot.sentence_heatmap(
            result.tokens, rows, args.figure, title=title, colorbar_label=f"relevance for '{explained}'")))
    if args.latex:
        outputs.append((args.latex, f"a LaTeX snippet ({len(latex)} row(s), needs \\usepackage{{xcolor}})",
                        lambda: plot.write_atomic(args.latex, plot.latex_heatmap(latex))))
    for path, what, write in outputs:
        try:
            write()
        except OSError as error:
            raise _InputError(f"cannot write {path!r}: {error}") from None
        sys.stderr.write(f"lrpjax: wrote {path}: {what}\n")


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


def _report_command(args: argparse.Namespace) -> int:
    from lrpjax.app.report import write_report

    from lrpjax.data.lines import LineReader

    try:
        reader = LineReader(args.input)
    except OSError as error:
        raise _InputError(f"cannot read input file {args.input!r}: {error.strerror or error}") from None
    lines = [line.text for line in reader]
    if not lines:
        raise _InputError(f"input file {args.input!r} holds no lines")
    from lrpjax.app.pairs import EncoderDecoderModel

    model = _load_model(args.checkpoint, args)
    if isinstance(model, EncoderDecoderModel):
        raise _InputError("lrpjax report is for models over one sentence; this checkpoint holds an encoder-decoder "
                          "(Seq2Seq): explain a source with lrpjax explain --checkpoint ... --source TEXT")
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


class _Tally:
    """What a batch run reports at the end, in bounded memory whatever the input size."""

    _SHOWN = 20
    _MAX_UNKNOWN = 1_000    # distinct unknown words remembered for the report (of at most _MAX_WORD characters)

    def __init__(self, keep_records: bool, run: str | None = None):
        self.n_ok, self.n_empty, self.n_failed = 0, 0, 0
        self.empty: list[int] = []
        self.failed: list[int] = []
        self.unknown: dict[str, None] = {}
        self.more_unknown = False    # more distinct unknown words than remembered
        self.n_flagged = 0           # records whose numbers are flagged (see _health)
        self.flagged: list[int] = []
        self.records: list[dict] | None = [] if keep_records else None
        self.run = run

    def record(self, line, result) -> dict:
        """The output record of one input line (and its count)."""
        if line.error is not None:
            return self._fail(line, line.error)
        if isinstance(result, str):
            if not line.text.strip():
                self.n_empty += 1
                if len(self.empty) < self._SHOWN:
                    self.empty.append(line.number)
            return self._fail(line, result)
        if not result.finite:
            return self._fail(line, _NONFINITE)
        self.n_ok += 1
        for word in result.unknown:
            word = _clip(word)
            if len(self.unknown) < self._MAX_UNKNOWN:
                self.unknown.setdefault(word)
            elif word not in self.unknown:
                self.more_unknown = True
        record = {"line": line.number, **result.to_json()}
        problem = _health(record)
        if problem is not None:
            record["flagged"] = problem
            self.n_flagged += 1
            if len(self.flagged) < self._SHOWN:
                self.flagged.append(line.number)
        return self._keep(record)

    def _keep(self, record: dict) -> dict:
        if self.run is not None:
            record["run"] = self.run
        if self.records is not None:
            self.records.append(record)
        return record

    def _fail(self, line, message: str) -> dict:
        self.n_failed += 1
        if len(self.failed) < self._SHOWN:
            self.failed.append(line.number)
        return self._keep({"line": line.number, "sentence": line.text, "error": message, "failed": True})


_MAX_WORD = 40   # characters of an unknown word shown in a report


def _health(record: dict) -> str | None:
    """For an LRP record: relevance far beyond the target's score (lrpjax.methods.results.health), or None."""
    if not str(record.get("method", "")).startswith("lrp-"):
        return None
    scores, target = record.get("scores"), record.get("target")
    if not isinstance(scores, list) or not isinstance(target, int) or not 0 <= target < len(scores):
        return None
    from lrpjax.methods.results import health

    problem = health(record.get("relevance", []), scores[target])
    return None if problem is None else problem.replace("raise eps", "raise --eps")


def _clip(word: str) -> str:
    return word if len(word) <= _MAX_WORD else word[:_MAX_WORD - 3] + "..."


def _shown(numbers: list[int], total: int) -> str:
    return ", ".join(map(str, numbers)) + (", ..." if total > len(numbers) else "")


_INTERRUPTED: list[int] = []
"""Set by the batch mode's Ctrl-C handler: checked after every record, so that an interruption whose
KeyboardInterrupt was swallowed (raised inside a callback that ignores exceptions, such as a garbage
collector hook) still stops the run."""


def _check_interrupted() -> None:
    if _INTERRUPTED:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _first_interrupt_only():
    """While the command runs, the first Ctrl-C raises KeyboardInterrupt (and is remembered, see
    :data:`_INTERRUPTED`) and later ones are ignored, so that the clean-up (flushing the records already
    written) is not itself interrupted; the previous handler is back when the block ends."""
    seen = _INTERRUPTED

    def handler(signum, frame):
        if not seen:
            seen.append(signum)
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: signals stay as they are
        yield
        return
    try:
        yield
    finally:
        # After an interruption the handler that ignores further presses stays until the command ends;
        # the launcher (lrpjax_cli) ignores them while the interpreter exits.
        signal.signal(signal.SIGINT, previous)


def _open_output(args: argparse.Namespace, identity: dict | None):
    from lrpjax.io.sinks import SinkError, open_sink

    try:
        return open_sink(args.output, resume=args.resume, overwrite=args.overwrite, identity=identity)
    except SinkError as error:
        raise _InputError(str(error)) from None
    except OSError as error:
        raise _InputError(f"cannot write {args.output!r}: {error.strerror or error}") from None


@contextlib.contextmanager
def _output_lock(args: argparse.Namespace):
    """One writer per output file: the lock beside it (lrpjax.io.locks), held while the run writes."""
    if args.output in (None, "-"):
        yield
        return
    from lrpjax.io.locks import LockError, OutputLock, lock_path_for

    lock = OutputLock(lock_path_for(args.output), f"--output {args.output!r}")
    try:
        lock.acquire()
    except LockError as error:
        raise _InputError(str(error)) from None
    except OSError as error:
        raise _InputError(f"cannot lock --output {args.output!r}: {error.strerror or error}") from None
    try:
        yield
    finally:
        lock.release()


def _run_identity(model, args: argparse.Namespace) -> dict:
    """Every option that changes the records of a batch run, by option name (kept with the output and
    compared on --resume), and the model's digest."""
    import zlib

    import jax
    import numpy as np

    from lrpjax import __version__
    from lrpjax.app.model import DEFAULT_EPS, make_method

    crc = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(model.params):
        array = np.ascontiguousarray(np.asarray(leaf))
        crc = zlib.crc32(array.tobytes(), zlib.crc32(f"{jax.tree_util.keystr(path)}{array.dtype}{array.shape}".encode(),
                                                     crc))
    crc = zlib.crc32("\n".join(map(str, getattr(model.vocab, "words", model.vocab) or [])).encode(), crc)
    eps = (DEFAULT_EPS[args.method] if args.eps is None else args.eps) if args.method.startswith("lrp-") else None
    return {"--method": args.method, "--eps": eps, "--target": args.target, "--seed": args.seed,
            "--checkpoint": f"{crc:08x}", "--batch-size": args.batch_size,
            "method fingerprint": _method_of(model, args.method, args.eps, args.seed).digest(), "lrpjax": __version__}


def _digest(identity: dict) -> str:
    import zlib

    return f"{zlib.crc32(json.dumps(identity, sort_keys=True).encode()):08x}"


def _check_resume_point(args: argparse.Namespace, line, last: dict) -> None:
    """The last record kept from the previous run must be this input line's, with the same options."""
    from lrpjax.app.model import DEFAULT_EPS

    where = f"cannot resume {args.output!r}"
    if last.get("sentence") != line.text:
        raise _InputError(f"{where}: its record {line.number} is for {str(last.get('sentence'))[:60]!r}, but "
                          f"line {line.number} of {args.input!r} reads {line.text[:60]!r}; it was written from "
                          "another input")
    if "method" not in last:
        return
    eps = (DEFAULT_EPS[args.method] if args.eps is None else args.eps) if args.method.startswith("lrp-") else None
    index = getattr(args, "target_index", None)
    target = last.get("prediction") if index is None else index
    if last["method"] != args.method or last.get("eps") != eps or last.get("target") != target:
        raise _InputError(f"{where}: it was written with --method {last['method']}, eps {last.get('eps')}, target "
                          f"{last.get('target_name')!r}; give the same options to resume, or start afresh")
    from lrpjax.app.model import SEEDED, make_method

    if args.method in SEEDED and last.get("seed") != args.seed:
        raise _InputError(f"{where}: it was written with --seed {last.get('seed')}, and this run has --seed "
                          f"{args.seed}; give the same options to resume, or start afresh")
    method_id = make_method(args.method, args.eps, args.seed, apply=getattr(args, "model_apply", None)).digest()
    if last.get("method_id") is not None and last["method_id"] != method_id:
        raise _InputError(f"{where}: it was written with other settings of --method {args.method} (method "
                          f"fingerprint {last['method_id']}, this run's {method_id}: another version of lrpjax or "
                          "another model); start afresh")


def _kept_records(args: argparse.Namespace, kept: int):
    """The records kept from the previous run, one at a time (bounded memory)."""
    if not kept:
        return iter(())
    from lrpjax.io.sinks import SinkError, iter_records

    def records():
        try:
            yield from iter_records(args.output)
        except (SinkError, OSError, ValueError) as error:
            raise _InputError(f"cannot resume {args.output!r}: {error}") from None
    return records()


def _check_kept_record(args: argparse.Namespace, line, record: dict, run: str | None) -> None:
    """A kept record must be this input line's (same text) and written by a run with this run's identity."""
    where = f"cannot resume {args.output!r}"
    if record.get("line") != line.number:
        raise _InputError(f"{where}: its record {line.number} is numbered {record.get('line')!r}; the output is "
                          "damaged; start afresh with --overwrite")
    if record.get("sentence") != line.text:
        raise _InputError(f"{where}: its record {line.number} is for {str(record.get('sentence'))[:60]!r}, but "
                          f"line {line.number} of {args.input!r} reads {line.text[:60]!r}; it was written from "
                          "another input (edited since?); start afresh with --overwrite, or restore the input")
    if run is not None and record.get("run", run) != run:
        raise _InputError(f"{where}: its record {line.number} was written by a run with other options (run "
                          f"{record.get('run')}, this run's {run}: another --checkpoint, --method, --eps, --target, "
                          "--seed or --batch-size); the output mixes runs or was written with other options; start "
                          "afresh with --overwrite")


def _stream(model, args: argparse.Namespace, reader, sink, tally: _Tally, bar) -> int:
    """Explains and writes, in line order, every line after the `sink.done` lines kept; returns the last
    line number. The lines stream through :meth:`~lrpjax.app.model.SSTModel.explain_stream`: every --chunk-size lines its
    partly filled batches run and the records written so far are flushed, so memory is bounded by the
    chunk and an interruption leaves a valid prefix."""
    kept = sink.done
    bar.update(kept)
    lines: dict[int, Line] = {}
    last = 0
    records = _kept_records(args, kept)

    def numbered():
        nonlocal last
        for line in reader:
            last = line.number
            _check_interrupted()
            if line.number <= kept:
                _check_kept_record(args, line, next(records), tally.run)
                if line.number == kept:
                    _check_resume_point(args, line, sink.last)
                continue
            lines[line.number] = line
            yield line.number - 1, "" if line.error is not None else line.text

    for index, result in model.explain_stream(numbered(), args.method, args.target, args.eps,
                                              batch_size=args.batch_size, seed=args.seed, window=args.chunk_size):
        line = lines.pop(index + 1)
        sink.write(tally.record(line, result))
        bar.update(1)
        if line.number % args.chunk_size == 0:
            sink.flush()
        _check_interrupted()
    sink.flush()
    if last < kept:
        raise _InputError(f"cannot resume {args.output!r}: it holds {kept} records, but {args.input!r} has only "
                          f"{last} line(s); it was written from another input")
    return last


def _explain_file(model, args: argparse.Namespace, reader) -> int:
    import itertools

    from lrpjax.data.lines import count_lines
    from lrpjax.io.progress import ProgressBar

    total = count_lines(args.input) if os.path.isfile(args.input) else None
    reader = iter(reader)
    first = next(reader, None)
    if first is None:
        raise _InputError(f"input file {args.input!r} holds no lines")
    to_stdout = args.output in (None, "-")
    identity = None if to_stdout else _run_identity(model, args)
    tally = _Tally(keep_records=args.html is not None and to_stdout,
                   run=None if identity is None else _digest(identity))
    force = {"auto": None, "always": True, "never": False}[args.progress]
    where = "stdout" if to_stdout else args.output
    with _first_interrupt_only(), _output_lock(args):
        sink = _open_output(args, identity)
        kept = sink.done
        try:
            with ProgressBar(total, "explain", force=force) as bar:
                _stream(model, args, itertools.chain([first], reader), sink, tally, bar)
            _check_interrupted()
        except KeyboardInterrupt:
            return _interrupted(args, sink, where)
        except BaseException:
            _close_on_error(sink)
            raise
        sink.commit()
    _batch_summary(args, tally, sink, kept, where)
    if sink.failed:
        shown = '' if not tally.failed else ': ' + _shown(tally.failed, tally.n_failed)
        sys.stderr.write(f"lrpjax: error: {sink.failed} line(s) could not be explained (empty or unreadable lines, "
                         f"non-finite results{shown}); "
                         "written as records with an 'error' field and \"failed\": true\n")
        return 1
    return 0


def _interrupted(args: argparse.Namespace, sink, where: str) -> int:
    """After Ctrl-C: the records so far are made durable (a valid prefix to resume), or a replacement
    (--overwrite) is dropped and the earlier output left as it was; exit status 130."""
    to_stdout = args.output in (None, "-")
    if getattr(sink, "target", None) is not None:
        sink.discard()
        sys.stderr.write(f"lrpjax: interrupted: {where} is left as it was (the replacing output was not complete "
                         "and is removed); run the command again to replace it\n")
        return 130
    sink.close()
    hint = ("run the same command with --resume to continue" if not to_stdout
            else "write to a file with --output to be able to resume")
    form = "whole Parquet parts" if _is_parquet(args.output) else "a valid JSON-lines prefix"
    sys.stderr.write(f"lrpjax: interrupted: {sink.done} record(s) written to {where} (lines 1-{sink.done}, "
                     f"{form}); {hint}\n")
    return 130


def _close_on_error(sink) -> None:
    """An error stops the run: what is written stays a valid prefix; a replacement is dropped."""
    try:
        if getattr(sink, "target", None) is not None:
            sink.discard()
        else:
            sink.close()
    except Exception:   # noqa: BLE001 - the first error is the one to report
        pass


def _batch_summary(args: argparse.Namespace, tally: _Tally, sink, kept: int, where: str) -> None:
    from lrpjax.viz import plot

    if tally.n_empty:
        sys.stderr.write(f"lrpjax: warning: {tally.n_empty} empty line(s) ({_shown(tally.empty, tally.n_empty)}): "
                         "written as records with an 'error' field and \"failed\": true\n")
    if tally.unknown:
        _warn_unknown(list(tally.unknown), more=tally.more_unknown)
    if tally.n_flagged:
        sys.stderr.write(f"lrpjax: warning: {tally.n_flagged} record(s) flagged ({_shown(tally.flagged, tally.n_flagged)}): "
                         "their relevance is far beyond the target's score, so it cancels only through rounding; "
                         "raise --eps (their records carry a 'flagged' field saying why)\n")
    if args.html:
        records = tally.records if tally.records is not None else _read_records(args.output)
        _write_text(args.html, plot.html_page(records, title=f"lrpjax: {args.method} relevance, {args.input}"))
    resumed = f", after {kept} kept from the previous run" if kept else ""
    sys.stderr.write(f"lrpjax: explained {tally.n_ok} sentence(s) with {args.method}; wrote "
                     f"{sink.done - kept} record(s) to {where}{resumed}\n")


def _read_records(path: str) -> list[dict]:
    from lrpjax.io.sinks import read_records

    return read_records(path)


def _warn_unknown(words: list[str], more: bool = False) -> None:
    """One line of at most 30 unknown words (each clipped to _MAX_WORD characters)."""
    unique = list(dict.fromkeys(_clip(word) for word in words))
    shown = ", ".join(unique[:30]) + (", ..." if len(unique) > 30 or more else "")
    count = f"more than {len(unique)}" if more else str(len(unique))
    sys.stderr.write(f"lrpjax: warning: {count} word(s) not in the vocabulary, read as <unk>: {shown}\n")


def _write_text(path: str, text: str) -> None:
    from lrpjax.io.files import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as error:
        raise _InputError(f"cannot write {path!r}: {error.strerror or error}") from None


if __name__ == "__main__":
    sys.exit(main())
