"""Env-steps per second of WorldModelVectorEnv against its baselines.

For each num_envs, in the same run, with an MLP world model (hidden 128):

* raw:   the batched model call alone, under no_grad (the ceiling)
* wmenv: WorldModelVectorEnv, every backend that loads (one model call per step)
* sync:  gymnasium's SyncVectorEnv over num_envs single WorldModelEnvs

Prints one JSON line per num_envs and a table (env-steps per second; ratios
wmenv/sync and wmenv/raw, higher is better).

    python bench/vector.py [--num-envs 16 256 4096] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import wmenv
from wmenv import WorldModelEnv, WorldModelVectorEnv, _backend

torch.set_num_threads(1)
OBS_DIM, ACT_DIM = 8, 2
OBS = gym.spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)


class MLP(nn.Module):
    """Batched or single: (…, obs) and (…, act) -> next state, reward, termination."""

    def __init__(self, hidden=128):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(OBS_DIM + ACT_DIM, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.next_state = nn.Linear(hidden, OBS_DIM)
        self.head = nn.Linear(hidden, 2)

    def forward(self, state, action):
        h = self.body(torch.cat([state, action], dim=-1))
        next_state = torch.tanh(self.next_state(h))
        out = self.head(h)
        return {"state": next_state, "observation": next_state, "reward": out[..., 0], "terminated": out[..., 1] > 3.0}


def rate(step, min_seconds, min_steps=3):
    """Calls per second of step(), over at least min_seconds and min_steps."""
    step()
    count, start = 0, time.perf_counter()
    while True:
        step()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and count >= min_steps:
            return count / elapsed


def measure(num_envs, seconds, backends):
    model = MLP()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (num_envs, ACT_DIM)).astype(np.float32)
    results = {}

    state = torch.zeros(num_envs, OBS_DIM)
    action_t = torch.from_numpy(actions)

    def raw():
        nonlocal state
        with torch.no_grad():
            state = model(state, action_t)["state"]

    results["raw"] = rate(raw, seconds) * num_envs

    for name in backends:
        env = WorldModelVectorEnv(
            model,
            num_envs,
            OBS,
            ACT,
            backend=name,
            max_episode_steps=200,
            initial_state=torch.zeros(num_envs, OBS_DIM),
            initial_observation=torch.zeros(num_envs, OBS_DIM),
        )
        env.reset(seed=0)
        results[name] = rate(lambda env=env: env.step(actions), seconds) * num_envs

    sync = gym.vector.SyncVectorEnv(
        [
            lambda: WorldModelEnv(
                model,
                OBS,
                ACT,
                max_episode_steps=200,
                initial_state=torch.zeros(OBS_DIM),
                initial_observation=torch.zeros(OBS_DIM),
                info_model_state=False,
            )
            for _ in range(num_envs)
        ]
    )
    sync.reset(seed=0)
    results["sync"] = rate(lambda: sync.step(actions), seconds) * num_envs
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 256, 4096])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    backends = _backend.available()
    rows = []
    for n in args.num_envs:
        r = measure(n, args.seconds, backends)
        row = {"num_envs": n, "env_steps_per_s": {k: round(v) for k, v in r.items()}}
        for name in backends:
            row[f"{name}/sync"] = round(r[name] / r["sync"], 2)
            row[f"{name}/raw"] = round(r[name] / r["raw"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"wmenv {wmenv.__version__}, torch {torch.__version__}, one torch thread, MLP hidden 128")
    print(
        " | ".join(
            ["num_envs", "raw", *backends, "sync", *[f"{b}/sync" for b in backends], *[f"{b}/raw" for b in backends]]
        )
    )
    for row in rows:
        s = row["env_steps_per_s"]
        cells = [str(row["num_envs"]), f"{s['raw']:,}", *[f"{s[b]:,}" for b in backends], f"{s['sync']:,}"]
        cells += [f"{row[f'{b}/sync']:.1f}x" for b in backends] + [f"{row[f'{b}/raw']:.2f}x" for b in backends]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
