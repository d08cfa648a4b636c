"""The contract for reset results: every accepted form and the 2-tuple rule."""

import gymnasium as gym
import numpy as np
import pytest

from conftest import ACT1, BOX2, needs_torch, torch
from models import Recorder

OBS = np.array([1.0, 2.0], np.float32)


def reset_env(make_env, result, **kwargs):
    env = make_env(Recorder(), BOX2, ACT1, reset_fn=lambda m: result, **kwargs)
    return env, env.reset()


def test_bare_observation(make_env):
    env, (obs, info) = reset_env(make_env, OBS)
    assert np.array_equal(obs, OBS) and info == {}


@needs_torch
def test_bare_observation_without_initial_state_is_the_state(make_env):
    env, _ = reset_env(make_env, torch.ones(2))
    assert torch.equal(env.state, torch.ones(2))


def test_bare_observation_keeps_initial_state(make_env):
    env, _ = reset_env(make_env, OBS, initial_state="s0")
    assert env.state == "s0"


def test_obs_info_pair(make_env):
    env, (obs, info) = reset_env(make_env, (OBS, {"k": 1}), initial_state="s0")
    assert np.array_equal(obs, OBS) and info == {"k": 1} and env.state == "s0"


def test_obs_info_pair_with_float64_observation(make_env):
    # (fix) the reference read this as (state, obs) since float64 is not in a float32 Box
    env, (obs, info) = reset_env(make_env, (OBS.astype(np.float64), {"k": 1}))
    assert obs.dtype == np.float32 and np.array_equal(obs, OBS) and info == {"k": 1}


@needs_torch
def test_obs_info_pair_with_out_of_bounds_tensor_observation(make_env):
    env, (obs, info) = reset_env(make_env, (torch.full((2,), 99.0), {"k": 1}))
    assert np.array_equal(obs, [99.0, 99.0]) and info == {"k": 1}


@needs_torch
def test_state_obs_pair(make_env):
    state = torch.zeros(8)
    env, (obs, info) = reset_env(make_env, (state, OBS))
    assert env.state is state and np.array_equal(obs, OBS) and info == {}


@needs_torch
def test_state_obs_pair_when_second_is_a_mapping_but_first_has_another_shape(make_env):
    space = gym.spaces.Dict({"x": BOX2})
    env = make_env(Recorder(), space, ACT1, reset_fn=lambda: (torch.zeros(5), {"x": OBS}))
    obs, info = env.reset()
    assert env.state.shape == (5,) and np.array_equal(obs["x"], OBS) and info == {}


def test_dict_observation_info_pair(make_env):
    space = gym.spaces.Dict({"x": BOX2, "t": gym.spaces.Discrete(3)})
    env = make_env(Recorder(), space, ACT1, reset_fn=lambda: ({"x": OBS, "t": 2}, {"k": 1}))
    obs, info = env.reset()
    assert np.array_equal(obs["x"], OBS) and obs["t"] == 2 and info == {"k": 1}


def test_state_obs_info_triple(make_env):
    env, (obs, info) = reset_env(make_env, ("s", OBS, {"k": 2}))
    assert env.state == "s" and np.array_equal(obs, OBS) and info == {"k": 2}


def test_state_obs_info_triple_with_none_info(make_env):
    env, (obs, info) = reset_env(make_env, ("s", OBS, None))
    assert info == {}


@pytest.mark.parametrize("key", ["observation", "obs", "image", "pixels", "next_observation", "next_obs"])
def test_mapping_observation_keys(make_env, key):
    env, (obs, info) = reset_env(make_env, {"state": "s", key: OBS, "info": {"k": 3}})
    assert env.state == "s" and np.array_equal(obs, OBS) and info == {"k": 3}


def test_mapping_first_observation_key_wins(make_env):
    env, (obs, _) = reset_env(make_env, {"next_obs": OBS + 1, "obs": OBS, "pixels": OBS + 2})
    assert np.array_equal(obs, OBS)


def test_mapping_defaults(make_env):
    env, (obs, info) = reset_env(make_env, {}, initial_state="s0", initial_observation=OBS)
    assert env.state == "s0" and np.array_equal(obs, OBS) and info == {}


def test_none_observation_is_sampled(make_env):
    env, (obs, _) = reset_env(make_env, {"state": "s"}, seed=3)
    assert BOX2.contains(obs) and env.state == "s"
    env2, (obs2, _) = reset_env(make_env, None, seed=3)
    assert BOX2.contains(obs2)


@pytest.mark.parametrize("n", [1, 4, 5])
def test_other_tuple_lengths_lead_with_the_observation(make_env, n):
    env, (obs, info) = reset_env(make_env, (OBS,) + ("x",) * (n - 1))
    assert np.array_equal(obs, OBS) and info == {}


def test_empty_tuple_is_an_error(make_env):
    env = make_env(Recorder(), BOX2, ACT1, reset_fn=lambda: ())
    with pytest.raises(ValueError, match="empty tuple"):
        env.reset()


def test_info_must_be_a_mapping(make_env):
    env = make_env(Recorder(), BOX2, ACT1, reset_fn=lambda: ("s", OBS, [1]))
    with pytest.raises(TypeError, match="info must be a mapping or None, got list"):
        env.reset()


def test_reset_resets_the_step_counter(make_env):
    model = Recorder(result=lambda s, a: (s, OBS))
    env = make_env(model, BOX2, ACT1, max_episode_steps=2, initial_observation=OBS)
    env.reset()
    env.step(np.zeros(1, np.float32))
    assert env.elapsed_steps == 1
    env.reset()
    assert env.elapsed_steps == 0
    assert env.step(np.zeros(1, np.float32))[3] is False


def test_reset_returns_info_dict_copy(make_env):
    info_in = {"k": 1}
    env, (_, info) = reset_env(make_env, (OBS, info_in))
    info["k"] = 2
    assert info_in == {"k": 1}


def test_reset_observation_shape_error(make_env):
    env = make_env(Recorder(), BOX2, ACT1, reset_fn=lambda: ("s", np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match=r"observation must have shape \(2,\), got \(3,\)"):
        env.reset()
