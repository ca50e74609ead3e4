"""Rule values: validation, hashability, stabiliser sign convention, zero-denominator safety."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax.core import rules
from lrpjax.rules import Epsilon, Gate, RuleSet, preset


def test_rules_are_hashable_and_equal_by_value():
    assert preset("lrp-all", eps=1e-3) == preset("lrp-all", eps=1e-3)
    assert hash(preset("lrp-prop", eps=0.2)) == hash(preset("lrp-prop", eps=0.2))
    assert preset("lrp-all", eps=1e-3) != preset("lrp-all", eps=1e-2)


@pytest.mark.parametrize("name,mode", [("lrp-all", "all"), ("lrp-prop", "prop"), ("lrp-abs", "abs"),
                                       ("lrp-half", "half")])
def test_presets_choose_the_product_rule_and_share_eps(name, mode):
    rs = preset(name, eps=0.5, share=True)
    assert rs.gate.mode == mode
    assert rs.linear == Epsilon(0.5, True) == rs.accumulate
    assert rs.gate.eps == 0.5 and rs.gate.share


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="lrp-all, lrp-prop, lrp-abs, lrp-half"):
        preset("lrp-everything")


@pytest.mark.parametrize("eps", [-1.0, float("nan"), float("inf")])
def test_bad_eps_is_rejected(eps):
    with pytest.raises(ValueError, match="eps"):
        Epsilon(eps)
    with pytest.raises(ValueError, match="eps"):
        Gate("prop", eps)


def test_bad_types_are_rejected():
    with pytest.raises(TypeError, match="eps"):
        Epsilon("0.1")
    with pytest.raises(TypeError, match="share"):
        Epsilon(0.1, share=1)
    with pytest.raises(ValueError, match="mode"):
        Gate("maximum")
    with pytest.raises(TypeError, match="layers"):
        RuleSet(layers=(("out", Epsilon()),))


def test_stabilizer_sign_of_zero_is_positive():
    z = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(rules.stabilize(z, 0.5), [-2.5, 0.5, 3.5])


def test_zero_denominator_gives_zero_share_not_nan():
    r = Epsilon(0.0).linear((jnp.zeros(3),), (jnp.ones((3, 2)),), None, jnp.zeros(2), jnp.ones(2))
    assert np.all(np.asarray(r[0][0]) == 0)
    r_g, r_s = Gate("prop").split(jnp.zeros(2), jnp.zeros(2), jnp.ones(2))
    assert np.all(np.isfinite(r_g)) and np.all(r_g == 0) and np.all(r_s == 0)
    grads = jax.grad(lambda d: rules.safe_divide(jnp.ones(()), d))(jnp.zeros(()))
    assert np.isfinite(grads)


def test_layer_overrides_select_by_name():
    out = RuleSet(linear=Epsilon(0.0))
    rs = preset("lrp-half", eps=0.1).replace(layers=(("out", out),))
    assert rs.at("out") is out
    assert rs.at("left") is rs
