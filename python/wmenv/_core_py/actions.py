"""A policy's action converted for the model: checked, reshaped, cast and
handed over as a tensor (the twin of ``csrc/actions.cpp``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import _asarray, _format_shape, _NDArray

_Tensor: Any = None  # torch.Tensor, set by set_torch
_from_numpy: Any = None  # torch.from_numpy, set by set_torch


def _action_error(size, space_repr, shape):
    return ValueError(
        f"action must hold {size} element{'' if size == 1 else 's'} for {space_repr}, got shape {_format_shape(shape)}"
    )


def _check_discrete(value, low, n, space_repr):
    if value < low or value >= low + n:
        raise ValueError(f"action {value} is outside {space_repr} (valid: {low} to {low + n - 1})")


def _not_integral(action, space_repr):
    return ValueError(f"action {action!r} is not an integer, as {space_repr} requires")


def _check_integral_tensor(action, tensor, space_repr):
    if tensor.is_complex():
        raise _not_integral(action, space_repr)
    if tensor.is_floating_point() and not (bool(tensor.isfinite().all()) and bool((tensor.floor() == tensor).all())):
        raise _not_integral(action, space_repr)


def _check_integral_array(action, raw, space_repr):
    kind = raw.dtype.kind
    if kind in "biu":
        return
    if kind == "O" and raw.size and all(type(v) is int for v in raw.flat):
        return  # Python ints beyond int64: integral, and the range check says where they fall
    if kind != "f" or not (bool(np.isfinite(raw).all()) and bool((np.floor(raw) == raw).all())):
        raise _not_integral(action, space_repr)


def _check_multi(values, low, n, space_repr):
    """Each entry of a MultiDiscrete/MultiBinary action within its own range."""
    flat, lows = values.reshape(-1), low.reshape(-1)
    highs = lows + n.reshape(-1)
    bad = np.flatnonzero((flat < lows) | (flat >= highs))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"action {values.tolist()} is outside {space_repr}: entry {i} is {int(flat[i])} "
            f"(valid: {int(lows[i])} to {int(highs[i]) - 1})"
        )


def _check_range(values, low, n, space_repr):
    """The range of an integer space's action (``values``: its raw array)."""
    if type(n) is int:
        if n >= 0:
            _check_discrete(int(values.item()), low, n, space_repr)
    elif n is not None:
        _check_multi(values, low, n, space_repr)


def convert_action(action, spec):
    """Turns a policy's action into what the model receives.

    Checks that actions of integer spaces are integral (a non-integral
    number or a non-number is a ``ValueError``), the element count and the
    ``Discrete`` range, reshapes to the space's shape, casts to the space's
    dtype and, when the spec says so,
    hands it over as a torch tensor on the spec's device (sharing memory with
    a NumPy input where the dtype allows).
    """
    if spec is None:
        return action
    if type(spec) is not tuple or len(spec) != 10:
        raise TypeError("action spec must be a 10-tuple or None")
    shape, size, dtype, low, n, space_repr, torch_dtype, device, to_torch, integral = spec
    if type(action) is not _NDArray and _Tensor is not None and isinstance(action, _Tensor):
        # a tensor action is detached (a graph never reaches the model through
        # it); perf: only one that carries a graph, since detach() is an op
        tensor = action.detach() if action.requires_grad else action
        plain = tensor
        if integral:
            _check_integral_tensor(action, plain, space_repr)
        if tensor.numel() != size:
            raise _action_error(size, space_repr, tensor.shape)
        if integral:
            _check_range(plain.cpu().numpy(), low, n, space_repr)
        if not to_torch:
            return action
        if tensor.shape != shape:
            tensor = tensor.reshape(shape)
        if tensor.dtype is torch_dtype and (device is None or tensor.device == device):
            return tensor  # perf: no .to() when nothing would change
        return tensor.to(device=device, dtype=torch_dtype)
    if integral:  # checked on the values as given: a cast to int64 could wrap them
        raw = action if type(action) is _NDArray else _asarray(action)
        _check_integral_array(action, raw, space_repr)
        if raw.size != size:
            raise _action_error(size, space_repr, raw.shape)
        _check_range(raw, low, n, space_repr)
    # perf: an exact ndarray of the dtype already is the array (asarray's call is skipped)
    arr = action if type(action) is _NDArray and action.dtype is dtype else _asarray(action, dtype=dtype)
    if arr.size != size:
        raise _action_error(size, space_repr, arr.shape)
    if not to_torch:
        return action
    if arr.shape != shape:
        arr = arr.reshape(shape)
    if not arr.flags.writeable:
        arr = arr.copy()
    try:
        tensor = _from_numpy(arr)
    except ValueError:  # negative strides: torch cannot view them
        tensor = _from_numpy(arr.copy())
    if device is not None:
        tensor = tensor.to(device)
    return tensor
