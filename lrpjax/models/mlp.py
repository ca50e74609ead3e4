"""Dense networks: a multilayer perceptron built from the elementary computations of ``ops.py``.

``MLP(widths, activation).apply(params, x, rules=None)`` maps one input vector ``x`` (D,) to scores
(C,) through dense layers ``z = x @ W + b`` (``ops.linear``) with ReLU or tanh between them
(``ops.activation``, which passes relevance through) and a linear output layer: a composition of
:class:`~lrpjax.models.layers.Dense` layers (:attr:`MLP.network`). Layer names, which
are also the keys of ``params`` and of :meth:`lrpjax.core.rules.RuleSet.at`::

    "dense_0", "dense_1", ..., "out"          each {"W": (D_in, D_out), "b": (D_out,)}

(with a ``prefix``, e.g. ``"pre_dense_0"``, ``"pre_out"``, so that an MLP can sit inside another
model without name clashes). The same model gives true gradients (``rules=None``), LRP with any
rule per layer (:func:`lrpjax.core.rules.composite`) and, through :meth:`MLP.zero_taps`, the relevance at
every layer's input in one backward pass (the LRP toolbox's ``lrp_layerwise``; see :func:`layerwise`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from lrpjax._types import Array, ArrayLike, Params
from lrpjax.models.layers import Dense
from lrpjax.models.sequential import Sequential
from lrpjax.core.rules import RuleSet

__all__ = ["MLP", "layerwise"]


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))

_ACTIVATIONS = ("relu", "tanh")


@dataclass(frozen=True)
class MLP:
    """A multilayer perceptron ``D -> H_1 -> ... -> C`` with biases in every layer.

    Attributes:
        widths: layer widths ``(D, H_1, ..., H_n, C)``, at least ``(D, C)`` (one output layer).
        activation: ``"relu"`` or ``"tanh"`` after every hidden layer (none after ``"out"``).
        prefix: prepended to every layer name (default none).
    """

    widths: tuple[int, ...]
    activation: str = "relu"
    prefix: str = ""

    input_ndim: ClassVar[int] = 1    # one example is a vector (D,), not a sequence (T, E)
    masked: ClassVar[bool] = False   # apply takes no padding mask

    def __post_init__(self):
        widths = tuple(self.widths) if isinstance(self.widths, (list, tuple)) else self.widths
        if not isinstance(widths, tuple) or len(widths) < 2:
            raise ValueError(f"`widths` of MLP must be a tuple (D, H_1, ..., C) of at least two sizes; "
                             f"got {self.widths!r}.")
        for w in widths:
            if not isinstance(w, int) or isinstance(w, bool) or w < 1:
                raise ValueError(f"`widths` of MLP must be positive ints; got {self.widths!r}.")
        object.__setattr__(self, "widths", widths)
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` of MLP must be one of {tuple(_ACTIVATIONS)}; got {self.activation!r}.")
        if not isinstance(self.prefix, str):
            raise TypeError(f"`prefix` of MLP must be a str; got {type(self.prefix).__name__}.")

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names, input side first: ``("dense_0", ..., "out")`` (with the prefix)."""
        names = [f"dense_{k}" for k in range(len(self.widths) - 2)] + ["out"]
        return tuple(self.prefix + name for name in names)

    @property
    def kind(self) -> str:
        return f"mlp-{self.activation}"

    def init(self, key: Array, dtype=jnp.float32) -> Params:
        """Random parameters: ``W`` uniform in +-sqrt(6 / (D_in + D_out)) (Glorot), ``b = 0``."""
        keys = jax.random.split(key, len(self.layers))
        params = {}
        for name, k, d_in, d_out in zip(self.layers, keys, self.widths[:-1], self.widths[1:]):
            bound = (6.0 / (d_in + d_out)) ** 0.5
            params[name] = {"W": jax.random.uniform(k, (d_in, d_out), dtype, -bound, bound),
                            "b": jnp.zeros((d_out,), dtype)}
        return params

    @cached_property
    def network(self) -> Sequential:
        """The composition this model is: ``Dense`` layers with the activation, then ``Dense`` ``out``."""
        hidden = tuple(Dense(width, self.activation, name=name)
                       for width, name in zip(self.widths[1:-1], self.layers[:-1]))
        return Sequential((*hidden, Dense(self.widths[-1], name=self.layers[-1])), sequence_input=False)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a rule override may use (:attr:`layers`)."""
        return self.layers

    def check_params(self, params: Params) -> None:
        """Checks the layout and every shape of ``params``.

        Raises:
            TypeError: ``params`` not a dict.
            ValueError: a missing layer or a shape other than ``W (D_in, D_out)``, ``b (D_out,)``.
        """
        if not isinstance(params, dict):
            raise TypeError(f"`params` must be a dict of layers; got {type(params).__name__}.")
        missing = [name for name in self.layers if name not in params]
        if missing:
            raise ValueError(f"`params` of {self.kind} {self.widths} must have keys {list(self.layers)}; "
                             f"missing {missing}.")
        self.network.specs(params, self.widths[0])

    def output_size(self, params: Params) -> int:
        """C, the number of scores (checks ``params``)."""
        self.check_params(params)
        return self.widths[-1]

    def check_inputs(self, x: Any, mask: Any = None) -> None:
        """Static checks of one input vector (free under ``jit``).

        Raises:
            ValueError: ``x`` not of shape (D,), or a ``mask`` (an MLP has no padding).
            TypeError: ``x`` not floating point.
        """
        self.network.check_inputs(x, mask, self.widths[0])

    def apply(self, params: Params, x: ArrayLike, rules: RuleSet | None = None, *,
              mask: ArrayLike | None = None, taps: Params | None = None) -> Array:
        """Scores of one input vector.

        Args:
            params: ``{layer: {"W": (D_in, D_out), "b": (D_out,)}}`` for every name in :attr:`layers`.
            x: input, shape (D,).
            rules: rule set (relevance backward; ``rules.at(layer)`` per layer) or None (gradients).
            mask: accepted for the common model signature; must be None.
            taps: zero probes from :meth:`zero_taps`; the cotangent of ``taps["states"][layer]`` is
                the relevance (or gradient) at that layer's input.

        Returns:
            scores, shape (C,).
        """
        self.check_params(params)
        self.check_inputs(x, mask)
        return self.network.apply(params, x, rules, mask=mask, taps=taps)

    def zero_taps(self, params: Params, x: ArrayLike) -> Params:
        """Zero probes for :meth:`apply`: ``{"initial": {}, "states": {layer: zeros (D_in,)}}``.

        With them ``lrpjax.lrp(mlp.apply, rules).full(params, x, target).states[layer]`` is the
        relevance at the input of every layer (``states[layers[0]]`` equals the input relevance).
        """
        self.check_params(params)
        return self.network.zero_taps(params, x)


def layerwise(explanation: Any) -> dict[str, Array]:
    """Per-layer conservation figures of an LRP explanation with layer-wise relevances.

    Args:
        explanation: an ``Explanation`` of ``lrpjax.lrp(mlp.apply, rules).full(...)`` (anything with
            ``states`` ``{layer: relevance at its input}``, ``params`` and ``target_score``).

    Returns:
        ``{layer: sum of the relevance at its input}`` input side first (names in natural order:
        ``dense_2`` before ``dense_10``, ``out`` last), then ``"output"``: the target score the
        backward pass started from. Each sum equals the next one minus the relevance absorbed by
        that layer's bias (``explanation.params[layer]["b"]``) and stabiliser; with
        ``share=True`` rules (or flat, w², z+, zB) all sums are equal.

    Raises:
        TypeError: an object without ``states`` and ``target_score``.
    """
    if not hasattr(explanation, "states") or not hasattr(explanation, "target_score"):
        raise TypeError(f"`explanation` must be an Explanation from Method.full; got {type(explanation).__name__}.")
    names = sorted(explanation.states, key=_natural_key)
    sums = {name: jnp.sum(explanation.states[name]) for name in names}
    sums["output"] = jnp.asarray(explanation.target_score)
    return sums
