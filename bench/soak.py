"""Memory soak: many steps of both envs, resident memory sampled after warm-up.

Steps a single WorldModelEnv (a torch model that allocates fresh tensors every
step, ends episodes now and then, and keeps an in-place state) and a
WorldModelVectorEnv with partial autoresets, on every backend that loads.
Prints one JSON line per run with the RSS growth after warm-up; exits 1 when a
growth exceeds ``--limit-mib`` (default 1 MiB).

    python bench/soak.py [--steps 1000000] [--vector-steps 100000] [--limit-mib 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys

import gymnasium as gym
import numpy as np
import torch

from wmenv import WorldModelEnv, WorldModelVectorEnv, _backend

torch.set_num_threads(1)

OBS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


class Single:
    """Fresh tensors each step, a dict result with info, an episode end every 97 steps."""

    def __init__(self):
        self.count = 0

    def reset(self, seed=None, options=None):
        state = torch.zeros(4)
        return state, state.clone()

    def step(self, state, action):
        self.count += 1
        nxt = state * 0.5 + action.sum()
        return {
            "state": nxt,
            "observation": nxt,
            "reward": nxt.sum(),
            "terminated": self.count % 97 == 0,
            "info": {"k": self.count},
        }


class InPlace:
    """Returns the same tensor, updated in place (the copy path)."""

    def __init__(self):
        self.h = torch.zeros(4)

    def reset(self, seed=None, options=None):
        self.h.zero_()
        return self.h, self.h

    def step(self, state, action):
        self.h.add_(action.sum())
        return self.h, self.h, 0.0


class Batched:
    def __init__(self, n):
        self.n = n
        self.count = 0

    def reset(self, seed=None, options=None):
        state = torch.zeros(self.n, 4)
        return state, state

    def step(self, state, action):
        self.count += 1
        nxt = state * 0.5 + action
        done = torch.zeros(self.n, dtype=torch.bool)
        done[self.count % self.n] = True
        return {"state": nxt, "observation": nxt, "reward": nxt.sum(1), "terminated": done}


def soak_single(model, backend, steps, warmup):
    env = WorldModelEnv(model, OBS, ACT, backend=backend, max_episode_steps=500)
    env.reset(seed=0)
    action = np.zeros(1, np.float32)
    base = None
    for i in range(steps + warmup):
        if i == warmup:
            gc.collect()
            base = rss_kib()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    gc.collect()
    return rss_kib() - base


def soak_vector(backend, steps, warmup, n=16):
    env = WorldModelVectorEnv(Batched(n), n, OBS, ACT, backend=backend, max_episode_steps=50)
    env.reset(seed=0)
    actions = np.zeros((n, 1), np.float32)
    base = None
    for i in range(steps + warmup):
        if i == warmup:
            gc.collect()
            base = rss_kib()
        env.step(actions)
    gc.collect()
    return rss_kib() - base


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--vector-steps", type=int, default=100_000)
    parser.add_argument("--limit-mib", type=float, default=1.0)
    args = parser.parse_args(argv)
    ok = True
    for backend in _backend.available():
        runs = [
            ("single", lambda b: soak_single(Single(), b, args.steps, args.steps // 10)),
            ("single_in_place", lambda b: soak_single(InPlace(), b, args.steps // 4, args.steps // 40)),
            ("vector_16", lambda b: soak_vector(b, args.vector_steps, args.vector_steps // 10)),
        ]
        for name, run in runs:
            growth = run(backend) / 1024
            passed = growth < args.limit_mib
            ok &= passed
            print(
                json.dumps(
                    {
                        "backend": backend,
                        "run": name,
                        "rss_growth_mib": round(growth, 3),
                        "limit_mib": args.limit_mib,
                        "ok": passed,
                    }
                ),
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
