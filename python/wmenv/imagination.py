"""Closed-loop, differentiable imagination: ``rollout(policy, state, horizon)``.

Dreamer-style actor learning rolls a policy through the world model and
backpropagates the imagined return into the policy's parameters (Dreamer's
``imagine``, SVG). ``WorldModelVectorEnv.rollout`` takes a policy callable in
place of an action array for that: ``policy(state)`` gives the ``num_envs``
actions from the model's current (batched) state, the latent a Dreamer actor
acts on, at every horizon step, and the env's transition (with its adapters
and layers: ensembles, reward models, thresholds) advances it.

With ``output="torch"`` and ``grad=True`` nothing is detached: the returned
observations, rewards and returns keep their autograd graph back through the
model to the policy's parameters, so ``(-rollout.returns.mean()).backward()``
trains the actor. Without ``grad=True`` the model runs under ``no_grad`` as in
every other call. As in the open-loop rollout, a rollout's rewards after the
step on which it terminated count for nothing (multiplied by 0, which keeps
the graph), there are no autoresets or time limits, and the env's own state,
counters and generator are left as they were.

The results are tensors on the model's device (``Rollout`` with
``observations`` ``(horizon, num_envs, ...)`` stacked, ``rewards`` and
``terminated`` ``(horizon, num_envs)``, ``returns`` ``(num_envs,)``), or NumPy
arrays in NumPy mode.

Example:
    >>> import gymnasium as gym, torch
    >>> from wmenv import WorldModelVectorEnv
    >>> env = WorldModelVectorEnv(None, 4, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
    ...     transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]), output="torch", grad=True)
    >>> gain = torch.ones(1, requires_grad=True)
    >>> out = env.rollout(lambda s: torch.tanh(gain * (1 - s)), torch.zeros(4, 1), horizon=3)
    >>> out.returns.sum().backward()
    >>> bool(gain.grad > 0)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

import numpy as np

from . import _backend
from .planning import Rollout, check_discount
from .route import prepare_action

_torch: Any = _backend.torch

__all__ = ["imagine"]


def _stack(rows):
    first = rows[0]
    if isinstance(first, Mapping):
        return {k: _stack([r[k] for r in rows]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_stack([r[i] for r in rows]) for i in range(len(first)))
    if _torch is not None and isinstance(first, _torch.Tensor):
        return _torch.stack(rows)
    return np.stack(rows)


def imagine(env, policy: Callable, state, horizon: int, discount: Optional[float] = None, observations: bool = True):
    """``env.rollout(policy, state, horizon)`` for a WorldModelVectorEnv ``env`` (see the module)."""
    if not callable(policy):
        raise TypeError(f"policy must be a callable of the batched state, got {type(policy).__name__}")
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"a policy rollout needs horizon= a positive int (steps), got {horizon!r}")
    discount = check_discount(discount)
    torch_out = env._torch_out
    n = env.num_envs
    saved = None if env._generator is None else env._generator.get_state()
    kept, rewards, flags = [], [], []
    try:
        with env._autograd_off:
            done = None
            for _ in range(int(horizon)):
                action = policy(state)
                model_action = prepare_action(env, action)
                result = env._transition(state, model_action)
                next_state, obs, reward, terminated, _, _ = env._parse_step(result, state)
                if reward is None:
                    reward = 0.0 if env._reward is None else env._reward(next_state, obs, model_action)
                if terminated is None:
                    terminated = False if env._terminal is None else env._terminal(next_state, obs, model_action)
                if torch_out is not None:
                    reward = torch_out.batch(_full(reward, n, torch_out, next_state), n, _torch.float32, "reward")
                    term = torch_out.batch(_full(terminated, n, torch_out, next_state), n, _torch.bool, "terminated")
                    if observations:
                        kept.append(torch_out.observation(obs, env._obs_spec))
                    live = _torch.ones_like(reward) if done is None else (~done).to(reward.dtype)
                    rewards.append(reward * live)  # 0 after the terminating step, the graph kept
                    done = term if done is None else done | term
                else:
                    reward_np = np.broadcast_to(np.asarray(env._to_numpy(reward, None), np.float32).reshape(-1), (n,))
                    term_np = np.broadcast_to(np.asarray(env._to_numpy(terminated, None), np.bool_).reshape(-1), (n,))
                    if observations:
                        kept.append(env._to_numpy(obs, env._obs_spec, "observation", True, None))
                    rewards.append(
                        np.where(done, 0.0, reward_np).astype(np.float32) if done is not None else reward_np.copy()
                    )
                    done = term_np.copy() if done is None else done | term_np
                flags.append(done)
                state = next_state
    finally:
        if saved is not None:
            env._generator.set_state(saved)
    if torch_out is not None:
        reward_rows, flag_rows = _torch.stack(rewards), _torch.stack(flags)
        weights = _torch.ones(len(rewards), dtype=reward_rows.dtype, device=reward_rows.device)
        if discount is not None:
            weights = discount ** _torch.arange(len(rewards), dtype=reward_rows.dtype, device=reward_rows.device)
        returns = (reward_rows * weights[:, None]).sum(0)
    else:
        reward_rows, flag_rows = np.stack(rewards), np.stack(flags)
        weights = np.ones(len(rewards)) if discount is None else discount ** np.arange(len(rewards))
        returns = (reward_rows.astype(np.float64) * weights[:, None]).sum(0)
    return Rollout(_stack(kept) if observations else None, reward_rows, flag_rows, returns, state)


def _full(value, n, out, like):
    """A Python number (a default reward or flag) as ``n`` values beside ``like``."""
    if isinstance(value, (bool, int, float)):
        leaf = like if isinstance(like, _torch.Tensor) else None
        device = out.device if out.device is not None else (None if leaf is None else leaf.device)
        dtype = _torch.bool if isinstance(value, bool) else _torch.float32
        return _torch.full((n,), value, dtype=dtype, device=device)
    return value
