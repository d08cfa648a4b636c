"""Group resets, per-env seeds and offloading: what policy RL in large world
models (GRPO-style group rollouts, slow video models) asks of a vector env.

* ``reset(options={"group_size": k})`` (or the constructor's ``group_size``
  for every reset and autoreset): envs are reset in consecutive groups of
  ``k`` that share one start state, the first reset env's of each group (the
  same ``start_data`` index, the same draws), so a group's returns compare
  with each other. ``num_envs`` must be a multiple of ``k``. ``info["group"]``
  says each env's group.
* ``reset(seed=[s0, ..., sN-1])``: one seed per env, as Gymnasium vector envs
  take them. The env's own generator, NumPy RNG and spaces are seeded with
  ``s0``; each env's ``start_data`` draw (and ensemble episode member) comes
  from a generator seeded with its own seed, so the same seed gives the same
  start whatever the env's position in the batch. A reset adapter receives
  the list as ``seed``; what it does with it is its own.
* ``offload()`` / ``onload()``: the model (an ``nn.Module``) and the state
  move to the CPU and back to the device they came from, between collection
  and training phases; ``step`` while offloaded is a ``RuntimeError``.

Example:
    >>> share_within_groups(np.arange(6), np.ones(6, bool), 3).tolist()
    [0, 0, 0, 3, 3, 3]
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _backend
from .tree import map_leaves, map_paths

_torch: Any = _backend.torch

__all__ = ["check_group_size", "check_num_envs", "check_seeds", "group_sources", "share_within_groups", "to_device"]


def check_num_envs(value) -> int:
    """``num_envs`` as a positive int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"num_envs must be a positive int, got {value!r}")
    return int(value)


def check_group_size(group_size, num_envs: int) -> Optional[int]:
    """``group_size`` as an int that divides ``num_envs``, or ``None``."""
    if group_size is None:
        return None
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if num_envs % int(group_size):
        raise ValueError(
            f"group_size={group_size} does not divide num_envs={num_envs}: groups of {group_size} consecutive envs "
            "share a start, so num_envs must be a multiple of it"
        )
    return int(group_size)


def check_seeds(seed, num_envs: int):
    """``(first_seed, seeds)``: an int seed gives ``(seed, None)``; a sequence
    of ``num_envs`` ints gives its first and the list."""
    if seed is None or isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return seed, None
    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = list(seed)
        if len(seeds) != num_envs:
            raise ValueError(f"reset(seed=...) takes one seed per env: {num_envs} seeds, got {len(seeds)}")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"reset(seed=[...]) takes non-negative ints, got {s!r}")
        return int(seeds[0]), [int(s) for s in seeds]
    raise ValueError(f"seed must be None, an int or a list of {num_envs} ints, got {seed!r}")


def group_sources(mask: np.ndarray, group_size: int) -> np.ndarray:
    """For each env, the env whose reset it takes: the first masked env of its
    group where it is masked, itself elsewhere."""
    n = mask.shape[0]
    source = np.arange(n)
    for start in range(0, n, group_size):
        members = np.flatnonzero(mask[start : start + group_size]) + start
        if members.size:
            source[members] = members[0]
    return source


def share_within_groups(tree, mask: np.ndarray, group_size: int, batch_axes=0, path: str = "state"):
    """``tree`` with every masked env's entries replaced by its group's first
    masked env's (new arrays and tensors; ``batch_axes`` as in
    :func:`wmenv.autoreset.merge_by_mask`)."""
    source = group_sources(mask, group_size)
    return _take(tree, source, batch_axes, path)


def _take(tree, source, batch_axes, path):
    return map_paths(lambda leaf, p: _take_leaf(leaf, source, batch_axes, p), tree, path)


def _take_leaf(tree, source, batch_axes, path):
    axis = batch_axes if isinstance(batch_axes, int) else batch_axes.get(path, 0)
    if _torch is not None and isinstance(tree, _torch.Tensor):
        return _torch.index_select(tree, axis, _torch.from_numpy(source).to(tree.device))
    if isinstance(tree, np.ndarray):
        return np.take(tree, source, axis=axis)
    return tree


def to_device(tree, device):
    """Every tensor leaf of ``tree`` on ``device``."""
    return map_leaves(lambda x: x.to(device) if _torch is not None and isinstance(x, _torch.Tensor) else x, tree)
