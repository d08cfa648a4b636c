"""The env among Gymnasium's tools: env_checker, SyncVectorEnv, pickling."""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils.env_checker import check_env

from conftest import ACT1, BOX2
from models import Dynamics, step_fn

CART_OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)


def render_state(model, state):
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[..., 0] = np.uint8(127 * (1 + float(state[0])))
    return frame


def dynamics_env(make_env, **kwargs):
    return make_env(
        Dynamics(),
        CART_OBS,
        ACT1,
        info_model_state=False,
        max_episode_steps=50,
        render_mode="rgb_array",
        render_fn=render_state,
        **kwargs,
    )


def test_check_env_passes_without_warnings(backend):
    # made through the registry so that check_env can also build it with each render mode
    env = gym.make(
        "wmenv/WorldModel-v0",
        world_model=Dynamics(),
        observation_space=CART_OBS,
        action_space=ACT1,
        info_model_state=False,
        render_fn=render_state,
        render_mode="rgb_array",
        backend=backend,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.reset(seed=0)
    assert env.render().dtype == np.uint8


def test_check_env_discrete_actions(make_env):
    class Model:
        def step(self, state, action):
            nxt = torch.clamp(state + (action.float() - 0.5) * 0.1, -1, 1)
            return nxt, nxt, float(-nxt.abs().sum()), False, False, {}

        def reset(self, seed=None):
            return torch.zeros(4)

    env = make_env(Model(), CART_OBS, gym.spaces.Discrete(2), info_model_state=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)  # no render mode here; rendering is checked above
    assert [str(w.message) for w in caught] == []


def test_sync_vector_env(make_env):
    vec = gym.vector.SyncVectorEnv([lambda: dynamics_env(make_env) for _ in range(3)])
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3, 4) and obs.dtype == np.float32
    for _ in range(60):
        obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
    assert reward.shape == (3,) and obs.shape == (3, 4)
    vec.close()


def test_pickle_round_trip(make_env):
    env = make_env(
        object(),
        BOX2,
        ACT1,
        transition_fn=step_fn,
        initial_state=np.zeros(2, np.float32),
        initial_observation=np.zeros(2, np.float32),
        torch_actions=False,
        max_episode_steps=9,
    )
    env.reset(seed=1)
    env.step(np.ones(1, np.float32))
    clone = pickle.loads(pickle.dumps(env))
    assert clone.backend == env.backend and clone.elapsed_steps == 1
    a = env.step(np.ones(1, np.float32))
    b = clone.step(np.ones(1, np.float32))
    assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]


def test_pickle_torch_model(make_env):
    env = dynamics_env(make_env)
    env.reset(seed=2)
    clone = pickle.loads(pickle.dumps(env))
    action = np.array([0.3], np.float32)
    assert np.array_equal(env.step(action)[0], clone.step(action)[0])


def test_pickle_before_reset(make_env):
    clone = pickle.loads(pickle.dumps(dynamics_env(make_env)))
    obs, _ = clone.reset(seed=0)
    assert CART_OBS.contains(obs)
