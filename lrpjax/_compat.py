"""The module paths of the flat layout (``lrpjax.scale``, ``lrpjax.rules``, ``lrpjax.sst``, ...) kept
importable after the package was grouped into folders.

``import lrpjax.scale`` and ``from lrpjax.scale import explain_dataset`` give the module at its new
place (the same module object, so state such as compiled-program caches is shared). The new module is
imported only when an old path is asked for, so ``import lrpjax`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

MOVED = {
    "lrpjax.rules": "lrpjax.core.rules",
    "lrpjax.ops": "lrpjax.core.ops",
    "lrpjax.cells": "lrpjax.core.cells",
    "lrpjax.explain": "lrpjax.methods",
    "lrpjax.cd": "lrpjax.methods.decomposition",
    "lrpjax.scale": "lrpjax.datasets",
    "lrpjax.stream": "lrpjax.datasets.stream",
    "lrpjax.shards": "lrpjax.datasets.shards",
    "lrpjax.plot": "lrpjax.viz.plot",
    "lrpjax.render": "lrpjax.viz.render",
    "lrpjax.report": "lrpjax.app.report",
    "lrpjax.checkpoints": "lrpjax.io.checkpoints",
    "lrpjax.sinks": "lrpjax.io.sinks",
    "lrpjax.cache": "lrpjax.io.cache",
    "lrpjax.progress": "lrpjax.io.progress",
    "lrpjax.sst": "lrpjax.app.model",
    "lrpjax.cli": "lrpjax.app.cli",
}
"""Old module path -> the module that holds its public names now."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at its new place."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def __init__(self):
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._specs[spec.name] = module.__spec__   # the import system sets __spec__; exec_module puts it back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__spec__.name)  # type: ignore[union-attr]


def install() -> None:
    """Makes the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())


def attribute(name: str) -> ModuleType:
    """``lrpjax.<name>`` for an old module name (the package's ``__getattr__``).

    Raises:
        AttributeError: ``name`` is not an old module path.
    """
    if f"lrpjax.{name}" not in MOVED:
        raise AttributeError(f"module 'lrpjax' has no attribute {name!r}")
    return importlib.import_module(f"lrpjax.{name}")
