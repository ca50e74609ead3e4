"""Is attention explanation? Word deletion (Sec. 11.5.1, Fig. 11.5) on an SST BiLSTM with attention pooling (issue 21).

The model (``experiments/train_sst.py --arch attention``, ``checkpoints/sst_attention.npz``): the shipped
BiLSTM's embedding and recurrent sizes, every step's states ``h_t = [h_t^fwd, h_t^bwd]`` pooled by
additive attention (``e_t = v . tanh(W h_t + b)``, ``alpha = softmax(e)`` over the words,
``c = sum_t alpha_t h_t``), a dense head with bias. The protocol and its code are those of
``experiments/sst_word_deletion.py`` (through :func:`sst_recurrent_models.study`): the test sentences with
at least ten words, target = the true class, relevance computed once on the original sentence, up to five
words deleted (most relevant first from correctly classified sentences, least relevant first from
misclassified ones).

Explanations compared:

* LRP with the chapter's presets (LSTM gates: signal-take-all for LRP-all; prop, abs, half), eps = 0.0019
  (0.2 for LRP-prop), the attention weights treated as gates (``AttentionRule("gate")``, the default);
* LRP-all with every other attention rule (``preset("lrp-all", eps, attention=mode)``): ``prop``, ``abs``,
  ``half`` (Table 11.1's splits of ``alpha_t h_t``, the weight's share passing the softmax to the scores)
  and ``attnlrp`` (AttnLRP's uniform product rule and softmax rule, Achtibat et al. 2024);
* the raw attention weights ``alpha_t`` as the explanation (class-independent, as they are used in practice);
* Contextual Decomposition, Gradient (Sensitivity Analysis), Gradient x Input, Integrated Gradients (zero
  embeddings, ``IG_STEPS`` points), Occlusion (f-diff, P-diff), and the random baseline (10 runs).

Beyond the curves, the agreement of the attention weights with each method's relevance: the mean Spearman
rank correlation over sentences, and how often the most attended word is the most relevant one.

    python experiments/sst_attention.py                  # writes experiments/results/sst_attention.*
    python experiments/sst_attention.py --quick --out /tmp/attention
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import lrpjax  # noqa: E402
import sst_recurrent_models as common  # noqa: E402
import sst_word_deletion as deletion  # noqa: E402
from lrpjax.methods.decomposition import cd  # noqa: E402
from lrpjax.models import Sequential  # noqa: E402
from lrpjax.models.attention import AttentionPool  # noqa: E402

ATTENTION_MODES = ("prop", "abs", "half", "attnlrp")
"""The attention rules compared with the default (``"gate"``, in every preset)."""
FIGURE_MAIN = ("LRP-all", "LRP-all (attention attnlrp)", "Attention weights", "Gradient", "Gradient x Input",
               "Integrated Gradients", "Occlusion f-diff", "CD", "random")
FIGURE_RULES = ("LRP-all", "LRP-prop", "LRP-abs", "LRP-half") + tuple(
    f"LRP-all (attention {m})" for m in ATTENTION_MODES) + ("Attention weights", "random")


def methods(apply) -> list[tuple[str, object]]:
    """Every method of the study except the attention weights and the random baseline."""
    rules = [(f"LRP-all (attention {mode})", lrpjax.lrp(apply, lrpjax.rules.preset("lrp-all", eps=common.EPS,
                                                                                   attention=mode)))
             for mode in ATTENTION_MODES]
    return common.lrp_methods(apply) + rules + [("CD", cd(apply))] + common.baseline_methods(apply)


def attention_weights(model: common.TextClassifier, batch_size: int = 64):
    """``relevance_fn(ids_list, labels)``: the attention weights ``alpha_t`` of every word (one head; the
    same for every class), from the model's layers before the pool and the pool's own weights."""
    layers = model.inner.layers
    where = [i for i, layer in enumerate(layers) if isinstance(layer, AttentionPool)]
    if len(where) != 1 or layers[where[0]].heads != 1:
        raise ValueError(f"{model.path}: expected one single-head AttentionPool; got layers {layers}.")
    pool = layers[where[0]]
    before = Sequential(layers[:where[0]])
    before_params = {key: model.params[key] for key in before.keys}
    table = jnp.asarray(model.table)

    @jax.jit
    def compute(ids, mask):
        def one(x, m):
            return pool.weights(model.params, before.apply(before_params, x, mask=m), m)[:, 0]
        return jax.vmap(one)(table[ids], mask)

    return lambda ids_list, labels: common.batched(lambda i, m, t: compute(i, m), ids_list, labels, batch_size,
                                                   model.grid)


def _ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


def agreement(attention: list[np.ndarray], relevance: list[np.ndarray]) -> dict[str, float]:
    """Mean Spearman rank correlation of the attention weights with a method's relevance over sentences
    (ties broken left to right), and the fraction of sentences whose most attended word is its most
    relevant word."""
    rho, top = [], []
    for a, r in zip(attention, relevance):
        ra, rr = _ranks(a), _ranks(r)
        ra, rr = ra - ra.mean(), rr - rr.mean()
        rho.append(float(ra @ rr / np.sqrt((ra @ ra) * (rr @ rr))))
        top.append(bool(np.argmax(a) == np.argmax(r)))
    return {"spearman": float(np.mean(rho)), "top1": float(np.mean(top))}


def markdown(results: dict) -> str:
    k = 3
    lines = ["**Test accuracy (full sentences)**", "", "| model | five-class | binary |", "|---|---:|---:|"]
    if results.get("bilstm_accuracy"):
        lines.append(common.accuracy_line("BiLSTM (shipped, final state)", results["bilstm_accuracy"]))
    lines += [common.accuracy_line("BiLSTM + attention pooling", results["test_accuracy"]), "",
              f"**Accuracy after {k} and 5 deletions; agreement of the attention weights with each method** "
              "(correct: most relevant deleted first, lower is better; false: least relevant deleted first, higher "
              "is better; Spearman: mean rank correlation with the attention weights; top-1: the most attended "
              "word is the most relevant)", "",
              f"| method | correct @{k} | correct @5 | false @{k} | false @5 | Spearman | top-1 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for method, parts in results["accuracy"].items():
        agree = results["agreement"].get(method)
        cells = "| — | — |" if agree is None else f"| {agree['spearman']:.3f} | {agree['top1']:.3f} |"
        lines.append(f"| {method} | {parts['correct'][k]:.3f} | {parts['correct'][5]:.3f} | {parts['false'][k]:.3f} "
                     f"| {parts['false'][5]:.3f} {cells}")
    lines += ["", deletion.markdown(results)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{common.QUICK_SENTENCES} sentences of one padded length (each method compiles once)")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="output directory")
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "sst_attention.npz"),
                        help="the attention model (experiments/train_sst.py --arch attention)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per compiled explanation batch")
    parser.add_argument("--methods", default=None,
                        help="comma-separated method labels to run (default all; the attention weights and the random "
                             "baseline always run)")
    parser.add_argument("--sentences", type=int, default=None,
                        help="a seeded random subset of this many of the 1849 test sentences (default: all)")
    args = parser.parse_args(argv)
    command = ("python experiments/sst_attention.py " +
               " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))).rstrip()
    model = common.TextClassifier.load(args.checkpoint)
    model.grid = common.QUICK_GRID if args.quick else common.GRID
    sentences = common.study_sentences(args.quick, args.sentences)
    batch_size = min(args.batch_size, len(sentences))
    start = time.time()
    candidates = methods(model.inner.apply)
    chosen = common.choose([label for label, _ in candidates], args.methods, parser)
    results, relevance = common.study(model, sentences, [(label, m) for label, m in candidates if label in chosen],
                                      extra={"Attention weights": attention_weights(model, batch_size)},
                                      batch_size=batch_size)
    alpha = relevance["Attention weights"]
    results["agreement"] = {label: agreement(alpha, r) for label, r in relevance.items() if label != "Attention weights"}
    bilstm_json = ROOT / "experiments" / "results" / "sst_word_deletion.json"
    results.update(command=command, quick=bool(args.quick), seconds_total=round(time.time() - start, 1),
                   eps=common.EPS, eps_prop=common.EPS_PROP,
                   bilstm_accuracy=json.loads(bilstm_json.read_text()).get("model_accuracy")
                   if bilstm_json.exists() else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sst_attention.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (out / "sst_attention.md").write_text(table)
    from lrpjax.viz.plot import deletion_figure

    stds = {"random": results["random_std"]}
    for suffix, shown in (("", FIGURE_MAIN), ("_rules", FIGURE_RULES)):
        deletion_figure({m: results["accuracy"][m] for m in shown if m in results["accuracy"]},
                        out / f"sst_attention{suffix}.png", stds=stds)
    print()
    print(table)
    print(f"wrote {out / 'sst_attention.json'}, .md and .png ({results['seconds_total']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
