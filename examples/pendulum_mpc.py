"""Continuous control on a learned Pendulum model: an ensemble, planned with CEM.

1. Collect random transitions from the real ``Pendulum-v1`` and fit a small
   ensemble of MLPs (one call for all members: outputs ``(E, n, ...)``) that
   predicts the change of the observation and the reward.
2. Check it with ``wmenv.evaluate`` (open-loop error against real episodes).
3. Each real step: score Gaussian action sequences with
   ``WorldModelVectorEnv.rollout`` (one model call per horizon step for all
   candidates; ``member="episode"`` keeps each candidate on one member, PETS's
   trajectory sampling), refine them with CEM, act with the first action.

    python examples/pendulum_mpc.py [--episodes 2] [--quick]

The last line is ``pendulum_mpc: random R0, planned R (mean real return over E episodes)``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import wmenv
from wmenv import WorldModelVectorEnv, repeat_state

torch.set_num_threads(1)
OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


class Ensemble(nn.Module):
    """``members`` MLPs evaluated at once with batched matrix products:
    (state, action) -> (next observation, reward) for every member."""

    def __init__(self, members: int = 5, hidden: int = 128):
        super().__init__()
        self.members = members

        def layer(n_in, n_out):
            weight = nn.Parameter(torch.randn(members, n_in, n_out) / np.sqrt(n_in))
            return weight, nn.Parameter(torch.zeros(members, 1, n_out))

        self.w1, self.b1 = layer(4, hidden)
        self.w2, self.b2 = layer(hidden, hidden)
        self.w3, self.b3 = layer(hidden, 4)
        self.register_buffer("scale", torch.ones(4))

    def heads(self, x):
        """``x`` (members, batch, 4): each member's own inputs."""
        h = torch.relu(torch.baddbmm(self.b1, x, self.w1))
        h = torch.relu(torch.baddbmm(self.b2, h, self.w2))
        out = torch.baddbmm(self.b3, h, self.w3) * self.scale
        return out[..., :3], out[..., 3]

    def forward(self, state, action):
        x = torch.cat([state, action], dim=-1).expand(self.members, *state.shape[:-1], 4)
        delta, reward = self.heads(x.reshape(self.members, -1, 4))
        return {"observation": state.unsqueeze(0) + delta, "reward": reward}


def collect(steps: int, seed: int):
    env = gym.make("Pendulum-v1")
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        action = env.action_space.sample()
        nxt, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, reward, nxt, terminated, terminated or truncated))
        obs = nxt if not (terminated or truncated) else env.reset()[0]
    keys = ("observations", "actions", "rewards", "next_observations", "terminated", "dones")
    return {k: np.asarray([r[i] for r in rows], np.float32 if i < 4 else bool) for i, k in enumerate(keys)}


def fit(model: Ensemble, data: dict, iterations: int, seed: int) -> None:
    torch.manual_seed(seed)
    obs = torch.as_tensor(data["observations"])
    act = torch.as_tensor(data["actions"])
    target = torch.cat(
        [torch.as_tensor(data["next_observations"]) - obs, torch.as_tensor(data["rewards"]).unsqueeze(-1)], -1
    )
    model.scale.copy_(target.std(0) + 1e-6)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(iterations):
        idx = torch.randint(len(obs), (model.members, 256))  # a bootstrap batch per member
        delta, reward = model.heads(torch.cat([obs[idx], act[idx]], dim=-1))
        pred = torch.cat([delta, reward.unsqueeze(-1)], -1)
        loss = (((pred - target[idx]) / model.scale) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.requires_grad_(False)


class CEM:
    def __init__(self, model, candidates: int, horizon: int, iterations: int, seed: int):
        self.candidates, self.horizon, self.iterations = candidates, horizon, iterations
        self.env = WorldModelVectorEnv(
            model, candidates, OBS, ACT, members=model.members, member="episode", uncertainty="std_of_means"
        )
        self.env.reset(seed=seed)
        self.rng = np.random.default_rng(seed)
        self.mean = np.zeros((horizon, 1), np.float32)

    def act(self, obs) -> np.ndarray:
        start = repeat_state(torch.as_tensor(obs, dtype=torch.float32), self.candidates)
        mean, std = self.mean, np.full_like(self.mean, 1.5)
        for _ in range(self.iterations):
            plans = np.clip(mean + std * self.rng.standard_normal((self.candidates, self.horizon, 1)), -2, 2)
            plans = plans.astype(np.float32)
            returns = self.env.rollout(np.swapaxes(plans, 0, 1).copy(), start, observations=False).returns
            elite = plans[np.argsort(returns)[-self.candidates // 10 :]]
            mean, std = elite.mean(axis=0), elite.std(axis=0) + 0.05
        self.mean = np.concatenate([mean[1:], np.zeros((1, 1), np.float32)])
        return mean[0]


def run_real(policy, episodes: int, steps: int, seed: int) -> float:
    env = gym.make("Pendulum-v1")
    total = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        ret = 0.0
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            ret += float(reward)
            if terminated or truncated:
                break
        total.append(ret)
    return float(np.mean(total))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="fewer data, fits and steps (CI)")
    args = p.parse_args(argv)
    real_steps, iterations, steps = (3000, 600, 60) if args.quick else (10000, 2500, 200)
    data = collect(real_steps, args.seed)
    model = Ensemble()
    started = time.perf_counter()
    fit(model, data, iterations, args.seed)
    print(
        f"fitted a {model.members}-member ensemble on {real_steps} real steps in {time.perf_counter() - started:.1f}s"
    )
    check = wmenv.evaluate(
        WorldModelVectorEnv(model, 64, OBS, ACT, members=model.members, member="mean"), data, horizon=10
    )
    print(
        f"open-loop observation MSE: {check.observation_mse[0]:.2g} after 1 step, "
        f"{check.observation_mse[-1]:.2g} after 10"
    )
    planner = CEM(model, candidates=200, horizon=15, iterations=3, seed=args.seed)
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    space.seed(args.seed)
    random_return = run_real(lambda obs: space.sample(), args.episodes, steps, 100)
    planned = run_real(planner.act, args.episodes, steps, 100)
    print(
        f"pendulum_mpc: random {random_return:.1f}, planned {planned:.1f} "
        f"(mean real return over {args.episodes} episodes)"
    )


if __name__ == "__main__":
    main()
