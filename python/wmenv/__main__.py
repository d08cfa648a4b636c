"""``wmenv`` / ``python -m wmenv``: ``demo``, ``quickstart``, ``check`` and ``evaluate``.

Bare ``wmenv`` prints the help.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def quickstart(steps: int, seed: int) -> None:
    """Steps a small torch world model ``steps`` times and prints the step rate."""
    import gymnasium as gym

    try:
        import torch
        from torch import nn
    except ImportError:
        raise SystemExit("wmenv quickstart needs torch: pip install torch (or torch==2.13.0 for a CPU wheel)") from None

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


def load_factory(target: str):
    """The callable ``MODULE:FACTORY`` or ``path/to/file.py:FACTORY`` names;
    ``SystemExit`` with a one-line message where it cannot be found."""
    import importlib
    import importlib.util
    import os

    source, _, factory_name = target.rpartition(":")
    if not source or not factory_name:
        raise SystemExit(f"wmenv: expected MODULE:FACTORY or path/to/file.py:FACTORY, got {target!r}")
    if source.endswith(".py") or os.sep in source:
        if not os.path.isfile(source):
            raise SystemExit(f"wmenv: no such file: {source}")
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(source))[0], source)
        if spec is None or spec.loader is None:
            raise SystemExit(f"wmenv: cannot load {source} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(source)))
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, "")
        try:
            module = importlib.import_module(source)
        except ModuleNotFoundError as exc:
            raise SystemExit(f"wmenv: cannot import {source!r}: {exc}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise SystemExit(f"wmenv: {source} has no callable {factory_name!r}")
    return factory


def check_factory(target: str, steps: int, seed: int) -> int:
    """``wmenv check MODULE:FACTORY``: builds the env (single or vector) and
    prints :func:`wmenv.check`'s report."""
    import wmenv

    try:
        factory = load_factory(target)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    report = wmenv.check(factory(), steps=steps, seed=seed)
    print(report)
    return 0 if report.ok else 1


def evaluate_factory(target: str, args) -> int:
    """``wmenv evaluate MODULE:FACTORY``: the model's open-loop errors against
    real data (an ``.npz`` of transition arrays, or episodes of a real env)."""
    import gymnasium as gym

    import wmenv

    try:
        factory = load_factory(target)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    data = None
    if args.data:
        try:
            with np.load(args.data) as npz:
                data = {k: npz[k] for k in npz.files}
        except OSError as exc:
            print(f"wmenv: cannot read {args.data}: {exc}", file=sys.stderr)
            return 2
    elif not args.real_env:
        print("wmenv evaluate: give --data FILE.npz or --real-env ID", file=sys.stderr)
        return 2
    real_env = gym.make(args.real_env) if data is None else None
    try:
        result = wmenv.evaluate(factory(), data, horizon=args.horizon, real_env=real_env, episodes=args.episodes)
    except ValueError as exc:
        print(f"wmenv evaluate: {exc}", file=sys.stderr)
        return 2
    print(result)
    if args.plot:
        print(f"plot saved to {result.plot(args.plot)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m wmenv`` command line (demo, quickstart, check, evaluate)."""
    parser = argparse.ArgumentParser(prog="wmenv", description="A trained world model as a fast Gymnasium environment.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="learn CartPole, train PPO in imagination, test it on the real env (about 40 s on 2 cores)",
        add_help=False,
    )
    demo.add_argument("args", nargs=argparse.REMAINDER, help="the demo's own options (wmenv demo --help)")
    quick = commands.add_parser("quickstart", help="step a small world model and print the step rate (seconds)")
    quick.add_argument("--steps", type=int, default=20000)
    quick.add_argument("--seed", type=int, default=0)
    check = commands.add_parser("check", help="report how an env's model outputs are read, and run the checkers")
    check.add_argument(
        "target", metavar="MODULE:FACTORY", help="a function that builds the env (MODULE may be path/to/file.py)"
    )
    check.add_argument("--steps", type=int, default=50)
    check.add_argument("--seed", type=int, default=0)
    evaluate = commands.add_parser("evaluate", help="the model's open-loop errors against real trajectories")
    evaluate.add_argument("target", metavar="MODULE:FACTORY", help="a function that builds the env")
    evaluate.add_argument("--data", metavar="FILE.npz", help="observations, next_observations, actions, ...")
    evaluate.add_argument("--real-env", metavar="ID", help="collect real episodes from this Gymnasium env instead")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--horizon", type=int, default=10)
    evaluate.add_argument("--plot", metavar="FILE.png", help="save the errors against the horizon (matplotlib)")
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
    if args.command == "evaluate":
        return evaluate_factory(args.target, args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
