"""Device results to host memory with one synchronisation per step.

A model on a GPU returns its observation, reward and flags as device tensors.
Converting each on its own (``.cpu()``, ``float(t)``) waits for the device once
per field; here every device tensor is copied into pinned host memory with a
non-blocking copy, and the device is waited for once, after the last copy.
The state is never staged: the next model call needs it where it is.
"""

from __future__ import annotations

from . import _backend
from .tree import any_leaf

_torch = _backend.torch
_MAX_DEPTH = 64
_TOO_DEEP = (
    f"an observation nests containers more than {_MAX_DEPTH} levels deep; "
    "a list or dict that contains itself cannot be converted"
)


def is_device_tensor(x) -> bool:
    """A tensor that does not live in host memory."""
    return _torch is not None and isinstance(x, _torch.Tensor) and not x.is_cpu


def contains_device_tensor(tree) -> bool:
    """Whether any leaf of ``tree`` (dicts, tuples, lists) is a device tensor."""
    return any_leaf(is_device_tensor, tree)


def _host_buffer(source):
    """A page-locked host buffer for ``source`` (pageable without CUDA)."""
    return _torch.empty(source.shape, dtype=source.dtype, pin_memory=bool(source.is_cuda))


def _copy_non_blocking(host, source):
    """CUDA copies run asynchronously and are waited for once per step; other
    accelerators (``mps``, ``xpu``, ...) copy blocking, so nothing is read
    before it lands whatever that backend's stream rules are."""
    host.copy_(source, non_blocking=source.device.type == "cuda")


def _synchronize(device):
    """Waits for ``device``'s queued work: CUDA's current stream, or the
    backend's own synchronize for any other accelerator."""
    if device.type == "cuda":
        _torch.cuda.current_stream(device).synchronize()
        return
    if device.type == "cpu":
        return
    accelerator = getattr(_torch, "accelerator", None)
    if accelerator is not None and callable(getattr(accelerator, "synchronize", None)):
        try:
            accelerator.synchronize(device)
            return
        except (RuntimeError, ValueError):  # not the current accelerator: its own module below
            pass
    module = getattr(_torch, device.type, None)
    if module is not None and callable(getattr(module, "synchronize", None)):
        module.synchronize()


class HostStager:
    """Copies a step's device leaves to host memory, then waits once.

    Every picked leaf is copied with a non-blocking copy into a page-locked
    buffer, and each producing device's current stream is synchronised once,
    after the last copy: one synchronisation per step, not one per field.

    Buffers: a *fresh* buffer per leaf per step, from torch's caching host
    allocator, which hands a block out again only once every tensor and array
    on it is gone. The arrays wmenv returns own their buffer's storage, so a
    later step never writes into memory a returned array views (no pool of
    our own that could hand a buffer out while it is still viewed).

    ``allocate(source)``, ``copy(host, source)`` and ``synchronize(device)``
    can be injected (the CPU tests do); ``synchronizations``, ``copies`` and
    ``buffers`` count what was done.
    """

    def __init__(self, allocate=None, copy=None, synchronize=None, predicate=None):
        self.allocate = _host_buffer if allocate is None else allocate
        self.copy = _copy_non_blocking if copy is None else copy
        self.synchronize = _synchronize if synchronize is None else synchronize
        self.predicate = predicate
        self.synchronizations = 0
        self.copies = 0

    def stage(self, tree):
        """``tree`` with every picked leaf (default: device tensors) in host
        memory; other leaves as they are."""
        predicate = is_device_tensor if self.predicate is None else self.predicate
        devices: list = []

        def copy(x, depth=0):
            if depth > _MAX_DEPTH:
                raise ValueError(_TOO_DEEP)
            if isinstance(x, dict):
                return {k: copy(v, depth + 1) for k, v in x.items()}
            if isinstance(x, tuple):
                return tuple(copy(v, depth + 1) for v in x)
            if isinstance(x, list):
                return [copy(v, depth + 1) for v in x]
            if not predicate(x):
                return x
            source = x.detach()
            host = self.allocate(source)
            self.copy(host, source)
            self.copies += 1
            if source.device not in devices:
                devices.append(source.device)
            return host

        out = copy(tree)
        for device in devices:
            self.synchronize(device)
            self.synchronizations += 1
        return out


def stage_to_host(tree, predicate=None):
    """``tree`` with every leaf that ``predicate`` picks (default: device
    tensors) copied to host memory, with one synchronisation per device."""
    return HostStager(predicate=predicate).stage(tree)


def to_device(tensor, device, allocate=None):
    """A host tensor (an action) on ``device`` through a page-locked buffer and
    a non-blocking copy on the current stream: no pageable round trip. CPU
    devices (or ``None``) get the tensor as it is."""
    if device is None or device.type == "cpu":
        return tensor
    if not tensor.is_cpu:  # already on an accelerator: a device-to-device move, no host round trip
        return tensor.to(device, non_blocking=True)
    if device.type != "cuda":  # pinned buffers and stream ordering are CUDA's: elsewhere a plain blocking copy
        return tensor.to(device)
    pinned = _torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True) if allocate is None else allocate(tensor)
    pinned.copy_(tensor)
    return pinned.to(device, non_blocking=True)


def staged_result(parse_step, result, state, action, reward_fn, terminal_fn, stager=None):
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
    stager = HostStager() if stager is None else stager
    obs, reward, terminated, truncated = stager.stage((obs, reward, terminated, truncated))
    return (next_state, obs, reward, terminated, truncated, info)
