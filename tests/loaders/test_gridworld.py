"""The Moneybag/Coins grid world: rules, features, seeded exploration."""

import numpy as np
import pytest

from lrpjax.data.gridworld import (FEATURES, LEFT, POLICIES, RIGHT, GridWorld, episode_return, explore,
                                   splits)


@pytest.fixture(scope="module")
def episodes():
    return explore(GridWorld(), 400, seed=3, dtype=np.float64)


def _slow_return(world, actions):
    """Oracle: walk the grid cell by cell; count Coins only once the Moneybag is held."""
    pos, held, total = world.start, False, 0
    for a in actions:
        new = pos + (1 if a == RIGHT else -1)
        if new < 0 or new >= world.size:
            continue
        pos = new
        if pos == 0:
            held = True
        if pos == world.size - 1 and held:
            total += 1
    return total


def test_return_equals_counted_coins(episodes):
    world = GridWorld()
    np.testing.assert_array_equal(episodes.returns, episodes.counted.sum(1))
    np.testing.assert_array_equal(episodes.returns, episode_return(episodes.features))
    for b in range(50):
        assert episodes.returns[b] == _slow_return(world, episodes.actions[b])


def test_features_consistent_with_actions_and_positions(episodes):
    f = episodes.features
    assert f.shape == (400, 30, len(FEATURES))
    assert set(np.unique(f)) <= {0.0, 1.0}
    np.testing.assert_array_equal(f[..., 2], episodes.actions == LEFT)
    np.testing.assert_array_equal(f[..., 3], episodes.actions == RIGHT)
    np.testing.assert_array_equal(f[..., 2] + f[..., 3], 1.0)
    step = np.diff(episodes.positions, axis=1)
    moved = step != 0
    np.testing.assert_array_equal(step[moved], np.where(episodes.actions == RIGHT, 1, -1)[moved])
    # A Coin is collected exactly when arriving in the last cell; the Moneybag on the first arrival in cell 0.
    arrive_coin = moved & (episodes.positions[:, 1:] == 6)
    np.testing.assert_array_equal(f[..., 1] > 0, arrive_coin)
    first_zero = moved & (episodes.positions[:, 1:] == 0) & (np.cumsum(moved & (episodes.positions[:, 1:] == 0), 1) == 1)
    np.testing.assert_array_equal(f[..., 0] > 0, first_zero)
    assert np.all(episodes.moneybag.sum(1) <= 1)
    assert np.all((episodes.positions >= 0) & (episodes.positions <= 6))


def test_all_event_types_occur(episodes):
    has_mb = episodes.moneybag.any(1)
    uncounted = episodes.coin & ~episodes.counted
    assert 0.3 < has_mb.mean() < 0.9                              # with and without the Moneybag
    assert (uncounted.any(1) & ~has_mb).sum() > 20                 # Coins without any Moneybag
    assert (uncounted.any(1) & episodes.counted.any(1)).sum() > 20  # Coins before and after it
    assert (episodes.counted.sum(1) >= 5).sum() > 20               # long Coin runs after it
    assert set(np.unique(episodes.policy)) == set(range(len(POLICIES)))


def test_seeded_and_independent_splits():
    world = GridWorld(size=5, length=12)
    a, b = explore(world, 30, seed=1), explore(world, 30, seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(explore(world, 30, seed=2).actions, a.actions)
    parts = splits(world, 0, (20, 10, 5))
    assert [len(parts[k].returns) for k in ("train", "val", "test")] == [20, 10, 5]
    assert parts["train"].features.dtype == np.float32 and parts["train"].features.shape == (20, 12, 4)


def test_walls_stop_the_agent():
    world = GridWorld(size=4, start=1, length=6)
    run = world.rollout([LEFT, LEFT, LEFT, RIGHT, RIGHT, RIGHT])
    np.testing.assert_array_equal(run["positions"], [1, 0, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(run["moneybag"], [1, 0, 0, 0, 0, 0])   # pushing the wall: no new Moneybag
    np.testing.assert_array_equal(run["coin"], [0, 0, 0, 0, 0, 1])
    assert run["return"] == 1


def test_coin_respawns_and_counts_only_after_moneybag():
    world = GridWorld(size=4, start=2, length=10)
    actions = [RIGHT, LEFT, RIGHT, RIGHT, LEFT, LEFT, LEFT, RIGHT, RIGHT, RIGHT]
    run = world.rollout(actions)
    np.testing.assert_array_equal(run["coin"], [1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(run["counted"], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    assert run["return"] == 1


@pytest.mark.parametrize("kwargs,error,match", [
    ({"size": 2}, ValueError, "size"), ({"length": 0}, ValueError, "length"),
    ({"start": 0}, ValueError, "start"), ({"size": 5.0}, TypeError, "size")])
def test_bad_world_raises(kwargs, error, match):
    with pytest.raises(error, match=match):
        GridWorld(**kwargs)


def test_bad_arguments_raise():
    world = GridWorld(length=3)
    with pytest.raises(ValueError, match="actions"):
        world.rollout([0, 1])
    with pytest.raises(ValueError, match="actions"):
        world.rollout([0, 1, 2])
    with pytest.raises(ValueError, match="n"):
        explore(world, 0, seed=0)
    with pytest.raises(ValueError, match="features"):
        episode_return(np.zeros((3, 5)))
