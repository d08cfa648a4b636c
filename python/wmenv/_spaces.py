"""Precompiles Gymnasium spaces into the plain tuples the core functions take.

Done once per env, so that no step looks at a space.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

import numpy as np
from gymnasium import spaces

from . import _backend
from .tree import MAX_DEPTH, TOO_DEEP, map_leaves, rebuild

_ARRAY_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def observation_spec(space: spaces.Space):
    """``(0, shape, dtype)``, ``(1, keys, subspecs)``, ``(2, subspecs)`` or
    ``None`` for spaces whose observations are only converted to NumPy."""
    if isinstance(space, _ARRAY_SPACES):
        return (0, tuple(int(d) for d in space.shape or ()), np.dtype(space.dtype))
    if isinstance(space, spaces.Dict):
        keys = tuple(space.spaces.keys())
        return (1, keys, tuple(observation_spec(space.spaces[k]) for k in keys))
    if isinstance(space, spaces.Tuple):
        return (2, tuple(observation_spec(s) for s in space.spaces))
    return None


def action_spec(space: spaces.Space, torch_module, device, torch_actions: bool):
    """The action spec for :func:`wmenv._core_py.convert_action`.

    ``Box`` actions take the space's dtype; ``Discrete``, ``MultiDiscrete``
    and ``MultiBinary`` actions take ``int64``. Other spaces pass through.
    """
    if not isinstance(space, _ARRAY_SPACES):
        return None
    if isinstance(space, spaces.Box):
        dtype = np.dtype(space.dtype).newbyteorder("=")  # torch takes native byte order only
    else:
        dtype = np.dtype(np.int64)
    shape = tuple(int(d) for d in space.shape or ())
    size = int(np.prod(shape, dtype=np.int64))
    low: Any = 0
    n: Any = -1
    if isinstance(space, spaces.Discrete):
        low, n = int(space.start), int(space.n)
    elif isinstance(space, spaces.MultiDiscrete):
        low = np.asarray(space.start, np.int64).reshape(shape).copy()
        n = np.asarray(space.nvec, np.int64).reshape(shape).copy()
    elif isinstance(space, spaces.MultiBinary):
        low, n = np.zeros(shape, np.int64), np.full(shape, 2, np.int64)
    to_torch = bool(torch_actions and torch_module is not None)
    torch_dtype = None
    if to_torch:
        torch_dtype = getattr(torch_module, dtype.name, None)
        if device is not None:
            device = torch_module.device(device)
            if device.type == "cpu":
                device = None
    else:
        device = None
    integral = not isinstance(space, spaces.Box)
    return (shape, size, dtype, low, n, repr(space), torch_dtype, device, to_torch, integral)


def batched_action_spec(spec, num_envs: int):
    """A single env's integer action spec for ``num_envs`` actions at once:
    a leading batch axis on the shape and on every entry's range."""
    if spec is None:
        return None
    shape, size, dtype, low, n, space_repr, torch_dtype, device, to_torch, integral = spec
    batched = (num_envs,) + tuple(shape)
    if isinstance(n, np.ndarray):
        low, n = np.broadcast_to(low, batched).copy(), np.broadcast_to(n, batched).copy()
    return (batched, size * num_envs, dtype, low, n, space_repr, torch_dtype, device, to_torch, integral)


def with_leading_one(spec):
    """The observation spec of a model that returns a batch of one: every
    array leaf's shape gets a leading 1."""
    if spec is None:
        return None
    if spec[0] == 0:
        return (0, (1,) + spec[1], spec[2])
    if spec[0] == 1:
        return (1, spec[1], tuple(with_leading_one(s) for s in spec[2]))
    return (2, tuple(with_leading_one(s) for s in spec[1]))


def first_of_batch(obs):
    """Every array leaf's first (only) batch entry, as a view."""
    return map_leaves(_first, obs)


def _first(x):
    return x[0] if getattr(x, "ndim", 0) and hasattr(x, "shape") else x  # arrays and tensors


