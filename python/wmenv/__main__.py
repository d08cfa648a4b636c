"""``wmenv`` / ``python -m wmenv``: the demo (``wmenv demo``) or a quick-start (``wmenv quickstart``)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def quickstart(steps: int, seed: int) -> None:
    import gymnasium as gym
    import torch
    from torch import nn

    import wmenv

    class Dynamics(nn.Module):
        """A toy latent model: next state, reward and termination from (state, action)."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Linear(5, 64), nn.Tanh(), nn.Linear(64, 6))

        def forward(self, state, action):
            out = self.net(torch.cat([state, action]))
            next_state = torch.tanh(out[:4])
            return {"state": next_state, "observation": next_state, "reward": out[4], "terminated": out[5] > 1.5}

        def reset(self, seed=None, options=None):
            gen = torch.Generator().manual_seed(0 if seed is None else seed)
            state = torch.rand(4, generator=gen) * 0.1
            return state, state

    env = wmenv.WorldModelEnv(
        Dynamics(),
        observation_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        max_episode_steps=200,
    )
    obs, info = env.reset(seed=seed)
    episodes, total = 0, 0.0
    start = time.perf_counter()
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        if terminated or truncated:
            episodes += 1
            obs, info = env.reset()
    elapsed = time.perf_counter() - start
    print(f"wmenv {wmenv.__version__} on the {wmenv.backend()} backend")
    print(f"{steps} imagined steps, {episodes} episodes ended, mean reward {total / steps:+.4f}")
    print(f"{steps / elapsed:,.0f} steps/s ({elapsed / steps * 1e6:.1f} us per step, model included)")


def main(argv=None) -> int:
    """``wmenv [demo|quickstart] [options]``: the demo unless told otherwise."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("demo", "quickstart") else "demo"
    if command == "quickstart":
        parser = argparse.ArgumentParser(prog="wmenv quickstart", description="step a small world model")
        parser.add_argument("--steps", type=int, default=20000)
        parser.add_argument("--seed", type=int, default=0)
        args = parser.parse_args(argv)
        quickstart(args.steps, args.seed)
        return 0
    from .demo import main as demo_main

    return demo_main(argv)


if __name__ == "__main__":
    sys.exit(main())
