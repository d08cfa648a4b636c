"""Leaves to NumPy, zero-copy where memory allows, and the ownership rule
that decides which observation leaves are copied before they are handed
out (the twin of ``csrc/arrays.cpp`` and the ownership half of
``csrc/observations.cpp``)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .common import _DLPACK_CPU, _MAX_DEPTH, _TOO_DEEP, _asarray, _NDArray

_Tensor: Any = None  # torch.Tensor, set by set_torch


def _tensor_to_numpy(x):
    """A CPU view of a tensor whose owner is a fresh tensor object over the same
    storage (so that no later ``set_``/``.data =`` on ``x`` frees the memory;
    ``.numpy()`` makes the storage non-resizable, so ``resize_`` cannot either).
    Conjugate and negative views are resolved (a copy) so values are right."""
    if type(x) is _Tensor:
        # perf: the usual CPU tensor takes one detach and one numpy; anything else the long way
        try:
            return x.detach().numpy()
        except Exception:  # the long way below raises what applies
            pass
    name = type(x).__name__
    x = x.detach()
    if not x.is_cpu:
        x = x.cpu()
    if x.is_conj():
        x = x.resolve_conj()
    if x.is_neg():
        x = x.resolve_neg()
    arr = x.numpy()
    if type(arr) is not _NDArray:
        raise TypeError(f"{name}.numpy() returned a {type(arr).__name__}, not a numpy.ndarray")
    return arr


def _leaf(x, protect=False):
    """``to_numpy(x)``; with ``protect``, a tensor whose memory torch did not
    allocate (a tensor over a NumPy array or another library's buffer, or
    memory already viewed as NumPy: its storage is not resizable) is copied,
    since whoever owns that memory can write into it unseen."""
    if type(x) is _Tensor:
        # perf: a plain CPU tensor takes one detach and one numpy (and, to
        # protect, one storage look-up); anything else the long way
        try:
            if protect and not x.untyped_storage().resizable():
                return x.detach().numpy().copy()
            return x.detach().numpy()
        except Exception:  # the long way below raises what applies
            pass
    if protect and _Tensor is not None and isinstance(x, _Tensor) and _foreign_memory(x):
        return to_numpy(x).copy()
    return to_numpy(x)


def _foreign_memory(x) -> bool:
    """Whether a tensor's host memory is not torch's own fresh allocation
    (its storage is not resizable); unknowable storage counts as foreign."""
    try:
        return bool(x.is_cpu) and not x.untyped_storage().resizable()
    except Exception:  # no real storage: the conversion decides what happens
        return True


def _dlpack_device(x):
    device = x.__dlpack_device__()
    if type(device) is not tuple or len(device) != 2:
        raise TypeError(
            f"{type(x).__name__}.__dlpack_device__() must return a (device_type, device_id) tuple, got {device!r}"
        )
    return device[0]


def to_numpy(x):
    """One leaf as a NumPy array; CPU tensors and DLPack/array-interface
    objects share their memory with the result."""
    if type(x) is _NDArray:  # perf: an exact ndarray first, before isinstance's subclass walk
        return x
    if _Tensor is not None and isinstance(x, _Tensor):
        return _tensor_to_numpy(x)
    if isinstance(x, _NDArray):
        return x
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        if _dlpack_device(x) == _DLPACK_CPU:
            return np.from_dlpack(x)
    return _asarray(x)


# Ownership: after a step, an observation leaf may keep viewing the model's
# memory only if nothing but the observation still references that memory
# (the model made it for this result and kept no reference to it, and it is
# no part of the next state); anything else the model could write into again
# before the user is done with it, so it is copied. References are counted:
# Python references to each array and to what it views, and torch's own count
# of the tensors on a storage. The counts of memory only the observation
# holds are measured once, on this interpreter and torch (_calibrate), so
# nothing here depends on how many references a Python version keeps.

_getrefcount = sys.getrefcount
_use_count: Any = None  # torch._C._storage_Use_Count, when torch is registered
_SAME = object()  # a subtree needing no copy


def _refs_in(container, key) -> int:
    return _getrefcount(container[key])


def _base_refs(arr) -> int:
    return _getrefcount(arr.base)


def _storage_refs(tensor) -> int:
    return _use_count(tensor.untyped_storage()._cdata)


_ALONE = _refs_in([object()], 0)
_BASE_ALONE = _base_refs(np.zeros(2)[1:])
_STORAGE_ALONE = -1  # set by set_torch


def _exclusive(arr) -> bool:
    """Whether nothing but ``arr`` (itself referenced only by its container)
    references the memory it views, following its chain of bases."""
    while True:
        if arr.base is None:
            return True
        # perf: _base_refs(arr) and _storage_refs(base) inlined (the same expressions)
        if _getrefcount(arr.base) != _BASE_ALONE:
            return False
        base: Any = arr.base
        if type(base) is _NDArray:
            arr = base
            continue
        if _use_count is not None and type(base) is _Tensor:
            return _use_count(base.untyped_storage()._cdata) == _STORAGE_ALONE
        return False  # memory of another library: who else holds it is unknown


def _secured(container, key, depth):
    """``container[key]`` with every shared leaf copied, or ``_SAME``."""
    alone = _refs_in(container, key) == _ALONE
    x = container[key]
    t = type(x)
    if t is _NDArray:
        if not x.size or (alone and _exclusive(x)):
            return _SAME
        return x.copy()
    if depth > _MAX_DEPTH:
        raise ValueError(_TOO_DEEP)
    if t is dict:
        out = None
        for k in tuple(x):
            new = _secured(x, k, depth + 1)
            if new is not _SAME:
                if out is None:
                    out = dict(x)
                out[k] = new
        return _SAME if out is None else out
    if t is tuple or t is list:
        items = None
        for i in range(len(x)):
            new = _secured(x, i, depth + 1)
            if new is not _SAME:
                if items is None:
                    items = list(x)
                items[i] = new
        if items is None:
            return _SAME
        return tuple(items) if t is tuple else items
    return _SAME


def secure_observation(items, index: int):
    """``items`` (a tuple) with the observation at ``items[index]`` made safe
    to hand to a user: every NumPy leaf that still shares its memory with
    anything else (the model's own buffers, the next state, views of either,
    another leaf) replaced by a copy; a leaf nothing else references keeps
    viewing the model's memory (zero-copy).

    Call it after the model's raw result is gone, holding the observation
    through ``items`` alone (as a core function returns it): references held
    anywhere else count as sharing.
    """
    if type(items) is not tuple:
        raise TypeError(f"items must be a tuple, got {type(items).__name__}")
    if not -len(items) <= index < len(items):
        raise IndexError(f"index {index} is outside a tuple of {len(items)} items")
    # perf: the usual observation, one array, without the walker's calls
    # (_refs_in's expression, inlined: the same count)
    alone = _getrefcount(items[index]) == _ALONE
    obs = items[index]
    if type(obs) is _NDArray:
        if not obs.size or (alone and _exclusive(obs)):
            return items
        out = list(items)
        out[index] = obs.copy()
        return tuple(out)
    del obs
    new = _secured(items, index, 0)
    if new is _SAME:
        return items
    out = list(items)
    out[index] = new
    return tuple(out)
