"""TorchRL envs over the same model: wmenv.torchrl.TorchRLEnv, GymWrapper, TorchRL's own.

The model is bench/vector.py's MLP, ``Linear(10, 128)-ReLU-Linear(128, 10)``
(8-dim state fed back as the observation, 2-dim action, reward the 9th
output), one torch thread. For each num_envs, in the same run, interleaved
rounds (best of ``--rounds``), env-steps per second of the loop TorchRL's
collectors run, ``step_and_maybe_reset`` with a constant action:

* ``raw``: the batched model loop alone under no_grad (the ceiling);
* ``wmenv``: ``TorchRLEnv`` over ``WorldModelVectorEnv(output="torch")``
  (TensorDicts in and out, one model call per step);
* ``gym_wrapper``: TorchRL's ``GymWrapper`` around ``WorldModelVectorEnv``
  in its usual NumPy mode with ``autoreset_mode=DISABLED``, the mode
  GymWrapper prefers (TorchRL converts both ways);
* ``torchrl_mb``: a ``torchrl.envs.model_based.ModelBasedEnvBase`` of
  ``batch_size=[num_envs]`` over the same MLP in a ``WorldModelWrapper``
  (its documented use).

Prints a table and one JSON line per num_envs (ratios to raw).

    python bench/torchrl_env.py [--num-envs 16 256] [--rounds 5] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch
from gymnasium.vector import AutoresetMode
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs.libs.gym import GymWrapper
from torchrl.envs.model_based import ModelBasedEnvBase
from torchrl.modules import WorldModelWrapper

# bench/vector.py's model, spaces and timer (importing it sets one torch thread, as here)
from vector import ACT, ACT_DIM, MLP, OBS, OBS_DIM, timed
from wmenv import WorldModelVectorEnv
from wmenv.torchrl import TorchRLEnv


class Obs(nn.Module):  # TorchRL's world model wants the observation and the reward as two modules
    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def forward(self, obs, action):
        return self.mlp.net(torch.cat([obs, action], dim=-1))


class MBEnv(ModelBasedEnvBase):
    """TorchRL's model-based env over the MLP, as its docs build one."""

    def __init__(self, world_model, n):
        super().__init__(world_model, batch_size=torch.Size([n]))
        self.observation_spec = Composite(observation=Unbounded((n, OBS_DIM)), shape=(n,))
        self.state_spec = Composite(observation=Unbounded((n, OBS_DIM)), shape=(n,))
        self.action_spec = Unbounded((n, ACT_DIM))
        self.reward_spec = Unbounded((n, 1))

    def _reset(self, tensordict=None):
        return TensorDict({"observation": torch.zeros(self.batch_size[0], OBS_DIM)}, batch_size=self.batch_size)


def torchrl_model(mlp):
    return WorldModelWrapper(
        TensorDictModule(Obs(mlp), in_keys=["observation", "action"], out_keys=["out"]),
        TensorDictModule(
            lambda out: (out[..., :OBS_DIM], out[..., OBS_DIM : OBS_DIM + 1]), ["out"], ["observation", "reward"]
        ),
    )


def loop_of(env, n):
    action = torch.full((n, ACT_DIM), 0.1)
    td = env.reset()

    def step():
        nonlocal td
        td.set("action", action)
        _, td = env.step_and_maybe_reset(td)

    return step


def raw_loop(model, n):
    state = torch.zeros(n, OBS_DIM)
    action = torch.full((n, ACT_DIM), 0.1)

    def step():
        nonlocal state
        with torch.no_grad():
            state, _, _ = model(state, action)

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, 1 thread; env-steps per second, best of {args.rounds}")
    print(f"{'n':>5} {'raw':>11} {'wmenv':>11} {'gym_wrapper':>11} {'torchrl_mb':>11}   wmenv/raw  gym/raw  mb/raw")
    for n in args.num_envs:
        model = MLP().eval().requires_grad_(False)
        start = torch.zeros(n, OBS_DIM)
        loops = {
            "raw": raw_loop(model, n),
            "wmenv": loop_of(
                TorchRLEnv.from_model(model, n, OBS, ACT, initial_state=start, initial_observation=start), n
            ),
            "gym_wrapper": loop_of(
                GymWrapper(
                    WorldModelVectorEnv(
                        model,
                        n,
                        OBS,
                        ACT,
                        initial_state=start,
                        initial_observation=start,
                        autoreset_mode=AutoresetMode.DISABLED,  # GymWrapper's preferred mode
                    )
                ),
                n,
            ),  # fmt: skip
            "torchrl_mb": loop_of(MBEnv(torchrl_model(model), n), n),
        }
        best = {k: 0.0 for k in loops}
        for _ in range(args.rounds):
            for name, step in loops.items():
                best[name] = max(best[name], n / timed(step, args.steps))
        r = {k: v / best["raw"] for k, v in best.items()}
        print(
            f"{n:>5} {best['raw']:>11,.0f} {best['wmenv']:>11,.0f} {best['gym_wrapper']:>11,.0f} "
            f"{best['torchrl_mb']:>11,.0f}   {r['wmenv']:>8.2f}x {r['gym_wrapper']:>7.2f}x {r['torchrl_mb']:>6.2f}x"
        )
        print(json.dumps({"n": n, **{k: round(v) for k, v in best.items()}}))


if __name__ == "__main__":
    main()
