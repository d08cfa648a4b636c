"""Snapshots, batched start states and open-loop rollouts: what planners need.

* :class:`Snapshot`: an env's full position (model state, last observation,
  step counters, generator and NumPy RNG state, autoreset mask), taken by
  ``env.get_state()`` and restored by ``env.set_state(snapshot)``.
* :func:`repeat_state`: one env's state as a batch of ``n`` copies.
* :class:`Rollout`: what ``WorldModelVectorEnv.rollout`` returns, and
  :func:`open_loop`, the rollout of action arrays that fills it.

Example:
    >>> import torch
    >>> from wmenv import repeat_state
    >>> batched = repeat_state({"h": torch.zeros(4), "t": (torch.ones(2),)}, 3)
    >>> batched["h"].shape, batched["t"][0].shape
    (torch.Size([3, 4]), torch.Size([3, 2]))
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import _backend
from .autoreset import scatter_by_mask
from .tree import map_leaves

_torch: Any = _backend.torch

__all__ = ["Rollout", "Snapshot", "StartData", "deep_copy", "open_loop", "repeat_state", "scatter_by_mask"]


@dataclass(frozen=True)
class Snapshot:
    """An env's position, opaque to the user: pass it to ``env.set_state``.

    ``state`` and ``observation`` are the env's own objects unless the
    snapshot was taken with ``copy=True``.
    """

    state: Any
    observation: Any
    elapsed: Any
    generator_state: Any
    np_random_state: Any
    autoreset: Any = None
    copied: bool = False
    env: str = ""
    num_envs: Optional[int] = None
    ensemble: Any = None
    reward_base: Any = None
    space_rng_states: Any = None  # the observation space's RNGs (a default reset samples it)


def deep_copy(tree):
    """``tree`` with every tensor cloned and every array copied, inside dicts,
    tuples and lists; other leaves are deep-copied."""
    return map_leaves(_copy_leaf, tree)


def _copy_leaf(x):
    if _torch is not None and isinstance(x, _torch.Tensor):
        return x.detach().clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    return copy.deepcopy(x)


def repeat_state(state, n: int, batched: bool = False):
    """A single env's ``state`` as a batch: every tensor or array leaf (inside
    dicts, tuples and lists) gets a leading dimension of size ``n`` holding
    ``n`` copies (new memory, so batch entries never alias each other or the
    input); Python numbers become arrays of ``n``; other leaves are kept.

    ``batched=True`` is for a state that already has a batch axis of one (a
    ``batched_model``'s state, ``(1, d)``): that axis is repeated to ``n``
    instead of a new one being added (``(n, d)``, not ``(n, 1, d)``); a leaf
    whose leading size is not 1 is a ValueError.

    Example:
        >>> import numpy as np
        >>> repeat_state((np.arange(2), 1.5), 2)
        (array([[0, 1],
               [0, 1]]), array([1.5, 1.5]))
        >>> repeat_state(np.zeros((1, 3)), 4, batched=True).shape
        (4, 3)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    n = int(n)
    if isinstance(state, dict):
        return {k: repeat_state(v, n, batched) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(repeat_state(v, n, batched) for v in state)
    if batched and (_torch is not None and isinstance(state, _torch.Tensor) or isinstance(state, np.ndarray)):
        if state.ndim < 1 or state.shape[0] != 1:
            raise ValueError(
                f"repeat_state(..., batched=True) takes leaves with a leading batch of one, got shape "
                f"{tuple(state.shape)}"
            )
        state = state[0]
    if _torch is not None and isinstance(state, _torch.Tensor):
        return state.detach().unsqueeze(0).repeat((n,) + (1,) * state.dim())
    if isinstance(state, (np.ndarray, np.generic)):
        return np.repeat(np.asarray(state)[None], n, axis=0)
    if isinstance(state, (bool, int, float)):
        return np.full(n, state)
    return state


@dataclass(frozen=True)
class Rollout:
    """``num_envs`` open-loop rollouts of ``horizon`` steps.

    Attributes:
        observations: ``(horizon, num_envs, ...)`` NumPy arrays (a dict or
            tuple of them for ``Dict``/``Tuple`` spaces); ``None`` for a
            rollout asked for no observations.
        rewards: ``(horizon, num_envs)`` float32; 0 after the step on which
            a rollout terminated (that step's reward counts).
        terminated: ``(horizon, num_envs)`` bool; True from the terminating
            step on.
        returns: ``(num_envs,)`` float64, the (discounted) sum of rewards.
        final_state: the batched model state after the last step.
    """

    observations: Any
    rewards: np.ndarray
    terminated: np.ndarray
    returns: np.ndarray
    final_state: Any


class ObservationRows:
    """A rollout's observations, ``(horizon, ...)`` per leaf, filled row by
    row: each step's observation is copied in as it arrives (the one copy a
    final ``np.stack`` would make), so later model calls cannot change it.

    Leaves are allocated from the batched observation spec where there is
    one (so a rollout of horizon 0 has the space's layout), else from the
    first observation.
    """

    def __init__(self, horizon: int, spec, num_envs: int):
        self.horizon = horizon
        self.num_envs = num_envs
        self.rows = None if spec is None else _rows_for_spec(horizon, spec)
        if self.rows is None and horizon == 0:
            self.rows = np.zeros((0, num_envs))

    def write(self, t: int, obs) -> None:
        if self.rows is None:
            self.rows = _rows_like(self.horizon, obs)
        _write_row(self.rows, t, obs)


def _rows_for_spec(horizon, spec):
    kind = spec[0]
    if kind == 0:
        return np.empty((horizon,) + tuple(spec[1]), spec[2])
    if kind == 1:
        return {k: _rows_for_spec(horizon, sub) for k, sub in zip(spec[1], spec[2])}
    return tuple(_rows_for_spec(horizon, sub) for sub in spec[1])


def _rows_like(horizon, obs):
    def rows(leaf):
        arr = np.asarray(leaf)
        return np.empty((horizon,) + arr.shape, arr.dtype)

    return map_leaves(rows, obs)


def _write_row(rows, t, obs):
    if isinstance(rows, dict):
        for k, v in rows.items():
            _write_row(v, t, obs[k])
    elif isinstance(rows, (tuple, list)):
        for v, o in zip(rows, obs):
            _write_row(v, t, o)
    else:
        rows[t] = obs


def check_discount(discount):
    """``discount`` as a float in [0, 1], or ``None``; a ValueError otherwise."""
    if discount is None:
        return None
    if isinstance(discount, (bool, np.bool_)) or not isinstance(discount, (int, float, np.integer, np.floating)):
        raise ValueError(f"discount must be None or a number in [0, 1], got {discount!r}")
    value = float(discount)
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise ValueError(f"discount must be None or a number in [0, 1], got {discount!r}")
    return value


def discounted_returns(rewards: np.ndarray, discount: Optional[float]) -> np.ndarray:
    if discount is None:
        return rewards.sum(axis=0, dtype=np.float64)
    weights = float(discount) ** np.arange(rewards.shape[0], dtype=np.float64)
    return (weights[:, None] * rewards).sum(axis=0)


class StartData:
    """Start states drawn from real data: the ``start_data``/``encode_fn``
    options of both envs.

    ``data`` is an array or tensor of observations ``(N, ...)``, any sequence
    supporting ``len`` and indexing (a replay buffer, which may grow: its
    length is read at every draw), or a mapping with ``"observations"`` and
    optionally ``"actions"`` of equal length and ``"dones"`` (or
    ``"terminals"``, ``"terminated"``): where an episode ends in the data. Each
    draw takes a start index from the env's generator (so resets reproduce
    under a seed) and hands ``encode_fn(world_model, observations, actions)``
    (arity rule) the drawn observations: one each, or with ``context=k`` a
    window of the ``k`` consecutive observations (and actions) that ends at
    the start, the way DIAMOND conditions on real frames; a window that would
    cross an episode's end in the data is never drawn. ``encode_fn`` returns
    the start state, or ``{"state": ..., "observation": ...}`` for a model
    whose observation is not the real frame (a feature); otherwise the start
    observation is the last real one.
    """

    _BOUNDARY_KEYS = ("dones", "terminals", "terminated")

    def __init__(self, data, encode, context: Optional[int]):
        self.dones = None
        if isinstance(data, dict):
            if "observations" not in data:
                raise ValueError("start_data as a mapping needs an 'observations' entry (and optionally 'actions')")
            self.observations, self.actions = data["observations"], data.get("actions")
            for key in self._BOUNDARY_KEYS:
                if key in data:
                    self.dones = data[key]
                    break
        else:
            self.observations, self.actions = data, None
        if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context <= 0):
            raise ValueError(f"start_context must be None or a positive int, got {context!r}")
        self.context = context
        self.encode = encode
        self._valid_cache: tuple = (-1, None)
        self.check()

    @property
    def length(self) -> int:
        """How many observations the data holds now."""
        return len(self.observations)

    def check(self) -> int:
        """The data's length, checked against its actions, dones and the context."""
        length = self.length
        if self.actions is not None and len(self.actions) != length:
            raise ValueError(f"start_data's actions ({len(self.actions)}) and observations ({length}) differ in length")
        if self.dones is not None and len(self.dones) != length:
            raise ValueError(
                f"start_data's episode ends ({len(self.dones)}) and observations ({length}) differ in length"
            )
        span = 1 if self.context is None else self.context
        if length < span:
            raise ValueError(f"start_data holds {length} observations, fewer than start_context={span}")
        return length

    def _valid_ends(self, length: int, span: int):
        """The window ends whose windows stay inside one episode (None: all)."""
        if self.dones is None or span == 1:
            return None
        if self._valid_cache[0] == length:
            return self._valid_cache[1]
        dones = self.dones
        if _torch is not None and isinstance(dones, _torch.Tensor):
            dones = dones.detach().cpu().numpy()
        ended = np.asarray(dones[:length]).reshape(length).astype(bool)
        # a window [i - span + 1, i] crosses an end when one of its first span - 1 steps ends an episode
        crossings = np.concatenate([[0], np.cumsum(ended)])
        ends = np.arange(span - 1, length)
        inside = crossings[ends] - crossings[ends - span + 1] == 0
        valid = ends[inside]
        if not valid.size:
            raise ValueError(f"start_data has no window of start_context={span} observations inside one episode")
        self._valid_cache = (length, valid)
        return valid

    def indices(self, count: int, generator, np_random, generators=None) -> list:
        """``count`` start indices (each the last index of its window);
        ``generators``: one torch generator per draw instead (per-env seeds)."""
        length = self.check()
        span = 1 if self.context is None else self.context
        valid = self._valid_ends(length, span)
        high = length - span + 1 if valid is None else len(valid)
        if generators is not None:
            drawn = [int(_torch.randint(0, high, (1,), generator=g)[0]) for g in generators]
        elif generator is not None and _torch is not None:
            drawn = [int(i) for i in _torch.randint(0, high, (count,), generator=generator, device=generator.device)]
        else:
            drawn = [int(i) for i in np_random.integers(0, high, size=count)]
        if valid is None:
            return [i + span - 1 for i in drawn]
        return [int(valid[i]) for i in drawn]

    def _item(self, source, i):
        item = source[i]
        if _torch is not None and isinstance(item, _torch.Tensor):
            return item
        return np.asarray(item)

    def _gather(self, source, indices):
        """The items (or windows ending) at ``indices``, stacked on a new leading axis."""
        if self.context is None:
            items = [self._item(source, i) for i in indices]
        else:
            items = [_stack([self._item(source, j) for j in range(i - self.context + 1, i + 1)]) for i in indices]
        return _stack(items)

    def draw(self, count: int, generator, np_random, batched: bool, generators=None):
        """``(state, observation, indices)``: the encoded start state and the
        last real observation of each draw (or the observation ``encode_fn``
        gave), with a leading ``count`` axis when ``batched`` (the vector
        env), without one otherwise."""
        indices = self.indices(count, generator, np_random, generators)
        observations = self._gather(self.observations, indices)
        actions = None if self.actions is None else self._gather(self.actions, indices)
        if not batched:
            observations = observations[0]
            actions = None if actions is None else actions[0]
        state = self.encode(observations, actions)
        last = observations
        if self.context is not None:
            last = observations[:, -1] if batched else observations[-1]
        if isinstance(state, Mapping) and "state" in state and set(state) <= {"state", "observation"}:
            last = state.get("observation", last)
            state = state["state"]
        return state, last, indices


def _stack(items):
    if _torch is not None and isinstance(items[0], _torch.Tensor):
        return _torch.stack(items)
    return np.stack(items)


def open_loop(env, actions, state, discount=None, observations: bool = True) -> Rollout:
    """``WorldModelVectorEnv.rollout`` for an action array: ``num_envs``
    open-loop sequences from the batched ``state``, one model call per
    horizon step, the env's own position untouched (its generator restored
    afterwards)."""
    actions = actions.detach().cpu().numpy() if _torch is not None and isinstance(actions, _torch.Tensor) else actions
    actions = np.asarray(actions)
    want = (env.num_envs,) + tuple(env.single_action_space.shape or ())
    if actions.ndim < 1 or tuple(actions.shape[1:]) != want:
        raise ValueError(f"actions must have shape (horizon, {', '.join(map(str, want))}), got {tuple(actions.shape)}")
    horizon = actions.shape[0]
    discount = check_discount(discount)
    generator = env._generator
    saved = None if generator is None else generator.get_state()
    # each step's observation is copied into its row as it arrives, so a
    # model that writes into one buffer cannot change earlier rows
    rows = ObservationRows(horizon, env._obs_spec, env.num_envs) if observations else None
    rewards = np.zeros((horizon, env.num_envs), np.float32)
    done = np.zeros(env.num_envs, np.bool_)
    flags = np.zeros((horizon, env.num_envs), np.bool_)
    advance = env._route.rollout_advance(env)
    try:
        with env._autograd_off:
            for t in range(horizon):
                state, obs, reward, term = advance(state, actions[t])
                if rows is not None:
                    rows.write(t, obs)
                rewards[t] = np.where(done, 0.0, reward)
                done = done | term
                flags[t] = done
    finally:
        if saved is not None:
            generator.set_state(saved)
    kept = None if rows is None else rows.rows
    return Rollout(kept, rewards, flags, discounted_returns(rewards, discount), state)
