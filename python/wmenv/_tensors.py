"""Tensors for ``output="torch"``: :class:`TorchOutput` conforms model outputs
to the spaces as torch tensors on the model's device, with the same forms,
checks and shape errors as the NumPy path (the cast to the space's dtype
included), leaves left as tensors; :func:`parse_reset` reads a reset's result
by the NumPy path's rules without converting its leaves. :mod:`wmenv.output`
chooses between this and the host results.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _backend
from .tree import MAX_DEPTH, TOO_DEEP, map_leaves
from .tree import first_leaf as _first_leaf
from .vocabulary import OBSERVATION_KEYS

_torch: Any = _backend.torch

__all__ = ["TorchOutput", "first_leaf", "parse_reset"]


def _format_shape(shape) -> str:
    return str(tuple(int(d) for d in shape))


class TorchOutput:
    """Conforms model outputs to the spaces as tensors on ``device``
    (``None``: wherever the model put them)."""

    def __init__(self, device, keep_graph: bool = False):
        self.device = None if device is None else _torch.device(device)
        # grad=True: tensors keep their autograd graph (differentiable imagination)
        self.keep_graph = bool(keep_graph)

    def tensor(self, x, dtype=None, protect=False):
        if isinstance(x, _torch.Tensor):
            # perf: detach() only what carries a graph that is not wanted (under
            # no_grad a model's outputs carry none: no op at all)
            t = x.detach() if x.requires_grad and not self.keep_graph else x
        else:
            t = _torch.as_tensor(np.asarray(x))
        if protect and _foreign(t):
            t = t.clone()
        if self.device is not None and t.device != self.device:
            t = t.to(self.device, non_blocking=True)
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        return t

    def observation(self, obs, spec, path="observation", protect=False):
        """``obs`` conformed to an observation spec (see ``_core_py``), as
        tensors; with ``protect``, leaves over memory torch did not allocate
        (NumPy arrays, foreign buffers) are cloned (see :meth:`secure`)."""
        if obs is None:
            return None
        if spec is None:
            return self._tree(obs, protect)
        kind = spec[0]
        if kind == 0:
            t = self.tensor(obs, protect=protect)
            if t.shape != spec[1]:  # a torch.Size is a tuple
                raise ValueError(f"{path} must have shape {_format_shape(spec[1])}, got {_format_shape(t.shape)}")
            want = _torch_dtype(spec[2])
            return t if t.dtype == want else t.to(want)
        if kind == 1:
            if not isinstance(obs, Mapping):
                raise TypeError(f"{path} must be a mapping for a Dict space, got {type(obs).__name__}")
            out = {}
            for key, sub in zip(spec[1], spec[2]):
                if key not in obs:
                    raise ValueError(f"{path} lacks the key {key!r} that the Dict space requires")
                out[key] = self.observation(obs[key], sub, f"{path}[{key!r}]", protect)
            return out
        if not isinstance(obs, (tuple, list)):
            raise TypeError(f"{path} must be a tuple for a Tuple space, got {type(obs).__name__}")
        items = tuple(obs)
        if len(items) != len(spec[1]):
            raise ValueError(f"{path} must have {len(spec[1])} items for a Tuple space, got {len(items)}")
        return tuple(
            self.observation(item, sub, f"{path}[{i}]", protect) for i, (item, sub) in enumerate(zip(items, spec[1]))
        )

    def _tree(self, x, protect=False):
        return map_leaves(lambda leaf: self.tensor(leaf, protect=protect), x)

    def secure_each(self, items):
        """``items`` (a list, which it clears) as a tuple with every entry
        safe to hand out (see :meth:`secure`): a step's observation, reward
        and flags, checked once the model's raw result is gone."""
        out = []
        for i in range(len(items)):
            if items[i] is None:  # perf: a flag the model did not give
                out.append(None)
                continue
            held = [items[i]]
            items[i] = None  # the one list left holding it is ``held``
            new = _secured(held, 0, 0)
            out.append(held[0] if new is _SAME else new)
        return tuple(out)

    def secure(self, items, index):
        """``items`` (a tuple) with the observation at ``items[index]`` safe to
        hand out: every tensor leaf whose storage anything else still
        references (the model's buffers, the next state, views) cloned; the
        rule of ``wmenv._core_py.secure_observation``, for tensors. Call it
        after the model's raw result is gone."""
        new = _secured(items, index, 0)
        if new is _SAME:
            return items
        out = list(items)
        out[index] = new
        return tuple(out)

    def scalar(self, x, dtype, name):
        """A one-element reward or flag as a 0-d tensor of ``dtype``."""
        if x is None:
            raise TypeError(f"{name} must be a number or a one-element array, got None")
        t = self.tensor(x)
        if t.numel() != 1:
            raise ValueError(
                f"{name} must hold one element, got shape {_format_shape(t.shape)}; use WorldModelVectorEnv for batches"
            )
        if t.dim():  # perf: each of these is an op; none is needed for a 0-d tensor of the dtype
            t = t.reshape(())
        return t if t.dtype == dtype else t.to(dtype)

    def batch(self, x, num_envs, dtype, name):
        """One value per env as a ``(num_envs,)`` tensor of ``dtype``: the
        model's own tensor where it already is one (:meth:`secure` then copies
        it if anything else still shares its memory)."""
        if x is None:
            raise TypeError(f"{name} must be an array of {num_envs} values, got None")
        t = self.tensor(x)
        if t.numel() != num_envs:
            raise ValueError(
                f"{name} must hold {num_envs} values, one per env (shape ({num_envs},)), "
                f"got shape {_format_shape(t.shape)}"
            )
        if t.dim() != 1:  # perf: reshape and to() are ops; skipped where they would change nothing
            t = t.reshape(num_envs)
        return t if t.dtype == dtype else t.to(dtype)

    def scalar_zero(self, dtype, like=None):
        """A 0-d zero (``False``) of ``dtype`` beside ``like``: one op, where
        converting the Python ``0.0``/``False`` would take three."""
        device = self.device if self.device is not None else (like.device if like is not None else None)
        return _torch.zeros((), dtype=dtype, device=device)

    def zeros(self, num_envs, dtype, like=None):
        device = self.device if self.device is not None else (like.device if like is not None else None)
        return _torch.zeros(num_envs, dtype=dtype, device=device)


