"""Model-predictive control with the cross-entropy method on a learned CartPole model.

1. Collect random transitions from the real ``CartPole-v1`` and train the
   demo's world model on them (``wmenv.demo``).
2. Each real step: put the real observation into a ``WorldModelEnv`` as its
   state (``reset(options={"state": ...})``), take a snapshot, batch its
   state with ``repeat_state`` and let CEM refine a distribution over action
   sequences, scoring candidates with ``WorldModelVectorEnv.rollout`` (one
   model call per horizon step for all candidates).
3. Act with the plan's first action in the real env.

    python examples/plan_cem.py [--episodes 5] [--quick]

The last line is ``plan_cem: mean real return R over E episodes, T ms per action``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import gymnasium as gym
import numpy as np
import torch

from wmenv import WorldModelEnv, WorldModelVectorEnv, demo, repeat_state

torch.set_num_threads(1)


def train_world_model(real_steps: int, epochs: int, seed: int):
    data = demo.Transitions()
    with contextlib.redirect_stderr(io.StringIO()):  # the demo's progress bars
        demo.collect(data, real_steps, seed)
        torch.manual_seed(seed)
        model = demo.build_model(torch)
        errors = demo.train_model(torch, model, data, epochs, seed)
    return model, errors


class CEMPlanner:
    """CEM over binary action sequences: a per-step probability of pushing right."""

    def __init__(self, model, horizon: int, candidates: int, iterations: int, elites: int, seed: int):
        self.horizon, self.candidates, self.iterations, self.elites = horizon, candidates, iterations, elites
        self.rng = np.random.default_rng(seed)
        self.probs = np.full(horizon, 0.5)
        # The snapshot holder: its state is set from the real observation each step.
        self.single = WorldModelEnv(model, demo.OBS_SPACE, gym.spaces.Discrete(2))
        self.imagined = WorldModelVectorEnv(model, candidates, demo.OBS_SPACE, gym.spaces.Discrete(2))

    def score(self, rollout) -> np.ndarray:
        # Survive (the model's own reward and termination), stay centred and upright.
        obs = rollout.observations  # (horizon, candidates, 4)
        alive = ~rollout.terminated
        drift = (0.05 * obs[..., 0] ** 2 + 0.5 * obs[..., 2] ** 2) * alive
        return rollout.returns - drift.sum(axis=0)

    def act(self, real_obs) -> int:
        self.single.reset(options={"state": torch.as_tensor(real_obs, dtype=torch.float32)})
        snapshot = self.single.get_state()
        start = repeat_state(snapshot.state, self.candidates)
        probs = self.probs
        best_plan, best_score = None, -np.inf
        for _ in range(self.iterations):
            plans = (self.rng.random((self.candidates, self.horizon)) < probs).astype(np.int64)
            result = self.imagined.rollout(plans.T.copy(), start)
            scores = self.score(result)
            elite = plans[np.argsort(scores)[-self.elites :]]
            probs = np.clip(0.8 * elite.mean(axis=0) + 0.2 * probs, 0.02, 0.98)
            top = int(np.argmax(scores))
            if scores[top] > best_score:
                best_plan, best_score = plans[top], scores[top]
        self.probs = np.append(probs[1:], 0.5)  # warm start for the next step
        return int(best_plan[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--real-steps", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--horizon", type=int, default=25)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=500, help="real steps per episode (CartPole-v1: 500)")
    parser.add_argument("--quick", action="store_true", help="a reduced run (CI): 1 short episode, a small model fit")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.real_steps, args.epochs, args.max_steps = 1, 4000, 5, 50
        args.candidates, args.horizon = 64, 15
    started = time.perf_counter()
    model, errors = train_world_model(args.real_steps, args.epochs, args.seed)
    print(
        f"world model: held-out state RMSE {errors['state_rmse']:.5f}, "
        f"termination accuracy {errors['termination_accuracy']:.3f} ({time.perf_counter() - started:.0f} s)"
    )
    planner = CEMPlanner(
        model, args.horizon, args.candidates, args.iterations, max(args.candidates // 10, 2), args.seed
    )
    env = gym.make("CartPole-v1", max_episode_steps=args.max_steps)
    returns, decisions, planning = [], 0, 0.0
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        total, done = 0.0, False
        while not done:
            tick = time.perf_counter()
            action = planner.act(obs)
            planning += time.perf_counter() - tick
            decisions += 1
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        print(f"episode {episode}: real return {total:.0f}")
    env.close()
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(
        f"plan_cem: mean real return {np.mean(returns):.1f} over {len(returns)} episodes, "
        f"{planning / max(decisions, 1) * 1e3:.1f} ms per action"
    )


if __name__ == "__main__":
    main()
