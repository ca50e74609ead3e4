"""The persistent compilation cache: a second process loads the compiled program; a corrupt or
unusable cache directory falls back to compiling, with a warning."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# One LRP explanation in a fresh process; prints the number of persistent-cache hits and the result.
SCRIPT = textwrap.dedent("""
    import warnings, jax, jax.numpy as jnp, numpy as np
    hits = []
    jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event)
                                           if event == "/jax/compilation_cache/cache_hits" else None)
    import lrpjax, lrpjax.io.cache
    from lrpjax.models import bilstm
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        where = lrpjax.io.cache.enable_compilation_cache()
        params = bilstm.init(jax.random.PRNGKey(0), 3, 4, 2)
        x = jnp.ones((5, 3), jnp.float32)
        R = lrpjax.lrp(bilstm.apply, lrpjax.rules.preset("lrp-all", eps=1e-3))(params, x, 1)
    print("DIR", where)
    print("HITS", len(hits))
    print("SUM", float(np.asarray(R).sum()))
    for w in caught:
        print("WARNING", str(w.message).replace(chr(10), " "))
""")


def _run(cache: str) -> dict:
    env = {**os.environ, "LRPJAX_CACHE_DIR": cache, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = {"warnings": [], "stderr": done.stderr}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "WARNING":
            out["warnings"].append(value)
        elif key in ("DIR", "HITS", "SUM"):
            out[key] = value
    return out


def test_a_second_process_loads_the_compiled_program(tmp_path):
    cache = str(tmp_path / "cache")
    first, second = _run(cache), _run(cache)
    assert first["DIR"] == cache and int(first["HITS"]) == 0
    assert int(second["HITS"]) >= 1
    assert first["SUM"] == second["SUM"]
    assert any(Path(cache).iterdir())


def test_a_corrupt_cache_entry_is_compiled_anew_with_a_warning(tmp_path):
    cache = tmp_path / "cache"
    reference = _run(str(cache))
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert entries
    for entry in entries:
        entry.write_bytes(b"not a compiled program")
    again = _run(str(cache))
    assert again["SUM"] == reference["SUM"]
    assert int(again["HITS"]) == 0
    assert "persistent compilation cache" in (again["stderr"] + " ".join(again["warnings"])).lower()


@pytest.mark.parametrize("kind", ["a file", "below a file"])
def test_an_unusable_cache_directory_warns_and_compiles(tmp_path, kind):
    (tmp_path / "cache").write_text("x")
    target = tmp_path / "cache" if kind == "a file" else tmp_path / "cache" / "inside"
    result = _run(str(target))
    assert result["DIR"] == "None"
    assert any("is not usable" in w and "compiling without it" in w for w in result["warnings"])
    assert float(result["SUM"]) == float(result["SUM"])   # a number: the explanation ran


def test_the_cache_is_turned_off_by_an_empty_setting(monkeypatch):
    import lrpjax.io.cache

    monkeypatch.setenv("LRPJAX_CACHE_DIR", "")
    assert lrpjax.io.cache.default_cache_dir() is None
    assert lrpjax.io.cache.enable_compilation_cache() is None
    monkeypatch.delenv("LRPJAX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert lrpjax.io.cache.default_cache_dir() == Path("/somewhere/lrpjax/jax")
