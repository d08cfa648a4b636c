"""How good is the world model? Open-loop replay of real trajectories.

:func:`evaluate` starts the model from real states, feeds it the real
actions for ``horizon`` steps without ever correcting it, and compares what
it predicts with what really happened, step by step: observation error (mean
squared, or a metric of your own), reward error (mean absolute), and the
precision and recall of its terminations. Errors that grow quickly with the
horizon say how far imagined rollouts can be trusted (MBPO's short branches,
Dreamer's horizon).

Real data is a mapping of flat transition arrays, as :func:`collect` makes
from a real Gymnasium env: ``observations`` and ``next_observations``
``(T, ...)``, ``actions``, ``rewards`` and ``terminated`` ``(T,)`` and
``dones`` (the episode ended after this transition, by termination or
truncation). A window's steps after its episode ended are left out.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> import wmenv
    >>> data = {"observations": np.arange(8.0).reshape(8, 1), "next_observations": np.arange(1.0, 9.0).reshape(8, 1),
    ...         "actions": np.ones((8, 1)), "rewards": np.zeros(8), "terminated": np.zeros(8, bool)}
    >>> env = wmenv.WorldModelVectorEnv(None, 2, gym.spaces.Box(-99, 99, (1,)), gym.spaces.Box(-1, 1, (1,)),
    ...     transition_fn=lambda m, s, a: (s + a, s + a, np.zeros(2)), torch_actions=False)
    >>> wmenv.evaluate(env, data, horizon=3).observation_mse.tolist()
    [0.0, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from . import _backend

_torch: Any = _backend.torch

__all__ = ["Evaluation", "collect", "evaluate"]


@dataclass
class Evaluation:
    """Errors of open-loop predictions, one entry per horizon step (1 to ``horizon``).

    Attributes:
        horizon: the number of steps each window was replayed.
        starts: how many real start states were replayed.
        observation_mse: the mean of the metric (by default the mean squared
            error of the observation) at each horizon step.
        reward_mae: the mean absolute reward error (steps before the model's
            own termination only).
        termination_precision: of the steps the model ended, the share the
            real env ended (``nan`` where the model ended none).
        termination_recall: of the steps the real env ended, the share the
            model ended too (``nan`` where the real env ended none).
    """

    horizon: int
    starts: int
    observation_mse: np.ndarray
    reward_mae: np.ndarray
    termination_precision: np.ndarray
    termination_recall: np.ndarray

    def __str__(self) -> str:
        rows = [f"open-loop errors over {self.starts} real starts (horizon {self.horizon})"]
        rows.append("  step   observation   reward   term. precision   term. recall")
        for k in range(self.horizon):
            rows.append(
                f"  {k + 1:4d}   {self.observation_mse[k]:11.5g}   {self.reward_mae[k]:6.4g}   "
                f"{self.termination_precision[k]:15.3f}   {self.termination_recall[k]:12.3f}"
            )
        return "\n".join(rows)

    def plot(self, path: str) -> str:
        """Saves a PNG of the errors against the horizon (needs matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - matplotlib is optional
            raise ImportError("Evaluation.plot needs matplotlib: pip install matplotlib") from exc
        steps = np.arange(1, self.horizon + 1)
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
        left.plot(steps, self.observation_mse, marker="o")
        left.set_xlabel("steps predicted open-loop")
        left.set_ylabel("observation error (MSE)")
        left.set_yscale("log" if np.all(self.observation_mse > 0) else "linear")
        right.plot(steps, self.reward_mae, marker="o", label="reward MAE")
        right.plot(steps, self.termination_recall, marker="s", label="termination recall")
        right.set_xlabel("steps predicted open-loop")
        right.legend()
        fig.suptitle(f"world model vs real data ({self.starts} starts)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def collect(real_env, policy: Optional[Callable] = None, episodes: int = 10, seed: int = 0) -> dict:
    """Flat transitions from ``episodes`` episodes of a real Gymnasium env,
    with ``policy(obs) -> action`` (default: random actions)."""
    real_env.action_space.seed(seed)
    columns: dict = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminated", "dones")}
    for episode in range(episodes):
        obs, _ = real_env.reset(seed=seed + episode)
        done = False
        while not done:
            action = real_env.action_space.sample() if policy is None else policy(obs)
            nxt, reward, terminated, truncated, _ = real_env.step(action)
            done = bool(terminated or truncated)
            for key, value in zip(columns, (obs, action, reward, nxt, terminated, done)):
                columns[key].append(value)
            obs = nxt
    return {k: np.asarray(v) for k, v in columns.items()}


def _windows(data, horizon: int):
    """Start indices of windows of ``horizon`` transitions, and a ``(S, H)``
    mask of the steps that belong to the start's episode (an episode that
    ends inside a window masks the rest of it)."""
    n = len(data["observations"])
    dones = np.asarray(data.get("dones", np.zeros(n, bool)), bool).reshape(n)
    ends = np.concatenate([[0], np.cumsum(dones)])
    starts = np.arange(0, max(n - horizon + 1, 0))
    offsets = np.arange(horizon)
    # step k of a window counts when no episode ended among its first k transitions
    inside = ends[starts[:, None] + offsets[None, :]] - ends[starts][:, None] == 0
    return starts, inside


def _to_model(env, observations):
    """Real observations as the model's state: encode_fn's, or as they are
    (a tensor on the model's device for a torch model)."""
    from .layers import as_model_input as _as_model_input
    from .options import model_device as _model_device

    if env._start is not None:
        return env._start.encode(observations, None)
    device = _model_device(env.world_model, env.device) if env._tensor_model() else None
    return _as_model_input(device)(observations, None)


def evaluate(
    env,
    data: Optional[dict] = None,
    *,
    horizon: int = 10,
    real_env=None,
    policy: Optional[Callable] = None,
    episodes: int = 10,
    metric: Optional[Callable] = None,
    max_starts: int = 4096,
    seed: int = 0,
) -> Evaluation:
    """Replays real trajectories through ``env``'s model open-loop and
    returns the errors per horizon step (see the module's docstring).

    ``env`` is a :class:`~wmenv.WorldModelVectorEnv` (windows are replayed
    ``num_envs`` at a time with ``rollout``, so the env's own position is left
    alone) or a :class:`~wmenv.WorldModelEnv` (one window at a time, through
    ``reset(options={"state": ...})``: the env is left reset). ``data`` is
    the real transitions, or ``None`` to :func:`collect` ``episodes`` from
    ``real_env`` with ``policy``. ``metric(predicted, real)`` gives one error
    per row of ``(n, ...)`` observations (default: the mean squared error).
    Start states come from the real observations through the env's
    ``encode_fn`` when it has one. ``max_starts`` windows at most, drawn
    with ``seed``.
    """
    from .vector import WorldModelVectorEnv

    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    if data is None:
        if real_env is None:
            raise ValueError("evaluate needs data (real transitions) or real_env to collect them from")
        data = collect(real_env, policy, episodes, seed)
    if not isinstance(data, Mapping):
        hint = "; a Gymnasium env goes in real_env=" if hasattr(data, "step") and hasattr(data, "reset") else ""
        raise TypeError(
            "evaluate's data must be a mapping of arrays ('observations', 'next_observations', 'actions', ...), "
            f"got {type(data).__name__}{hint}"
        )
    missing = [k for k in ("observations", "next_observations", "actions") if k not in data]
    if missing:
        raise ValueError(f"evaluate's data lacks {', '.join(map(repr, missing))}")
    starts, inside = _windows(data, horizon)
    if not starts.size:
        raise ValueError(f"the data holds fewer than horizon={horizon} transitions")
    if starts.size > max_starts:
        keep = np.sort(np.random.default_rng(seed).choice(starts.size, max_starts, replace=False))
        starts, inside = starts[keep], inside[keep]
    metric = metric or (lambda pred, real: ((pred - real) ** 2).reshape(len(pred), -1).mean(axis=1))
    obs = np.asarray(data["observations"])
    nxt = np.asarray(data["next_observations"])
    actions = np.asarray(data["actions"])
    rewards = np.asarray(data["rewards"], np.float64) if "rewards" in data else None
    real_term = np.asarray(data["terminated"], bool) if "terminated" in data else None
    offsets = np.arange(horizon)
    pred_obs, pred_rew, pred_term = [], [], []
    if isinstance(env, WorldModelVectorEnv):
        n = env.num_envs
        for first in range(0, starts.size, n):
            chunk = starts[first : first + n]
            padded = np.resize(chunk, n)  # a full batch: the last one is padded with repeats, then dropped
            window = padded[:, None] + offsets[None, :]  # (n, H)
            plan = np.swapaxes(actions[window], 0, 1)  # (H, n, ...)
            out = env.rollout(plan, _to_model(env, obs[padded]))
            pred_obs.append(np.swapaxes(np.asarray(out.observations), 0, 1)[: len(chunk)])
            pred_rew.append(out.rewards.T[: len(chunk)])
            pred_term.append(out.terminated.T[: len(chunk)])
    else:
        for t in starts:
            start = obs[t][None] if env._batch_of_one else obs[t]  # a batched model's state has a batch of one
            env.reset(options={"state": _to_model(env, start), "observation": start})
            rows, rews, terms = [], [], []
            ended = False
            for k in range(horizon):
                o, r, term, _, _ = env.step(actions[t + k])
                rows.append(np.asarray(o))
                ended = ended or term
                rews.append(0.0 if ended and not term else r)
                terms.append(ended)
            pred_obs.append(np.stack(rows)[None])
            pred_rew.append(np.asarray(rews)[None])
            pred_term.append(np.asarray(terms)[None])
    predicted = np.concatenate(pred_obs)  # (S, H, ...)
    window = starts[:, None] + offsets[None, :]
    real = nxt[window]
    errors = np.stack([np.asarray(metric(predicted[:, k], real[:, k]), np.float64) for k in range(horizon)], axis=1)
    model_ended = np.concatenate(pred_term)  # (S, H), True from the model's terminating step on
    earlier = np.concatenate([np.zeros((len(starts), 1), bool), model_ended[:, :-1]], axis=1)
    first_end = model_ended & ~earlier

    def mean_over(values, mask):
        counted = mask.sum(axis=0)
        return np.where(counted > 0, (values * mask).sum(axis=0) / np.maximum(counted, 1), np.nan)

    observation_mse = mean_over(errors, inside)
    reward_mae = np.full(horizon, np.nan)
    if rewards is not None:
        reward_mae = mean_over(np.abs(np.concatenate(pred_rew) - rewards[window]), inside & ~earlier)
    precision = recall = np.full(horizon, np.nan)
    if real_term is not None:
        truth = real_term[window] & inside
        said = first_end & inside
        hits = (said & truth).sum(axis=0)
        precision = np.where(said.sum(axis=0) > 0, hits / np.maximum(said.sum(axis=0), 1), np.nan)
        recall = np.where(truth.sum(axis=0) > 0, hits / np.maximum(truth.sum(axis=0), 1), np.nan)
    return Evaluation(horizon, int(starts.size), observation_mse, reward_mae, precision, recall)
