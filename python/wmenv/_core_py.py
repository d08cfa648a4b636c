"""Pure-Python implementation of wmenv's per-step work.

This module is the twin of the compiled ``wmenv._core``: the same functions,
signatures, results, error types and error messages. ``wmenv._backend`` picks
one of the two; ``tests/test_core_parity.py`` holds them to each other.

The functions take *specs*, plain tuples precompiled from Gymnasium spaces by
``wmenv._spaces``, so that neither implementation touches a space per step:

* observation spec: ``None`` (no constraint: leaves become NumPy),
  ``(0, shape, dtype)`` for array spaces, ``(1, keys, subspecs)`` for ``Dict``
  and ``(2, subspecs)`` for ``Tuple``.
* step plan (:func:`run_step`): ``(transition, action_spec, obs_spec,
  reward_fn, terminal_fn, info_model_state, protect, cast_hook,
  grad_switch, max_episode_steps)``.
* batch step plan (:func:`run_step_batch`): ``(transition, action_spec,
  obs_spec, reward_fn, terminal_fn, num_envs, protect, cast_hook,
  grad_switch, max_episode_steps, action_check)``.
* action spec: ``None`` (pass the action through) or ``(shape, size, dtype,
  low, n, space_repr, torch_dtype, device, to_torch, integral)``; ``n`` is
  ``-1`` unless the space is ``Discrete``; ``integral`` is true for the
  integer spaces (``Discrete``, ``MultiDiscrete``, ``MultiBinary``).

Example:
    >>> import numpy as np
    >>> from wmenv import _core_py as core
    >>> core.as_reward(np.array([0.1]))
    0.1
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .vocabulary import OBSERVATION_KEYS  # one list for both backends and every module

__all__ = [
    "OBSERVATION_KEYS",
    "as_batch",
    "as_flag",
    "as_reward",
    "conform_observation",
    "convert_action",
    "count_steps",
    "matches_structure",
    "normalize_reset",
    "normalize_step",
    "normalize_step_batch",
    "parse_step",
    "run_step",
    "run_step_batch",
    "secure_observation",
    "set_torch",
    "to_numpy",
]

_STEP_FORMS = (
    "a mapping, (next_state, obs, reward, terminated, truncated, info), "
    "(obs, reward, terminated, truncated, info), (obs, reward, done, info), "
    "(next_state, obs, reward), (next_state, obs), (next_state,) or a bare next state"
)

_Tensor: Any = None
_from_numpy = None
_NDArray = np.ndarray
_asarray = np.asarray
_zeros = np.zeros
_FLOAT32 = np.dtype(np.float32)
_BOOL = np.dtype(np.bool_)
_INT64 = np.dtype(np.int64)
_INT64_MAX = int(np.iinfo(np.int64).max)
_DLPACK_CPU = 1


def set_torch(module) -> None:
    """Registers the torch module (or ``None``) whose tensors get fast paths.

    The module is checked before anything changes: one without a ``Tensor``
    type and a callable ``from_numpy`` is a ``TypeError`` and leaves the
    previous registration in place.
    """
    global _Tensor, _from_numpy, _use_count, _STORAGE_ALONE
    if module is None:
        _Tensor = None
        _from_numpy = None
        _use_count = None
        return
    tensor = getattr(module, "Tensor", None)
    from_numpy = getattr(module, "from_numpy", None)
    if not isinstance(tensor, type) or not callable(from_numpy):
        raise TypeError(
            f"set_torch needs the torch module or None, got {module!r}, which lacks a Tensor type or from_numpy"
        )
    _Tensor = tensor
    _from_numpy = from_numpy
    _use_count, _STORAGE_ALONE = _calibrate(module)


def _calibrate(module):
    """torch's storage use count of memory that only one converted array
    views, measured on a probe; ``(None, -1)`` where torch cannot tell (every
    tensor leaf is then copied)."""
    count = getattr(getattr(module, "_C", None), "_storage_Use_Count", None)
    zeros = getattr(module, "zeros", None)
    if not callable(count) or not callable(zeros):
        return None, -1
    try:
        probe = zeros(2).detach().numpy()
        return count, count(probe.base.untyped_storage()._cdata)
    except Exception:  # a torch-like module without storages
        return None, -1


def _format_shape(shape) -> str:
    return str(tuple(int(d) for d in shape))


def _tensor_to_numpy(x):
    """A CPU view of a tensor whose owner is a fresh tensor object over the same
    storage (so that no later ``set_``/``.data =`` on ``x`` frees the memory;
    ``.numpy()`` makes the storage non-resizable, so ``resize_`` cannot either).
    Conjugate and negative views are resolved (a copy) so values are right."""
    if type(x) is _Tensor:
        try:  # the usual CPU tensor: one detach and one numpy; anything else the long way
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
    if type(x) is _NDArray:
        return x
    if _Tensor is not None and isinstance(x, _Tensor):
        return _tensor_to_numpy(x)
    if isinstance(x, _NDArray):
        return x
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        if _dlpack_device(x) == _DLPACK_CPU:
            return np.from_dlpack(x)
    return _asarray(x)


_MAX_DEPTH = 64
_TOO_DEEP = (
    f"an observation nests containers more than {_MAX_DEPTH} levels deep; "
    "a list or dict that contains itself cannot be converted"
)


def _pairs(mapping):
    """A snapshot of ``mapping.items()``, each checked to be a (key, value) pair."""
    pairs = tuple(mapping.items())
    for pair in pairs:
        if (type(pair) is not tuple and type(pair) is not list) or len(pair) != 2:
            raise TypeError(f"{type(mapping).__name__}.items() must give (key, value) pairs, got {pair!r}")
    return pairs


def _to_numpy_tree(x, depth, protect):
    if x is None:
        return None
    if depth > _MAX_DEPTH:
        raise ValueError(_TOO_DEEP)
    if isinstance(x, Mapping):
        return {k: _to_numpy_tree(v, depth + 1, protect) for k, v in _pairs(x)}
    if isinstance(x, tuple):
        return tuple([_to_numpy_tree(v, depth + 1, protect) for v in tuple(x)])
    if isinstance(x, list):
        return [_to_numpy_tree(v, depth + 1, protect) for v in tuple(x)]
    return _leaf(x, protect)


_checked_specs: dict = {}  # id -> spec: specs live as long as their env, so check each once


def _spec_kind(spec) -> int:
    """The kind of a well-formed observation spec; TypeError for anything else."""
    if _checked_specs.get(id(spec)) is spec:
        return spec[0]  # type: ignore[index]  # checked when it was cached
    kind = _check_spec(spec)
    if len(_checked_specs) > 4096:
        _checked_specs.clear()
    _checked_specs[id(spec)] = spec  # holding the spec keeps its id from being reused
    return kind


def _check_spec(spec) -> int:
    if type(spec) is tuple and spec:
        kind = spec[0]
        if type(kind) is int:
            if kind == 0 and len(spec) == 3 and type(spec[1]) is tuple and isinstance(spec[2], np.dtype):
                return 0
            if (
                kind == 1
                and len(spec) == 3
                and type(spec[1]) is tuple
                and type(spec[2]) is tuple
                and len(spec[1]) == len(spec[2])
            ):
                return 1
            if kind == 2 and len(spec) == 2 and type(spec[1]) is tuple:
                return 2
    raise TypeError(f"observation spec must be None or a tuple made by wmenv._spaces.observation_spec, got {spec!r}")


def conform_observation(obs, spec, path: str = "observation", protect=False, cast_hook=None):
    """Converts ``obs`` to NumPy and makes it fit ``spec``.

    Array leaves are cast to the spec's dtype; a shape that differs raises
    ``ValueError`` naming both shapes. ``None`` passes through (the caller
    samples the space). ``protect`` (for observations handed to a user):
    a tensor leaf whose memory torch did not allocate is copied (see
    :func:`secure_observation` for the rest of the rule). ``cast_hook``,
    when given, is called as ``cast_hook(path, array, dtype)`` before an
    array leaf is cast to the spec's dtype (only casting leaves pay for it).
    """
    return _conform(obs, spec, path, 0, bool(protect), cast_hook)


def _batch_hint(shape, expected):
    if len(shape) == len(expected) + 1 and shape[0] == 1 and tuple(shape[1:]) == tuple(expected):
        return ": a leading batch of one; pass batched_model=True when the model always works on batches"
    return ""


def _conform(obs, spec, path, depth, protect, cast_hook):
    if obs is None:
        return None
    if spec is None:
        return _to_numpy_tree(obs, depth, protect)
    if depth > _MAX_DEPTH:
        raise ValueError(_TOO_DEEP)
    kind = spec[0] if _checked_specs.get(id(spec)) is spec else _spec_kind(spec)
    if kind == 0:
        arr = _leaf(obs, protect)
        if arr.shape != spec[1]:
            raise ValueError(
                f"{path} must have shape {_format_shape(spec[1])}, got {_format_shape(arr.shape)}"
                + _batch_hint(arr.shape, spec[1])
            )
        if arr.dtype != spec[2]:
            if cast_hook is not None:
                cast_hook(path, arr, spec[2])
            arr = arr.astype(spec[2])
        return arr
    if kind == 1:
        if not isinstance(obs, Mapping):
            raise TypeError(f"{path} must be a mapping for a Dict space, got {type(obs).__name__}")
        out = {}
        for key, sub in zip(spec[1], spec[2]):
            if key not in obs:
                raise ValueError(f"{path} lacks the key {key!r} that the Dict space requires")
            out[key] = _conform(obs[key], sub, f"{path}[{key!r}]", depth + 1, protect, cast_hook)
        return out
    subs = spec[1]
    if not isinstance(obs, (tuple, list)):
        raise TypeError(f"{path} must be a tuple for a Tuple space, got {type(obs).__name__}")
    items = tuple(obs)
    if len(items) != len(subs):
        raise ValueError(f"{path} must have {len(subs)} items for a Tuple space, got {len(items)}")
    return tuple(
        [
            _conform(item, sub, f"{path}[{i}]", depth + 1, protect, cast_hook)
            for i, (item, sub) in enumerate(zip(items, subs))
        ]
    )


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


def _leaf_shape(x):
    if isinstance(x, (bool, int, float)):
        return ()
    shape = getattr(x, "shape", None)
    if shape is not None:
        try:
            return tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            return None
    if isinstance(x, (list, tuple)):
        try:
            return np.shape(x)
        except ValueError:
            return None
    return None


def matches_structure(x, spec) -> bool:
    """True when ``x`` has the structure and shape of ``spec`` (dtype and
    bounds are not looked at)."""
    return _matches(x, spec, 0)


def _matches(x, spec, depth):
    if spec is None:
        return True
    if depth > _MAX_DEPTH:
        raise ValueError(_TOO_DEEP)
    kind = _spec_kind(spec)
    if kind == 0:
        return _leaf_shape(x) == spec[1]
    if kind == 1:
        if not isinstance(x, Mapping):
            return False
        for key, sub in zip(spec[1], spec[2]):
            if key not in x or not _matches(x[key], sub, depth + 1):
                return False
        return True
    if not isinstance(x, (tuple, list)):
        return False
    items = tuple(x)
    if len(items) != len(spec[1]):
        return False
    for item, sub in zip(items, spec[1]):
        if not _matches(item, sub, depth + 1):
            return False
    return True


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
    if t is float:
        return x
    if t is int or t is bool:
        return float(x)
    if t is _Tensor:  # _one_element's answer, without its checks; its errors when item() refuses
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


def _info_dict(info):
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise TypeError(f"info must be a mapping or None, got {type(info).__name__}")
    return dict(info)


def _observation_from_mapping(result, default):
    for key in OBSERVATION_KEYS:
        if key in result:
            return result[key]
    return default


def parse_step(result, state):
    """The raw ``(next_state, obs, reward, terminated, truncated, info)`` of a
    step result; ``reward``/``terminated`` are ``None`` when it has none."""
    reward = terminated = info = None
    truncated = False
    if isinstance(result, tuple):
        if type(result) is not tuple:
            result = tuple(result)  # a subclass is read through its own iteration, once
        n = len(result)
        if n == 5:
            obs, reward, terminated, truncated, info = result
            next_state = info["model_state"] if isinstance(info, Mapping) and "model_state" in info else obs
        elif n == 6:
            next_state, obs, reward, terminated, truncated, info = result
        elif n == 4:
            obs, reward, terminated, info = result
            next_state = info["model_state"] if isinstance(info, Mapping) and "model_state" in info else obs
        elif n == 3:
            next_state, obs, reward = result
        elif n == 2:
            next_state, obs = result
        elif n == 1:
            next_state = obs = result[0]
        else:
            raise ValueError(f"a transition returned a tuple of {n} items; accepted forms are {_STEP_FORMS}")
    elif type(result) is dict or isinstance(result, Mapping):  # a dict without the ABC's check
        if "state" in result:
            next_state = result["state"]
        elif "next_state" in result:
            next_state = result["next_state"]
        else:
            next_state = state
        obs = _observation_from_mapping(result, next_state)
        reward = result.get("reward")
        terminated = result.get("terminated")
        if terminated is None:
            terminated = result.get("done")
        truncated = result.get("truncated", False)
        info = result.get("info")
    else:
        next_state = obs = result
    return next_state, obs, reward, terminated, truncated, info


def normalize_step(
    result,
    state,
    action,
    obs_spec,
    reward_fn,
    terminal_fn,
    elapsed_steps,
    info_model_state,
    protect=False,
    cast_hook=None,
):
    """Parses one transition result into
    ``(next_state, obs, reward, terminated, truncated, info)``.

    ``reward_fn`` and ``terminal_fn`` are ``None`` or callables taking
    ``(next_state, raw_observation, action)``; they run only when the result
    carries no reward or termination. ``info`` is a new dict holding
    ``elapsed_steps`` and, when ``info_model_state``, ``model_state``.
    ``protect`` and ``cast_hook`` are :func:`conform_observation`'s.
    """
    next_state, obs, reward, terminated, truncated, info = parse_step(result, state)
    if reward is None:
        reward = 0.0 if reward_fn is None else reward_fn(next_state, obs, action)
    if terminated is None:
        terminated = False if terminal_fn is None else terminal_fn(next_state, obs, action)
    reward = as_reward(reward)
    terminated = as_flag(terminated, "terminated")
    if type(truncated) is not bool:
        truncated = False if truncated is None else as_flag(truncated, "truncated")
    if info is None:  # the usual case, in the order the general one gives
        info = (
            {"model_state": next_state, "elapsed_steps": elapsed_steps}
            if info_model_state
            else {"elapsed_steps": elapsed_steps}
        )
    else:
        info = _info_dict(info)
        if info_model_state and "model_state" not in info:
            info["model_state"] = next_state
        if "elapsed_steps" not in info:
            info["elapsed_steps"] = elapsed_steps
    obs = conform_observation(obs, obs_spec, "observation", protect, cast_hook)
    return next_state, obs, reward, terminated, truncated, info


def _grad_off(grad):
    """Checks ``grad_switch`` and turns autograd off when it is on; returns
    whether to turn it back on."""
    if grad is None:
        return False
    if type(grad) is not tuple or len(grad) != 2:
        raise TypeError("grad_switch must be None or an (is_grad_enabled, set_grad_enabled) pair")
    restore = bool(grad[0]())
    if restore:
        grad[1](False)
    return restore


def run_step(plan, state, action, elapsed_steps):
    """One whole single-env step in one call: :func:`convert_action`, the
    transition, :func:`normalize_step` and the time limit.

    ``plan`` is ``(transition, action_spec, obs_spec, reward_fn, terminal_fn,
    info_model_state, protect, cast_hook, grad_switch, max_episode_steps)``:
    ``transition(state, model_action)`` gives the step result; the next five
    are :func:`normalize_step`'s; ``grad_switch`` is ``None`` (autograd left
    as it is) or ``(is_grad_enabled, set_grad_enabled)``, and then autograd is
    off from the action's conversion to the result's and back on afterwards
    (also on an error) when it was on; ``max_episode_steps`` is ``None`` or a
    number that ``elapsed_steps`` reaching sets ``truncated``.
    Returns :func:`normalize_step`'s tuple.
    """
    if type(plan) is not tuple or len(plan) != 10:
        raise TypeError("step plan must be a 10-tuple")
    transition, action_spec, obs_spec, reward_fn, terminal_fn, info_model_state, protect, cast_hook, grad, limit = plan
    restore = _grad_off(grad)
    try:
        model_action = convert_action(action, action_spec)
        result = transition(state, model_action)
        out = normalize_step(
            result,
            state,
            model_action,
            obs_spec,
            reward_fn,
            terminal_fn,
            elapsed_steps,
            info_model_state,
            protect,
            cast_hook,
        )
        del result  # the model's raw outputs go: what still shares memory after that is shared
        if protect:
            out = secure_observation(out, 1)
    finally:
        if restore:
            grad[1](True)
    if limit is not None and elapsed_steps >= limit:
        out = out[:4] + (True,) + out[5:]
    return out


def run_step_batch(plan, state, action, elapsed):
    """One whole vector-env step in one call: :func:`convert_action`,
    ``action_check(model_action)`` (when not ``None``), the transition,
    :func:`normalize_step_batch` and :func:`count_steps` on ``elapsed``.

    ``plan`` is ``(transition, action_spec, obs_spec, reward_fn, terminal_fn,
    num_envs, protect, cast_hook, grad_switch, max_episode_steps,
    action_check)``; ``grad_switch`` as in :func:`run_step` (autograd is off
    up to the end of the normalization). Returns
    ``(next_state, obs, reward, terminated, truncated, info, elapsed, ended)``.
    """
    if type(plan) is not tuple or len(plan) != 11:
        raise TypeError("batch step plan must be an 11-tuple")
    transition, action_spec, obs_spec, reward_fn, terminal_fn, num_envs, protect, cast_hook, grad, limit, check = plan
    if type(num_envs) is not int:
        raise TypeError(f"num_envs must be an int, got {type(num_envs).__name__}")
    restore = _grad_off(grad)
    try:
        model_action = convert_action(action, action_spec)
        if check is not None:
            check(model_action)
        result = transition(state, model_action)
        out = normalize_step_batch(
            result, state, model_action, obs_spec, reward_fn, terminal_fn, num_envs, protect, cast_hook
        )
        del result
        if protect:
            out = secure_observation(out, 1)
    finally:
        if restore:
            grad[1](True)
    return out + count_steps(elapsed, out[3], out[4], limit)


def as_batch(x, num_envs: int, dtype, name: str):
    """A new ``(num_envs,)`` array of ``dtype`` holding one value per env."""
    dtype = np.dtype(dtype)
    if x is None:
        raise TypeError(f"{name} must be an array of {num_envs} values, got None")
    arr = None
    t = type(x)
    if t is _Tensor:  # the values are copied below: numpy()'s view needs no owner of its own
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


def normalize_step_batch(
    result, state, action, obs_spec, reward_fn, terminal_fn, num_envs, protect=False, cast_hook=None
):
    """Parses a batched transition result into ``(next_state, obs, reward,
    terminated, truncated, info)``: ``reward`` a new ``float32`` array and the
    flags new ``bool`` arrays of shape ``(num_envs,)``, ``obs`` conformed to
    the batched ``obs_spec``, ``info`` a new dict; ``protect`` and
    ``cast_hook`` are :func:`conform_observation`'s."""
    next_state, obs, reward, terminated, truncated, info = parse_step(result, state)
    if reward is None and reward_fn is None:
        reward = _zeros(num_envs, _FLOAT32)
    else:
        reward = as_batch(
            reward if reward is not None else reward_fn(next_state, obs, action), num_envs, _FLOAT32, "reward"
        )
    if terminated is None and terminal_fn is None:
        terminated = _zeros(num_envs, _BOOL)
    else:
        if terminated is None:
            terminated = terminal_fn(next_state, obs, action)
        terminated = as_batch(terminated, num_envs, _BOOL, "terminated")
    if truncated is None or truncated is False:
        truncated = _zeros(num_envs, _BOOL)
    else:
        truncated = as_batch(truncated, num_envs, _BOOL, "truncated")
    info = _info_dict(info)
    obs = conform_observation(obs, obs_spec, "observation", protect, cast_hook)
    return next_state, obs, reward, terminated, truncated, info


