"""Flax linen recurrent cells (``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``) and ``nn.RNN`` /
``nn.Bidirectional`` layers of them, as lrpjax cells and layers to compose.

Flax is imported inside the calls that need it (:func:`from_flax_rnn`, or a cell module given as
``kind``); a parameter tree alone needs no flax at all.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from lrpjax._types import Params
from lrpjax.core.cells import GRUCell, StandardCell
from lrpjax.interop._common import as_weight, check_class, check_dtypes
from lrpjax.models import Recurrent

__all__ = ["from_flax_cell", "from_flax_rnn", "FLAX_KINDS"]

FLAX_KINDS = {"lstm": "LSTMCell", "optimized_lstm": "OptimizedLSTMCell", "gru": "GRUCell"}
"""The cell kinds by name, and the flax class each names."""

# Dense sub-layers of each flax cell, in lrpjax's gate order, and which of them carry a bias.
# LSTMCell / OptimizedLSTMCell: input "i<gate>" without bias, hidden "h<gate>" with bias, gates i, g, f, o
# (lrpjax i, z, f, o). GRUCell: input "ir", "iz", "in" with bias, hidden "hr", "hz" without, "hn" with.
_LSTM_GATES = ("i", "g", "f", "o")
_GRU_GATES = ("r", "z", "n")


def from_flax_cell(cell_params: Mapping[str, Any], kind: Any) -> tuple[Any, Params]:
    """An lrpjax cell and its parameters from the parameters of one flax linen cell.

    Conventions (from flax's source):

    * ``LSTMCell`` and ``OptimizedLSTMCell`` (the same parameters): dense layers ``"ii", "if", "ig",
      "io"`` read the input (kernel (E, H), no bias), ``"hi", "hf", "hg", "ho"`` the hidden state
      (kernel (H, H), bias (H,)); ``c' = f * c + i * g``, ``h' = o * tanh(c')``; carry ``(c, h)``.
      lrpjax stacks i, z (= g), f, o: ``W`` (E, 4H) from the input kernels, ``U`` (H, 4H) from the
      hidden kernels, ``b`` (4H,) from the hidden biases (``StandardCell``).
    * ``GRUCell``: ``"ir", "iz", "in"`` read the input (kernel (E, H) and bias), ``"hr", "hz"`` the
      hidden state without bias, ``"hn"`` with bias; ``r = sigma(ir(x) + hr(h))``,
      ``z = sigma(iz(x) + hz(h))``, ``n = tanh(in(x) + r * hn(h))``, ``h' = (1 - z) * n + z * h``:
      PyTorch's form, ``GRUCell(reset_after=True)`` with ``b`` = the input biases (r, z, n) and
      ``b_hn`` = the bias of ``"hn"`` (inside the reset product).

    Args:
        cell_params: the cell's parameters ``{"ii": {"kernel": ...}, ...}``, or ``{"params": that}``,
            e.g. ``variables["params"]["cell"]`` of an ``nn.RNN``.
        kind: ``"lstm"``, ``"optimized_lstm"``, ``"gru"``, or the flax cell module itself (then its
            ``gate_fn`` must be sigmoid and ``activation_fn`` tanh, lrpjax's cells' functions, its
            ``carry_init`` must give zeros, and a subclass must not define ``__call__`` itself).

    Returns:
        ``(cell, params)``: ``StandardCell()`` or ``GRUCell(reset_after=True)`` and its parameter dict,
        numpy arrays of the flax dtype; place them under a layer's key, e.g.
        ``Sequential((Recurrent(cell, name="rnn"), Dense(C)))`` with ``{"rnn": params, "out": ...}``.

    Raises:
        TypeError: an unknown ``kind``, a cell module with other gate or activation functions or a subclass
            defining ``__call__``,
            ``cell_params`` not a mapping, float64 weights while JAX runs in 32 bits.
        ValueError: missing or unexpected sub-layers or parameters, shapes that do not fit, a cell module
            whose ``carry_init`` gives non-zero initial states or that computes in another dtype than its
            weights'.
    """
    name = _kind_name(kind)
    tree = _unwrap(cell_params)
    cell: GRUCell | StandardCell
    if name == "gru":
        params = _gru_params(tree)
        cell = GRUCell(reset_after=True)
    else:
        params = _lstm_params(tree)
        cell = StandardCell()
    check_dtypes(params, "cell_params")
    return cell, params


def from_flax_rnn(module: Any, variables: Mapping[str, Any], *, sequences: bool = True,
                  name: str = "rnn") -> tuple[Recurrent, Params]:
    """An lrpjax recurrent layer from a flax ``nn.RNN`` or ``nn.Bidirectional`` of two ``nn.RNN``.

    ``sequences=True`` gives what the flax layer returns, the output at every step (T, H) (for
    ``Bidirectional``, ``concatenate(forward, backward)`` per step, the backward outputs in input order
    as flax's ``keep_order=True`` gives them); ``sequences=False`` gives the final state(s) instead,
    the ``h`` of flax's ``return_carry=True`` carry. Padded batches: flax's ``seq_lengths`` correspond to
    lrpjax's prefix masks.

    Args:
        module: ``nn.RNN(cell)`` (``reverse=False``) or ``nn.Bidirectional(nn.RNN(cell), nn.RNN(cell))``
            with the default merge (concatenation), cells as in :func:`from_flax_cell`.
        variables: the module's variables (``{"params": ...}``) or its params.
        sequences: output every step (True) or the final state(s).
        name: the layer's name; a bidirectional layer's keys are ``name + "_forward"`` and
            ``name + "_backward"``.

    Returns:
        ``(layer, params)``: the :class:`~lrpjax.models.Recurrent` layer and ``{key: cell params}`` for
        each of its keys, to merge into a model's parameters.

    Raises:
        TypeError: a module that is not one of these, or unsupported cells (see :func:`from_flax_cell`).
        ValueError: a reversed ``nn.RNN`` outside ``Bidirectional``, another merge function, cells of
            different kinds or sizes, ``time_major`` (lrpjax reads one sequence (T, E)), bad parameters.
    """
    import flax.linen as nn

    tree = _unwrap(variables)
    if isinstance(module, (nn.Bidirectional, nn.RNN)):
        check_class(module, (nn.Bidirectional, nn.RNN), ("__call__",), "module")
    if isinstance(module, nn.Bidirectional):
        rnns: tuple[Any, ...] = (module.forward_rnn, module.backward_rnn)
        if module.merge_fn is not nn.recurrent._concatenate:
            raise ValueError("`module` (Bidirectional) must merge the directions with the default concatenation.")
        subtrees = [_child(tree, "forward_rnn"), _child(tree, "backward_rnn")]
    elif isinstance(module, nn.RNN):
        rnns, subtrees = (module,), [tree]
        if module.reverse:
            raise ValueError("`module` is an nn.RNN with reverse=True; a reversed direction is supported inside "
                             "nn.Bidirectional only.")
    else:
        raise TypeError(f"`module` must be a flax nn.RNN or nn.Bidirectional; got {type(module).__name__}.")
    cells = []
    for rnn, subtree in zip(rnns, subtrees):
        if not isinstance(rnn, nn.RNN):
            raise TypeError(f"`module` must hold nn.RNN layers; got {type(rnn).__name__}.")
        check_class(rnn, (nn.RNN,), ("__call__",), "module (its nn.RNN)")
        if rnn.time_major:
            raise ValueError("`module` has time_major=True; lrpjax reads one sequence (T, E) (batch with vmap).")
        cells.append(from_flax_cell(_child(subtree, "cell"), rnn.cell))
    if len({type(c) for c, _ in cells}) != 1 or len({p["U"].shape for _, p in cells}) != 1:
        raise ValueError("`module`: both directions must hold the same kind of cell with the same size.")
    cell, H = cells[0][0], cells[0][1]["U"].shape[0]
    layer = Recurrent(cell, H, bidirectional=len(cells) == 2, sequences=sequences, name=name)
    return layer, {key: params for key, (_, params) in zip(layer.keys(), cells)}


def _kind_name(kind: Any) -> str:
    """``"lstm"`` or ``"gru"`` for a kind name or a flax cell module (whose functions are checked)."""
    if isinstance(kind, str):
        if kind not in FLAX_KINDS:
            raise TypeError(f"`kind` must be one of {sorted(FLAX_KINDS)} or a flax cell module; got {kind!r}.")
        return "gru" if kind == "gru" else "lstm"
    import flax.linen as nn
    import jax

    classes = {nn.OptimizedLSTMCell: "lstm", nn.LSTMCell: "lstm", nn.GRUCell: "gru"}
    if not isinstance(kind, tuple(classes)):
        raise TypeError(f"`kind` must be one of {sorted(FLAX_KINDS)} or a flax LSTMCell, OptimizedLSTMCell or "
                        f"GRUCell; got {type(kind).__name__}.")
    cls = check_class(kind, tuple(classes), ("__call__", "initialize_carry"), "kind")
    module: Any = kind
    if module.gate_fn is not jax.nn.sigmoid or module.activation_fn is not jax.numpy.tanh:
        raise TypeError(f"`kind` ({type(module).__name__}) must use gate_fn=sigmoid and activation_fn=tanh, the "
                        f"functions of lrpjax's cells; got {module.gate_fn!r} and {module.activation_fn!r}.")
    if module.dtype is not None and np.dtype(module.dtype) != np.dtype(module.param_dtype):
        raise ValueError(f"`kind` ({type(module).__name__}) computes in {np.dtype(module.dtype)} with "
                         f"{np.dtype(module.param_dtype)} weights (dtype != param_dtype); import a cell that computes "
                         "in its weights' dtype.")
    probe = np.asarray(module.carry_init(jax.random.PRNGKey(0), (2,), np.dtype(module.param_dtype)))
    if np.any(probe != 0):
        raise ValueError(f"`kind` ({type(module).__name__}) has a carry_init that gives non-zero initial states; "
                         "lrpjax's recurrent layers start from zero states (use the default carry_init, zeros).")
    return classes[cls]


def _unwrap(tree: Any) -> Mapping[str, Any]:
    if not isinstance(tree, Mapping):
        raise TypeError(f"the flax parameters must be a mapping; got {type(tree).__name__}.")
    if set(tree) == {"params"}:
        tree = tree["params"]
    return tree


def _child(tree: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    if not isinstance(tree, Mapping) or key not in tree:
        got = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
        raise ValueError(f"the flax parameters must have {key!r}; got {got}.")
    return tree[key]


def _dense(tree: Mapping[str, Any], key: str, bias: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Kernel and bias of a flax Dense sub-layer ``tree[key]``, checked for exactly those parameters."""
    layer = _child(tree, key)
    expected = {"kernel", "bias"} if bias else {"kernel"}
    if not isinstance(layer, Mapping) or set(layer) != expected:
        got = sorted(layer) if isinstance(layer, Mapping) else type(layer).__name__
        raise ValueError(f"`cell_params[{key!r}]` must hold exactly {sorted(expected)}; got {got}.")
    kernel = as_weight(layer["kernel"], f"cell_params[{key!r}]['kernel']")
    if kernel.ndim != 2:
        raise ValueError(f"`cell_params[{key!r}]['kernel']` must be a matrix (D, H); got shape {kernel.shape}.")
    b = as_weight(layer["bias"], f"cell_params[{key!r}]['bias']", (kernel.shape[1],)) if bias else None
    return kernel, b


def _check_keys(tree: Mapping[str, Any], expected: set[str], kind: str) -> None:
    if set(tree) != expected:
        raise ValueError(f"`cell_params` of a flax {kind} must have exactly the sub-layers {sorted(expected)}; "
                         f"missing {sorted(expected - set(tree))}, unexpected {sorted(set(tree) - expected)}.")


def _stack(kernels: list[np.ndarray], where: str, rows: int | None = None) -> np.ndarray:
    shapes = {k.shape for k in kernels}
    if len(shapes) != 1 or (rows is not None and kernels[0].shape[0] != rows):
        raise ValueError(f"the {where} kernels of the cell must share one shape (D, H){'' if rows is None else f' with D = {rows}'}; "
                         f"got {[k.shape for k in kernels]}.")
    return np.concatenate(kernels, axis=1)


def _lstm_params(tree: Mapping[str, Any]) -> Params:
    _check_keys(tree, {f"{side}{g}" for side in "ih" for g in _LSTM_GATES}, "LSTMCell")
    inputs = [_dense(tree, f"i{g}", bias=False)[0] for g in _LSTM_GATES]
    hidden = [_dense(tree, f"h{g}", bias=True) for g in _LSTM_GATES]
    H = hidden[0][0].shape[1]
    return {"W": _stack(inputs, "input"), "U": _stack([k for k, _ in hidden], "hidden", H),
            "b": np.concatenate([b for _, b in hidden])}


def _gru_params(tree: Mapping[str, Any]) -> Params:
    _check_keys(tree, {f"{side}{g}" for side in "ih" for g in _GRU_GATES}, "GRUCell")
    inputs = [_dense(tree, f"i{g}", bias=True) for g in _GRU_GATES]
    hidden = [_dense(tree, f"h{g}", bias=g == "n") for g in _GRU_GATES]
    H = hidden[0][0].shape[1]
    return {"W": _stack([k for k, _ in inputs], "input"), "U": _stack([k for k, _ in hidden], "hidden", H),
            "b": np.concatenate([b for _, b in inputs]), "b_hn": hidden[2][1]}
