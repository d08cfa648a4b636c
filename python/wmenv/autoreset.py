"""Partial resets: merging a reset's values into the batch by mask.

A partial reset (``reset(options={"reset_mask": mask})`` or an autoreset)
changes only the masked envs. Its state and observation are merged leaf by
leaf into the current ones: the unmasked envs keep their values bit for bit,
their dtype, their kind (NumPy array or tensor) and their device. A reset
whose structure differs from the current value (other dict keys, another
number of tuple items, an array where a tensor was) is a ``ValueError``
naming the leaf, and so is one whose dtype cannot be cast to the current
one within its kind (a float reset into an integer state).

Leaf paths read as errors name them: ``"state"``, ``"state[1][0]"``,
``"state['h']"``; ``batch_axes`` maps such paths to the axis that holds the
envs (0 unless said otherwise; 1 for an LSTM state ``(layers, num_envs, hidden)``).

Example:
    >>> import numpy as np
    >>> merge_by_mask(np.array([True, False]), np.array([1, 2]), np.array([8, 9]))
    array([1, 9])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from . import _backend
from .tree import leaves, map_leaves, map_paths

_torch: Any = _backend.torch

__all__ = [
    "MODES",
    "Disabled",
    "NextStep",
    "SameStep",
    "check_autoreset_mode",
    "check_batch_axes",
    "check_batch_axes_option",
    "check_reset_mask",
    "env_slice",
    "leaf_paths",
    "merge_by_mask",
    "scatter_by_mask",
]


def _is_tensor(x) -> bool:
    return _torch is not None and isinstance(x, _torch.Tensor)


def _kind(x) -> str:
    if isinstance(x, dict):
        return "dict"
    if isinstance(x, (tuple, list)):
        return "sequence"
    if _is_tensor(x):
        return "tensor"
    if isinstance(x, np.ndarray):
        return "array"
    return type(x).__name__


def check_autoreset_mode(value, output: str = "numpy") -> AutoresetMode:
    """``value`` as an ``AutoresetMode``; ``output="torch"`` works with NEXT_STEP or DISABLED."""
    try:
        mode = AutoresetMode(value)
    except ValueError:
        allowed = ", ".join(f"AutoresetMode.{m.name} ({m.value!r})" for m in AutoresetMode)
        raise ValueError(f"autoreset_mode must be one of {allowed}, got {value!r}") from None
    if output == "torch" and mode is AutoresetMode.SAME_STEP:
        raise ValueError(
            'output="torch" works with autoreset_mode NEXT_STEP or DISABLED; SAME_STEP\'s final_obs is an '
            "object array of NumPy observations"
        )
    return mode


def check_batch_axes_option(batch_axes):
    """``batch_axes`` as given: an int for every state leaf, or a dict from leaf paths to ints."""
    if not isinstance(batch_axes, (int, dict)) or isinstance(batch_axes, bool):
        raise TypeError(f"batch_axes must be an int or a dict from state paths to ints, got {batch_axes!r}")
    return batch_axes


def check_reset_mask(mask, num_envs: int) -> None:
    """A reset mask is a ``(num_envs,)`` bool NumPy array with a True value."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"options['reset_mask'] must be a numpy array, got {type(mask).__name__}")
    if mask.shape != (num_envs,):
        raise ValueError(f"options['reset_mask'] must have shape ({num_envs},), got {mask.shape}")
    if mask.dtype != np.bool_:
        raise TypeError(f"options['reset_mask'] must have dtype bool, got {mask.dtype}")
    if not mask.any():
        raise ValueError("options['reset_mask'] must hold at least one True value")


def leaf_paths(tree, path: str = "state") -> list:
    """The paths of ``tree``'s leaves, as merge errors and ``batch_axes`` name them.

    Example:
        >>> leaf_paths({"h": 0, "c": (1, 2)})
        ["state['h']", "state['c'][0]", "state['c'][1]"]
    """
    return leaves(map_paths(lambda leaf, p: p, tree, path))


