"""µs per step on a CUDA GPU: wmenv's NumPy mode, wmenv's output="torch" (and,
for the vector env, output="torch" with ``capture=True``, the step replayed as
a CUDA graph) and a hand-written env that calls ``.cpu()``, ``float()`` and
``bool()``, in the same run, interleaved (best of ``--rounds``).

Models: an MLP (hidden 256) and a small conv decoder producing 3×64×64 images;
the single env, and the vector env at ``--num-envs`` (256). Without a GPU it
says so and exits 0.

    python bench/cuda_step.py [--steps 2000] [--rounds 5] [--num-envs 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from wmenv import WorldModelEnv, WorldModelVectorEnv

LATENT, ACT = 32, 2


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENT + ACT, 256), nn.ReLU(), nn.Linear(256, LATENT + 2))

    def forward(self, state, action):
        out = self.net(torch.cat([state, action], -1))
        nxt = torch.tanh(out[..., :LATENT])
        return {"state": nxt, "observation": nxt, "reward": out[..., LATENT], "terminated": out[..., LATENT + 1] > 5}

    def reset(self, seed=None, options=None):
        shape = (LATENT,) if not options or "reset_mask" not in options else (len(options["reset_mask"]), LATENT)
        state = torch.zeros(shape, device=self.net[0].weight.device)
        return state, state


class Decoder(MLP):
    """The MLP's latent, decoded into a 3×64×64 uint8 image observation."""

    def __init__(self):
        super().__init__()
        self.up = nn.Sequential(
            nn.Linear(LATENT, 64 * 8 * 8),
            nn.Unflatten(-1, (64, 8, 8)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 3, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, state, action):
        out = super().forward(state, action)
        batch = out["state"].reshape(-1, LATENT)
        image = (self.up(batch) * 255).to(torch.uint8)
        out["observation"] = image.reshape(out["state"].shape[:-1] + (3, 64, 64))
        return out

    def reset(self, seed=None, options=None):
        state, _ = super().reset(seed, options)
        return state, torch.zeros(state.shape[:-1] + (3, 64, 64), dtype=torch.uint8, device=state.device)


class HandWritten(gym.Env):
    def __init__(self, model, observation_space, action_space):
        self.model, self.observation_space, self.action_space = model, observation_space, action_space

    def reset(self, *, seed=None, options=None):
        with torch.no_grad():
            self.state, obs = self.model.reset(seed, options)
        return obs.cpu().numpy(), {}

    def step(self, action):
        with torch.no_grad():
            out = self.model(self.state, torch.as_tensor(action, device="cuda"))
        self.state = out["state"]
        return out["observation"].cpu().numpy(), float(out["reward"]), bool(out["terminated"]), False, {}


class HandWrittenBatch(HandWritten):
    def reset(self, *, seed=None, options=None):
        with torch.no_grad():
            self.state, obs = self.model.reset(seed, {"reset_mask": np.ones(self.n, bool)})
        return obs.cpu().numpy(), {}

    def step(self, action):
        with torch.no_grad():
            out = self.model(self.state, torch.as_tensor(action, device="cuda"))
        self.state = out["state"]
        return (
            out["observation"].cpu().numpy(),
            out["reward"].cpu().numpy(),
            out["terminated"].cpu().numpy(),
            np.zeros(self.n, bool),
            {},
        )


def timed(env, action, steps):
    env.reset(seed=0)
    for _ in range(10):
        env.step(action)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        env.step(action)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-envs", type=int, default=256)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/cuda_step.py: no CUDA device here; nothing to time")
        return 0
    act_space = gym.spaces.Box(-1, 1, (ACT,), np.float32)
    spaces = {
        "mlp": gym.spaces.Box(-1, 1, (LATENT,), np.float32),
        "image": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8),
    }
    for case, cls in (("mlp", MLP), ("image", Decoder)):
        model = cls().cuda().eval()
        for n in (None, args.num_envs):
            if n is None:
                envs = {
                    "handwritten": HandWritten(model, spaces[case], act_space),
                    "numpy": WorldModelEnv(model, spaces[case], act_space, device="cuda"),
                    "torch": WorldModelEnv(model, spaces[case], act_space, device="cuda", output="torch"),
                }
                action = np.zeros(ACT, np.float32)
            else:
                hand = HandWrittenBatch(model, spaces[case], act_space)
                hand.n = n
                envs = {
                    "handwritten": hand,
                    "numpy": WorldModelVectorEnv(model, n, spaces[case], act_space, device="cuda"),
                    "torch": WorldModelVectorEnv(model, n, spaces[case], act_space, device="cuda", output="torch"),
                    "torch_capture": WorldModelVectorEnv(
                        model, n, spaces[case], act_space, device="cuda", output="torch", capture=True
                    ),
                }
                action = np.zeros((n, ACT), np.float32)
            best = {k: float("inf") for k in envs}
            for _ in range(args.rounds):
                for name, env in envs.items():
                    best[name] = min(best[name], timed(env, action, args.steps))
            row = {
                "case": case,
                "num_envs": n or 1,
                "us_per_step": {k: round(v, 2) for k, v in best.items()},
                "handwritten/numpy": round(best["handwritten"] / best["numpy"], 2),
                "handwritten/torch": round(best["handwritten"] / best["torch"], 2),
                **({"torch/torch_capture": round(best["torch"] / best["torch_capture"], 2)} if n else {}),
                "device": torch.cuda.get_device_name(),
            }
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
