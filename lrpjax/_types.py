"""Array aliases used in signatures.

Shape letters in docstrings: T time steps, E input (embedding) size, H hidden units, C classes or outputs,
B batch, N models, D inputs of a linear mapping, M its outputs.
"""

from typing import Any

import jax
from jax.typing import ArrayLike

Array = jax.Array
Params = dict[str, Any]

__all__ = ["Array", "ArrayLike", "Params"]
