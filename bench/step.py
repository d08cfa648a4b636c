"""Per-step cost of WorldModelEnv against a hand-written Gymnasium env.

Three models, each timed in the same run, interleaved, for every backend that
loads and for a hand-written env written for that model alone:

* fresh, fresh_image: a new observation tensor each step (``clone()`` of a
  precomputed one, paid by the baselines too): the zero-copy case
* precomputed: returns precomputed tensors, alternating two sets, the state
  and observation one tensor the model keeps: wmenv copies the observation
* mlp:         a small MLP (hidden 64) predicting state, reward, termination
* image:       returns precomputed 3x64x64 uint8 image observations (two sets)
* in_place, in_place_image: the same tensors every step, which wmenv copies
  (the aliasing rule); the difference to the two-set case is the copy's cost

Prints one JSON line per case and a table of ratios (lower is better; 1.0
means as fast as the hand-written env). Where TorchWM is importable
(``world_models.envs.world_model_env``), its ``WorldModelEnv`` is timed too
and the JSON lines carry ``torchwm/native`` and ``torchwm/python`` (higher is
better: how many times faster wmenv is).

    python bench/step.py [--steps 20000] [--rounds 7]
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
from wmenv import WorldModelEnv, _backend

torch.set_num_threads(1)


class Precomputed:
    """A model that returns precomputed tensors, alternating between ``sets``
    of them (two, by default: a model's fresh tensors are never the memory
    handed out the step before; one set measures wmenv's in-place copy)."""

    def __init__(self, obs, sets=2, fresh=False):
        self.outs = [
            {"state": o, "observation": o, "reward": torch.tensor(0.5), "terminated": torch.tensor(False)}
            for o in [obs] + [obs.clone() for _ in range(sets - 1)]
        ]
        self.i = 0
        self.fresh = fresh

    def __call__(self, state, action):
        self.i += 1
        out = self.outs[self.i % len(self.outs)]
        if self.fresh:  # a new observation tensor nobody else holds (the hand-written env pays for it too)
            return {**out, "observation": out["observation"].clone()}
        return out

    def reset(self, seed=None, options=None):
        return self.outs[0]["state"], self.outs[0]["observation"]


class MLP(nn.Module):
    def __init__(self, obs_dim=4, act_dim=1, hidden=64):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(obs_dim + act_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.next_state = nn.Linear(hidden, obs_dim)
        self.head = nn.Linear(hidden, 2)
        self.init = torch.zeros(obs_dim)

    def forward(self, state, action):
        h = self.body(torch.cat([state, action]))
        next_state = torch.tanh(self.next_state(h))
        reward, done = self.head(h)
        return {"state": next_state, "observation": next_state, "reward": reward, "terminated": done > 10.0}

    def reset(self, seed=None, options=None):
        return self.init, self.init


class HandWritten(gym.Env):
    """What one writes by hand for one model: no adapters, no checks."""

    def __init__(self, model, observation_space, action_space):
        self.model = model
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        with torch.no_grad():
            self.state, obs = self.model.reset(seed, options)
        return obs.numpy(), {}

    def step(self, action):
        with torch.no_grad():
            out = self.model(self.state, torch.from_numpy(action))
        self.state = out["state"]
        return out["observation"].numpy(), float(out["reward"]), bool(out["terminated"]), False, {}


class StrictHandWritten(HandWritten):
    """The careful hand-written env: the model already runs without autograd
    (its parameters need no grad), so there is no ``no_grad`` to pay for."""

    def reset(self, *, seed=None, options=None):
        gym.Env.reset(self, seed=seed)
        self.state, obs = self.model.reset(seed, options)
        return obs.numpy(), {}

    def step(self, action):
        out = self.model(self.state, torch.from_numpy(action))
        self.state = out["state"]
        return out["observation"].numpy(), float(out["reward"]), bool(out["terminated"]), False, {}


CASES = {
    "fresh": lambda: (Precomputed(torch.zeros(4), fresh=True), gym.spaces.Box(-1, 1, (4,), np.float32)),
    "fresh_image": lambda: (
        Precomputed(torch.zeros(3, 64, 64, dtype=torch.uint8), fresh=True),
        gym.spaces.Box(0, 255, (3, 64, 64), np.uint8),
    ),
    "precomputed": lambda: (Precomputed(torch.zeros(4)), gym.spaces.Box(-1, 1, (4,), np.float32)),
    "mlp": lambda: (MLP(), gym.spaces.Box(-1, 1, (4,), np.float32)),
    "image": lambda: (
        Precomputed(torch.zeros(3, 64, 64, dtype=torch.uint8)),
        gym.spaces.Box(0, 255, (3, 64, 64), np.uint8),
    ),
    # the same tensors every step: wmenv copies them (the aliasing rule)
    "in_place": lambda: (Precomputed(torch.zeros(4), sets=1), gym.spaces.Box(-1, 1, (4,), np.float32)),
    "in_place_image": lambda: (
        Precomputed(torch.zeros(3, 64, 64, dtype=torch.uint8), sets=1),
        gym.spaces.Box(0, 255, (3, 64, 64), np.uint8),
    ),
}
ACTION_SPACE = gym.spaces.Box(-1, 1, (1,), np.float32)


def time_steps(env, actions, steps):
    env.reset(seed=0)
    step = env.step
    start = time.perf_counter()
    for i in range(steps):
        step(actions[i & 1023])
    return (time.perf_counter() - start) / steps * 1e6


BASELINES = ("handwritten", "strict")


def torchwm_env_class():
    """TorchWM's WorldModelEnv when TorchWM is installed, else None."""
    try:
        from world_models.envs.world_model_env import WorldModelEnv as TorchWMEnv
    except ImportError:
        return None
    return TorchWMEnv


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    args = parser.parse_args()
    backends = _backend.available()
    actions = [ACTION_SPACE.sample() for _ in range(1024)]
    torchwm = torchwm_env_class()
    rows = []
    for case in args.cases.split(","):
        model, obs_space = CASES[case]()
        if isinstance(model, nn.Module):
            model.requires_grad_(False)  # as the strict baseline's careful user does
        envs = {
            "handwritten": HandWritten(model, obs_space, ACTION_SPACE),
            "strict": StrictHandWritten(model, obs_space, ACTION_SPACE),
        }
        for name in backends:
            envs[name] = WorldModelEnv(model, obs_space, ACTION_SPACE, backend=name)
        if torchwm is not None:
            envs["torchwm"] = torchwm(model, obs_space, ACTION_SPACE)
        for env in envs.values():  # warm-up
            time_steps(env, actions, 2000)
        best = {name: float("inf") for name in envs}
        for _ in range(args.rounds):
            for name, env in envs.items():
                best[name] = min(best[name], time_steps(env, actions, args.steps))
        row = {"case": case, "us_per_step": {k: round(v, 3) for k, v in best.items()}}
        for name in backends:
            for base in BASELINES:
                row[f"{name}/{base}"] = round(best[name] / best[base], 3)
        if "native" in best and "python" in best:
            row["python/native"] = round(best["python"] / best["native"], 3)
        if torchwm is not None:
            for name in backends:
                row[f"torchwm/{name}"] = round(best["torchwm"] / best[name], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"wmenv {wmenv.__version__}, torch {torch.__version__}, numpy {np.__version__}, backends {backends}")
    header = ["case", "handwritten us", "strict us"] + [f"{b} us" for b in backends]
    header += [f"{b}/{base}" for b in backends for base in BASELINES]
    print(" | ".join(header))
    for row in rows:
        us = row["us_per_step"]
        cells = [row["case"], f"{us['handwritten']:.2f}", f"{us['strict']:.2f}"] + [f"{us[b]:.2f}" for b in backends]
        cells += [f"{row[f'{b}/{base}']:.2f}x" for b in backends for base in BASELINES]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
