"""The Moneybag/Coins grid world of Sec. 11.5.2: delayed reward for a Markov-LSTM backward analysis.

A one-dimensional grid of cells ``0 .. size-1``. The agent starts at ``start`` and moves left or right
every step (a move into a wall leaves it in place). The Moneybag lies in cell 0 and is collected the
first time the agent arrives there. A Coin lies in the last cell and respawns: it is collected each
time the agent *arrives* in that cell from its neighbour (pushing against the wall collects nothing).
Only Coins collected after the Moneybag count; the whole return, the number of counted Coins, is given
at the end of the episode (a delayed reward).

Each step is encoded by four binary features, :data:`FEATURES`: the Moneybag was collected at this
step, a Coin was collected at this step, the action was left, the action was right.

Episodes come from a seeded exploring policy (:func:`explore`) that mixes four behaviours, so that
episodes with and without the Moneybag, and Coins before and after it, all occur:

* ``"wander"``: a persistent random walk (the previous action is repeated with probability ``rho``);
* ``"moneybag_first"``: fetch the Moneybag, then shuttle at the Coin cell (Coins after the Moneybag);
* ``"coins_only"``: shuttle at the Coin cell without fetching the Moneybag (uncounted Coins);
* ``"coins_first"``: collect 1-3 Coins, fetch the Moneybag, go back to shuttling (both kinds).

The three goal-directed behaviours take a random action with probability ``epsilon`` (per episode).
Everything is numpy on the host; the arrays feed the models of :mod:`lrpjax.models` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np

__all__ = ["FEATURES", "LEFT", "RIGHT", "POLICIES", "GridWorld", "Episodes", "explore", "episode_return",
           "splits"]

FEATURES = ("moneybag", "coin", "left", "right")
LEFT, RIGHT = 0, 1
POLICIES = ("wander", "moneybag_first", "coins_only", "coins_first")


class Episodes(NamedTuple):
    """A batch of ``B`` episodes of ``T`` steps (numpy arrays).

    Attributes:
        features: the four binary features per step, (B, T, 4) in the order of :data:`FEATURES`.
        returns: the delayed return, the number of Coins collected after the Moneybag, (B,).
        actions: :data:`LEFT` (0) or :data:`RIGHT` (1), (B, T) int.
        positions: cell before the first step and after each step, (B, T + 1) int.
        moneybag: the Moneybag was collected at this step, (B, T) bool.
        coin: a Coin was collected at this step, (B, T) bool.
        counted: a Coin collected after the Moneybag (it counts towards the return), (B, T) bool.
        policy: index into :data:`POLICIES` of the behaviour that generated the episode, (B,) int.
    """

    features: np.ndarray
    returns: np.ndarray
    actions: np.ndarray
    positions: np.ndarray
    moneybag: np.ndarray
    coin: np.ndarray
    counted: np.ndarray
    policy: np.ndarray


@dataclass(frozen=True)
class GridWorld:
    """Environment configuration.

    Attributes:
        size: number of cells (>= 3); the Moneybag is in cell 0, the Coin in cell ``size - 1``.
        start: starting cell, strictly between the two (default: the middle).
        length: steps per episode T (>= 1).
    """

    size: int = 7
    start: int | None = None
    length: int = 30

    def __post_init__(self):
        for name in ("size", "length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` of GridWorld must be an int; got {type(value).__name__}.")
        if self.size < 3:
            raise ValueError(f"`size` of GridWorld must be >= 3 (Moneybag, a free cell, Coin); got {self.size}.")
        if self.length < 1:
            raise ValueError(f"`length` of GridWorld must be >= 1; got {self.length}.")
        if self.start is None:
            object.__setattr__(self, "start", self.size // 2)
        if not isinstance(self.start, int) or not 0 < self.start < self.size - 1:
            raise ValueError(f"`start` of GridWorld must be an int in [1, {self.size - 2}]; got {self.start!r}.")

    @property
    def moneybag_cell(self) -> int:
        return 0

    @property
    def coin_cell(self) -> int:
        return self.size - 1

    def move(self, position: int, action: int) -> int:
        """The cell after taking ``action`` (LEFT/RIGHT) in ``position``; walls stop the agent."""
        return min(max(position + (1 if action == RIGHT else -1), 0), self.size - 1)

    def rollout(self, actions) -> dict[str, Any]:
        """Plays a sequence of actions (T,) from the start cell.

        Returns:
            dict with "features" (T, 4) float64, "return" (int), "positions" (T + 1,), "moneybag",
            "coin", "counted" (T,) bool.

        Raises:
            ValueError: ``actions`` not of shape (T,) = (length,) or not all LEFT/RIGHT.
        """
        actions = np.asarray(actions)
        if actions.shape != (self.length,):
            raise ValueError(f"`actions` must have shape (T,) = ({self.length},); got {actions.shape}.")
        if not np.all((actions == LEFT) | (actions == RIGHT)):
            raise ValueError("`actions` must hold only LEFT (0) and RIGHT (1).")
        T = self.length
        positions = np.zeros(T + 1, int)
        positions[0] = self.start
        moneybag, coin = np.zeros(T, bool), np.zeros(T, bool)
        have_moneybag = False
        for t in range(T):
            new = self.move(int(positions[t]), int(actions[t]))
            if new != positions[t] and new == self.moneybag_cell and not have_moneybag:
                moneybag[t], have_moneybag = True, True
            if new != positions[t] and new == self.coin_cell:
                coin[t] = True
            positions[t + 1] = new
        counted = coin & (np.cumsum(moneybag) > 0)
        features = np.stack([moneybag, coin, actions == LEFT, actions == RIGHT], axis=1).astype(np.float64)
        return {"features": features, "return": int(counted.sum()), "positions": positions,
                "moneybag": moneybag, "coin": coin, "counted": counted}


def episode_return(features) -> np.ndarray:
    """The return recomputed from the features alone: Coins after the first Moneybag step.

    Args:
        features: (T, 4) or (B, T, 4) in the order of :data:`FEATURES`.

    Returns:
        () or (B,) int.
    """
    features = np.asarray(features)
    if features.ndim not in (2, 3) or features.shape[-1] != len(FEATURES):
        raise ValueError(f"`features` must have shape (T, 4) or (B, T, 4); got {features.shape}.")
    moneybag, coin = features[..., 0] > 0.5, features[..., 1] > 0.5
    return np.sum(coin & (np.cumsum(moneybag, axis=-1) > 0), axis=-1)


def _toward(world: GridWorld, position: int, target: int, rng: np.random.Generator) -> int:
    if target == position:
        return int(rng.integers(2))
    return RIGHT if target > position else LEFT


def _actions(world: GridWorld, policy: str, rng: np.random.Generator) -> np.ndarray:
    """One episode's actions (T,) under one of the behaviours of :data:`POLICIES`."""
    T = world.length
    if policy == "wander":
        rho = rng.uniform(0.5, 0.95)
        actions = np.zeros(T, int)
        actions[0] = rng.integers(2)
        for t in range(1, T):
            actions[t] = actions[t - 1] if rng.random() < rho else 1 - actions[t - 1]
        return actions
    epsilon = rng.uniform(0.05, 0.4)
    coins_before = int(rng.integers(1, 4)) if policy == "coins_first" else 0
    want_moneybag = policy != "coins_only"
    position, have_moneybag, coins = cast(int, world.start), False, 0  # an int after __post_init__
    actions = np.zeros(T, int)
    for t in range(T):
        if want_moneybag and not have_moneybag and coins >= coins_before:
            target = world.moneybag_cell
        else:  # shuttle between the Coin cell and its neighbour
            target = world.coin_cell if position != world.coin_cell else world.coin_cell - 1
        action = int(rng.integers(2)) if rng.random() < epsilon else _toward(world, position, target, rng)
        new = world.move(position, action)
        have_moneybag |= new == world.moneybag_cell and new != position
        coins += int(new == world.coin_cell and new != position)
        position, actions[t] = new, action
    return actions


