"""Writes the example heatmaps of docs/figures/ with the shipped SST model.

    python docs/figures/make_figures.py [--out docs/figures]

sentence_methods.{png,pdf,tex}: one short sentence, LRP-all, Gradient x Input and Occlusion (f-diff)
as labelled rows on one colour scale; long_sentence.png: the longest SST test sentence, wrapped at
the page width.
"""

from __future__ import annotations

import argparse
import os

from lrpjax.viz import plot
from lrpjax.data.sst import LABEL_NAMES, load_sst
from lrpjax.app.model import SSTModel

METHODS = {"lrp-all": "LRP-all", "gi": "Gradient × Input", "occlusion-f": "Occlusion (f-diff)"}
SHORT = "the plot is dull , but the actors are wonderful and the ending is a treat ."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    model = SSTModel.load()
    results = {label: model.explain_sentence(SHORT, method) for method, label in METHODS.items()}
    first = next(iter(results.values()))
    title = f"relevance for '{LABEL_NAMES[first.target]}' (predicted, p = {first.probabilities[first.target]:.2f})"
    rows = {label: r.relevance for label, r in results.items()}
    for ext in ("png", "pdf"):
        # three relevance methods of one score: one colour scale compares them (the default is one per row)
        plot.sentence_heatmap(first.tokens, rows, os.path.join(args.out, f"sentence_methods.{ext}"), title=title,
                              scale="figure", colorbar_label=f"relevance for '{LABEL_NAMES[first.target]}'")
    plot.write_atomic(os.path.join(args.out, "sentence_methods.tex"),
                      plot.latex_heatmap([(label, first.tokens, r) for label, r in rows.items()], scale="figure",
                                        standalone=True))
    longest = max(load_sst("test"), key=lambda ex: len(ex.tokens))
    result = model.explain_sentence(longest.tokens, "lrp-all")
    plot.sentence_heatmap(result.tokens, result.relevance, os.path.join(args.out, "long_sentence.png"),
                          title=f"LRP-all, {len(result.tokens)} words, relevance for '{LABEL_NAMES[result.target]}' "
                                f"(true class: {LABEL_NAMES[longest.label]})",
                          colorbar_label=f"relevance for '{LABEL_NAMES[result.target]}'")
    print(f"wrote sentence_methods.png/.pdf/.tex and long_sentence.png to {args.out}")


if __name__ == "__main__":
    main()
