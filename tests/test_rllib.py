"""Ray RLlib: a PPO config whose env runners build a WorldModelEnv through
register_env trains one iteration, locally."""

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ray.rllib")

import ray
from ray.rllib.algorithms.ppo import PPOConfig
from ray.tune.registry import register_env

from wmenv import WorldModelEnv

from models import Dynamics

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def make_env(config):
    # Each env runner builds (and owns) its model copy; config carries its options.
    return WorldModelEnv(
        Dynamics(), OBS, ACT, max_episode_steps=50, info_model_state=False, backend=config.get("backend")
    )


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ppo_trains_one_iteration(local_ray, backend):
    register_env("wmenv-dynamics", make_env)
    config = (
        PPOConfig()
        .environment("wmenv-dynamics", env_config={"backend": backend})
        .env_runners(num_env_runners=0)
        .training(train_batch_size_per_learner=256, minibatch_size=64, num_epochs=1)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    runners = result["env_runners"]
    assert runners["num_env_steps_sampled_lifetime"] >= 256
    assert runners["episode_len_max"] == 50
