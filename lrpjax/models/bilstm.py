"""The bidirectional LSTM classifier of the reference implementation (Arras et al. 2017).

``apply(params, x, rules=None)`` maps an embedded sentence (T, E) to class scores (C,); see
:mod:`lrpjax.models.lstm` for the parameter layout. :func:`from_reference` converts the reference's
weight layout.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from lrpjax._types import Params
from lrpjax.core.cells import StandardCell
from lrpjax.models.lstm import LSTM

__all__ = ["model", "apply", "init", "from_reference", "REFERENCE_KEYS"]

model = LSTM(StandardCell(), bidirectional=True)
apply = model.apply
init = model.init

REFERENCE_KEYS = ("Wxh_Left", "bxh_Left", "Whh_Left", "bhh_Left",
                  "Wxh_Right", "bxh_Right", "Whh_Right", "bhh_Right", "Why_Left", "Why_Right")


def from_reference(weights: Mapping[str, np.ndarray], dtype=None) -> Params:
    """Converts the reference layout to lrpjax parameters.

    The reference stores, per direction, ``Wxh (4H, E)``, ``Whh (4H, H)`` and two biases
    ``bxh, bhh (4H,)`` with gate rows ordered i, g, f, o, and the output layers
    ``Why_Left, Why_Right (C, H)``. lrpjax uses the same gate order (``g`` is the cell input ``z``),
    transposed weights and one summed bias.

    Args:
        weights: mapping with the keys of ``REFERENCE_KEYS`` (e.g. an opened ``.npz``).
        dtype: dtype of the result (default: that of the weights; float64 needs ``jax_enable_x64``).

    Returns:
        params for :func:`apply` as numpy arrays (they pass through ``jit`` unchanged).

    Raises:
        ValueError: a missing key, inconsistent shapes or non-finite values, naming the key.
    """
    missing = [k for k in REFERENCE_KEYS if k not in weights]
    if missing:
        raise ValueError(f"`weights` lacks reference keys {missing}; expected {list(REFERENCE_KEYS)}.")
    w = {k: np.asarray(weights[k]) for k in REFERENCE_KEYS}
    if dtype is not None:
        w = {k: v.astype(dtype) for k, v in w.items()}
    for k, v in w.items():
        if not np.issubdtype(v.dtype, np.floating):
            raise ValueError(f"`weights[{k!r}]` must be floating point; got {v.dtype}.")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"`weights[{k!r}]` contains non-finite values.")
    four_h, E = _shape2(w, "Wxh_Left")
    if four_h % 4:
        raise ValueError(f"`weights['Wxh_Left']` must have shape (4H, E); got {w['Wxh_Left'].shape}.")
    H = four_h // 4
    C = _shape2(w, "Why_Left")[0]
    expected = {"Wxh": (4 * H, E), "Whh": (4 * H, H), "bxh": (4 * H,), "bhh": (4 * H,)}
    for side in ("Left", "Right"):
        for name, shape in expected.items():
            _expect(w, f"{name}_{side}", shape)
        _expect(w, f"Why_{side}", (C, H))
    params: Params = {}
    for side, layer in (("Left", "left"), ("Right", "right")):
        params[layer] = {"W": w[f"Wxh_{side}"].T.copy(), "U": w[f"Whh_{side}"].T.copy(),
                         "b": w[f"bxh_{side}"] + w[f"bhh_{side}"]}
    params["out"] = {"W_left": w["Why_Left"].T.copy(), "W_right": w["Why_Right"].T.copy()}
    return params


def _shape2(w, key):
    if w[key].ndim != 2:
        raise ValueError(f"`weights[{key!r}]` must be a matrix; got shape {w[key].shape}.")
    return w[key].shape


def _expect(w, key, shape):
    if w[key].shape != shape:
        raise ValueError(f"`weights[{key!r}]` must have shape {shape}; got {w[key].shape}.")
