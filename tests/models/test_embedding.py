"""Token ids in: the Embedding layer, every method on ids, padded batches, jit/vmap, errors, checkpoints.

The oracle is the float64 NumPy BiLSTM of tests/oracles/reference.py run on the embedded vectors
``table[ids]`` (written here with an explicit loop); a token's relevance is the sum over its embedding
dimensions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
import reference as ref
from lrpjax.core.rules import preset
from lrpjax.io import checkpoints
from lrpjax.methods import cd
from lrpjax.models import Dense, Embedding, Recurrent, Sequential
from lrpjax.models.embedding import with_embedding
from lrpjax.models.sequential import _apply_compiled

V, E, H, C = 7, 3, 2, 3
PRESETS = ("lrp-all", "lrp-prop", "lrp-abs", "lrp-half")
EPS = 0.01


@pytest.fixture(scope="module")
def setup():
    jax.config.update("jax_enable_x64", True)
    model = Sequential((Embedding(E, name="emb"), Recurrent(units=H, bidirectional=True, name="bi",
                                                            directions=("left", "right")),
                        Dense(C, bias=False, name="out")))
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                    model.init(jax.random.PRNGKey(3), input_size=V, dtype=jnp.float64))
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(0, 0.7, a.shape)), params)
    oracle = {"left": {k: np.asarray(v) for k, v in params["left"].items()},
              "right": {k: np.asarray(v) for k, v in params["right"].items()},
              "out": {k: np.asarray(v) for k, v in params["out"].items()}}
    return model, params, oracle


def lookup(table, ids):
    """table[ids], one row at a time."""
    table = np.asarray(table, np.float64)
    return np.stack([table[int(i)] for i in ids])


IDS = np.array([4, 0, 6, 2, 2])


def test_lrp_presets_per_token_equal_the_oracle_on_the_embedded_vectors(setup):
    model, params, oracle = setup

    @jax.jit
    def tokens(p, ids):       # every preset in one compiled call
        return jnp.stack([lrpjax.lrp(model.apply, preset(n, eps=EPS)).tokens(p, ids, 1) for n in PRESETS])

    got = np.asarray(tokens(params, IDS))
    x = lookup(params["emb"]["table"], IDS)
    for k, name in enumerate(PRESETS):
        want = ref.bilstm_lrp(oracle, x, 1, gate=name, eps=EPS)["R_x"].sum(axis=1)
        np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-10, err_msg=name)
    scores = np.asarray(model.apply(params, IDS))
    np.testing.assert_allclose(scores, ref.bilstm_forward(oracle, x), rtol=0, atol=1e-12)


def test_every_method_on_ids_equals_it_on_the_embedded_vectors(setup):
    model, params, oracle = setup
    inner, inner_params = model.vector_model(params)
    assert "emb" not in inner_params and inner.takes_ids is False
    vectors = model.embed(params, IDS)
    x = lookup(params["emb"]["table"], IDS)
    np.testing.assert_array_equal(np.asarray(vectors), x)
    gradient = ref.bilstm_gradient(oracle, x, 2)
    np.testing.assert_allclose(np.asarray(lrpjax.gradient(model.apply)(params, IDS, 2)), gradient, atol=1e-12)
    np.testing.assert_allclose(np.asarray(lrpjax.gradient_x_input(model.apply)(params, IDS, 2)), gradient * x,
                               atol=1e-12)
    occluded = [ref.bilstm_forward(oracle, np.where(np.arange(5)[:, None] == t, 0.0, x))[2] for t in range(5)]
    want = ref.bilstm_forward(oracle, x)[2] - np.array(occluded)
    np.testing.assert_allclose(np.asarray(lrpjax.occlusion(model.apply)(params, IDS, 2)), want, atol=1e-12)
    np.testing.assert_allclose(np.asarray(lrpjax.sensitivity(model.apply)(params, IDS, 2)), gradient ** 2,
                               atol=1e-12)
    # Integrated Gradients from zero vectors, midpoint rule with 2 points: oracle gradients on the path
    path = sum(ref.bilstm_gradient(oracle, a * x, 2) for a in (0.25, 0.75)) / 2
    np.testing.assert_allclose(np.asarray(lrpjax.integrated_gradients(model.apply, steps=2)(params, IDS, 2)),
                               path * x, atol=1e-12)
    np.testing.assert_allclose(np.asarray(cd(model.apply)(params, IDS, 2)),
                               np.asarray(cd(inner.apply)(inner_params, vectors, 2)), atol=1e-12)
    full = lrpjax.lrp(model.apply, preset("lrp-all", eps=0.0)).full(params, IDS, 2)
    assert full.relevance.shape == (5, E) and abs(float(full.residual)) < 1e-10


def test_padded_batch_of_ids_equals_each_sequence(setup):
    model, params, _ = setup
    X = np.array([[4, 0, 6, 2, 2], [1, 5, 3, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    method = lrpjax.lrp(model.apply, "lrp-half")
    batch = np.asarray(method.batch(params, X, np.array([0, 1]), mask=mask))
    for i, L in enumerate(mask.sum(1)):
        np.testing.assert_allclose(batch[i, :L], np.asarray(method(params, X[i, :L], i)), atol=1e-12)
        assert not batch[i, L:].any()
    occlusion = np.asarray(lrpjax.occlusion(model.apply).batch(params, X, 1, mask=mask))
    np.testing.assert_allclose(occlusion[0], np.asarray(lrpjax.occlusion(model.apply)(params, X[0], 1)), atol=1e-12)
    assert not occlusion[1, 3:].any()
    scores = jax.vmap(lambda ids, m: model.apply(params, ids, mask=m))(jnp.asarray(X), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(scores[1]), np.asarray(model.apply(params, X[1, :3])), atol=1e-12)


def test_ids_under_jit_and_vmap(setup):
    model, params, _ = setup
    method = lrpjax.lrp(model.apply, "lrp-all")
    jitted = jax.jit(lambda p, ids: method.tokens(p, ids, 0))(params, jnp.asarray(IDS))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(method.tokens(params, IDS, 0)), atol=1e-12)
    grads = jax.vmap(lambda ids: lrpjax.gradient(model.apply)(params, ids, 1))(jnp.stack([IDS, IDS[::-1]]))
    np.testing.assert_allclose(np.asarray(grads[1]), np.asarray(lrpjax.gradient(model.apply)(params, IDS[::-1], 1)),
                               atol=1e-12)


def test_a_direct_apply_compiles_once_per_shape(setup):
    model, params, _ = setup
    model.apply(params, IDS)
    before = _apply_compiled._cache_size()
    for ids in (IDS[::-1], IDS + 0, np.array([1, 1, 1, 1, 1])):
        model.apply(params, ids)
    assert _apply_compiled._cache_size() == before


def test_clear_errors(setup):
    model, params, _ = setup
    with pytest.raises(ValueError, match=r"`x` has token id 7 .*vocabulary of size V = 7"):
        model.apply(params, np.array([1, 7]))
    with pytest.raises(ValueError, match=r"`x` has token id -1"):
        lrpjax.lrp(model.apply)(params, np.array([1, -1]), 0)
    with pytest.raises(ValueError, match=r"`X` has token id 9 .*V = 7"):
        lrpjax.gradient(model.apply).batch(params, np.array([[1, 2], [9, 0]]), 0)
    with pytest.raises(TypeError, match=r"`x` must be integer token ids.*vector_model"):
        lrpjax.lrp(model.apply)(params, np.zeros((3, E)), 0)
    inner, inner_params = model.vector_model(params)
    with pytest.raises(TypeError, match=r"Embedding"):
        lrpjax.lrp(inner.apply)(inner_params, np.array([1, 2]), 0)
    with pytest.raises(TypeError, match=r"integer dtype.*Embedding"):
        inner.apply(inner_params, np.array([1, 2]))
    with pytest.raises(ValueError, match=r"reads token ids: it must be the first layer"):
        Sequential((Recurrent(units=2), Embedding(2)))
    with pytest.raises(ValueError, match=r"`ids` must be token ids of shape"):
        model.embed(params, np.zeros((1, 2, 3), int))
    with pytest.raises(TypeError, match=r"vector_model\(\) is for a model that takes token ids"):
        inner.vector_model(inner_params)
    with pytest.raises(ValueError, match=r"'table'"):
        model.apply({**params, "emb": {"weights": params["emb"]["table"]}}, IDS)


def test_per_token_refuses_what_it_cannot_sum():
    np.testing.assert_array_equal(np.asarray(lrpjax.per_token(np.ones((3, 2)), 2)), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(np.asarray(lrpjax.per_token(np.ones(3), 2)), np.ones(3))
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\).*input_ndim = 2"):
        lrpjax.per_token(np.ones((2, 3, 4)), 2)
    with pytest.raises(ValueError, match=r"input_ndim = 3"):
        lrpjax.per_token(np.ones(3), 3)


def test_checkpoint_round_trip_and_with_embedding(setup, tmp_path):
    model, params, _ = setup
    path = checkpoints.save_model(tmp_path / "ids.npz", model, params)
    loaded = checkpoints.load_model(path)
    assert loaded.model == model
    np.testing.assert_array_equal(np.asarray(loaded.model.apply(loaded.params, IDS)),
                                  np.asarray(model.apply(params, IDS)))
    inner, inner_params = model.vector_model(params)
    rebuilt, rebuilt_params = with_embedding(inner, inner_params, params["emb"]["table"], name="emb")
    assert rebuilt == model and rebuilt_params.keys() == params.keys()
    with pytest.raises(TypeError, match=r"takes token ids already"):
        with_embedding(model, params, params["emb"]["table"])
    with pytest.raises(ValueError, match=r"`table` must have shape \(V, E\) with E = 3"):
        with_embedding(inner, inner_params, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"`name` 'out' is used by the model"):
        with_embedding(inner, inner_params, params["emb"]["table"], name="out")