def check_batch_axes(batch_axes, state) -> None:
    """Every path a dict ``batch_axes`` names is a leaf of ``state``, with an int axis."""
    if not isinstance(batch_axes, dict):
        return
    paths = leaf_paths(state)
    unknown = [p for p in batch_axes if p not in paths]
    if unknown:
        raise ValueError(
            f"batch_axes names {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} no leaf "
            f"of the state; its leaves are {', '.join(map(repr, paths))}"
        )
    for p, axis in batch_axes.items():
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"batch_axes[{p!r}] must be an int, got {axis!r}")


def _axis(batch_axes, path):
    return batch_axes if isinstance(batch_axes, int) else batch_axes.get(path, 0)


def _check_batch(mask, new_shape, old_shape, axis, path):
    new_shape, old_shape, n = tuple(new_shape), tuple(old_shape), mask.shape[0]
    ndim = len(new_shape)
    if new_shape != old_shape:
        raise ValueError(
            f"a partial reset must return the full batch: {path} has shape {new_shape}, but the value it replaces "
            f"has shape {old_shape}"
        )
    if not -ndim <= axis < ndim or new_shape[axis] != n:
        raise ValueError(
            f"cannot merge {path} by reset_mask: it has shape {new_shape}, and its batch axis {axis} should have "
            f"{n} entries (num_envs={n}); declare where its batch axis is with "
            f"WorldModelVectorEnv(..., batch_axes={{{path!r}: AXIS}})"
        )


def _same_structure(new, old, path):
    """A ValueError naming ``path`` where ``new`` and ``old`` differ in kind, keys or length."""
    new_kind, old_kind = _kind(new), _kind(old)
    if new_kind != old_kind:
        raise ValueError(
            f"cannot merge {path} by reset_mask: the reset gave a {new_kind}, the value it replaces is a {old_kind}; "
            "a partial reset must return the same structure and leaf kinds as the step"
        )
    if new_kind == "dict" and set(new) != set(old):
        raise ValueError(
            f"cannot merge {path} by reset_mask: the reset's keys {_keys(new)} differ from the current keys "
            f"{_keys(old)}"
        )
    if new_kind == "sequence" and len(new) != len(old):
        raise ValueError(
            f"cannot merge {path} by reset_mask: the reset gave {len(new)} items, the value it replaces has {len(old)}"
        )


def _keys(mapping) -> str:
    return "[" + ", ".join(sorted(map(repr, mapping))) + "]"


def _as_old_dtype(new, old, path):
    """``new`` cast to ``old``'s dtype (and device), where that stays within its kind."""
    if _is_tensor(old):
        if new.dtype != old.dtype:
            if not _torch.can_cast(new.dtype, old.dtype):
                raise ValueError(
                    f"cannot merge {path} by reset_mask: the reset's dtype {new.dtype} cannot be cast to the "
                    f"current {old.dtype} without loss"
                )
            new = new.to(old.dtype)
        return new if new.device == old.device else new.to(old.device)
    if new.dtype != old.dtype:
        if not np.can_cast(new.dtype, old.dtype, casting="same_kind"):
            raise ValueError(
                f"cannot merge {path} by reset_mask: the reset's dtype {new.dtype} cannot be cast to the "
                f"current {old.dtype} without loss"
            )
        new = new.astype(old.dtype)
    return new