def normalize_reset(result, obs_spec, default_state, default_obs, protect=False, cast_hook=None):
    """Parses a reset result into ``(state, obs, info)``.

    A state the result does not carry is ``default_state``, or the raw
    observation when that is ``None``; an observation it does not carry is
    ``default_obs``. ``obs`` is ``None`` when none is known (the caller samples).
    ``protect`` and ``cast_hook`` are :func:`conform_observation`'s.
    """
    state = default_state
    info = None
    if isinstance(result, tuple):
        if type(result) is not tuple:
            result = tuple(result)
        n = len(result)
        if n == 2:
            first, second = result
            if isinstance(second, Mapping) and matches_structure(first, obs_spec):
                obs, info = first, second
            else:
                state, obs = first, second
        elif n == 3:
            state, obs, info = result
        elif n == 0:
            raise ValueError(
                "a reset returned an empty tuple; "
                "expected obs, (obs, info), (state, obs), (state, obs, info) or a mapping"
            )
        else:
            obs = result[0]
    elif type(result) is dict or isinstance(result, Mapping):  # a dict without the ABC's check
        if "state" in result:
            state = result["state"]
        obs = _observation_from_mapping(result, default_obs)
        info = result.get("info")
    else:
        obs = result
    if state is None:
        state = obs
    info = _info_dict(info)
    return state, conform_observation(obs, obs_spec, "observation", protect, cast_hook), info


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
