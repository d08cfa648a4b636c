"""Offline model-based RL on Pendulum-v1: MOPO through WorldModelVectorEnv.

1. A behaviour policy: Stable-Baselines3's SAC trained briefly on the real
   ``Pendulum-v1``, then acting with Gaussian action noise; it collects a
   fixed dataset. The real env is never touched again until the evaluation.
2. An ensemble of 7 Gaussian MLPs fitted on the dataset (one call for all
   members: outputs ``(E, n, ...)``, mean and ``log_var`` heads for the change
   of the observation and the reward), by Gaussian negative log-likelihood.
3. SAC trained in imagination, MBPO-style: ``WorldModelVectorEnv`` with
   ``start_data`` (branched rollouts start at dataset observations),
   ``max_episode_steps=h`` (short rollouts, bootstrapped at the cut),
   ``members=7, member="random"`` (a random member per env per step), once
   without a penalty and once with MOPO's, ``reward - λ·max_i ||σ_i||``
   (``uncertainty="max_std", penalty=λ``).
4. The behaviour policy (as it collected the data, with its noise) and both
   imagined policies (deterministic) evaluated on the real env.

    python examples/offline_mopo.py [--seed 0] [--quick]

The last line is ``offline_mopo: behaviour B, unpenalised U, penalised P
(mean real return over K episodes)``. ``--quick`` (CI) runs every stage tiny,
to show it runs end to end; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wmenv.sb3 import WorldModelVecEnv

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


class GaussianEnsemble(nn.Module):
    """``members`` MLPs in batched weights: (observation, action) -> the mean
    and log-variance of (Δobservation, reward), for every member at once."""

    def __init__(self, members: int = 7, hidden: int = 200):
        super().__init__()
        self.members = members
        sizes = [4, hidden, hidden, hidden, 8]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(members, i, o) / np.sqrt(i)) for i, o in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(members, 1, o)) for o in sizes[1:])
        self.max_logvar = nn.Parameter(torch.full((4,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((4,), -10.0))
        for name in ("in_mean", "in_std", "out_mean", "out_std"):
            self.register_buffer(name, torch.zeros(4) if "mean" in name else torch.ones(4))

    def heads(self, x):
        """``x`` (members, batch, 4) raw inputs -> normalised mean and log-variance."""
        h = (x - self.in_mean) / self.in_std
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = F.silu(h)
        mean, logvar = h.chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        return mean, self.min_logvar + F.softplus(logvar - self.min_logvar)

    def forward(self, state, action):
        x = torch.cat([state, action], dim=-1)
        mean, logvar = self.heads(x.unsqueeze(0).expand(self.members, *x.shape))
        mean = mean * self.out_std + self.out_mean  # back to the data's units
        logvar = logvar + 2 * torch.log(self.out_std)
        return {
            "observation": state.unsqueeze(0) + mean[..., :3],
            "log_var": logvar[..., :3],
            "reward": mean[..., 3],
        }


def behaviour_policy(steps: int, seed: int):
    from stable_baselines3 import SAC

    agent = SAC("MlpPolicy", gym.make("Pendulum-v1"), seed=seed, learning_starts=min(500, steps // 2), verbose=0)
    agent.learn(steps)
    return agent


def collect(policy, transitions: int, seed: int) -> dict:
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(transitions):
        action = policy(obs)
        nxt, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, reward, nxt, terminated or truncated))
        obs = env.reset()[0] if terminated or truncated else nxt
    keys = ("observations", "actions", "rewards", "next_observations", "dones")
    return {k: np.asarray([r[i] for r in rows], np.float32 if i < 4 else bool) for i, k in enumerate(keys)}


def fit(model: GaussianEnsemble, data: dict, iterations: int, seed: int) -> float:
    """Gaussian NLL on bootstrap batches (one per member); returns the held-out MSE of the means."""
    torch.manual_seed(seed)
    obs, act = torch.as_tensor(data["observations"]), torch.as_tensor(data["actions"])
    x = torch.cat([obs, act], -1)
    y = torch.cat([torch.as_tensor(data["next_observations"]) - obs, torch.as_tensor(data["rewards"])[:, None]], -1)
    held = torch.randperm(len(x))[: len(x) // 10]
    train = torch.ones(len(x), dtype=torch.bool)
    train[held] = False
    xt, yt = x[train], y[train]
    model.in_mean.copy_(xt.mean(0))
    model.in_std.copy_(xt.std(0) + 1e-6)
    model.out_mean.copy_(yt.mean(0))
    model.out_std.copy_(yt.std(0) + 1e-6)
    target = (yt - model.out_mean) / model.out_std
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    for _ in range(iterations):
        idx = torch.randint(len(xt), (model.members, 256))
        mean, logvar = model.heads(xt[idx])
        nll = (((mean - target[idx]) ** 2) * torch.exp(-logvar) + logvar).mean()
        loss = nll + 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.requires_grad_(False)
    with torch.no_grad():
        mean, _ = model.heads(x[held].unsqueeze(0).expand(model.members, -1, -1))
        return float((((mean.mean(0) * model.out_std + model.out_mean) - y[held]) ** 2).mean())


def imagined_sac(model, data: dict, penalty: float, timesteps: int, num_envs: int, horizon: int, seed: int):
    """SAC trained only on the ensemble's rollouts from dataset starts."""
    from stable_baselines3 import SAC

    venv = WorldModelVecEnv.from_model(
        model,
        num_envs,
        OBS,
        ACT,
        start_data=data["observations"],
        max_episode_steps=horizon,
        members=model.members,
        member="random",
        uncertainty="max_std",
        penalty=penalty,
        seed=seed,
    )
    agent = SAC(
        "MlpPolicy",
        venv,
        seed=seed,
        learning_starts=min(1000, timesteps // 4),
        batch_size=256,
        train_freq=1,
        gradient_steps=max(1, num_envs // 5),
        verbose=0,
    )
    agent.learn(timesteps)
    return agent


def noisy(agent, noise: float, seed: int):
    """The behaviour policy as it collected the data: the agent's action plus Gaussian noise."""
    rng = np.random.default_rng(seed)

    def act(obs):
        action = agent.predict(obs, deterministic=True)[0] + noise * rng.standard_normal(1)
        return np.clip(action, -2.0, 2.0).astype(np.float32)

    return act


def evaluate(policy, episodes: int, seed: int) -> float:
    env = gym.make("Pendulum-v1")
    returns = []
    for e in range(episodes):
        obs, _ = env.reset(seed=10_000 + seed * 100 + e)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--penalty", type=float, default=1.0, help="MOPO's λ")
    p.add_argument("--quick", action="store_true", help="every stage tiny: shows it runs (CI)")
    args = p.parse_args(argv)
    q = args.quick
    sizes = {
        "behaviour_steps": 300 if q else 2_500,
        "transitions": 2_000 if q else 30_000,
        "fit_iterations": 50 if q else 2_000,
        "imagined_steps": 1_000 if q else 40_000,
        "episodes": 2 if q else 10,
    }
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    behaviour = noisy(behaviour_policy(sizes["behaviour_steps"], args.seed), 0.6, args.seed)
    data = collect(behaviour, sizes["transitions"], args.seed)
    print(f"dataset: {len(data['rewards'])} transitions, mean reward {data['rewards'].mean():.2f}")
    model = GaussianEnsemble()
    mse = fit(model, data, sizes["fit_iterations"], args.seed)
    print(f"ensemble: 7 members, held-out MSE of the mean {mse:.4f} ({time.perf_counter() - start:.0f} s so far)")
    results = {"behaviour": evaluate(behaviour, sizes["episodes"], args.seed)}
    for name, penalty in (("unpenalised", 0.0), ("penalised", args.penalty)):
        agent = imagined_sac(model, data, penalty, sizes["imagined_steps"], 50, 10, args.seed)
        results[name] = evaluate(
            lambda obs, a=agent: a.predict(obs, deterministic=True)[0], sizes["episodes"], args.seed
        )
        print(f"{name} (λ={penalty:g}): real return {results[name]:.1f} ({time.perf_counter() - start:.0f} s so far)")
    print(
        f"offline_mopo: behaviour {results['behaviour']:.1f}, unpenalised {results['unpenalised']:.1f}, "
        f"penalised {results['penalised']:.1f} (mean real return over {sizes['episodes']} episodes)"
    )


if __name__ == "__main__":
    main()
