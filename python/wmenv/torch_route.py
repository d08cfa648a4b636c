"""The vector env's ``output="torch"`` routes.

A model on the CPU takes :class:`HostTorchBatch`: the NumPy step's one core
call (the same conversions, checks, ownership rule, counters and time
limits), its arrays handed out as tensors over the same memory
(``torch.from_numpy``, no copy). On the CPU a NumPy operation or a core call
costs a fraction of a torch op's dispatch, so the step costs what NumPy
mode's does, plus one ``from_numpy`` per result.

A model on an accelerator (or ``grad=True``, whose tensors keep their graph)
takes :class:`TorchBatch`: counters, time limits and the ended mask on the
model's device, with one synchronisation per step. Its step counters
(``env._elapsed``) and the ended mask (``env._ended``) are tensors beside the
model's state. The mask's host copy, ``env._autoreset``
(what the autoreset mode and ``get_state`` read), is a permanent NumPy view of
the device mask itself on the CPU, or of a pinned host buffer the step copies
the mask into elsewhere: that copy is the step's one synchronisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend
from ._tensors import first_leaf
from .batch_reset import note_start_indices
from .route import HostBatch, OneCallBatch, prepare_action
from .tree import map_leaves

_torch: Any = _backend.torch

__all__ = [
    "TORCH_BATCH",
    "HostTorchBatch",
    "TorchBatch",
    "make_ended_mask",
    "reset_counters",
    "restore_counters",
    "sync_ended",
    "torch_batch_route",
]


def torch_batch_route(env, plan):
    """The vector env's torch route: :class:`HostTorchBatch` where the NumPy
    core's one call can step it (a plan, the state on the CPU), else
    :class:`TorchBatch`; with ``capture=True``, the captured route where the
    state is on CUDA (:mod:`wmenv.capture`)."""
    route = TORCH_BATCH if plan is None or env._stage else HostTorchBatch(plan)
    if getattr(env, "capture", False):  # an env pickled before the option existed has none
        from .capture import PendingCapture

        return PendingCapture(route)
    return route


def make_ended_mask(env, device) -> None:
    """A fresh device mask, with its host copy ``env._autoreset``."""
    n = env.num_envs
    env._ended = _torch.zeros(n, dtype=_torch.bool, device=device)
    if env._ended.device.type == "cpu":
        env._ended_host = None
        env._autoreset = env._ended.numpy()
    else:
        pin = _torch.cuda.is_available() and env._ended.device.type == "cuda"
        env._ended_host = _torch.zeros(n, dtype=_torch.bool, pin_memory=pin)
        env._autoreset = env._ended_host.numpy()


def sync_ended(env) -> None:
    """The ended mask's host copy: on the CPU a view of the device mask itself, so nothing to do."""
    host = env._ended_host
    if host is not None:
        host.copy_(env._ended)


def reset_counters(env, mask) -> None:
    """Zeroes the counters and the ended mask of the envs ``mask`` reset,
    moving the counters to the model's device on the first reset."""
    out = env._torch_out
    if out.device is None:
        leaf = first_leaf(env._obs)
        out.device = None if leaf is None else leaf.device
    if not isinstance(env._elapsed, _torch.Tensor):
        env._elapsed = _torch.as_tensor(env._elapsed, device=out.device)
        make_ended_mask(env, env._elapsed.device)
    mask_t = _torch.from_numpy(mask).to(env._elapsed.device)
    env._elapsed = _torch.where(mask_t, _torch.zeros_like(env._elapsed), env._elapsed)
    env._ended[mask_t] = False
    env._autoreset[mask] = False


def restore_counters(env, ended) -> None:
    """After unpickling or ``set_state``: the device mask holds ``ended``
    again, and the host copy is a view of it (not a pickled copy)."""
    restored = np.array(ended, np.bool_)
    make_ended_mask(env, env._elapsed.device)
    env._ended.copy_(_torch.from_numpy(restored))
    sync_ended(env)


