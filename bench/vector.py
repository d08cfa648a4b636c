"""Env-steps per second of WorldModelVectorEnv against its baselines.

The model is a 1-hidden-layer MLP, ``Linear(10, 128)-ReLU-Linear(128, 10)``:
its first 8 outputs are the next state (fed back) and the observation, the 9th
the reward. For each num_envs, in the same run, in interleaved rounds (best of
``--rounds``):

* raw:   the batched model loop alone under no_grad: the same
  ``model(state, action)`` call the env makes, its next state fed back (the
  ceiling)
* raw_touch: the raw loop plus the least an env does beside its model, one
  NumPy op a step (adding 1 to a ``(num_envs,)`` step counter). On some
  machines the first foreign op after a model call costs far more than the
  op alone (the model's next call pays for what it evicted), so this is the
  ceiling for any env; ``touch_us`` is what that one op added, in µs a step
* raw_net: stricter still, the MLP's layers alone (``model.net``, no module
  call, no reward slice), ``state = out[..., :8]`` fed back
* wmenv: WorldModelVectorEnv, every backend that loads (one model call per step)
* torch: WorldModelVectorEnv(output="torch") on the default backend, with a
  tensor action: observations, rewards and flags stay tensors
* sync:  gymnasium's SyncVectorEnv over num_envs single WorldModelEnvs
  (skipped above ``--sync-max`` envs: it is num_envs model calls per step)
* hand:  a hand-written Gymnasium vector env for the same model (the floor
  to beat): ``from_numpy`` on the action, the model under no_grad, the
  observation copied out (it is the next state, which the next call reads),
  the reward as float32, counters, a time limit and next-step autoresets in
  NumPy
* hand_torch: the same, written for tensors (observation and reward
  cloned, counters and flags as tensors, one ``.item()`` to learn whether any
  env ended): what torch mode is compared with

Prints one JSON line per num_envs and a table (env-steps per second; ratios
wmenv/sync and wmenv/raw, higher is better), then Gymnasium's own
``gymnasium.utils.performance.benchmark_vector_step`` (Gymnasium >= 1.4;
random actions, autoresets counted as Gymnasium counts them) for the
native env at each num_envs (``--gym-seconds`` each; 0 skips it). ``--profile`` also prints where a
step's time goes: the env's own work, the model, and the conversions.

    python bench/vector.py [--num-envs 16 256 4096] [--rounds 5] [--profile]
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
OBS = gym.spaces.Box(-1e6, 1e6, (OBS_DIM,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)


class MLP(nn.Module):
    """Linear(10, 128)-ReLU-Linear(128, 10); (state, action) -> (state, obs, reward)."""

    def __init__(self, hidden=128):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(OBS_DIM + ACT_DIM, hidden), nn.ReLU(), nn.Linear(hidden, OBS_DIM + 2))

    def forward(self, state, action):
        out = self.net(torch.cat([state, action], dim=-1))
        next_state = out[..., :OBS_DIM]
        return next_state, next_state, out[..., OBS_DIM]


def timed(step, steps):
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def vector_env(model, num_envs, backend, output="numpy"):
    env = WorldModelVectorEnv(
        model,
        num_envs,
        OBS,
        ACT,
        backend=backend,
        output=output,
        max_episode_steps=200,
        initial_state=torch.zeros(num_envs, OBS_DIM),
        initial_observation=torch.zeros(num_envs, OBS_DIM),
    )
    env.reset(seed=0)
    return env


class HandVectorEnv(gym.vector.VectorEnv):
    """A hand-written vector env for the MLP, NumPy in and out."""

    def __init__(self, model, num_envs, limit=200):
        self.model, self.num_envs, self.limit = model, num_envs, limit
        self.single_observation_space, self.single_action_space = OBS, ACT
        self.observation_space = gym.vector.utils.batch_space(OBS, num_envs)
        self.action_space = gym.vector.utils.batch_space(ACT, num_envs)

    def reset(self, *, seed=None, options=None):
        self.state = torch.zeros(self.num_envs, OBS_DIM)
        self.elapsed = np.zeros(self.num_envs, np.int64)
        self.ended = np.zeros(self.num_envs, bool)
        return self.state.numpy().copy(), {}

    def step(self, actions):
        with torch.no_grad():
            state, obs, reward = self.model(self.state, torch.from_numpy(actions))
        obs, reward = obs.numpy().copy(), reward.numpy().astype(np.float32)
        elapsed = self.elapsed + 1
        if self.ended.any():  # next-step autoreset
            state = torch.where(torch.from_numpy(self.ended)[:, None], torch.zeros_like(state), state)
            obs[self.ended], reward[self.ended], elapsed[self.ended] = 0.0, 0.0, 0
        truncated = elapsed >= self.limit
        terminated = np.zeros(self.num_envs, bool)
        self.state, self.elapsed, self.ended = state, elapsed, terminated | truncated
        return obs, reward, terminated, truncated, {"elapsed_steps": elapsed.copy()}


class HandTorchVectorEnv(HandVectorEnv):
    """The same, for tensors in and out."""

    def reset(self, *, seed=None, options=None):
        self.state = torch.zeros(self.num_envs, OBS_DIM)
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.int64)
        self.ended = torch.zeros(self.num_envs, dtype=torch.bool)
        self.any_ended = False
        return self.state.clone(), {}

    def step(self, actions):
        with torch.no_grad():
            state, obs, reward = self.model(self.state, actions)
            obs, reward = obs.clone(), reward.clone()
            elapsed = self.elapsed + 1
            if self.any_ended:  # next-step autoreset
                keep = ~self.ended
                state, obs = state * keep[:, None], obs * keep[:, None]
                reward, elapsed = reward * keep, elapsed * keep
            truncated = elapsed >= self.limit
            terminated = torch.zeros(self.num_envs, dtype=torch.bool)
            self.ended = terminated | truncated
        self.state, self.elapsed, self.any_ended = state, elapsed, bool(self.ended.any())
        return obs, reward, terminated, truncated, {"elapsed_steps": elapsed}


def runners(num_envs, backends, sync_max):
    model = MLP()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (num_envs, ACT_DIM)).astype(np.float32)
    action_t = torch.from_numpy(actions)
    raw_state = [torch.zeros(num_envs, OBS_DIM)]

    model_state = [torch.zeros(num_envs, OBS_DIM)]

    def raw():
        with torch.no_grad():
            model_state[0] = model(model_state[0], action_t)[0]

    def raw_net():
        with torch.no_grad():
            raw_state[0] = model.net(torch.cat([raw_state[0], action_t], dim=-1))[..., :OBS_DIM]

    counter = np.zeros(num_envs, np.int64)

    def raw_touch():
        raw()
        np.add(counter, 1, out=counter)

    out = {"raw": raw, "raw_touch": raw_touch, "raw_net": raw_net}
    hand, hand_torch = HandVectorEnv(model, num_envs), HandTorchVectorEnv(model, num_envs)
    hand.reset(seed=0)
    hand_torch.reset(seed=0)
    out["hand"] = lambda: hand.step(actions)
    out["hand_torch"] = lambda: hand_torch.step(action_t)
    for name in backends:
        env = vector_env(model, num_envs, name)
        out[name] = lambda env=env: env.step(actions)
    torch_env = vector_env(model, num_envs, None, "torch")
    out["torch"] = lambda: torch_env.step(action_t)
    if num_envs <= sync_max:
        sync = gym.vector.SyncVectorEnv(
            [
                lambda: WorldModelEnv(
                    model,
                    OBS,
                    ACT,
                    max_episode_steps=200,
                    initial_state=torch.zeros(OBS_DIM),
                    initial_observation=torch.zeros(OBS_DIM),
                )
                for _ in range(num_envs)
            ]
        )
        sync.reset(seed=0)
        out["sync"] = lambda: sync.step(actions)
    return out, model, actions


def profile(num_envs, backend, steps):
    """Where a step's time goes, in µs per step: ``model`` (the transition
    itself), ``conversions`` (the rest of the core call: actions in, the
    batch's rewards, flags and observations out, counters; on the step's long
    way, the conversion functions), ``env_own`` (everything else: the Python
    around the core call, autoresets, info) and ``total``."""
    _, model, actions = runners(num_envs, (), 0)
    env = vector_env(model, num_envs, backend)
    spent = {"model": 0.0, "core_call": 0.0, "conversions": 0.0}

    def wrap(part, fn):
        def timed_call(*args):
            tick = time.perf_counter()
            result = fn(*args)
            spent[part] += time.perf_counter() - tick
            return result

        return timed_call

    env._transition = wrap("model", env._transition)
    env._normalize_step_batch = wrap("conversions", env._normalize_step_batch)
    env._convert_action = wrap("conversions", env._convert_action)
    env._run_step_batch = wrap("core_call", env._run_step_batch)
    env._build_plan()  # the one-call step calls the wrapped model
    total = timed(lambda: env.step(actions), steps) * steps
    spent = {k: v / steps * 1e6 for k, v in spent.items()}
    if spent["core_call"]:  # the one-call step: its conversions are the core call less the model
        spent["conversions"] = spent["core_call"] - spent["model"]
    out = {"model": spent["model"], "conversions": spent["conversions"]}
    out["env_own"] = total / steps * 1e6 - out["model"] - out["conversions"]
    out["total"] = total / steps * 1e6
    return {k: round(v, 2) for k, v in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 256, 4096])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="per runner per round")
    parser.add_argument("--sync-max", type=int, default=256)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--gym-seconds", type=float, default=2.0, help="benchmark_vector_step's duration")
    args = parser.parse_args()
    backends = _backend.available()
    rows = []
    for n in args.num_envs:
        runs, _, _ = runners(n, backends, args.sync_max)
        per_call = {k: timed(fn, 3) for k, fn in runs.items()}
        steps = {k: max(3, int(args.seconds / max(v, 1e-7))) for k, v in per_call.items()}
        best = {k: float("inf") for k in runs}
        for _ in range(args.rounds):
            for name, fn in runs.items():
                best[name] = min(best[name], timed(fn, steps[name]))
        rate = {k: n / v for k, v in best.items()}
        row = {"num_envs": n, "env_steps_per_s": {k: round(v) for k, v in rate.items()}}
        row["touch_us"] = round((best["raw_touch"] - best["raw"]) * 1e6, 1)
        row["raw_touch/raw"] = round(rate["raw_touch"] / rate["raw"], 3)
        row["torch/raw"] = round(rate["torch"] / rate["raw"], 3)
        row["torch/raw_touch"] = round(rate["torch"] / rate["raw_touch"], 3)
        row["torch/hand_torch"] = round(rate["torch"] / rate["hand_torch"], 3)
        row["hand/raw"] = round(rate["hand"] / rate["raw"], 3)
        row["hand_torch/raw"] = round(rate["hand_torch"] / rate["raw"], 3)
        for name in backends:
            if "sync" in rate:
                row[f"{name}/sync"] = round(rate[name] / rate["sync"], 2)
            row[f"{name}/raw"] = round(rate[name] / rate["raw"], 3)
            row[f"{name}/raw_net"] = round(rate[name] / rate["raw_net"], 3)
            row[f"{name}/raw_touch"] = round(rate[name] / rate["raw_touch"], 3)
            row[f"{name}/hand"] = round(rate[name] / rate["hand"], 3)
        if args.profile:
            row["profile_us"] = {b: profile(n, b, steps[b]) for b in backends}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"wmenv {wmenv.__version__}, torch {torch.__version__}, one torch thread, MLP 10-128-10")
    print(
        " | ".join(
            [
                "num_envs",
                "raw",
                *backends,
                "torch",
                "torch/raw",
                "raw_touch/raw",
                "touch_us",
                "torch/raw_touch",
                "hand/raw",
                "hand_torch/raw",
                "torch/hand_torch",
                "sync",
                *[f"{b}/sync" for b in backends],
                *[f"{b}/raw" for b in backends],
                *[f"{b}/raw_net" for b in backends],
                *[f"{b}/raw_touch" for b in backends],
                *[f"{b}/hand" for b in backends],
            ]
        )
    )
    for row in rows:
        s = row["env_steps_per_s"]
        cells = [str(row["num_envs"]), f"{s['raw']:,}", *[f"{s[b]:,}" for b in backends]]
        cells += [f"{s['torch']:,}", f"{row['torch/raw']:.2f}x", f"{row['raw_touch/raw']:.2f}x"]
        cells += [f"{row['touch_us']:.1f}", f"{row['torch/raw_touch']:.2f}x", f"{row['hand/raw']:.2f}x"]
        cells += [f"{row['hand_torch/raw']:.2f}x", f"{row['torch/hand_torch']:.2f}x", f"{s.get('sync', 0):,}"]
        cells += [f"{row.get(f'{b}/sync', 0):.1f}x" for b in backends] + [f"{row[f'{b}/raw']:.2f}x" for b in backends]
        cells += [f"{row[f'{b}/raw_net']:.2f}x" for b in backends]
        cells += [f"{row[f'{b}/raw_touch']:.2f}x" for b in backends] + [f"{row[f'{b}/hand']:.2f}x" for b in backends]
        print(" | ".join(cells))

    gym_benchmark(args.num_envs, args.gym_seconds)


def gym_benchmark(sizes, seconds: float) -> None:
    """Gymnasium's own vector-step benchmark, where this Gymnasium has it."""
    try:
        from gymnasium.utils.performance import benchmark_vector_step
    except ImportError:
        print("gymnasium.utils.performance.benchmark_vector_step: not in this Gymnasium (it needs 1.4 or newer)")
        return
    if seconds <= 0:
        return
    for n in sizes:
        env = vector_env(MLP(), n, "native" if "native" in _backend.available() else "python")
        rate = benchmark_vector_step(env, target_duration=seconds, seed=0)
        print(f"gymnasium benchmark_vector_step, num_envs {n}: {rate:,.0f} env-steps/s")
        print(json.dumps({"gym_benchmark_vector_step": {"num_envs": n, "env_steps_per_s": round(rate)}}))


if __name__ == "__main__":
    main()
