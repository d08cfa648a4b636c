"""Smoke test for an installed wheel: steps a NumPy-only single and vector env.

    python wheel_smoke.py native|python

Needs only wmenv and its dependencies (no torch, no pytest), so it also runs
as cibuildwheel's test command.
"""

import sys

import gymnasium as gym
import numpy as np

import wmenv


def step(model, state, action):
    nxt = np.clip(state + 0.1 * np.asarray(action, np.float32), -1, 1)
    return nxt, nxt, -np.abs(nxt).sum(axis=-1)


def main(expected: str) -> None:
    assert wmenv.backend() == expected, (wmenv.backend(), expected)
    obs_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    env = wmenv.WorldModelEnv(
        None,
        obs_space,
        gym.spaces.Box(-1, 1, (2,), np.float32),
        transition_fn=step,
        initial_state=np.zeros(2, np.float32),
        torch_actions=False,
        max_episode_steps=10,
    )
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        obs, reward, terminated, truncated, _ = env.step(np.ones(2, np.float32))
    assert truncated and type(reward) is float and obs.dtype == np.float32 and np.allclose(obs, 1.0)
    vec = wmenv.WorldModelVectorEnv(
        None,
        8,
        obs_space,
        gym.spaces.Box(-1, 1, (2,), np.float32),
        transition_fn=step,
        initial_state=np.zeros((8, 2), np.float32),
        initial_observation=np.zeros((8, 2), np.float32),
        torch_actions=False,
    )
    vec.reset(seed=0)
    obs, rewards, *_ = vec.step(np.ones((8, 2), np.float32))
    assert obs.shape == (8, 2) and rewards.dtype == np.float32
    print(f"wmenv {wmenv.__version__}: backend {wmenv.backend()}, single and vector envs step")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "native")
