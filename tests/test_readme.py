"""The README's code blocks, every one of them, and what the test does with each:

* ``bash`` -- the two front-door commands. Their form is checked; the first one's ``lrpjax explain ...``
  is run (the venv and ``pip install`` parts are what this test environment already did); the second
  one's test command must be the one ``.ci/run`` runs (it is not run again from inside the tests).
* ``python`` -- each block is run on its own in a fresh interpreter from the repository root (so it
  must hold its own imports), followed by a few checks of what its comments claim.
* ``text`` starting with ``$ lrpjax explain`` -- the command is run and its output must be the
  README's, line for line.
* ``text`` package layout -- every path it names exists.

A block the table below does not know fails the test, so a new block cannot go unrun silently.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from markdown_blocks import blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT = 600

# first line of each block -> what the test does with it
EXPECTED = [
    ("bash", "# install and explain a sentence with the shipped SST sentiment BiLSTM", "front door"),
    ("python", "import numpy as np", "run: engine"),
    ("python", "import jax", "run: own model"),
    ("python", "# a model trained in PyTorch", "run: torch"),
    ("python", "import os   # a model trained in Keras 3", "run: keras"),
    ("python", "import lrpjax", "run: dataset"),
    ("text", '$ lrpjax explain "the plot is dull but the actors are wonderful"', "command output"),
    ("text", "lrpjax/core/           the engine: rules.py (rule values, rule sets, presets, composites), ops.py (linear,",
     "layout"),
]

# Checks appended to a python block: the claims of its comments.
EPILOGUES = {
    "run: engine": """
assert scores.shape == (5,)
assert R.shape == x.shape == G.shape == (7, 60) and words.shape == (7,)
assert abs(float(full.relevance.sum()) - float(R.sum())) < 1e-4 * max(1.0, abs(float(R.sum())))
assert np.isfinite(float(full.residual))
""",
    "run: own model": """
assert R.shape == x.shape == (12, 10)
assert abs(float(full.relevance.sum()) - float(R.sum())) < 1e-4 * max(1.0, abs(float(R.sum())))
assert np.isfinite(float(full.residual))
assert "out" in model.names
""",
    "run: torch": """
assert np.allclose(scores, expected, atol=1e-5), (scores, expected)
assert words.shape == (7,) and np.all(np.isfinite(words))
""",
    "run: keras": """
assert np.allclose(np.asarray(keras.ops.softmax(scores)), np.asarray(keras_model(x[None])[0]), atol=1e-5)
assert words.shape == (7,) and np.all(np.isfinite(words))
""",
    "run: dataset": """
assert len(sentences) == 2210 and len(result.relevance) == 2210
assert result.relevance[0].shape == (len(sentences[0]),)
assert result.compilations == 4 and tuple(result.edges) == (8, 16, 32, 64)
""",
}


def _readme_blocks():
    return blocks(README)


def _kind(block) -> str:
    first = block.code.split("\n", 1)[0]
    for language, line, kind in EXPECTED:
        if block.language == language and first == line:
            return kind
    raise AssertionError(f"README.md:{block.line}: a {block.language or 'plain'} block starting {first!r} that "
                         "tests/test_readme.py does not handle; add it to EXPECTED.")


def _clean_env() -> dict[str, str]:
    """The environment without the test suite's XLA tuning, as a reader's shell has it."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "").strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    env["NO_COLOR"] = "1"
    return env


def _lrpjax_command() -> list[str]:
    """The installed ``lrpjax`` entry point of this interpreter's environment, else the module's main."""
    script = Path(sys.executable).with_name("lrpjax")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from lrpjax.app.cli import main; sys.exit(main())"]


def _run_lrpjax(command_line: str) -> subprocess.CompletedProcess:
    argv = shlex.split(command_line)
    assert argv[0] == "lrpjax", command_line
    return subprocess.run(_lrpjax_command() + argv[1:], cwd=ROOT, env=_clean_env(), capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def test_every_block_is_handled():
    found = [(b.language, b.code.split("\n", 1)[0]) for b in _readme_blocks()]
    for block in _readme_blocks():
        _kind(block)
    assert found == [(language, line) for language, line, _ in EXPECTED]


def _block(kind: str):
    matches = [b for b in _readme_blocks() if _kind(b) == kind]
    assert len(matches) == 1, f"expected one README block of kind {kind!r}; found {len(matches)}"
    return matches[0]


def _front_door() -> tuple[str, str]:
    commands = [line for line in _block("front door").code.split("\n") if line and not line.startswith("#")]
    assert len(commands) == 2, commands
    return commands[0], commands[1]


VENV = "python3 -m venv .venv && . .venv/bin/activate && "


def test_front_door_explains_a_sentence():
    first, _ = _front_door()
    assert first.startswith(VENV + "pip install -e . && "), first
    explain = first[len(VENV + "pip install -e . && "):]
    assert explain.startswith("lrpjax explain "), explain
    done = _run_lrpjax(explain)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("prediction: "), done.stdout


def test_front_door_test_command_is_what_ci_runs():
    _, second = _front_door()
    assert second.startswith(VENV), second
    command = second[len(VENV):]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").split("\n")
    marker = next(k for k, line in enumerate(ci) if "--- the README's test command" in line)
    assert ci[marker + 1].strip() == command, (
        f"README's test command {command!r} differs from .ci/run's {ci[marker + 1].strip()!r}")


FRAMEWORK = {"run: torch": "torch", "run: keras": "keras"}   # blocks that need the interop extra


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["run: engine", "run: own model", "run: torch", "run: keras", "run: dataset"])
def test_python_block_runs_on_its_own(kind, tmp_path):
    if kind in FRAMEWORK:
        import importlib.util

        if importlib.util.find_spec(FRAMEWORK[kind]) is None:
            pytest.skip(f"{FRAMEWORK[kind]} is not installed (the interop extra: pip install -e '.[interop]')")
    block = _block(kind)
    script = tmp_path / "block.py"
    script.write_text(f"# README.md, block at line {block.line}\n{block.code}\n# --- checks\n{EPILOGUES[kind]}",
                      encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=_clean_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"README.md:{block.line}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


def test_shown_command_output_is_real():
    lines = _block("command output").code.rstrip("\n").split("\n")
    assert lines[0].startswith("$ ")
    done = _run_lrpjax(lines[0][2:])
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip("\n").split("\n") == lines[1:]


def test_package_layout_names_existing_paths():
    missing = []
    for line in _block("layout").code.strip("\n").split("\n"):
        for name in (token.strip() for token in line.split("  ")[0].split(",")):
            path = name if "/" in name else f"lrpjax/{name}"   # "sst.py, cli.py" after "lrpjax/..."
            if not (ROOT / path).exists():
                missing.append(name)
    assert not missing, f"the README's package layout names paths that do not exist: {missing}"
