"""The top level exports what the README shows: every method the README lists beside `lrp` and every
`lrpjax.<name>` its code uses."""

import importlib.util
import re
from pathlib import Path

import lrpjax

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_listed_method_is_a_top_level_function():
    row = next(line for line in README.splitlines() if line.startswith("| methods,"))
    listed = re.findall(r"`([a-z_]+)`", row.split("(one module per family):")[1].split("Contextual")[0])
    assert {"lrp", "gradient", "sensitivity", "gradient_x_input", "integrated_gradients", "smoothgrad",
            "occlusion", "random_baseline"} <= set(listed)
    for name in listed:
        assert name in lrpjax.__all__ and callable(getattr(lrpjax, name)), name


def test_every_lrpjax_name_in_the_readme_exists():
    for name in sorted(set(re.findall(r"\blrpjax\.([A-Za-z_]\w*)", README))):
        is_module = importlib.util.find_spec(f"lrpjax.{name}") is not None   # e.g. lrpjax.app, never imported
        assert is_module or hasattr(lrpjax, name), f"the README uses lrpjax.{name}, which the package does not have"
