"""Device results to host memory with one synchronisation per step.

A model on a GPU returns its observation, reward and flags as device tensors.
Converting each on its own (``.cpu()``, ``float(t)``) waits for the device once
per field; here every device tensor is copied into pinned host memory with a
non-blocking copy, and the device is waited for once, after the last copy.
The state is never staged: the next model call needs it where it is.
"""

from __future__ import annotations

from . import _backend

_torch = _backend.torch


def is_device_tensor(x) -> bool:
    """A tensor that does not live in host memory."""
    return _torch is not None and isinstance(x, _torch.Tensor) and not x.is_cpu


def contains_device_tensor(tree) -> bool:
    """Whether any leaf of ``tree`` (dicts, tuples, lists) is a device tensor."""
    if isinstance(tree, dict):
        return any(contains_device_tensor(v) for v in tree.values())
    if isinstance(tree, (tuple, list)):
        return any(contains_device_tensor(v) for v in tree)
    return is_device_tensor(tree)


def stage_to_host(tree, predicate=None):
    """``tree`` with every leaf that ``predicate`` picks copied to host memory.

    Copies are issued non-blocking into pinned buffers (when CUDA is there),
    then each device involved is synchronised once. Leaves not picked (by
    default: all but device tensors) are returned as they are.
    """
    predicate = is_device_tensor if predicate is None else predicate
    devices = set()
    pin = _torch is not None and _torch.cuda.is_available()

    def copy(x):
        if isinstance(x, dict):
            return {k: copy(v) for k, v in x.items()}
        if isinstance(x, tuple):
            return tuple(copy(v) for v in x)
        if isinstance(x, list):
            return [copy(v) for v in x]
        if not predicate(x):
            return x
        source = x.detach()
        host = _torch.empty(source.shape, dtype=source.dtype, pin_memory=pin and source.is_cuda)
        host.copy_(source, non_blocking=True)
        if source.is_cuda:
            devices.add(source.device)
        return host

    out = copy(tree)
    for device in devices:
        _torch.cuda.current_stream(device).synchronize()
    return out


def staged_result(parse_step, result, state, action, reward_fn, terminal_fn):
    """A step result re-formed as the 6-tuple ``(next_state, obs, reward,
    terminated, truncated, info)`` with everything but the state in host memory.

    ``reward_fn``/``terminal_fn`` run first, on the raw device values, as they
    would on the host path; a value still missing stays ``None`` for the
    normalizer to default.
    """
    next_state, obs, reward, terminated, truncated, info = parse_step(result, state)
    if reward is None and reward_fn is not None:
        reward = reward_fn(next_state, obs, action)
    if terminated is None and terminal_fn is not None:
        terminated = terminal_fn(next_state, obs, action)
    obs, reward, terminated, truncated = stage_to_host((obs, reward, terminated, truncated))
    return (next_state, obs, reward, terminated, truncated, info)
