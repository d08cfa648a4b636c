"""Layers around the model's calls, chosen once when an env is built.

* :class:`GlobalRNG` (``global_rng=True``): a model that samples from torch's
  *global* random generator (``torch.randn(...)`` without a ``generator``, as
  most published world models do) gets the env's own generator swapped in
  for each call, so ``reset(seed=...)`` reproduces it and snapshots replay it
  bit for bit. Cost: three ``get_state`` and three ``set_state`` calls of
  the 5 KiB Mersenne Twister state per call (about 7 µs on a 2-core CPU
  machine), paid only by envs that ask for it. NumPy's and Python's global generators are left alone.
* :class:`TerminationThreshold` (``terminated_threshold=p``): a model whose
  termination head gives a probability (``sigmoid(x)``) has it read as
  ``terminated = probability >= p``; without it, a float that is neither 0
  nor 1 is refused (it would end every episode where it is nonzero).

Example:
    >>> import torch
    >>> layer = TerminationThreshold(lambda s, a: (s, s, 0.0, torch.tensor(0.7), False, None), 0.5, None)
    >>> bool(layer(torch.zeros(1), None)[3])
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Optional

import numpy as np

from . import _backend
from .vocabulary import OBSERVATION_KEYS

_torch: Any = _backend.torch

__all__ = ["GlobalRNG", "TerminationThreshold", "check_threshold"]


def check_threshold(value) -> Optional[float]:
    """``terminated_threshold`` as a float in (0, 1], or ``None``."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"terminated_threshold must be None or a number in (0, 1], got {value!r}")
    value = float(value)
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(f"terminated_threshold must be None or a number in (0, 1], got {value!r}")
    return value


def _at_least(x, threshold):
    if _torch is not None and isinstance(x, _torch.Tensor):
        return x >= threshold
    if isinstance(x, (bool, np.bool_)):
        return x
    return np.asarray(x) >= threshold


class TerminationThreshold:
    """A transition whose ``terminated`` (a probability) is read as
    ``terminated >= threshold``; the result becomes the 6-tuple form, so it
    is read exactly as before in every other respect."""

    def __init__(self, transition: Callable, threshold: float, parse_step):
        self.transition, self.threshold, self.parse_step = transition, threshold, parse_step

    def __call__(self, state, action):
        """The model call with the termination head's probability read as a flag."""
        result = self.transition(state, action)
        if self.parse_step is None:  # already the 6-tuple (the docstring's example)
            parts = tuple(result)
        else:
            parts = self.parse_step(result, state)
        next_state, obs, reward, terminated, truncated, info = parts
        if terminated is not None:
            terminated = _at_least(terminated, self.threshold)
        if isinstance(result, Mapping) and "info" not in result:
            info = None
        return (next_state, obs, reward, terminated, truncated, info)


def _default_generator(device):
    """Torch's global generator of ``device`` (the CPU's, or that CUDA device's)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else _torch.cuda.current_device()
        return _torch.cuda.default_generators[index]
    if device.type == "cpu":
        return _torch.default_generator
    raise ValueError(f"global_rng=True supports CPU and CUDA models, not {device.type!r}")


class GlobalRNG:
    """Runs calls with torch's global generator (of the env generator's
    device) set to the env generator's state, and the env generator advanced
    by what the call drew; the global generator is restored afterwards, also
    when the call raises."""

    def __init__(self, generator):
        if generator is None:
            raise ValueError("global_rng=True needs torch")
        self.generator = generator
        self.default = _default_generator(generator.device)

    def wrap(self, fn: Optional[Callable]) -> Optional[Callable]:
        """``fn`` with the env's generator as torch's global one around each call."""
        if fn is None:
            return None
        generator, default = self.generator, self.default

        def call(*args):
            saved = default.get_state()
            default.set_state(generator.get_state())
            try:
                return fn(*args)
            finally:
                generator.set_state(default.get_state())
                default.set_state(saved)

        return call


def check_success_threshold(value) -> Optional[float]:
    """``success_threshold`` as a finite float, or ``None``."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"success_threshold must be None or a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"success_threshold must be a finite number, got {value!r}")
    return float(value)


def _as_scores(score, batched: bool) -> np.ndarray:
    """A reward model's scores as float32 NumPy: ``(num_envs,)`` batched, else ``()``."""
    if _torch is not None and isinstance(score, _torch.Tensor):
        score = score.detach().cpu().numpy()
    scores = np.asarray(score, np.float32)
    return scores.reshape(-1) if batched else scores.reshape(())


