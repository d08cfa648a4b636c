"""wmenv inside the RL libraries people use. Each test skips only when its
library is absent; CI installs them all."""

import functools
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from wmenv import WorldModelEnv

from models import Dynamics

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def dynamics_env(backend, **kwargs):
    kwargs.setdefault("info_model_state", False)
    return WorldModelEnv(Dynamics(), OBS, ACT, max_episode_steps=50, backend=backend, **kwargs)


class PixelModel:
    """A Dict observation with a uint8 image and a vector: a pixel decoder's output."""

    def reset(self, seed=None, options=None):
        state = torch.zeros(2)
        return state, self.render(state)

    def render(self, state):
        image = torch.zeros(36, 36, 3, dtype=torch.uint8)
        col = int((state[0].clamp(-1, 1) + 1) * 17)
        image[:, col, 0] = 255
        return {"image": image, "vector": state}

    def step(self, state, action):
        nxt = torch.clamp(state + 0.1 * action.reshape(-1)[0], -1, 1)
        return nxt, self.render(nxt), float(-nxt.abs().sum())


PIXEL_SPACE = gym.spaces.Dict(
    {
        "image": gym.spaces.Box(0, 255, (36, 36, 3), np.uint8),
        "vector": gym.spaces.Box(-1, 1, (2,), np.float32),
    }
)


# ---- Stable-Baselines3 ------------------------------------------------------


def test_sb3_check_env(backend):
    env_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env_checker.check_env(dynamics_env(backend), warn=True)
        env_checker.check_env(
            WorldModelEnv(PixelModel(), PIXEL_SPACE, ACT, backend=backend, info_model_state=False), warn=True
        )
    assert [str(w.message) for w in caught] == []


def test_sb3_ppo_mlp_policy_with_monitor(backend, tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(dynamics_env(backend), str(tmp_path / "monitor"))
    model = sb3.PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, verbose=0)
    model.learn(512)
    assert len(env.get_episode_rewards()) >= 512 // 50 - 1
    assert (tmp_path / "monitor.monitor.csv").exists()
    action, _ = model.predict(env.reset()[0], deterministic=True)
    assert ACT.contains(action)


def test_sb3_multi_input_policy_on_dict_with_image(backend):
    sb3 = pytest.importorskip("stable_baselines3")
    env = WorldModelEnv(PixelModel(), PIXEL_SPACE, ACT, backend=backend, max_episode_steps=16, info_model_state=False)
    model = sb3.PPO(
        "MultiInputPolicy",
        env,
        n_steps=64,
        batch_size=32,
        n_epochs=1,
        seed=0,
        verbose=0,
        policy_kwargs={"features_extractor_kwargs": {"cnn_output_dim": 16}},
    )
    model.learn(128)
    obs, _ = env.reset()
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (36, 36, 3)
    model.predict(obs)


# ---- Gymnasium ----------------------------------------------------------------


def test_async_vector_env_in_subprocesses(backend):
    factory = functools.partial(dynamics_env, backend)
    envs = gym.vector.AsyncVectorEnv([factory, factory], context="spawn")
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, 4)
        for _ in range(60):  # past the time limit: autoreset works across processes
            obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
        assert obs.shape == (2, 4) and reward.shape == (2,)
    finally:
        envs.close()


def test_gymnasium_make_with_default_wrappers(backend):
    env = gym.make(
        "wmenv/WorldModel-v0",
        world_model=Dynamics(),
        observation_space=OBS,
        action_space=ACT,
        max_episode_steps=5,
        backend=backend,
    )
    assert isinstance(env, gym.wrappers.TimeLimit)
    assert env.spec.id == "wmenv/WorldModel-v0"
    env.reset(seed=0)
    for _ in range(5):
        *_, truncated, _ = env.step(ACT.sample())
    assert truncated
    with pytest.raises(gym.error.ResetNeeded):
        gym.make("wmenv/WorldModel-v0", world_model=Dynamics(), observation_space=OBS, action_space=ACT).step(
            ACT.sample()
        )
    vec = gym.make_vec(
        "wmenv/WorldModel-v0",
        num_envs=3,
        vectorization_mode="sync",
        world_model=Dynamics(),
        observation_space=OBS,
        action_space=ACT,
        backend=backend,
    )
    assert vec.reset(seed=0)[0].shape == (3, 4)


# ---- TorchRL ------------------------------------------------------------------


def test_torchrl_gym_wrapper(backend):
    libs = pytest.importorskip("torchrl.envs.libs.gym")
    from torchrl.envs.utils import check_env_specs

    env = libs.GymWrapper(dynamics_env(backend))
    check_env_specs(env, seed=0)
    rollout = env.rollout(20)
    assert rollout.batch_size == torch.Size([20])
    assert rollout["next", "observation"].shape == (20, 4)
    assert rollout["next", "reward"].shape == (20, 1)
