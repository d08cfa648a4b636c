"""Observations conformed to their space's spec, and the structure test a
reset's 2-tuple is read by (the twin of ``csrc/observations.cpp``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .arrays import _leaf
from .common import _MAX_DEPTH, _TOO_DEEP, _format_shape


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


# perf: id -> spec: specs live as long as their env, so each is checked once, not every step
_checked_specs: dict = {}


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
