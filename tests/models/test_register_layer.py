"""``register_layer``: the registry that ``layer_from_config`` (and so checkpoints) reads."""

import dataclasses
from typing import ClassVar

import pytest

from lrpjax.models import layers


def test_a_registered_layer_comes_back_from_its_config():
    @dataclasses.dataclass(frozen=True)
    class Twice:
        kind: ClassVar[str] = "test-twice"
        units: int = 1

        @classmethod
        def from_config(cls, fields):
            return cls(**fields)

    try:
        assert layers.register_layer(Twice) is Twice
        assert layers.layer_from_config({"type": "test-twice", "units": 3}) == Twice(3)
        assert layers.register_layer(Twice) is Twice          # registering the same class again is harmless
    finally:
        layers.LAYERS.pop("test-twice", None)


def test_a_kind_taken_by_another_class_or_a_class_without_kind_is_refused():
    class Imposter:
        kind = "dense"

        @classmethod
        def from_config(cls, fields):
            return cls()

    with pytest.raises(ValueError, match="cls: the layer kind 'dense' is registered already"):
        layers.register_layer(Imposter)
    with pytest.raises(ValueError, match="cls must be a layer class"):
        layers.register_layer(object)
