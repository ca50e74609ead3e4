"""The documentation: its code runs, its rule example is right, every public module has a page, the site
builds with warnings as errors.

* Every ``python`` block of every page under ``docs/`` runs: the blocks of one page in order, in one
  fresh interpreter (JAX's defaults, float32, as a reader runs them), in a temporary directory.
* The page "Writing a rule of your own" is also executed in this process (float64, strict dtype
  promotion) and its two rules are checked against computations written here and for conservation.
* Every public module of the package has an API page listed in ``mkdocs.yml``; every name of the
  top-level namespace is mentioned on the API index.
* ``mkdocs build --strict`` succeeds (needs the ``docs`` extra; without it the test is skipped and says
  so), and in the built site every public name of every module has its anchor.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrpjax
from lrpjax.models import bilstm
from lrpjax.core.rules import Epsilon, Gate, RuleSet, preset

from markdown_blocks import blocks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CUSTOM_RULE = DOCS / "guide" / "custom-rule.md"
PAGE_TIMEOUT = 600


def _pages_with_python() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if any(b.language == "python" for b in blocks(p)))


def _page_program(page: Path) -> str:
    """The page's python blocks in order, each preceded by a comment naming its line."""
    parts = [f"# --- {page.relative_to(ROOT)}, block at line {b.line}\n{b.code}"
             for b in blocks(page) if b.language == "python"]
    return "\n".join(parts)


# --- every page's code runs -------------------------------------------------------------------------

def test_the_guide_has_code_to_run():
    pages = {p.relative_to(DOCS).as_posix() for p in _pages_with_python()}
    assert {"index.md", "guide/getting-started.md", "guide/own-model.md", "guide/rules.md",
            "guide/custom-rule.md", "guide/datasets.md", "guide/training.md"} <= pages


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with_python(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_code_runs(page, tmp_path):
    script = tmp_path / "page.py"
    script.write_text(_page_program(page), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=PAGE_TIMEOUT)
    assert done.returncode == 0, f"{page}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


# --- "Writing a rule of your own": the page's rules, checked -------------------------------------------

@pytest.fixture(scope="module")
def page_rules(tmp_path_factory):
    """The namespace after running the page's code in this process (float64, strict promotion)."""
    module = types.ModuleType("custom_rule_page")   # a real module: dataclasses look their module up
    sys.modules[module.__name__] = module
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("custom_rule"))
    try:
        exec(compile(_page_program(CUSTOM_RULE), str(CUSTOM_RULE), "exec"), module.__dict__)
    finally:
        os.chdir(cwd)
        del sys.modules[module.__name__]
    return module.__dict__


def _random_bilstm(seed: int, E: int = 5, H: int = 4, C: int = 3):
    params = bilstm.init(jax.random.PRNGKey(seed), E, H, C, jnp.float64)
    # Non-zero biases, so that the rules' treatment of the bias shows.
    params = {k: ({**v, "b": 0.3 * jax.random.normal(jax.random.PRNGKey(seed + 100), v["b"].shape, jnp.float64)}
                  if "b" in v else v) for k, v in params.items()}
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (6, E), jnp.float64)
    return params, x


def test_page_defines_both_rules(page_rules):
    assert {"AbsoluteShare", "SignalShare"} <= set(page_rules)


def test_absolute_share_matches_a_hand_computation(page_rules, rng):
    rule = page_rules["AbsoluteShare"]()
    x1, x2 = rng.normal(size=3), rng.normal(size=2)
    W1, W2, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=4)
    r = rng.normal(size=4)
    z = x1 @ W1 + x2 @ W2 + b
    (r1, r2), r_b = rule.linear((jnp.asarray(x1), jnp.asarray(x2)), (jnp.asarray(W1), jnp.asarray(W2)),
                                jnp.asarray(b), jnp.asarray(z), jnp.asarray(r))
    # R_j = sum_k |x_j w_jk| / sum_j' |x_j' w_j'k| R_k, written out over both inputs with loops.
    inputs = list(x1) + list(x2)
    weights = np.vstack([W1, W2])
    expected = np.zeros(5)
    for k in range(4):
        total = sum(abs(inputs[j] * weights[j, k]) for j in range(5))
        for j in range(5):
            expected[j] += abs(inputs[j] * weights[j, k]) / total * r[k]
    np.testing.assert_allclose(np.concatenate([r1, r2]), expected, rtol=1e-12)
    np.testing.assert_array_equal(r_b, np.zeros(4))
    assert rule.linear((jnp.asarray(x1),), (jnp.asarray(W1),), None, jnp.asarray(x1 @ W1), jnp.asarray(r))[1] is None