_MAX_DEPTH, _TOO_DEEP = MAX_DEPTH, TOO_DEEP  # the secure walk below keeps its own loop (perf)
_SAME = object()
_getrefcount = sys.getrefcount
_Tensor = None if _torch is None else _torch.Tensor
_use_count = None if _torch is None else getattr(_torch._C, "_storage_Use_Count", None)


def _foreign(t) -> bool:
    """Memory torch did not allocate for this result (not resizable: NumPy's,
    another library's, or memory already viewed as NumPy)."""
    try:
        return not t.untyped_storage().resizable()
    except Exception:  # no real storage: nothing to tell, so treat it as shared
        return True


def _refs_in(container, key) -> int:
    return _getrefcount(container[key])


def _storage_refs(t) -> int:
    return _use_count(t.untyped_storage()._cdata)  # type: ignore[misc]


_ALONE = _refs_in([object()], 0)
_STORAGE_ALONE = -1 if _use_count is None else _storage_refs(_torch.zeros(2).detach())


def _secured(container, key, depth):
    alone = _getrefcount(container[key]) == _ALONE
    x = container[key]
    if type(x) is _Tensor:  # perf: the usual leaf first, without isinstance's subclass walk
        if alone and _use_count is not None:
            try:
                if _use_count(x.untyped_storage()._cdata) == _STORAGE_ALONE:
                    return _SAME
            except Exception:  # no real storage
                pass
        return x.clone() if x.numel() else _SAME
    if isinstance(x, _torch.Tensor):
        if not x.numel():
            return _SAME
        return x.clone()
    if depth > _MAX_DEPTH:
        raise ValueError(_TOO_DEEP)
    if type(x) is dict:
        out = None
        for k in tuple(x):
            new = _secured(x, k, depth + 1)
            if new is not _SAME:
                if out is None:
                    out = dict(x)
                out[k] = new
        return _SAME if out is None else out
    if type(x) is tuple or type(x) is list:
        items = None
        for i in range(len(x)):
            new = _secured(x, i, depth + 1)
            if new is not _SAME:
                if items is None:
                    items = list(x)
                items[i] = new
        if items is None:
            return _SAME
        return tuple(items) if type(x) is tuple else items
    return _SAME


_TORCH_DTYPES: dict = {}


def _torch_dtype(dtype):
    """Torch's dtype for a NumPy one (perf: cached; finding it costs a tensor op)."""
    found = _TORCH_DTYPES.get(dtype)
    if found is None:
        found = _TORCH_DTYPES[dtype] = _torch.from_numpy(np.zeros(0, dtype)).dtype
    return found


def first_leaf(tree):
    """Any tensor leaf of ``tree`` (to place new tensors beside), or None."""
    return _first_leaf(tree, _is_tensor)


def _is_tensor(x) -> bool:
    return isinstance(x, _torch.Tensor)


def parse_reset(result, obs_spec, default_state, default_obs, matches_structure):
    """The ``(state, raw_obs, info)`` of a reset result, read by the same rules
    as the NumPy path's ``normalize_reset`` (leaves are not converted)."""
    state, info = default_state, None
    if isinstance(result, tuple):
        items = tuple(result)
        if len(items) == 2:
            first, second = items
            if isinstance(second, Mapping) and matches_structure(first, obs_spec):
                obs, info = first, second
            else:
                state, obs = first, second
        elif len(items) == 3:
            state, obs, info = items
        elif not items:
            raise ValueError(
                "a reset returned an empty tuple; "
                "expected obs, (obs, info), (state, obs), (state, obs, info) or a mapping"
            )
        else:
            obs = items[0]
    elif isinstance(result, Mapping):
        if "state" in result:
            state = result["state"]
        obs = next((result[k] for k in OBSERVATION_KEYS if k in result), default_obs)
        info = result.get("info")
    else:
        obs = result
    if state is None:
        state = obs
    if info is not None and not isinstance(info, Mapping):
        raise TypeError(f"info must be a mapping or None, got {type(info).__name__}")
    return state, obs, {} if info is None else dict(info)
