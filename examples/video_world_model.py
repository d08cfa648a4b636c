"""GRPO-style policy training inside a small video world model.

1. A video-style world model (a few conv layers, random weights) predicts a
   chunk of ``T`` 64×64 RGB frames from the last frame and a chunk of ``T``
   actions, in one call for every env (``chunk=T``).
2. A reward model scores the generated frames (here: how red they are), and
   ``success_threshold`` ends an episode that gets red enough.
3. Rollouts start in groups (``group_size=k``): the ``k`` envs of a group
   share one start frame drawn from ``start_data``, so their returns compare;
   advantages are the returns normalised within each group (GRPO), and a
   small Gaussian policy takes a policy-gradient step on them.

    python examples/video_world_model.py [--iterations 3] [--quick]

The last line is ``video_world_model: I iterations, mean return R0 -> R1, F frames/s``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from wmenv import WorldModelVectorEnv

torch.set_num_threads(1)
SIZE, T = 64, 4
FRAME = gym.spaces.Box(0.0, 1.0, (3, SIZE, SIZE), np.float32)
ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


class VideoModel(nn.Module):
    """(last frame, T actions) -> T frames: a conv encoder, the actions mixed
    in per frame, a conv decoder; the last generated frame is the state."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encode = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU())
        self.mix = nn.Linear(2, 16)
        self.decode = nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 3, 4, 2, 1))

    def forward(self, frame, actions):  # frame (n, 3, 64, 64), actions (n, T, 2)
        frames = []
        for t in range(actions.shape[1]):
            h = self.encode(frame) + self.mix(actions[:, t])[:, :, None, None]
            frame = torch.sigmoid(self.decode(h) + torch.logit(frame.clamp(1e-3, 1 - 1e-3)))
            frames.append(frame)
        frames = torch.stack(frames, dim=1)  # (n, T, 3, 64, 64)
        return {"state": frame, "observation": frames}


def redness(frames):
    """The reward model: how much redder than green and blue the frames are."""
    return (frames[..., 0, :, :] - frames[..., 1:, :, :].mean(-3)).mean((-1, -2)).sum(-1) * 10


class Policy(nn.Module):
    """A Gaussian policy over action chunks from a frame's mean colour."""

    def __init__(self):
        super().__init__()
        self.mean = nn.Linear(3, T * 2)
        self.log_std = nn.Parameter(torch.full((T * 2,), -0.5))

    def dist(self, frames):
        colour = frames.mean((-1, -2))  # (n, 3)
        return torch.distributions.Normal(self.mean(colour).tanh(), self.log_std.exp())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--group", type=int, default=4)
    p.add_argument("--steps", type=int, default=4, help="chunks per rollout")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations, args.steps = 2, 2
    starts = np.random.default_rng(0).random((16, 3, SIZE, SIZE)).astype(np.float32)
    env = WorldModelVectorEnv(
        VideoModel(),
        args.envs,
        FRAME,
        ACTION,
        chunk=T,
        chunk_frames=True,
        start_data=starts,
        reward_model=redness,
        success_threshold=5.0,
        group_size=args.group,
        max_episode_steps=T * args.steps,
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    policy = Policy()
    optimiser = torch.optim.Adam(policy.parameters(), lr=0.05)
    means, frames, started = [], 0, time.perf_counter()
    for it in range(args.iterations):
        obs, info = env.reset(seed=it)
        assert len(set(info["start_index"][: args.group])) == 1  # a group shares its start
        last = torch.as_tensor(obs)
        returns = torch.zeros(args.envs)
        log_probs = torch.zeros(args.envs)
        alive = torch.ones(args.envs, dtype=torch.bool)
        for _ in range(args.steps):
            dist = policy.dist(last[:, -1] if last.dim() == 5 else last)
            action = dist.sample()
            log_probs = log_probs + dist.log_prob(action).sum(-1) * alive
            obs, reward, terminated, truncated, info = env.step(action.reshape(args.envs, T, 2).numpy())
            frames += args.envs * T
            returns += torch.as_tensor(reward) * alive
            alive = alive & ~torch.as_tensor(terminated | truncated)
            last = torch.as_tensor(obs)
            if not alive.any():
                break
        groups = returns.reshape(-1, args.group)  # GRPO: advantages normalised within each group
        advantages = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-6)).reshape(-1)
        loss = -(advantages * log_probs).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        means.append(float(returns.mean()))
        print(f"iteration {it + 1}: mean return {means[-1]:.3f}, group means {groups.mean(1).tolist()}")
    rate = frames / (time.perf_counter() - started)
    print(
        f"video_world_model: {args.iterations} iterations, mean return {means[0]:.3f} -> {means[-1]:.3f}, "
        f"{rate:.0f} frames/s"
    )


if __name__ == "__main__":
    main()
