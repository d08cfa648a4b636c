"""Pure-Python implementation of wmenv's per-step work.

This package is the twin of the compiled ``wmenv._core``: the same functions,
signatures, results, error types and error messages,
split the way ``csrc/`` is: :mod:`.actions`, :mod:`.arrays`, :mod:`.observations`,
:mod:`.results` and :mod:`.scalars`, over :mod:`.common`. ``wmenv._backend`` picks
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

from ..vocabulary import OBSERVATION_KEYS  # one list for both backends and every module
from . import actions, arrays, common, observations, results, scalars
from .actions import convert_action
from .arrays import secure_observation, to_numpy
from .observations import conform_observation, matches_structure
from .results import normalize_reset, normalize_step, normalize_step_batch, parse_step, run_step, run_step_batch
from .scalars import as_batch, as_flag, as_reward, count_steps

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


_PARTS = (actions, arrays, observations, results, scalars)


def set_torch(module) -> None:
    """Registers the torch module (or ``None``) whose tensors get fast paths.

    The module is checked before anything changes: one without a ``Tensor``
    type and a callable ``from_numpy`` is a ``TypeError`` and leaves the
    previous registration in place.
    """
    if module is None:
        _register(None, None, None, -1)
        return
    tensor = getattr(module, "Tensor", None)
    from_numpy = getattr(module, "from_numpy", None)
    if not isinstance(tensor, type) or not callable(from_numpy):
        raise TypeError(
            f"set_torch needs the torch module or None, got {module!r}, which lacks a Tensor type or from_numpy"
        )
    _register(tensor, from_numpy, *common.calibrate(module))


def _register(tensor, from_numpy, use_count, storage_alone) -> None:
    """Hands the torch names to each part that reads them.

    perf: each part keeps them as its own module globals (one dict look-up
    per use, as in a single module) instead of reading a shared holder.
    """
    names = {"_Tensor": tensor, "_from_numpy": from_numpy, "_use_count": use_count, "_STORAGE_ALONE": storage_alone}
    for part in _PARTS:
        for name, value in names.items():
            if name in vars(part):
                setattr(part, name, value)