def merge_by_mask(mask: np.ndarray, new, old, batch_axes=0, path: str = "state", device_mask=None):
    """``new`` where ``mask`` is True and ``old`` elsewhere, leaf by leaf.

    Leaves are NumPy arrays or torch tensors with a batch dimension, inside
    dicts, tuples and lists; the result has ``old``'s structure, dtypes and
    devices. The batch axis is 0 unless ``batch_axes`` says otherwise: an int
    for every leaf, or a dict from leaf paths (as errors name them:
    ``"state[1][0]"``, ``"state['h']"``) to axes, e.g. ``1`` for an LSTM
    state of shape ``(layers, num_envs, hidden)``. ``device_mask`` is the
    same mask as a tensor, used for tensor leaves on its device (no
    host-to-device copy). The result is new; neither input changes.

    Example:
        >>> import numpy as np
        >>> merge_by_mask(np.array([True, False]), np.array([1, 2]), np.array([8, 9]))
        array([1, 9])
        >>> merge_by_mask(np.array([True, False]), np.ones((1, 2)), np.zeros((1, 2)), {"state": 1})
        array([[1., 0.]])
    """
    if old is None or mask.all():
        return new
    _same_structure(new, old, path)
    if isinstance(new, dict):
        return {k: merge_by_mask(mask, new[k], v, batch_axes, f"{path}[{k!r}]", device_mask) for k, v in old.items()}
    if isinstance(new, (tuple, list)):
        return type(old)(
            merge_by_mask(mask, n, o, batch_axes, f"{path}[{i}]", device_mask) for i, (n, o) in enumerate(zip(new, old))
        )
    axis = _axis(batch_axes, path)
    if _is_tensor(new):
        _check_batch(mask, new.shape, old.shape, axis, path)
        new = _as_old_dtype(new, old, path)
        shape = [1] * new.dim()
        shape[axis] = -1
        if device_mask is not None and device_mask.device == old.device:
            where = device_mask.reshape(shape)
        else:
            where = _torch.from_numpy(mask).to(old.device).reshape(shape)
        return _torch.where(where, new, old)
    if isinstance(new, np.ndarray):
        _check_batch(mask, new.shape, old.shape, axis, path)
        new = _as_old_dtype(new, old, path)
        shape = [1] * new.ndim
        shape[axis] = -1
        return np.where(mask.reshape(shape), new, old)
    raise TypeError(
        f"cannot merge {path} (a {type(new).__name__}) by reset_mask: a partial reset must return arrays or tensors "
        "with a batch dimension (inside dicts, tuples or lists)"
    )


def scatter_by_mask(mask: np.ndarray, part, old, batch_axes=0, path: str = "state"):
    """``old`` with the entries where ``mask`` is True replaced by ``part``
    (which holds one entry per True in the mask), leaf by leaf; ``old=None``
    takes ``part`` as it is (a full reset). Structure, kinds and dtypes are
    checked as :func:`merge_by_mask` checks them, and ``part``'s batch axis
    must hold one entry per masked env."""
    count = int(np.count_nonzero(mask))
    if old is None:
        _check_part(part, count, batch_axes, path)
        return part
    _same_structure(part, old, path)
    if isinstance(part, dict):
        return {k: scatter_by_mask(mask, part[k], v, batch_axes, f"{path}[{k!r}]") for k, v in old.items()}
    if isinstance(part, (tuple, list)):
        return type(old)(
            scatter_by_mask(mask, p, o, batch_axes, f"{path}[{i}]") for i, (p, o) in enumerate(zip(part, old))
        )
    axis = _axis(batch_axes, path)
    _check_part(part, count, batch_axes, path)
    if _is_tensor(old):
        full = old.clone()
        index = _torch.from_numpy(np.flatnonzero(mask)).to(full.device)
        value = _as_old_dtype(part, old, path) if _is_tensor(part) else _torch.as_tensor(part, device=full.device)
        full.index_copy_(axis, index, value.to(full.dtype))
        return full
    full = np.array(old, copy=True)
    where: list = [slice(None)] * full.ndim
    where[axis] = np.flatnonzero(mask)
    full[tuple(where)] = _as_old_dtype(np.asarray(part), old, path)
    return full


def _check_part(part, count, batch_axes, path):
    """Every leaf of a reset's part holds ``count`` entries along its batch axis."""
    if isinstance(part, dict):
        for k, v in part.items():
            _check_part(v, count, batch_axes, f"{path}[{k!r}]")
        return
    if isinstance(part, (tuple, list)):
        for i, v in enumerate(part):
            _check_part(v, count, batch_axes, f"{path}[{i}]")
        return
    shape = getattr(part, "shape", None)
    if shape is None:
        return
    axis = _axis(batch_axes, path)
    shape = tuple(shape)
    if not -len(shape) <= axis < len(shape) or shape[axis] != count:
        raise ValueError(
            f"a start-state draw for {count} env{'' if count == 1 else 's'} gave {path} of shape {shape}: its batch "
            f"axis {axis} must hold {count} entries (encode_fn must return one start state per drawn observation; "
            f"declare another batch axis with batch_axes={{{path!r}: AXIS}})"
        )


# ---- the three autoreset modes, one small object each -------------------------------------------


