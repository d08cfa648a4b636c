"""Throughput of WorldModelVectorEnv.rollout for planners, in candidate-steps per second.

Against, in the same run, interleaved: calling ``step`` of a
WorldModelVectorEnv in a loop over the same horizon (from the same start,
restored by ``set_state``), and the raw batched model call in a loop under
``no_grad``. The model is the demo's CartPole MLP (hidden 128), batched.

    python bench/rollout.py [--candidates 256] [--horizon 25] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

from wmenv import WorldModelVectorEnv, demo, repeat_state

torch.set_num_threads(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = demo.build_model(torch).eval()
    n, h = args.candidates, args.horizon
    env = WorldModelVectorEnv(model, n, demo.OBS_SPACE, gym.spaces.Discrete(2))
    start = repeat_state(torch.zeros(4), n)
    env.reset(seed=0, options={"state": start})
    snapshot = env.get_state()
    plans = np.random.default_rng(0).integers(0, 2, (h, n))
    plans_t = torch.from_numpy(plans)

    def rollout():
        env.rollout(plans, start)

    def step_loop():
        env.set_state(snapshot)
        for t in range(h):
            env.step(plans[t])

    def raw():
        with torch.no_grad():
            state = start
            for t in range(h):
                out = model(state, plans_t[t])
                state = out["state"]

    runs = {"rollout": rollout, "step_loop": step_loop, "raw_model": raw}
    best = {k: float("inf") for k in runs}
    for fn in runs.values():
        fn()
    for _ in range(args.rounds):
        for name, fn in runs.items():
            tick = time.perf_counter()
            for _ in range(args.repeats):
                fn()
            best[name] = min(best[name], (time.perf_counter() - tick) / args.repeats)
    rate = {k: n * h / v for k, v in best.items()}
    print(
        json.dumps(
            {
                "candidates": n,
                "horizon": h,
                "candidate_steps_per_s": {k: round(v) for k, v in rate.items()},
                "rollout/step_loop": round(rate["rollout"] / rate["step_loop"], 3),
                "rollout/raw_model": round(rate["rollout"] / rate["raw_model"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
