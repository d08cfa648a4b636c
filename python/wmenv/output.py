"""What a step hands back, by output kind: host, staged or torch results.

Both envs choose one of three result kinds when they compile (and again when
the state's device changes), and their routes call it; none of them branches
on the output mode:

* :class:`HostResults`: the model's outputs read on the host and conformed to
  the spaces as NumPy arrays, Python floats and bools (the core's
  ``normalize_*`` functions);
* :class:`StagedResults`: the same, for a model on an accelerator: the
  observation, reward and flags come to pinned host memory first, with one
  synchronisation per step;
* :class:`TorchResults`: ``output="torch"``: observations, rewards and flags as
  torch tensors on the model's device, for learners that keep everything on
  the GPU (TorchRL- and CleanRL-style scripts).

Every kind reads results by the same rules (the same accepted forms, the same
shape errors, the cast to the space's dtype); torch results leave the leaves
as tensors. The single env returns 0-d ``float32`` reward and ``bool`` flag
tensors with ``output="torch"``; the vector env ``(num_envs,)`` ones, computes
its autoreset mask on the device and synchronises once per step, to learn
whether any env ended (the one thing the host must know to decide on a reset:
skipping it when no env ended would itself need that answer).

Each kind's ``step``, ``step_batch`` and ``reset`` hold the model's raw result
themselves and drop it before the ownership check, so that only true sharing
(the model's buffers, the next state) costs a copy of what is handed out.

Gymnasium's ``check_env`` expects NumPy observations and Python scalars, so it
cannot check an env in torch mode; check the same env with ``output="numpy"``
(every rule but the last conversion is shared).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _backend, _staging
from ._tensors import TorchOutput, first_leaf, parse_reset
from .autoreset import scatter_by_mask
from .tree import map_leaves

_torch: Any = _backend.torch

__all__ = [
    "OUTPUTS",
    "HostResults",
    "StagedResults",
    "TorchOutput",
    "TorchResults",
    "check_output",
    "host_results",
    "results_for",
]

OUTPUTS = ("numpy", "torch")


def check_output(value):
    """``value`` if it names an output kind (``"torch"`` needs torch installed)."""
    if value not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {value!r}")
    if value == "torch" and _torch is None:
        raise ValueError('output="torch" needs torch installed')
    return value


class HostResults:
    """NumPy results, read where the model left them (host memory)."""

    def _host(self, env, state, result, action):
        """The result as the core reads it, with the adapters still to run."""
        return result, env._reward, env._terminal

    def step(self, env, state, action, elapsed):
        """One env's model call from ``state``: the normalized ``(state, obs,
        reward, terminated, truncated, info)``, its observation safe to hand out."""
        result = env._transition(state, action)
        if env._notes.unchecked:
            env._notes.check_keys("step", result)
        result, reward_fn, terminal_fn = self._host(env, state, result, action)
        out = env._normalize_step(
            result,
            state,
            action,
            env._model_obs_spec,
            reward_fn,
            terminal_fn,
            elapsed,
            env.info_model_state,
            True,
            env._cast_hook,
        )
        del result  # what still shares the observation's memory now is the model's, or the state
        return env._secure(out, 1)

    def step_batch(self, env, state, action, protect=True):
        """A batch's model call from ``state``: the normalized ``(state, obs,
        reward, terminated, truncated, info)``; with ``protect``, an
        observation safe to hand out."""
        result = env._transition(state, action)
        result, reward_fn, terminal_fn = self._host(env, state, result, action)
        out = env._normalize_step_batch(
            result, state, action, env._obs_spec, reward_fn, terminal_fn, env.num_envs, protect, env._cast_hook
        )
        if not protect:
            return out
        del result
        return env._secure(out, 1)

    def reset(self, env, held):
        """``(state, obs, info)`` of the reset result ``held[0]`` (a list the
        caller gives up, so that nothing else keeps the result)."""
        result = held.pop()
        out = env._normalize_reset(
            result, env._model_obs_spec, env.initial_state, env.initial_observation, True, env._cast_hook
        )
        del result
        return env._secure(out, 1)

    def start_batch(self, env, mask, state, held, obs):
        """``(state, obs)`` with the start observations ``held[0]`` (one row
        per env ``mask`` selects) merged into the batch ``obs``."""
        raw = [env._to_numpy(held.pop(), None)]
        merged = [scatter_by_mask(mask, raw.pop(), obs, 0, "observation")]
        # held by nothing but the tuple below, so that only true sharing (the
        # start state viewing the observation) costs a copy
        out = (state, env._to_numpy(merged.pop(), env._obs_spec, "observation", True, env._cast_hook))
        return env._secure(out, 1)

    def sample(self, env):
        """A sample of the observation space, for results that carry no observation."""
        return env.observation_space.sample()

    def truncated(self, truncated):
        """The single env's flag at its time limit."""
        return True


class StagedResults(HostResults):
    """Host results of a model on an accelerator: its observation, reward and
    flags reach pinned host memory with one synchronisation per step."""

    def _host(self, env, state, result, action):
        staged = _staging.staged_result(env._parse_step, result, state, action, env._reward, env._terminal, env._stager)
        return staged, None, None


