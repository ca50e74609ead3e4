"""Checkpoints written before they held the model's config: their ``kind`` names the model.

A checkpoint written by :func:`lrpjax.io.checkpoints.save_model` states its model in the metadata
(``"model_config"``). The files shipped before that (``checkpoints/*.npz``, ``lrpjax/_assets/``) state a
``kind`` instead, and the sizes or cell parameters the model needs beside it; :data:`LEGACY_KINDS` is the
one table that turns such metadata into the model's config, so that
:func:`~lrpjax.io.checkpoints.load_model` reads them without a switch on kinds anywhere else. The files
themselves are never rewritten.

=============== ================================================ ==================================
kind            model                                            written by
=============== ================================================ ==================================
``sst-bilstm``  the reference BiLSTM, parameters under "model"   ``experiments/train_sst.py``
``lstm``        one standard LSTM layer + linear output          ``experiments/toy_arithmetic.py``
``lstm-markov`` the same with the metadata's Markov cell         ``experiments/markov_reward.py``
``mlp-relu``,   ``MLP(metadata widths, activation)``             ``experiments/digits_pixel_flipping.py``
``mlp-tanh``
=============== ================================================ ==================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lrpjax.core.cells import CELLS
from lrpjax.models.bilstm import model as _bilstm
from lrpjax.models.lstm import LSTM
from lrpjax.models.mlp import MLP

__all__ = ["LEGACY_KINDS", "legacy_config"]

Legacy = Callable[[dict[str, Any]], tuple[dict[str, Any], str | None]]


def _cell(metadata: dict[str, Any], kind: str) -> Any:
    """The cell a legacy LSTM checkpoint states: ``"cell": "standard"`` (or none), or a dict with the
    cell's ``kind`` and parameters (``{"kind": "markov", "a_g": 2.0, "a_h": 1.0}``)."""
    stated = metadata.get("cell", "standard")
    fields = dict(stated) if isinstance(stated, dict) else {"kind": stated}
    if fields.pop("kind", None) != kind:
        raise ValueError(f"its metadata states the cell {stated!r}; a checkpoint of this kind holds a {kind} cell.")
    return CELLS[kind](**fields)


def _mlp(metadata: dict[str, Any], activation: str) -> dict[str, Any]:
    widths = metadata["widths"]
    if not isinstance(widths, list) or metadata.get("activation", activation) != activation:
        raise ValueError(f"its metadata must state 'widths' (a list) and activation {activation!r}; got widths "
                         f"{widths!r}, activation {metadata.get('activation')!r}.")
    return MLP(tuple(widths), activation).network.config()


LEGACY_KINDS: dict[str, Legacy] = {
    "sst-bilstm": lambda metadata: (_bilstm.network.config(), "model"),
    "lstm": lambda metadata: (LSTM(_cell(metadata, "standard")).network.config(), None),
    "lstm-markov": lambda metadata: (LSTM(_cell(metadata, "markov")).network.config(), None),
    "mlp-relu": lambda metadata: (_mlp(metadata, "relu"), None),
    "mlp-tanh": lambda metadata: (_mlp(metadata, "tanh"), None),
}
"""kind -> ``metadata -> (model config, key of the model's parameters or None for all of them)``."""


def legacy_config(metadata: dict[str, Any]) -> tuple[dict[str, Any], str | None] | None:
    """The model config and parameter key of a checkpoint without a config, by its kind; None for a
    kind not in :data:`LEGACY_KINDS`.

    Raises:
        KeyError, TypeError, ValueError: the metadata lacks what its kind needs (e.g. an MLP's widths).
    """
    legacy = LEGACY_KINDS.get(metadata.get("kind", ""))
    return None if legacy is None else legacy(metadata)
