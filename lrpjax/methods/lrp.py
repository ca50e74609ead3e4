"""Layer-wise Relevance Propagation: a pullback of the model under a rule set, seeded with the target's
score (Sec. 11.2.2).

Under a rule set every elementary computation's backward pass is its relevance rule
(:mod:`lrpjax.core.ops`), so the cotangent ``jax.vjp`` carries back from the output is relevance; the
seed is ``w * output``: for a class index the target's score, every other output 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from lrpjax.core.rules import RuleSet, preset
from lrpjax.methods.base import Pullback
from lrpjax.methods.results import Explanation
from lrpjax.methods.targets import select, weights
from lrpjax.models.sequential import network_of

__all__ = ["LRP", "lrp"]


@dataclass(frozen=True)
class LRP(Pullback):
    """LRP through ``apply`` with a rule set.

    Attributes:
        apply: the model, ``apply(params, x, rules=None, *, mask=None)``.
        rules: the rule set (:mod:`lrpjax.core.rules`); a composite's overrides must name layers (or parts) of
            the model (checked when the model is one of :mod:`lrpjax.models`).
    """

    rules: RuleSet

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.rules, RuleSet):
            raise TypeError(f"`rules` must be a RuleSet or a preset name; got {type(self.rules).__name__}.")
        network = network_of(self.model)
        checked = network if network is not None else self.model
        if hasattr(checked, "check_rules"):
            checked.check_rules(self.rules)

    @property
    def name(self) -> str:
        return "lrp"

    @property
    def pullback_rules(self) -> RuleSet:
        return self.rules

    def seed(self, w, scores):
        """Relevance starts as the target's score (Sec. 11.2.2): ``w * output``."""
        return w * scores

    @property
    def has_residual(self) -> bool:
        """LRP on a model of :mod:`lrpjax.models` (one with zero taps) has a conservation residual."""
        return hasattr(self.model, "zero_taps")

    def prepare_full(self, params, x, mask, index):
        """``(scores, pull_full)``: one ``jax.vjp`` through the model with zero taps, so that each
        ``pull_full(target)`` gives the :class:`Explanation`: the relevance at the inputs, at every state,
        at the parameters (what the biases absorbed) and the conservation residual.

        Raises:
            TypeError: ``apply`` is not the method of a model with ``zero_taps(params, x)``.
        """
        if not self.has_residual:
            raise TypeError("full() needs `apply` to be the method of a model with zero_taps(params, x) "
                            "(the models of lrpjax.models).")
        taps = self.model.zero_taps(params, x)
        scores, pullback = jax.vjp(lambda p, x_, t: self.apply(p, x_, self.rules, mask=mask, taps=t),
                                   params, x, taps)

        def pull_full(target) -> Explanation:
            r_params, r_x, r_taps = pullback(self.seed(weights(target, scores), scores))
            if mask is not None:
                r_x = jnp.where(jnp.reshape(mask, mask.shape + (1,) * (r_x.ndim - 1)), r_x, jnp.zeros((), r_x.dtype))
            absorbed = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_params))
            initial = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(r_taps["initial"]))
            target_score = select(target, scores)
            residual = target_score - jnp.sum(r_x) - absorbed - initial
            return Explanation(r_x, scores, target_score, r_params, r_taps["initial"], r_taps["states"], residual)

        return scores, pull_full


def lrp(apply: Callable, rules: RuleSet | str = "lrp-all") -> LRP:
    """Layer-wise Relevance Propagation through ``apply`` with a rule set.

    ``lrp(apply, rules)(params, x, target)`` returns the relevance of ``x`` (T, E); relevance starts
    as the target's score (other classes 0) and flows back by the rules of each elementary computation.

    Args:
        apply: a model, ``apply(params, x, rules=None, *, mask=None)``.
        rules: a :class:`~lrpjax.core.rules.RuleSet` or a preset name (``"lrp-all"``, ...; eps 0).

    Raises:
        TypeError: ``rules`` not a rule set or a preset name.
        ValueError: an unknown preset, or an override (``rules.composite(by_layer=...)``) naming a
            layer the model (a model of :mod:`lrpjax.models`) does not have; the message lists its layers.
    """
    return LRP(apply, preset(rules) if isinstance(rules, str) else rules)
