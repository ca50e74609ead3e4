"""Figures say what their numbers are: signed relevance and gradients on the diverging map centred at 0,
sensitivities (never negative) on a sequential map, each with its own caption; several rows get a
colour scale each unless one is chosen, and the colour bar says which."""

import numpy as np
import pytest

import lrpjax
from lrpjax.viz import plot, render

TOKENS = ["not", "bad", "at", "all"]


def _apply(params, x, rules=None, *, mask=None):
    return x.sum(0)


def test_value_kind_of_methods_and_labels():
    assert render.value_kind(lrpjax.sensitivity(_apply)) == "sensitivity"
    assert render.value_kind(lrpjax.gradient(_apply)) == "gradient"
    assert render.value_kind(lrpjax.smoothgrad(_apply)) == "gradient"
    assert render.value_kind(lrpjax.smoothgrad(_apply, map="sensitivity")) == "sensitivity"
    assert render.value_kind(lrpjax.smoothgrad(_apply, map="gradient_x_input")) == "relevance"
    assert render.value_kind(lrpjax.gradient_x_input(_apply)) == "relevance"
    assert render.value_kind(lrpjax.integrated_gradients(_apply)) == "relevance"
    for label, kind in (("Sensitivity", "sensitivity"), ("Gradient", "gradient"), ("SmoothGrad", "gradient"),
                        ("LRP-all", "relevance"), ("Gradient x Input", "relevance"), ("occlusion-f", "relevance")):
        assert render.value_kind(label) == kind, label


def test_sensitivity_colours_are_sequential_from_white_and_refuse_negative_values():
    colors = render.relevance_colors([0.0, 0.5, 1.0], kind="sensitivity")
    assert colors[0].tolist() == [255, 255, 255] and colors[2].tolist() == list(render.SEQUENTIAL_END)
    assert np.all(colors[1] < 255) and np.all(colors[1] > np.array(render.SEQUENTIAL_END))
    with pytest.raises(ValueError, match="kind 'sensitivity' must be >= 0"):
        render.relevance_colors([0.1, -0.2], kind="sensitivity")
    with pytest.raises(ValueError, match="`kind` must be one of"):
        render.relevance_colors([0.1], kind="signed")
    # signed kinds keep the diverging map
    assert render.relevance_colors([-1.0, 1.0], kind="gradient").tolist() == [[0, 0, 255], [255, 0, 0]]


def _captions(fig):
    return [ax.get_xlabel() for ax in fig.axes]


def _box_colors(fig):
    return [tuple(np.round(np.array(a.get_facecolor()[:3]) * 255).astype(int)) for a in fig.artists]


def test_each_kind_gets_its_map_and_caption_and_rows_their_own_scale_by_default():
    rows = [("LRP-all", TOKENS, [2.0, -1.0, 0.5, 0.0]), ("Gradient", TOKENS, [0.01, -0.02, 0.0, 0.0]),
            ("Sensitivity", TOKENS, [1e-4, 4e-4, 0.0, 2e-4])]
    fig = plot.heatmap(rows, colorbar_label="relevance for 'positive'")
    captions = _captions(fig)
    assert len(captions) == 3
    assert any("relevance for 'positive' / its row's largest |value|" in c and "red: for the target" in c
               for c in captions)
    assert any(c.startswith("gradient") and "the score rises with the input" in c for c in captions)
    assert any(c.startswith("sensitivity") and "never negative" in c and "against" not in c for c in captions)
    colors = _box_colors(fig)
    # per-row scales: the gradient row's largest |value| is full blue, the sensitivity row's full purple
    assert colors[0] == (255, 0, 0) and colors[5] == (0, 0, 255) and colors[9] == render.SEQUENTIAL_END
    # one scale for the figure when asked: the small rows fade to (near) white, and the caption says so
    shared = _box_colors(plot.heatmap(rows[:2], scale="figure"))
    assert shared[5][0] >= 250 and "its row" not in " ".join(_captions(plot.heatmap(rows[:2], scale="figure")))


def test_a_sensitivity_only_figure_has_no_for_or_against_caption_and_kinds_are_checked():
    fig = plot.sentence_heatmap(TOKENS, [0.0, 1.0, 2.0, 3.0], kinds="sensitivity")
    (caption,) = _captions(fig)
    assert "never negative" in caption and "against" not in caption and "for the target" not in caption
    with pytest.raises(ValueError, match="row 'Sensitivity'.*must be >= 0"):
        plot.heatmap([("Sensitivity", TOKENS, [0.0, -1.0, 0.0, 0.0])])
    with pytest.raises(ValueError, match="one kind per row"):
        plot.heatmap([("a", TOKENS, [0.0] * 4)], kinds=["relevance", "gradient"])
    with pytest.raises(ValueError, match="`scale` must be None"):
        plot.heatmap([("a", TOKENS, [0.0] * 4)], scale="rows")
