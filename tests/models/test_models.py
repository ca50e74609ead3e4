"""Model composition: the recurrent encoder alone, and dense layers after the recurrence."""

import jax
import jax.numpy as jnp
import numpy as np

from lrpjax.models import bilstm
from lrpjax.models.mlp import MLP
from lrpjax.rules import preset


class BiLSTMWithDenseHead:
    """A BiLSTM encoder whose concatenated final states feed an MLP head (dense after the recurrence)."""

    head = MLP((6, 5, 4), "relu", prefix="head_")

    def init(self, key):
        k1, k2 = jax.random.split(key)
        params = bilstm.init(k1, 3, 3, 4, jnp.float64)
        params.pop("out")
        return {"encoder": params, "head": self.head.init(k2, jnp.float64)}

    def apply(self, params, x, rules=None, *, mask=None):
        finals = bilstm.model.encode(params["encoder"], x, rules, mask=mask)
        return self.head.apply(params["head"], jnp.concatenate(finals), rules)


def test_encode_gives_the_states_that_apply_reads():
    params = bilstm.init(jax.random.PRNGKey(0), 3, 4, 2, jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3), jnp.float64)
    left, right = bilstm.model.encode(params, x)
    expected = left @ params["out"]["W_left"] + right @ params["out"]["W_right"]
    np.testing.assert_allclose(bilstm.apply(params, x), expected, rtol=1e-12)


def test_dense_head_after_the_recurrence_chains_relevance_and_gradients():
    model = BiLSTMWithDenseHead()
    params = model.init(jax.random.PRNGKey(2))
    x = jax.random.normal(jax.random.PRNGKey(3), (6, 3), jnp.float64)
    mask = jnp.arange(6) < 4
    rules = preset("lrp-all", eps=0.01, share=True)
    scores, pullback = jax.vjp(lambda x_: model.apply(params, x_, rules, mask=mask), x)
    seed = jnp.zeros(4).at[1].set(scores[1])
    (r_x,) = pullback(seed)
    # the same relevance computed in two stages: through the head, then through the encoder
    finals = jnp.concatenate(bilstm.model.encode(params["encoder"], x, mask=mask))
    _, pull_head = jax.vjp(lambda f: model.head.apply(params["head"], f, rules), finals)
    (r_finals,) = pull_head(seed)
    np.testing.assert_allclose(r_finals.sum(), scores[1], rtol=1e-10)   # the head conserves (shared biases)
    _, pull_encoder = jax.vjp(lambda x_: jnp.concatenate(bilstm.model.encode(params["encoder"], x_, rules,
                                                                              mask=mask)), x)
    np.testing.assert_allclose(r_x, pull_encoder(r_finals)[0], rtol=1e-12, atol=1e-15)
    assert np.all(np.asarray(r_x[4:]) == 0)
    # and the plain path is the true gradient of the composition
    grad = jax.grad(lambda x_: model.apply(params, x_, mask=mask)[1])(x)
    finite = (model.apply(params, x.at[0, 0].add(1e-6), mask=mask)[1]
              - model.apply(params, x.at[0, 0].add(-1e-6), mask=mask)[1]) / 2e-6
    np.testing.assert_allclose(grad[0, 0], finite, rtol=1e-6)