def explore(world: GridWorld, n: int, seed: int, dtype=np.float32) -> Episodes:
    """``n`` episodes from the exploring policy, each behaviour drawn uniformly; seeded.

    Args:
        world: the environment.
        n: number of episodes B (>= 1).
        seed: seed of ``numpy.random.default_rng``.
        dtype: dtype of ``features`` and ``returns``.

    Returns:
        :class:`Episodes`.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int; got {n!r}.")
    rng = np.random.default_rng(seed)
    policy = rng.integers(len(POLICIES), size=n)
    runs = [world.rollout(_actions(world, POLICIES[k], rng)) for k in policy]
    actions = np.stack([np.asarray(r["features"][:, 3] > 0.5, int) for r in runs])
    return Episodes(
        features=np.stack([r["features"] for r in runs]).astype(dtype),
        returns=np.array([r["return"] for r in runs], dtype),
        actions=actions,
        positions=np.stack([r["positions"] for r in runs]),
        moneybag=np.stack([r["moneybag"] for r in runs]),
        coin=np.stack([r["coin"] for r in runs]),
        counted=np.stack([r["counted"] for r in runs]),
        policy=policy,
    )


def splits(world: GridWorld, seed: int, sizes: tuple[int, int, int] = (5000, 1000, 1000),
           dtype=np.float32) -> dict[str, Episodes]:
    """Independent train / validation / test sets (seeds ``seed``, ``seed + 1``, ``seed + 2``).

    Returns:
        {"train": Episodes, "val": Episodes, "test": Episodes} with ``sizes`` episodes each.
    """
    if len(sizes) != 3:
        raise ValueError(f"`sizes` must be (n_train, n_val, n_test); got {sizes!r}.")
    return {name: explore(world, n, seed + k, dtype) for k, (name, n) in enumerate(zip(("train", "val", "test"), sizes))}
