"""Rewards, flags and per-env batches of them, and the vector env's step
counters (the twin of ``csrc/scalars.cpp``)."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .arrays import to_numpy
from .common import _BOOL, _INT64, _INT64_MAX, _asarray, _format_shape, _NDArray

_Tensor: Any = None  # torch.Tensor, set by set_torch


def _one_element(x, name):
    if x is None:
        raise TypeError(f"{name} must be a number or a one-element array, got None")
    if _Tensor is not None and isinstance(x, _Tensor):
        if x.numel() != 1:
            raise ValueError(
                f"{name} must hold one element, got shape {_format_shape(x.shape)}; use WorldModelVectorEnv for batches"
            )
        return x.item()
    raw = x
    if not isinstance(x, (np.ndarray, np.generic)):
        x = _asarray(x)
    if x.size != 1:
        raise ValueError(
            f"{name} must hold one element, got shape {_format_shape(x.shape)}; use WorldModelVectorEnv for batches"
        )
    value = x.item()
    if x.dtype.kind in "USV" or isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number or a one-element array of numbers, got {raw!r}")
    return value


def as_reward(x) -> float:
    """A one-element reward as a Python float, at full precision."""
    t = type(x)
    if t is float:  # perf: exact types first, before the general conversion
        return x
    if t is int or t is bool:
        return float(x)
    if t is _Tensor:  # perf: _one_element's answer, without its checks; its errors when item() refuses
        try:
            return float(x.item())
        except RuntimeError:
            pass
    return float(_one_element(x, "reward"))


def as_flag(x, name: str) -> bool:
    """A one-element termination or truncation flag as a Python bool."""
    t = type(x)
    if t is bool:
        return x
    if t is _Tensor:
        try:
            value = x.item()
        except RuntimeError:
            value = _one_element(x, name)
    else:
        value = _one_element(x, name)
    if type(value) is float and value != 0.0 and value != 1.0:
        raise _not_a_flag(name, value)
    return bool(value)


def _not_a_flag(name, value):
    """A floating flag that is neither 0 nor 1: likely a probability head."""
    return ValueError(
        f"{name} is {value!r}, a float that is neither 0 nor 1: a termination head that gives a probability "
        f"would end every episode where it is nonzero; threshold it with terminated_threshold=0.5 (an env "
        f"option), or return a bool"
    )


def as_batch(x, num_envs: int, dtype, name: str):
    """A new ``(num_envs,)`` array of ``dtype`` holding one value per env."""
    dtype = np.dtype(dtype)
    if x is None:
        raise TypeError(f"{name} must be an array of {num_envs} values, got None")
    arr = None
    t = type(x)
    if t is _Tensor:  # perf: the values are copied below: numpy()'s view needs no owner of its own
        try:
            arr = x.numpy()
        except Exception:  # autograd, conjugate or negative bits, another device: to_numpy's way
            pass
    if arr is None:
        arr = to_numpy(x)
    if arr.size != num_envs:
        raise ValueError(
            f"{name} must hold {num_envs} values, one per env (shape ({num_envs},)), "
            f"got shape {_format_shape(arr.shape)}"
        )
    _check_numbers(arr, name)
    if dtype == _BOOL and arr.dtype.kind == "f":
        flat = arr.reshape(num_envs)
        bad = np.flatnonzero((flat != 0) & (flat != 1))
        if bad.size:
            raise _not_a_flag(f"{name} of env {int(bad[0])}", float(flat[bad[0]]))
    return arr.reshape(num_envs).astype(dtype)


def _check_numbers(arr, name):
    """Strings are no numbers: ``"False"`` would be True and ``"2"`` 2.0."""
    kind = arr.dtype.kind
    if kind in "USV" or (kind == "O" and any(isinstance(v, (str, bytes)) for v in arr.flat)):
        raise ValueError(f"{name} must hold numbers, one per env, got an array of dtype {arr.dtype}")


def _check_counter(x, name, kind, n):
    if type(x) is not _NDArray or x.dtype != kind or x.ndim != 1:
        raise TypeError(f"{name} must be a 1-d {kind} array, got {type(x).__name__}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries, got {x.shape[0]}")


def count_steps(elapsed, terminated, truncated, max_episode_steps):
    """The vector env's per-step bookkeeping: ``elapsed + 1`` as a new
    array, ``truncated`` set (in place) where that reaches
    ``max_episode_steps`` (``None``: no limit), and ``terminated | truncated``
    as a new array. Returns ``(elapsed, ended)``."""
    _check_counter(elapsed, "elapsed", _INT64, None)
    n = elapsed.shape[0]
    _check_counter(terminated, "terminated", _BOOL, n)
    _check_counter(truncated, "truncated", _BOOL, n)
    if not truncated.flags.writeable:
        raise ValueError("truncated must be writeable")
    if n and int(elapsed.max()) >= _INT64_MAX:
        raise ValueError("a step counter is at its largest value (2**63 - 1) and cannot count another step")
    elapsed = elapsed + 1
    if max_episode_steps is not None:
        truncated |= elapsed >= operator.index(max_episode_steps)
    return elapsed, terminated | truncated
