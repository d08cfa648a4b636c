"""``wmenv`` / ``python -m wmenv``: ``demo``, ``quickstart`` and ``check`` (bare ``wmenv`` prints the help)."""

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


def check_factory(target: str, steps: int, seed: int) -> int:
    """``wmenv check MODULE:FACTORY``: builds the env and prints :func:`wmenv.check`'s report."""
    import importlib

    import wmenv

    module_name, _, factory_name = target.partition(":")
    if not module_name or not factory_name:
        print(f"wmenv check: expected MODULE:FACTORY (e.g. mypkg.envs:make_env), got {target!r}", file=sys.stderr)
        return 2
    sys.path.insert(0, "")
    factory = getattr(importlib.import_module(module_name), factory_name)
    report = wmenv.check(factory(), steps=steps, seed=seed)
    print(report)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wmenv", description="A trained world model as a fast Gymnasium environment.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="learn CartPole, train PPO in imagination, test it on the real env (a few minutes)",
        add_help=False,
    )
    demo.add_argument("args", nargs=argparse.REMAINDER, help="the demo's own options (wmenv demo --help)")
    quick = commands.add_parser("quickstart", help="step a small world model and print the step rate (seconds)")
    quick.add_argument("--steps", type=int, default=20000)
    quick.add_argument("--seed", type=int, default=0)
    check = commands.add_parser("check", help="report how an env's model outputs are read, and run the checkers")
    check.add_argument("target", metavar="MODULE:FACTORY", help="a function that builds the env")
    check.add_argument("--steps", type=int, default=50)
    check.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None) -> int:
    """``wmenv COMMAND [options]``; bare ``wmenv`` prints the help."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "quickstart":
        quickstart(args.steps, args.seed)
        return 0
    if args.command == "check":
        return check_factory(args.target, args.steps, args.seed)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