def test_absolute_share_through_the_op_is_the_rule(page_rules, rng):
    rules = RuleSet(linear=page_rules["AbsoluteShare"]())
    x, W, b = rng.normal(size=3), rng.normal(size=(3, 2)), rng.normal(size=2)
    z, pullback = jax.vjp(lambda x_: lrpjax.ops.linear(rules, (x_,), (jnp.asarray(W),), jnp.asarray(b)),
                          jnp.asarray(x))
    r = jnp.asarray([0.7, -1.1])
    (r_x,) = pullback(r)
    contributions = np.abs(x[:, None] * W)
    np.testing.assert_allclose(r_x, contributions @ (np.asarray(r) / contributions.sum(axis=0)), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_absolute_share_conserves_through_a_bilstm(page_rules, seed):
    params, x = _random_bilstm(seed)
    rules = RuleSet(linear=page_rules["AbsoluteShare"](), gate=Gate("all"), accumulate=Epsilon(0.0))
    full = lrpjax.lrp(bilstm.apply, rules).full(params, x, 1)
    absorbed = sum(float(jnp.sum(leaf)) for leaf in jax.tree_util.tree_leaves(full.params))
    assert absorbed == 0.0                         # the bias is not an input of this rule
    np.testing.assert_allclose(float(jnp.sum(full.relevance)), float(full.target_score), rtol=1e-10)
    assert abs(float(full.residual)) < 1e-10 * abs(float(full.target_score))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.75, 1.0])
def test_signal_share_splits_a_product_by_hand(page_rules, alpha):
    rules = RuleSet(gate=page_rules["SignalShare"](alpha))
    z_g, z_s, r = jnp.array([0.3, -1.2, 0.0]), jnp.array([2.0, 0.7, -0.4]), jnp.array([1.0, -2.0, 0.5])
    p, pullback = jax.vjp(lambda g, s: lrpjax.ops.gated(rules, g, s), z_g, z_s)
    np.testing.assert_allclose(p, jax.nn.sigmoid(z_g) * jnp.tanh(z_s))
    r_g, r_s = pullback(r)
    np.testing.assert_allclose(r_g, (1 - alpha) * np.asarray(r), rtol=1e-15)
    np.testing.assert_allclose(r_s, alpha * np.asarray(r), rtol=1e-15)


@pytest.mark.parametrize("alpha, name", [(0.5, "lrp-half"), (1.0, "lrp-all")])
def test_signal_share_equals_the_presets_it_generalises(page_rules, alpha, name):
    params, x = _random_bilstm(3)
    base = preset(name, eps=1e-3)
    mine = lrpjax.lrp(bilstm.apply, base.replace(gate=page_rules["SignalShare"](alpha)))(params, x, 2)
    theirs = lrpjax.lrp(bilstm.apply, base)(params, x, 2)
    np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)


def test_signal_share_conserves_at_eps_zero(page_rules):
    params, x = _random_bilstm(4)
    full = lrpjax.lrp(bilstm.apply, preset("lrp-all").replace(gate=page_rules["SignalShare"](0.3))).full(params, x, 0)
    assert abs(float(full.residual)) < 1e-10 * max(1.0, abs(float(full.target_score)))


def test_signal_share_is_a_valid_static_rule(page_rules):
    SignalShare = page_rules["SignalShare"]
    assert hash(SignalShare(0.2)) == hash(SignalShare(0.2)) and SignalShare(0.2) != SignalShare(0.3)
    with pytest.raises(ValueError, match="alpha"):
        SignalShare(1.5)
    with pytest.raises(ValueError, match="alpha"):
        SignalShare("half")


# --- every public module has a page ------------------------------------------------------------------