def add_batch_of_one(action):
    """``action`` with a leading batch dimension of one (tensors and arrays)."""
    unsqueeze = getattr(action, "unsqueeze", None)
    if unsqueeze is not None:
        return unsqueeze(0)
    return np.expand_dims(np.asarray(action), 0)


def batch_specs(single_action_space, observation_space, action_space, num_envs: int, torch_actions: bool):
    """A vector env's ``(obs_spec, action_spec, discrete)``: the batched
    spaces' specs, with a MultiDiscrete or MultiBinary action's per-entry
    ranges kept (Gymnasium batches them into an integer Box) and a Discrete
    action's range as ``discrete = (start, n)``, checked per env by the step
    instead of by the conversion (so the error names the env)."""
    torch_module = _backend.torch
    obs_spec = observation_spec(observation_space)
    act_spec = action_spec(action_space, torch_module, None, torch_actions)
    space = single_action_space
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        act_spec = batched_action_spec(action_spec(space, torch_module, None, torch_actions), num_envs)
    discrete = (int(space.start), int(space.n)) if isinstance(space, spaces.Discrete) and act_spec else None
    if discrete is not None:
        act_spec = act_spec[:4] + (None,) + act_spec[5:]
    return obs_spec, act_spec, discrete


def map_with_space(fn: Callable[[Any, Any], Any], obs, space, depth: int = 0):
    """``obs`` with every leaf replaced by ``fn(leaf, leaf_space)``: the part
    of ``space`` (a ``Dict``'s by key, a ``Tuple``'s by position) the leaf
    sits in, or ``None`` where the space does not reach it.

    Example:
        >>> import numpy as np
        >>> space = spaces.Dict({"k": spaces.Discrete(3)})
        >>> map_with_space(lambda x, s: type(s).__name__, {"k": 1, "extra": 2}, space)
        {'k': 'Discrete', 'extra': 'NoneType'}
    """
    if depth > MAX_DEPTH:
        raise ValueError(TOO_DEEP)
    if isinstance(obs, Mapping):
        keyed = space.spaces if isinstance(space, spaces.Dict) else {}
        return {k: map_with_space(fn, v, keyed.get(k), depth + 1) for k, v in obs.items()}
    if isinstance(obs, (tuple, list)):
        items = space.spaces if isinstance(space, spaces.Tuple) else ()
        parts = [map_with_space(fn, v, items[i] if i < len(items) else None, depth + 1) for i, v in enumerate(obs)]
        return rebuild(obs, parts)
    return fn(obs, space)


def discrete_scalars(space: spaces.Space) -> Optional[Callable[[Any], Any]]:
    """A function that hands a single env's ``Discrete`` observations out as
    ``np.int64`` scalars, as ``Discrete.sample()`` gives them and Gymnasium's
    and SB3's checkers expect (the cores give 0-d arrays), inside ``Dict``
    and ``Tuple`` observations too; ``None`` for a space without a
    ``Discrete`` part.

    Example:
        >>> import numpy as np
        >>> scalars = discrete_scalars(spaces.Dict({"k": spaces.Discrete(3), "x": spaces.Box(0, 1, (2,))}))
        >>> out = scalars({"k": np.array(2), "x": np.zeros(2)})
        >>> type(out["k"]).__name__, out["x"].shape
        ('int64', (2,))
        >>> discrete_scalars(spaces.Box(0, 1, (2,))) is None
        True
    """
    if not _has_discrete(space):
        return None
    return lambda obs: map_with_space(_scalar, obs, space)


def _has_discrete(space) -> bool:
    if isinstance(space, spaces.Discrete):
        return True
    if isinstance(space, spaces.Dict):
        return any(_has_discrete(s) for s in space.spaces.values())
    return isinstance(space, spaces.Tuple) and any(_has_discrete(s) for s in space.spaces)


def _scalar(obs, space):
    """A ``Discrete`` leaf's 0-d array as its NumPy scalar; any other leaf as it is."""
    if isinstance(space, spaces.Discrete) and isinstance(obs, np.ndarray) and obs.ndim == 0:
        return obs[()]
    return obs
