"""Randomised parity: both backends over generated inputs, same results and
same errors (type and message). Seeded, so a failure reproduces."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from wmenv import _spaces

from test_core_parity import assert_twins, cores  # noqa: F401  (the fixture)

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_, np.float16]
TORCH = [torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool, torch.int16]


def random_shape(rng):
    return tuple(int(d) for d in rng.integers(0, 4, size=rng.integers(0, 3)))


def random_leaf(rng, shape=None):
    shape = random_shape(rng) if shape is None else shape
    kind = rng.integers(9)
    if kind == 0:
        return np.asarray(rng.normal(size=shape)).astype(DTYPES[rng.integers(len(DTYPES))])
    if kind == 1:
        t = torch.as_tensor(rng.normal(size=shape)).to(TORCH[rng.integers(len(TORCH))])
        if t.dim() >= 2 and rng.random() < 0.5:
            t = t.transpose(0, 1)
        if t.is_floating_point() and rng.random() < 0.3:
            t.requires_grad_(True)
        return t
    if kind == 2:
        return float(rng.normal())
    if kind == 3:
        return int(rng.integers(-3, 3))
    if kind == 4:
        return bool(rng.integers(2))
    if kind == 5:
        return rng.normal(size=shape).tolist()
    if kind == 6:
        return None
    if kind == 7:
        return "text"
    return np.float32(rng.normal())


def random_space(rng, depth=0):
    kind = rng.integers(6 if depth < 2 else 3)
    if kind == 0:
        return gym.spaces.Box(-1, 1, random_shape(rng), DTYPES[rng.integers(4)])
    if kind == 1:
        return gym.spaces.Discrete(int(rng.integers(1, 5)))
    if kind == 2:
        return gym.spaces.MultiBinary(int(rng.integers(1, 4)))
    if kind in (3, 4):
        return gym.spaces.Dict({f"k{i}": random_space(rng, depth + 1) for i in range(rng.integers(1, 3))})
    return gym.spaces.Tuple([random_space(rng, depth + 1) for _ in range(rng.integers(1, 3))])


def matching_obs(rng, space):
    """An observation near the space: right most of the time, wrong sometimes."""
    if rng.random() < 0.15:
        return random_leaf(rng)
    if isinstance(space, gym.spaces.Dict):
        return {k: matching_obs(rng, s) for k, s in space.spaces.items() if rng.random() < 0.95}
    if isinstance(space, gym.spaces.Tuple):
        items = [matching_obs(rng, s) for s in space.spaces]
        return tuple(items) if rng.random() < 0.7 else items
    return random_leaf(rng, tuple(space.shape))


def random_result(rng, obs_space):
    obs = matching_obs(rng, obs_space)
    parts = [
        random_leaf(rng, ()),
        obs,
        random_leaf(rng, (1,) if rng.random() < 0.3 else ()),
        random_leaf(rng, ()),
        random_leaf(rng, ()),
        [None, {}, {"model_state": "h"}, [1]][rng.integers(4)],
    ]
    kind = rng.integers(10)
    if kind < 7:
        n = int(rng.integers(0, 9))
        if n == 5:
            return (obs,) + tuple(parts[2:6])
        if n == 4:
            return (obs, parts[2], parts[3], parts[5])
        return tuple(parts[:n]) if n <= 6 else tuple(parts) + (None,) * (n - 6)
    if kind < 9:
        keys = [
            "state",
            "next_state",
            "observation",
            "obs",
            "pixels",
            "reward",
            "terminated",
            "done",
            "truncated",
            "info",
        ]
        values = {
            "state": parts[0],
            "next_state": parts[0],
            "observation": obs,
            "obs": obs,
            "pixels": obs,
            "reward": parts[2],
            "terminated": parts[3],
            "done": parts[3],
            "truncated": parts[4],
            "info": parts[5],
        }
        return {k: values[k] for k in keys if rng.random() < 0.5}
    return obs


@pytest.mark.parametrize("seed", range(8))
def test_random_step_and_reset_results(cores, seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        space = random_space(rng)
        spec = _spaces.observation_spec(space)
        result = random_result(rng, space)
        fns = rng.random() < 0.5
        reward_fn = (lambda s, o, a: 0.5) if fns else None
        terminal_fn = (lambda s, o, a: np.array([1])) if fns else None
        assert_twins(cores, "normalize_step", result, "s0", "a", spec, reward_fn, terminal_fn, 3, bool(rng.integers(2)))
        assert_twins(cores, "normalize_reset", result, spec, [None, "s0"][rng.integers(2)], None)
        assert_twins(cores, "matches_structure", matching_obs(rng, space), spec)


@pytest.mark.parametrize("seed", range(4))
def test_random_actions(cores, seed):
    rng = np.random.default_rng(100 + seed)
    spaces = [
        gym.spaces.Box(-1, 1, (2,), np.float32),
        gym.spaces.Box(-1, 1, (), np.float64),
        gym.spaces.Box(-1, 1, (2, 2), np.float32),
        gym.spaces.Discrete(3),
        gym.spaces.Discrete(4, start=-1),
        gym.spaces.MultiDiscrete([2, 3]),
        gym.spaces.MultiBinary(2),
    ]
    for _ in range(200):
        space = spaces[rng.integers(len(spaces))]
        shape = tuple(space.shape) if rng.random() < 0.6 else random_shape(rng)
        action = random_leaf(rng, shape)
        spec = _spaces.action_spec(space, torch, None, bool(rng.integers(2)))
        assert_twins(cores, "convert_action", action, spec)


@pytest.mark.parametrize("seed", range(4))
def test_random_batches(cores, seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(200):
        value = random_leaf(rng, (3,) if rng.random() < 0.5 else None)
        dtype = np.dtype(np.float32) if rng.random() < 0.5 else np.dtype(np.bool_)
        assert_twins(cores, "as_batch", value, 3, dtype, "reward")
        assert_twins(cores, "as_reward", value)
        assert_twins(cores, "as_flag", value, "terminated")
