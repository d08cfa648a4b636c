"""Action chunks (``chunk=T``): one model call generates ``T`` steps.

Video world models generate a chunk of frames per call. With ``chunk=T``:

* an action is ``(T, *action_shape)`` per env (the env's action space is the
  given one repeated ``T`` times: a ``Box`` of shape ``(T, ...)``, a
  ``Discrete(n)`` becomes ``MultiDiscrete([n] * T)``), and the model receives
  the whole chunk in one call;
* the observation is the chunk's frames, ``(T, *observation_shape)`` (the
  observation space repeated ``T`` times), or with ``chunk_frames=False``
  only the last frame (the space as given). The model returns every frame,
  or with ``chunk_frames=False`` may return the last one only: a leaf
  carries the time axis when it has one axis more than a frame of its space
  (a frame whose first axis is ``T`` long is still one frame), and a single
  frame where the env hands out ``T`` is a ``ValueError`` with the fix;
* the model's reward and termination may carry the time axis, ``(T,)`` per
  env: a termination inside the chunk ends the episode at that frame, and
  later frames repeat the terminal one and their rewards count for nothing;
  the step's reward is the chunk's sum (``chunk_reward="sum"``), its last
  counted frame's (``"last"``), or ``chunk_reward(rewards)`` of the masked
  ``(..., T)`` rewards; ``info["chunk_length"]`` is how many frames counted;
* a ``reward_model`` scores the frames: one score per env is the reward, and
  per-frame scores ``(..., T)`` are reduced as the model's rewards are
  (``chunk_reward`` of the counted frames; see
  :class:`wmenv.transitions.RewardModel`);
* ``max_episode_steps`` counts env steps (frames): an episode is truncated
  after ``ceil(max_episode_steps / T)`` chunks;
* the single env takes ``batched_model=True`` too (the time axis after the
  batch of one); ``members=`` cannot be combined with chunks (``ValueError``);
* a reset's observation is a chunk too: ``start_data``'s real frame is
  repeated ``T`` times; other resets return ``(T, ...)`` observations (or
  the last frame only, with ``chunk_frames=False``).

Example:
    >>> import gymnasium as gym
    >>> chunk_space(gym.spaces.Box(-1, 1, (2,)), 4).shape
    (4, 2)
    >>> chunk_space(gym.spaces.Discrete(3), 2)
    MultiDiscrete([3 3])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Optional

import numpy as np
from gymnasium import spaces

from . import _backend
from ._spaces import map_with_space
from .tree import map_leaves
from .vocabulary import OBSERVATION_KEYS

_torch: Any = _backend.torch

__all__ = ["ChunkStep", "check_chunk", "chunk_space"]


def check_chunk(chunk, chunk_reward) -> Optional[int]:
    """``chunk`` as a positive int or ``None``, with ``chunk_reward`` checked beside it."""
    if chunk is None:
        return None
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be None or a positive int (steps per model call), got {chunk!r}")
    if chunk_reward not in ("sum", "last") and not callable(chunk_reward):
        raise ValueError(f"chunk_reward must be 'sum', 'last' or a callable, got {chunk_reward!r}")
    return int(chunk)


def chunk_space(space: spaces.Space, t: int) -> spaces.Space:
    """``space`` repeated ``t`` times on a new leading axis."""
    if isinstance(space, spaces.Box):
        shape = (t,) + space.shape
        return spaces.Box(np.broadcast_to(space.low, shape), np.broadcast_to(space.high, shape), shape, space.dtype)
    if isinstance(space, spaces.Discrete):
        return spaces.MultiDiscrete(np.full(t, space.n), start=np.full(t, space.start), dtype=np.int64)
    if isinstance(space, spaces.MultiDiscrete):
        nvec = np.broadcast_to(space.nvec, (t,) + space.nvec.shape)
        return spaces.MultiDiscrete(nvec, start=np.broadcast_to(space.start, nvec.shape), dtype=space.dtype)
    if isinstance(space, spaces.MultiBinary):
        return spaces.MultiBinary((t,) + tuple(np.atleast_1d(space.n)))
    if isinstance(space, spaces.Dict):
        return spaces.Dict({k: chunk_space(s, t) for k, s in space.spaces.items()})
    if isinstance(space, spaces.Tuple):
        return spaces.Tuple([chunk_space(s, t) for s in space.spaces])
    raise ValueError(
        f"chunk=... supports Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple spaces, got {space!r}"
    )


def calls_for(max_episode_steps: Optional[int], t: Optional[int]) -> Optional[int]:
    """How many chunks make ``max_episode_steps`` env steps."""
    if max_episode_steps is None or not t:
        return max_episode_steps
    return math.ceil(max_episode_steps / t)


def _array(x):
    if _torch is not None and isinstance(x, _torch.Tensor):
        return x
    return np.asarray(x)


class ChunkStep:
    """A transition generating ``t`` steps per call, its result reduced to one
    env step per chunk (see the module's docstring).

    ``batched``: the model's results carry a batch axis before the time axis
    (the vector env, or a single env's ``batched_model``); ``vector``: the
    step is a vector env's (``info["chunk_length"]`` per env). ``frame_space``
    is the observation space of one frame: an observation leaf carries the
    time axis when it has one axis more than its frame (so a model that
    returns only the last frame is not read as a chunk when a frame's first
    axis happens to be ``t`` long)."""

    def __init__(
        self,
        transition: Callable,
        t: int,
        reward,
        frames: bool,
        parse_step,
        batched: bool,
        vector: Optional[bool] = None,
        frame_space: Optional[spaces.Space] = None,
    ):
        self.transition, self.t, self.reward, self.frames = transition, t, reward, frames
        self.parse_step, self.batched = parse_step, batched
        self.vector = batched if vector is None else vector
        self.frame_space = frame_space

    def __call__(self, state, action):
        """One model call: the chunk's steps reduced to one env step."""
        result = self.transition(state, action)
        next_state, obs, reward, terminated, truncated, info = self.parse_step(result, state)
        if isinstance(result, Mapping) and not any(k in result for k in OBSERVATION_KEYS):
            obs = next_state
        lead = 1 if self.batched else 0  # the time axis sits after the batch axis
        info = {} if info is None else dict(info)
        ended = None  # (..., t) bool: True from the terminating frame on
        if terminated is not None:
            term = _array(terminated)
            if term.ndim == lead + 1 and term.shape[lead] == self.t:
                term = term != 0
                ended = _cummax(term)
                terminated = term.any(-1) if not hasattr(term, "dim") else term.any(dim=-1)
        counted = None
        if ended is not None:
            before = _shift(ended)  # frames after the terminating one count for nothing
            counted = ~before
            info["chunk_length"] = _to_numpy(counted.sum(-1) if hasattr(counted, "dim") else counted.sum(-1))
            if not self.vector:
                info["chunk_length"] = int(np.asarray(info["chunk_length"]).reshape(-1)[0])
            if obs is not None:
                obs = _hold(obs, before, lead, self.t, self.frame_space)
        if reward is not None:
            r = _array(reward)
            if r.ndim == lead + 1 and r.shape[lead] == self.t:
                if counted is not None:
                    r = r * (counted if not hasattr(r, "dim") else counted.to(r.dtype))
                if self.reward == "sum":
                    reward = r.sum(-1)
                elif self.reward == "last":
                    last = (counted.sum(-1) - 1) if counted is not None else None
                    reward = r[..., -1] if last is None else _take_last(r, last)
                else:
                    reward = self.reward(r)
        if obs is not None:
            if self.frames:
                _check_frames(obs, lead, self.t, self.frame_space)
            else:
                obs = _last_frame(obs, lead, self.t, self.frame_space)
        return (next_state, obs, reward, terminated, truncated, info)


def _to_numpy(x):
    return x.detach().cpu().numpy() if _torch is not None and isinstance(x, _torch.Tensor) else np.asarray(x)


def _cummax(term):
    if _torch is not None and isinstance(term, _torch.Tensor):
        return _torch.cummax(term.to(_torch.uint8), dim=-1).values.bool()
    return np.maximum.accumulate(term, axis=-1)


def _shift(ended):
    """``ended`` one frame later: True after the terminating frame."""
    if _torch is not None and isinstance(ended, _torch.Tensor):
        return _torch.cat([_torch.zeros_like(ended[..., :1]), ended[..., :-1]], dim=-1)
    return np.concatenate([np.zeros_like(ended[..., :1]), ended[..., :-1]], axis=-1)


def _take_last(r, last):
    if _torch is not None and isinstance(r, _torch.Tensor):
        return r.gather(-1, last.long().unsqueeze(-1)).squeeze(-1)
    return np.take_along_axis(r, np.asarray(last)[..., None], axis=-1)[..., 0]


def _frame_ndims(fn, obs, space):
    """``obs`` with every leaf replaced by ``fn(leaf, ndim)``, ``ndim`` the
    number of axes of that leaf's frame in ``space`` (``None`` where the
    space does not say: a leaf outside it, or a space without a shape)."""

    def with_ndim(leaf, part):
        shape = getattr(part, "shape", None) if isinstance(part, spaces.Space) else None
        return fn(leaf, None if shape is None else len(shape))

    return map_with_space(with_ndim, obs, space)


def _has_time_axis(x, lead: int, t: int, ndim: Optional[int]) -> bool:
    """Whether the array ``x`` carries the chunk's time axis after its ``lead`` batch axes."""
    if x.ndim <= lead or x.shape[lead] != t:
        return False
    return ndim is None or x.ndim == lead + 1 + ndim


def _hold(obs, after, lead, t, space=None):
    """Frames after the terminating one replaced by it, leaf by leaf (leaves
    without the time axis, a last frame only, as they are)."""
    return _frame_ndims(lambda leaf, ndim: _hold_leaf(leaf, after, lead, t, ndim), obs, space)


def _hold_leaf(obs, after, lead, t, ndim=None):
    x = _array(obs)
    if not _has_time_axis(x, lead, t, ndim):
        return obs
    index = (~after).sum(-1) - 1  # the last counted frame of each env
    if _torch is not None and isinstance(x, _torch.Tensor):
        idx = _torch.arange(x.shape[lead], device=x.device).expand(after.shape)
        idx = _torch.where(after.to(x.device), index.unsqueeze(-1).to(x.device), idx)
        shape = tuple(idx.shape) + (1,) * (x.dim() - idx.dim())
        return x.gather(lead, idx.reshape(shape).expand(x.shape))
    idx = np.where(after, np.asarray(index)[..., None], np.arange(x.shape[lead]))
    shape = idx.shape + (1,) * (x.ndim - idx.ndim)
    return np.take_along_axis(x, np.broadcast_to(idx.reshape(shape), x.shape), axis=lead)


def _last_frame(obs, lead, t, space=None):
    def last(leaf, ndim):
        x = _array(leaf)
        if _has_time_axis(x, lead, t, ndim):
            return x[:, -1] if lead else x[-1]
        return leaf

    return _frame_ndims(last, obs, space)


def _check_frames(obs, lead, t, space) -> None:
    """A ValueError with the fix for a leaf that is one frame where the env
    hands out the chunk's frames (``chunk_frames=True``)."""

    def check(leaf, ndim):
        shape = getattr(leaf, "shape", None)
        if ndim is None or shape is None:
            return leaf
        if len(shape) == lead + ndim and not _has_time_axis(_array(leaf), lead, t, ndim):
            raise ValueError(
                f"with chunk={t} the observation is the chunk's {t} frames, shape "
                f"{tuple(shape[:lead]) + (t,) + tuple(shape[lead:])}, but the model returned one frame, shape "
                f"{tuple(shape)}: return every frame, or pass chunk_frames=False to hand out the last frame only"
            )
        return leaf

    _frame_ndims(check, obs, space)


def repeat_frames(obs, t: int, lead: int):
    """A start observation (one real frame) as a chunk: ``t`` copies on a new
    axis after the batch axis (``lead``), leaf by leaf."""

    def repeat(leaf):
        x = _array(leaf)
        if _torch is not None and isinstance(x, _torch.Tensor):
            return _torch.stack([x] * t, dim=lead)
        return np.stack([x] * t, axis=lead)

    return map_leaves(repeat, obs)