class TorchResults:
    """``output="torch"``: the results as tensors on the model's device."""

    def __init__(self, out: TorchOutput):
        self.out = out

    def step(self, env, state, action, elapsed):
        """One env's model call from ``state``, as tensors; its observation safe to hand out."""
        result = env._transition(state, action)
        if env._notes.unchecked:
            env._notes.check_keys("step", result)
        parts = self._single(env, state, result, action, elapsed)
        next_state, info = parts[0], parts[5]
        held = parts[1:5]
        del result, parts  # what still shares their memory now is the model's, or the state
        return (next_state, *self.out.secure_each(held), info)

    def _single(self, env, state, result, action, elapsed):
        next_state, obs, reward, terminated, truncated, info = env._parse_step(result, state)
        if reward is None:
            reward = 0.0 if env._reward is None else env._reward(next_state, obs, action)
        if terminated is None:
            terminated = False if env._terminal is None else env._terminal(next_state, obs, action)
        out = self.out
        leaf = first_leaf(next_state)

        def flag(x, name):  # perf: a flag the model does not give is one zeros op
            return out.scalar_zero(_torch.bool, leaf) if x is None or x is False else out.scalar(x, _torch.bool, name)

        if type(reward) is float and reward == 0.0:  # the default reward: one zeros op
            reward = out.scalar_zero(_torch.float32, leaf)
        reward = out.scalar(reward, _torch.float32, "reward")
        terminated = flag(terminated, "terminated")
        truncated = flag(truncated, "truncated")
        info = _info(info)
        if env.info_model_state:
            info.setdefault("model_state", next_state)
        info.setdefault("elapsed_steps", elapsed)
        obs = out.observation(obs, env._model_obs_spec, protect=True)
        return [next_state, obs, reward, terminated, truncated, info]

    def step_batch(self, env, state, action, elapsed):
        """A batch's model call: ``(state, obs, reward, terminated, truncated,
        info, can_end)`` as tensors, the flags with the time limit
        (``elapsed``: the counters after this step) applied; ``can_end``:
        whether anything could have ended an episode this step.

        perf: a handful of tensor ops beyond the model's own (the op-count
        test holds it there): the time limit's compare, a zeros for each flag
        the model does not give, and the copies the ownership rule asks for.
        Nothing is detached, reshaped or cast that already is what it should be."""
        out, n = self.out, env.num_envs
        result = env._transition(state, action)
        state, raw_obs, reward, terminated, truncated, info = env._parse_step(result, state)
        if reward is None and env._reward is not None:
            reward = env._reward(state, raw_obs, action)
        if terminated is None and env._terminal is not None:
            terminated = env._terminal(state, raw_obs, action)
        info = _info(info)
        held = [
            out.observation(raw_obs, env._obs_spec, protect=True),
            out.zeros(n, _torch.float32, elapsed) if reward is None else out.batch(reward, n, _torch.float32, "reward"),
            None if terminated is None else out.batch(terminated, n, _torch.bool, "terminated"),
            None if truncated is None or truncated is False else out.batch(truncated, n, _torch.bool, "truncated"),
        ]
        # what still shares their memory now is the model's, or the state: only that is copied
        del result, raw_obs, reward, terminated, truncated
        obs, reward, terminated, truncated = out.secure_each(held)
        limit = env._step_limit
        can_end = terminated is not None or truncated is not None or limit is not None
        if terminated is None:
            terminated = out.zeros(n, _torch.bool, elapsed)
        if limit is not None:
            at_limit = elapsed >= limit
            truncated = at_limit if truncated is None else truncated | at_limit
        elif truncated is None:
            truncated = out.zeros(n, _torch.bool, elapsed)
        return state, obs, reward, terminated, truncated, info, can_end

    def reset(self, env, held):
        """``(state, obs, info)`` of the reset result ``held[0]``, as tensors."""
        result = held.pop()
        out = parse_reset(result, env._model_obs_spec, env.initial_state, env.initial_observation, env._matches)
        if self.out.device is None:  # beside the model's state, wherever that is
            leaf = first_leaf(out[0])
            self.out.device = None if leaf is None else leaf.device
        out = (out[0], self.out.observation(out[1], env._model_obs_spec, protect=True), out[2])
        del result
        return self.out.secure(out, 1)

    def start_batch(self, env, mask, state, held, obs):
        """``(state, obs)`` with the start observations ``held[0]`` merged in by
        ``mask``, as tensors (NumPy start data becomes tensors before it is
        merged into the tensors it replaces, as NumPy mode makes it arrays)."""
        part = [map_leaves(_as_tensor, held.pop())]
        merged = [scatter_by_mask(mask, part.pop(), obs, 0, "observation")]
        out = (state, self.out.observation(merged.pop(), env._obs_spec, protect=True))
        return self.out.secure(out, 1)

    def sample(self, env):
        """A sample of the observation space, as tensors."""
        return self.out.observation(env.observation_space.sample(), env._obs_spec)

    def truncated(self, truncated):
        """The single env's flag at its time limit, as a tensor."""
        return _torch.ones_like(truncated)


def _as_tensor(leaf):
    """A NumPy leaf as a new tensor (a few start rows: read-only or strided
    data copies as any other); anything else as it is."""
    return _torch.tensor(leaf) if isinstance(leaf, np.ndarray) else leaf


def _info(info) -> dict:
    if info is not None and not isinstance(info, Mapping):
        raise TypeError(f"info must be a mapping or None, got {type(info).__name__}")
    return {} if info is None else dict(info)


_HOST, _STAGED = HostResults(), StagedResults()


def host_results(env):
    """The NumPy result kind of ``env``'s state: staged or host."""
    return _STAGED if env._stage else _HOST


def results_for(env):
    """The result kind of ``env``'s options and state: torch, staged or host."""
    if env._torch_out is not None:
        return env._torch_results
    return host_results(env)
