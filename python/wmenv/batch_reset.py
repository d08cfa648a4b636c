"""The vector env's resets: all envs, or those a mask selects.

A reset's state and observation are merged into the batch by the mask
(:func:`wmenv.autoreset.merge_by_mask`), so that only the masked envs change;
with ``start_data``, only the masked envs draw start states (one ``encode_fn``
call for all of them, each env from its own seed when ``reset`` was given one
per env); with ``group_size``, each group of envs shares its first reset env's
start. ``reset``, the autoreset modes and the torch route all reset through
:func:`reset_batch`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend
from .autoreset import check_batch_axes, check_reset_mask, merge_by_mask, scatter_by_mask
from .chunks import repeat_frames
from .groups import check_group_size, share_within_groups

_torch: Any = _backend.torch

__all__ = ["note_start_indices", "reset_batch", "reset_from_data", "reset_options"]


def reset_options(env, options):
    """``reset``'s options checked, with their mask: ``(options, mask, state,
    obs)``, the state and observation the reset merges into (``None`` when
    every env resets)."""
    options = {} if options is None else dict(options)
    if "group_size" in options:
        check_group_size(options["group_size"], env.num_envs)
    mask = options.get("reset_mask")
    if mask is None:
        mask = options["reset_mask"] = np.ones(env.num_envs, np.bool_)
        return options, mask, None, None
    check_reset_mask(mask, env.num_envs)
    return options, mask, env._state, env._obs


def note_start_indices(env, info) -> None:
    """The start indices of this step's autoresets (``-1`` where an env was
    not reset), in ``info`` with their ``_start_index`` mask."""
    start = env._reset_info.get("start_index")
    env._reset_info = None
    if start is not None:
        info.setdefault("start_index", start)
        info.setdefault("_start_index", start >= 0)


def reset_batch(env, seed, options, mask, state, obs, device_mask=None):
    """Runs ``env``'s reset and merges its result into ``(state, obs)`` by
    ``mask`` (``device_mask``: the same mask already on the model's device):
    ``(state, obs, info)``."""
    if env._ensemble is not None:
        env._ensemble.new_episode(mask, env._env_seeds)
    group = options.get("group_size", env.group_size)
    if env._start is not None and "state" not in options:
        out = reset_from_data(env, mask, state, obs)
    else:
        new_state, new_obs, info = env._reset_result(seed, options)
        _check_axes(env, new_state)
        out = (
            merge_by_mask(mask, new_state, state, env.batch_axes, "state", device_mask),
            merge_by_mask(mask, new_obs, obs, 0, "observation", device_mask),
            info,
        )
    if group:
        state, obs, info = out  # groups of envs share their first reset env's start
        info = dict(info)
        if "start_index" in info:
            info["start_index"] = share_within_groups(info["start_index"], mask, group)
        info["group"] = np.arange(env.num_envs) // group
        out = (
            share_within_groups(state, mask, group, env.batch_axes, "state"),
            share_within_groups(obs, mask, group, 0, "observation"),
            info,
        )
    env._rebase_reward(out[1], mask)
    return out


def _check_axes(env, state):
    """``batch_axes`` names leaves of the state (checked on the first reset's state)."""
    if not env._axes_checked:
        check_batch_axes(env.batch_axes, state)
        env._axes_checked = True


def reset_from_data(env, mask, state, obs):
    """Only the masked envs draw start states (one encode_fn call for all of them)."""
    count = int(mask.sum())
    generators = None
    if env._env_seeds is not None and _torch is not None:  # each env's draw from its own seed
        generators = [_torch.Generator().manual_seed(env._env_seeds[i]) for i in np.flatnonzero(mask)]
    part_state, part_obs, indices = env._start.draw(
        count, env._generator, env.np_random, batched=True, generators=generators
    )
    _check_axes(env, part_state)
    new_state = scatter_by_mask(mask, part_state, state, env.batch_axes, "state")
    del part_state
    start_index = np.full(env.num_envs, -1, np.int64)
    start_index[mask] = indices
    if env._chunk and env.chunk_frames:  # the real frame, repeated over the chunk
        part_obs = repeat_frames(part_obs, env._chunk, 1)
    held = [part_obs]
    del part_obs  # the list the result kind takes it from holds the only reference
    return env._results.start_batch(env, mask, new_state, held, obs) + ({"start_index": start_index},)