class RewardModel:
    """A transition whose reward comes from ``reward_model(observations)``: a
    callable or module that scores what the world model generated (batched
    as the env's observations are), run under the env's autograd and device
    rules like the model itself. The world model's own reward, if it gave
    one, is kept as ``info["model_reward"]``. With ``success_threshold``, a
    score at or above it sets ``terminated`` and ``info["success"]``.

    With ``relative``, the reward is the difference of successive scores,
    ``score(obs_t) - score(obs_{t-1})`` (float32, returned as NumPy), the
    first step of an episode differenced against the score of its reset
    observation: :meth:`rebase` scores each reset's observations (one more
    reward-model call per reset), and the previous scores are part of the
    env's snapshots. An episode's relative rewards sum to its last score
    minus its first.

    With action chunks whose observations are the chunk's frames
    (``frames=(chunk, chunk_reward)``), the reward model may score the chunk
    as a whole (one score per env) or each frame (``(..., T)`` scores): then
    the step's reward is ``chunk_reward`` of the scores of the frames the
    chunk counted (up to a termination inside it), success is any counted
    frame's score reaching the threshold, and ``relative`` differences the
    last counted frame's score against the previous step's.
    """

    def __init__(
        self,
        transition: Callable,
        reward_model: Callable,
        success_threshold,
        parse_step,
        batched: bool,
        relative: bool = False,
        to_model: Optional[Callable] = None,
        frames: Optional[tuple] = None,
    ):
        if not callable(reward_model):
            raise ValueError(f"reward_model must be a callable or module, got {type(reward_model).__name__}")
        self.transition, self.reward_model, self.parse_step = transition, reward_model, parse_step
        self.success_threshold, self.batched = success_threshold, batched
        self.relative = bool(relative)
        self.to_model = (lambda obs: obs) if to_model is None else to_model
        self.base: Optional[np.ndarray] = None  # the previous observations' scores (relative)
        self.frames = frames  # (chunk, chunk_reward) where observations are a chunk's frames

    def _per_frame(self, score) -> bool:
        """Whether ``score`` scores each of a chunk's frames: ``(..., T)``
        beside one score per env (``(num_envs,)``, or one for a single env)."""
        if self.frames is None or not hasattr(score, "shape"):
            return False
        shape = tuple(score.shape)
        if not shape or shape[-1] != self.frames[0]:
            return False
        return len(shape) == 2 if self.batched else int(np.prod(shape[:-1])) == 1

    def _frames(self, score, info):
        """A chunk's per-frame scores reduced to one per env: the frames the
        chunk counted (all of them, or up to its terminating frame, as
        ``info["chunk_length"]`` says), their success (any frame's score at
        the threshold), the reward (``chunk_reward`` of their scores: sum, last
        counted frame, or the callable of the masked scores) and the last
        counted frame's score (what ``relative`` differences)."""
        t, how = self.frames
        length = info.get("chunk_length")
        counted = np.ones(score.shape, bool)
        if length is not None:
            counted = (np.arange(t) < np.asarray(length).reshape(-1, 1)).reshape(score.shape)
        last = counted.sum(-1) - 1
        success = None
        if _torch is not None and isinstance(score, _torch.Tensor):
            mask = _torch.as_tensor(counted, device=score.device)
            if self.success_threshold is not None:
                success = ((score >= self.success_threshold) & mask).any(dim=-1)
            masked = score * mask.to(score.dtype)
            idx = _torch.as_tensor(last, device=score.device).long().unsqueeze(-1)
            final = score.gather(-1, idx).squeeze(-1)
        else:
            score = np.asarray(score)
            if self.success_threshold is not None:
                success = ((score >= self.success_threshold) & counted).any(-1)
            masked = score * counted
            final = np.take_along_axis(score, last[..., None], axis=-1)[..., 0]
        if how == "sum":
            reward = masked.sum(-1)
        elif how == "last":
            reward = final
        else:
            reward = how(masked)
        return reward, success, final

    def rebase(self, observations, mask=None) -> None:
        """Relative rewards: the scores of a reset's observations (the env's
        own, converted back to what the model gives) become the previous
        scores of the envs ``mask`` selects (all of them without a mask)."""
        if not self.relative:
            return
        score = self.reward_model(self.to_model(observations))
        if self._per_frame(score):  # a reset's frames: the last one's score is where the episode stands
            score = score[..., -1]
        scores = _as_scores(score, self.batched)
        if mask is None or self.base is None:
            self.base = scores.copy()
        else:
            self.base = np.where(np.asarray(mask, bool), scores, self.base).astype(np.float32)

    def __call__(self, state, action):
        result = self.transition(state, action)
        next_state, obs, reward, terminated, truncated, info = self.parse_step(result, state)
        if isinstance(result, Mapping) and not any(k in result for k in OBSERVATION_KEYS):
            obs = next_state if obs is None else obs
        info = {} if info is None else dict(info)
        if reward is not None:
            info["model_reward"] = reward
        score = self.reward_model(obs)
        success = None
        if self._per_frame(score):  # one score per frame of the chunk
            reward_of_chunk, success, final = self._frames(score, info)
            score = final if self.relative else reward_of_chunk
        if self.success_threshold is not None:
            success = _at_least(score, self.success_threshold) if success is None else success
            if _torch is not None and isinstance(success, _torch.Tensor):
                success_np = success.detach().cpu().numpy().reshape(-1).astype(bool)
            else:
                success_np = np.asarray(success, bool).reshape(-1)
            info["success"] = success_np if self.batched else bool(success_np[0])
            if terminated is None:
                terminated = success
            elif _torch is not None and isinstance(terminated, _torch.Tensor):
                terminated = terminated.bool() | _torch.as_tensor(success_np, device=terminated.device).reshape(
                    terminated.shape
                )
            else:
                terminated = np.asarray(terminated, bool).reshape(success_np.shape) | success_np
                terminated = terminated if self.batched else bool(terminated.reshape(-1)[0])
        if self.relative:
            if self.base is None:
                raise RuntimeError("relative_reward: call reset() before step()")
            scores = _as_scores(score, self.batched)
            if scores.shape != self.base.shape:
                raise ValueError(
                    f"reward_model gave scores of shape {scores.shape}, its scores of the reset observations had "
                    f"shape {self.base.shape}"
                )
            info["score"] = scores if self.batched else float(scores)
            score = (scores - self.base).astype(np.float32)
            self.base = scores
            if not self.batched:
                score = float(score)
        return (next_state, obs, score, terminated, truncated, info)