class TorchBatch:
    """The step with observations, rewards, flags, counters and the
    autoreset mask on the model's device, and one synchronisation (learning
    which envs ended, to decide on resets).

    perf: beyond the results' own ops (:meth:`wmenv.output.TorchResults.step_batch`),
    the counter's increment and one in-place ``logical_or`` into the ended mask."""

    def step(self, env, actions):
        """Steps every env on the device: Gymnasium's batched step, as tensors."""
        mode = env._autoreset_route
        if not isinstance(env._elapsed, _torch.Tensor):  # the host route's counters, until now
            _device_counters(env)
        with env._autograd_off:
            state, obs, reward, terminated, truncated, info, can_end, elapsed = self.advance(env, actions)
            reset_now = mode.resets_before_stepping(env)
            if reset_now:
                mask, mask_t = env._autoreset.copy(), env._ended
                state, obs, env._reset_info = env._reset_batch(None, {"reset_mask": mask}, mask, state, obs, mask_t)
                reward = _torch.where(mask_t, _torch.zeros_like(reward), reward)
                terminated = terminated & ~mask_t
                truncated = truncated & ~mask_t
                elapsed = _torch.where(mask_t, _torch.zeros_like(elapsed), elapsed)
        if can_end:
            _torch.logical_or(terminated, truncated, out=env._ended)
            sync_ended(env)  # the step's one synchronisation
        elif reset_now:
            env._ended.zero_()
            sync_ended(env)
        info.setdefault("elapsed_steps", elapsed)
        info.setdefault("_elapsed_steps", env._all_true)
        if env._reset_info:
            note_start_indices(env, info)
        if env._info_model_state:
            info.setdefault("model_state", state)
        env._state, env._obs, env._elapsed = state, obs, elapsed
        return obs, reward, terminated, truncated, info

    def advance(self, env, actions):
        """The batch's model call on the device: the result kind's
        ``(state, obs, reward, terminated, truncated, info, can_end)`` and the counters after it."""
        elapsed = env._elapsed + 1
        return (*env._results.step_batch(env, env._state, prepare_action(env, actions), elapsed), elapsed)

    def reset_counters(self, env, mask) -> None:
        """Zeroes the device counters and the ended mask of the envs ``mask`` reset."""
        reset_counters(env, mask)

    rollout_advance = HostBatch.rollout_advance  # an open-loop rollout reads NumPy results, as in NumPy mode


TORCH_BATCH = TorchBatch()


def _device_counters(env) -> None:
    """Counters and the ended mask as this route keeps them, from the host route's arrays."""
    env._elapsed = _torch.tensor(env._elapsed, dtype=_torch.int64, device=env._torch_out.device)
    restore_counters(env, env._autoreset)


def _host_counters(env) -> None:
    """Counters and the ended mask as NumPy arrays, from the device route's tensors."""
    elapsed = env._elapsed
    if isinstance(elapsed, _torch.Tensor):
        env._elapsed = elapsed.cpu().numpy().copy()
        env._autoreset = np.array(env._autoreset, np.bool_)


_from_numpy: Any = None if _torch is None else _torch.from_numpy
_ndarray = np.ndarray


def _leaf_tensor(x):
    if type(x) is _ndarray:
        return _from_numpy(x) if x.flags.writeable else _from_numpy(x.copy())
    if isinstance(x, _torch.Tensor):
        return x
    return _torch.as_tensor(np.asarray(x))


def _as_tensors(obs):
    """The NumPy observation as tensors over the same memory (a read-only
    array is copied: torch has no read-only tensors)."""
    if type(obs) is _ndarray and obs.flags.writeable:  # perf: the usual Box observation
        return _from_numpy(obs)
    if obs is None:
        return None
    return map_leaves(_leaf_tensor, obs)


class HostTorchBatch(OneCallBatch):
    """``output="torch"`` with the model on the CPU: NumPy mode's one core
    call, handed out as tensors over its arrays' memory.

    Everything but the last step is NumPy mode's (``run_step_batch``: action
    conversion, model call, the result's forms, checks and casts, the
    ownership rule, counters, time limit and the autoreset mode's turn); the
    counters and the autoreset mask stay NumPy arrays. Resets (``NEXT_STEP``)
    run through the torch result kind and merge as tensors.

    perf: a ``from_numpy`` for each result (observation leaves, reward, the
    two flags, the counters in ``info``), where the device route's tensor ops
    cost several times as much on the CPU."""

    __slots__ = ()

    # this step's own array (reset_counters replaces the counters rather than writing into them)
    handed_counters = staticmethod(_from_numpy)

    def advance(self, env, actions):
        """NumPy mode's core call, its observation as tensors (resets merge into tensors)."""
        if type(env._elapsed) is not _ndarray:  # the device route's counters, until now
            _host_counters(env)
        out = env._run_step_batch(self.plan, env._state, actions, env._elapsed)
        return (out[0], _as_tensors(out[1]), *out[2:])

    def step(self, env, actions):
        """NumPy mode's step, as tensors."""
        obs, reward, terminated, truncated, info = super().step(env, actions)
        return obs, _from_numpy(reward), _from_numpy(terminated), _from_numpy(truncated), info

    def reset_counters(self, env, mask) -> None:
        """Zeroes the counters and the autoreset mask of the envs ``mask``
        reset: the counters replaced, not written (the last step's
        ``info["elapsed_steps"]`` views them)."""
        _host_counters(env)
        env._elapsed = np.where(mask, 0, env._elapsed)
        env._autoreset[mask] = False
