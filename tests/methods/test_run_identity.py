"""A run's identity is derived from the method value: a stream resumed with any changed option of any
method family is refused, naming the option; equal methods have equal identities and digests."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrpjax import methods
from lrpjax.datasets import stream
from lrpjax.datasets.stream import StreamError
from lrpjax.methods.decomposition import cd
from lrpjax.models import bilstm
from lrpjax.rules import preset

E, H, C = 3, 2, 3
APPLY = bilstm.apply

# (family, the method a run was written with, the same method with one option changed, the option's name)
CHANGED = [
    ("lrp eps", methods.lrp(APPLY, preset("lrp-all", 1e-3)), methods.lrp(APPLY, preset("lrp-all", 1e-2)), "rules"),
    ("lrp preset", methods.lrp(APPLY, preset("lrp-all", 1e-3)), methods.lrp(APPLY, preset("lrp-prop", 1e-3)), "rules"),
    ("lrp share", methods.lrp(APPLY, preset("lrp-all", 1e-3)), methods.lrp(APPLY, preset("lrp-all", 1e-3, True)),
     "rules"),
    ("gradient kind", methods.gradient(APPLY), methods.sensitivity(APPLY), "method"),
    ("ig steps", methods.integrated_gradients(APPLY, 4), methods.integrated_gradients(APPLY, 8), "steps"),
    ("ig baseline", methods.integrated_gradients(APPLY, 4), methods.integrated_gradients(APPLY, 4, 0.5), "baseline"),
    ("smoothgrad sigma", methods.smoothgrad(APPLY, 0.1, 2), methods.smoothgrad(APPLY, 0.2, 2), "sigma"),
    ("smoothgrad samples", methods.smoothgrad(APPLY, 0.1, 2), methods.smoothgrad(APPLY, 0.1, 3), "samples"),
    ("smoothgrad seed", methods.smoothgrad(APPLY, 0.1, 2, 0), methods.smoothgrad(APPLY, 0.1, 2, 1), "seed"),
    ("smoothgrad noise", methods.smoothgrad(APPLY, 0.1, 2), methods.smoothgrad(APPLY, 0.1, 2, noise="absolute"),
     "noise"),
    ("smoothgrad map", methods.smoothgrad(APPLY, 0.1, 2), methods.smoothgrad(APPLY, 0.1, 2, map="sensitivity"), "map"),
    ("occlusion mode", methods.occlusion(APPLY, "f"), methods.occlusion(APPLY, "p"), "mode"),
    ("random seed", methods.random_baseline(APPLY, 0), methods.random_baseline(APPLY, 1), "seed"),
    ("cd ngram", cd(APPLY), cd(APPLY, 2), "ngram"),
    ("cd bias product", cd(APPLY), cd(APPLY, bias_product="inside"), "bias_product"),
]


@pytest.fixture(scope="module")
def params():
    return bilstm.init(jax.random.PRNGKey(2), E, H, C, jnp.float64)


@pytest.fixture(scope="module")
def sequences():
    rng = np.random.default_rng(0)
    return [rng.normal(0.0, 0.5, (T, E)) for T in (2, 3, 1)]


@pytest.mark.parametrize("family, before, after, option", CHANGED, ids=[c[0] for c in CHANGED])
def test_a_stream_resumed_with_a_changed_option_is_refused_naming_it(tmp_path, params, sequences, family, before,
                                                                    after, option):
    out = tmp_path / "out"
    stream.explain_stream(before, params, sequences, out, buckets=(4,), chunk_size=2)
    with pytest.raises(StreamError, match=rf"methods\[0\]\.{option}:"):
        stream.explain_stream(after, params, sequences, out, buckets=(4,), chunk_size=2, resume=True)
    again = stream.explain_stream(before, params, sequences, out, buckets=(4,), chunk_size=2, resume=True)
    assert again.kept == again.sequences == len(sequences)


@pytest.mark.parametrize("family, before, after, option", CHANGED, ids=[c[0] for c in CHANGED])
def test_identity_holds_every_field_and_tells_changed_options_apart(family, before, after, option):
    identity = before.identity()
    assert {f.name for f in dataclasses.fields(before)} <= set(identity)
    json.dumps(identity)   # stable JSON: no object addresses
    assert identity == type(before)(**{f.name: getattr(before, f.name) for f in dataclasses.fields(before)}).identity()
    assert identity != after.identity() and before.digest() != after.digest()
    assert before == dataclasses.replace(before) and hash(before) == hash(dataclasses.replace(before))


def test_identity_names_the_model_by_its_configuration():
    identity = methods.gradient(APPLY).identity()
    assert identity["apply"]["config"] == bilstm.model.network.config()
    assert "0x" not in json.dumps(identity)


CLI_CHANGED = [
    (["--method", "lrp-all", "--eps", "0.001"], ["--method", "lrp-all", "--eps", "0.01"], "eps 0.001"),
    (["--method", "occlusion-f"], ["--method", "occlusion-p"], "--method occlusion-f"),
    (["--method", "random", "--seed", "3"], ["--method", "random", "--seed", "4"], "--seed 3"),
    (["--method", "smoothgrad", "--seed", "3"], ["--method", "smoothgrad", "--seed", "4"], "--seed 3"),
]


@pytest.mark.parametrize("before, after, named", CLI_CHANGED, ids=[" ".join(c[1]) for c in CLI_CHANGED])
def test_a_command_line_run_resumed_with_a_changed_method_option_is_refused_naming_it(tmp_path, capsys, before,
                                                                                     after, named):
    from lrpjax.app import cli

    source = tmp_path / "in.txt"
    source.write_text("a fine film\nnot good\n", encoding="utf-8")
    common = ["explain", "--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--batch-size", "2"]
    assert cli.main(common + before) == 0
    capsys.readouterr()
    assert cli.main(common + after + ["--resume"]) == 1
    assert named in capsys.readouterr().err
    assert cli.main(common + before + ["--resume"]) == 0