def _public_modules() -> list[str]:
    names = ["lrpjax"]
    for info in pkgutil.walk_packages(lrpjax.__path__, "lrpjax."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _api_pages() -> dict[str, str]:
    """{module: page} for every ``::: module`` directive under docs/api/."""
    pages = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for match in re.finditer(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.MULTILINE):
            pages[match.group(1)] = page.relative_to(DOCS).as_posix()
    return pages


def test_every_public_module_has_an_api_page():
    pages = _api_pages()
    missing = [m for m in _public_modules() if m not in pages]
    assert not missing, f"public modules without an API page (add `::: module` under docs/api/): {missing}"
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    unlisted = sorted({page for page in pages.values() if page not in nav})
    assert not unlisted, f"API pages missing from the nav of mkdocs.yml: {unlisted}"


def test_every_public_function_and_class_has_a_runtime_docstring():
    """What ``help()`` and notebooks show: a docstring built at run time (say by ``+``) is none at all."""
    import importlib
    import inspect

    missing = []
    for name in _public_modules():
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
                missing.append(f"{name}.{attr}")
    assert not missing, f"public functions or classes without a docstring: {missing}"


def test_every_top_level_name_is_on_the_api_index():
    index = (DOCS / "api" / "index.md").read_text(encoding="utf-8")
    missing = [name for name in lrpjax.__all__ if f"lrpjax.{name}" not in index]
    assert not missing, f"names of lrpjax.__all__ not described on docs/api/index.md: {missing}"


def test_every_python_block_is_tagged():
    untagged = [f"{page.relative_to(ROOT)}:{b.line}" for page in DOCS.rglob("*.md") for b in blocks(page)
                if not b.language]
    assert not untagged, f"code blocks without a language tag (python ones would not run): {untagged}"


# --- the site builds, strictly --------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return out


def _anchors(site: Path) -> set[str]:
    ids = set()
    for page in (site / "api").rglob("*.html"):
        ids.update(html.unescape(m) for m in re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8")))
    return ids


def _home(obj, module, name: str) -> str | None:
    """Where an exported object is documented when it is not on its module's own page."""
    home, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(home, str) and isinstance(qualname, str) and home.startswith("lrpjax"):
        return f"{home}.{qualname}"
    return None


# Names that static analysis cannot see: ``LEFT, RIGHT = 0, 1`` (a tuple assignment) defines no attribute
# that griffe records, so mkdocstrings cannot render them; separate assignments would.
NOT_RENDERABLE = {"lrpjax.data.gridworld.LEFT", "lrpjax.data.gridworld.RIGHT"}


def test_the_site_builds_strictly_and_documents_every_public_name(site):
    anchors = _anchors(site)
    modules = {name: importlib.import_module(name) for name in _api_pages()}
    missing = []
    for module_name, module in modules.items():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if isinstance(obj, type(lrpjax)):          # a submodule: it has its own page
                continue
            candidates = {f"{module_name}.{name}", _home(obj, module, name)}
            # a constant re-exported from another module is documented there
            candidates.update(f"{other}.{name}" for other, m in modules.items() if getattr(m, name, None) is obj)
            if not candidates & anchors and f"{module_name}.{name}" not in NOT_RENDERABLE:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names without documentation in the built API reference: {missing}"


def test_the_site_has_the_command_lines_help(site):
    text = html.unescape((site / "guide" / "cli" / "index.html").read_text(encoding="utf-8"))
    for usage in ("usage: lrpjax explain", "usage: lrpjax report", "usage: lrpjax info", "usage: lrpjax [-h]"):
        assert usage in text
    assert "lrpjax-help" not in text


def test_the_site_has_the_experiment_results(site):
    for name in ("README_toy_arithmetic", "README_sst", "README_markov", "README_digits", "benchmark"):
        assert (site / "experiments" / "results" / name / "index.html").is_file()
    assert (site / "experiments" / "results" / "sst_word_deletion.png").is_file()


# --- the docstring rewriting of the build ------------------------------------------------------------

@pytest.fixture(scope="module")
def griffe_rst():
    griffe = pytest.importorskip("griffe", reason="the docs extra is not installed: pip install -e '.[docs]'")
    sys.path.insert(0, str(DOCS / "tools"))
    try:
        module = importlib.import_module("griffe_rst")
    finally:
        sys.path.remove(str(DOCS / "tools"))
    package = griffe.load("lrpjax", search_paths=[str(ROOT)])
    return module, package


def test_roles_become_links_or_code(griffe_rst):
    module, package = griffe_rst
    rules = package["core"]["rules"]
    text = module.rewrite(rules, "see :class:`Epsilon` and :func:`~lrpjax.core.rules.preset`, :meth:`nothing_here`.")
    assert '<autoref identifier="lrpjax.core.rules.Epsilon" optional><code>Epsilon</code></autoref>' in text
    assert '<autoref identifier="lrpjax.core.rules.preset" optional><code>preset</code></autoref>' in text
    assert "`nothing_here`" in text and ":meth:" not in text


def test_brackets_are_escaped_outside_code_only(griffe_rst):
    module, package = griffe_rst
    text = module.rewrite(package["datasets"], 'shape (B, [K,] [C,] L) and ``params["a"]["b"]``')
    assert text == 'shape (B, \\[K,\\] \\[C,\\] L) and ``params["a"]["b"]``'


def test_literal_blocks_are_kept_verbatim(griffe_rst):
    module, package = griffe_rst
    text = module.rewrite(package, "For example::\n\n    x = y[0]  # :class:`Z`\n\nThen [this].")
    assert text == "For example:\n\n    x = y[0]  # :class:`Z`\n\nThen \\[this\\]."


def test_grouped_parameters_are_split(griffe_rst):
    module, package = griffe_rst
    text = module.rewrite(package, "Args:\n    a, b: the two.\n        More.\n    c: one.")
    assert text == "Args:\n    a: the two.\n        More.\n    b: the two.\n        More.\n    c: one."


# --- the build's helpers ---------------------------------------------------------------------------

def test_an_unclosed_fence_is_an_error(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="page.md:3"):
        blocks(page)


def test_blocks_are_found_with_their_language_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\n````text\n```\n````\n", encoding="utf-8")
    assert blocks(page) == [("python", "x = 1\n", 3), ("text", "```\n", 7)]


@pytest.fixture(scope="module")
def hooks():
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    spec = importlib.util.spec_from_file_location("lrpjax_docs_hooks", DOCS / "tools" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_markers_become_the_parsers_help(hooks):
    from lrpjax.app.cli import build_parser

    text = hooks.on_page_markdown("before\n<!-- lrpjax-help: info -->\nafter\n", None, None, None)
    assert text.startswith("before\n```text\nusage: lrpjax info") and text.endswith("```\nafter\n")
    assert hooks.help_text("").startswith(build_parser().format_usage().strip()[:20])


def test_help_of_an_unknown_command_is_an_error(hooks):
    with pytest.raises(ValueError, match="no sub-command 'explian'"):
        hooks.help_text("explian")