class _Mode:
    """What a vector step does about envs that ended, for one autoreset mode.

    The vector env chooses its mode's object once; its step calls
    ``check`` before the model call, ``after_step`` once the batch is out
    (which runs the reset, under the env's autograd rule, only when there is
    one to run, and zeroes or records what it replaced) and ``ended_mask``
    for what the next step must remember; the torch route asks
    ``resets_before_stepping`` and merges on the device itself.
    """

    mode: Any = None

    def check(self, env) -> None:
        """Refuses a step the mode does not allow (DISABLED: envs that ended and were not reset)."""

    def after_step(self, env, state, obs, reward, terminated, truncated, info, elapsed, ended):
        return state, obs

    def ended_mask(self, env, ended):
        """The autoreset mask the next step starts from."""
        return ended

    def resets_before_stepping(self, env) -> bool:
        """Whether this step resets envs that ended last step (NEXT_STEP)."""
        return False


def _count(mask) -> int:
    return int(np.count_nonzero(mask))


def env_slice(obs, i):
    """Env ``i``'s part of a batched observation (dicts, tuples and lists of leaves)."""
    return map_leaves(lambda x: x[i], obs)


class NextStep(_Mode):
    """``AutoresetMode.NEXT_STEP``: an env that ended is reset by the next step,
    instead of stepped (its reward, flags and counter zeroed)."""

    mode = AutoresetMode.NEXT_STEP

    def after_step(self, env, state, obs, reward, terminated, truncated, info, elapsed, ended):
        """Resets the envs that ended last step (their reward, flags and counters zeroed)."""
        mask = env._autoreset
        if not _count(mask):
            return state, obs
        with env._autograd_off:
            state, obs, env._reset_info = env._reset_batch(None, {"reset_mask": mask.copy()}, mask, state, obs)
        reward[mask] = 0.0  # these envs were reset, not stepped
        terminated[mask] = False
        truncated[mask] = False
        elapsed[mask] = 0
        ended[mask] = False
        return state, obs

    def resets_before_stepping(self, env) -> bool:
        """Whether any env ended last step."""
        return bool(_count(env._autoreset))


class SameStep(_Mode):
    """``AutoresetMode.SAME_STEP``: an env that ended is reset in the same step;
    its last observation and info go to ``info["final_obs"]`` and ``info["final_info"]``."""

    mode = AutoresetMode.SAME_STEP

    def after_step(self, env, state, obs, reward, terminated, truncated, info, elapsed, ended):
        """Resets the envs that ended this step, keeping their last observation and info."""
        if not _count(ended):
            return state, obs
        # the last observation and info, in Gymnasium's layout: final_obs an
        # object array, final_info a dict of per-env arrays, each with its "_" mask
        final_obs = np.empty(env.num_envs, dtype=object)
        for i in np.flatnonzero(ended):
            final_obs[i] = env_slice(obs, i)
        final_info = {"elapsed_steps": np.where(ended, elapsed, 0), "_elapsed_steps": ended.copy()}
        info["final_obs"], info["_final_obs"] = final_obs, ended.copy()
        info["final_info"], info["_final_info"] = final_info, ended.copy()
        with env._autograd_off:
            state, obs, env._reset_info = env._reset_batch(None, {"reset_mask": ended}, ended, state, obs)
        elapsed[ended] = 0
        return state, obs

    def ended_mask(self, env, ended):
        """Nothing is pending: every env that ended was reset already."""
        return env._autoreset  # every env that ended was reset already: nothing is pending


class Disabled(_Mode):
    """``AutoresetMode.DISABLED``: the caller resets envs that ended, with
    ``reset(options={"reset_mask": mask})``; stepping one before is an error."""

    mode = AutoresetMode.DISABLED

    def check(self, env) -> None:
        """Refuses the step while envs that ended have not been reset."""
        if env._autoreset.any():
            raise RuntimeError(
                f"envs {np.flatnonzero(env._autoreset).tolist()} have ended; with autoreset_mode DISABLED, "
                "reset them with reset(options={'reset_mask': mask}) before the next step"
            )


MODES = {cls.mode: cls() for cls in (NextStep, SameStep, Disabled)}
