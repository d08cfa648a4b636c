"""Snapshots, pickling and offloading: an env's position kept and restored.

:class:`Snapshots` gives both envs ``get_state``/``set_state`` (the
:class:`~wmenv.planning.Snapshot` of the model state, last observation, step
counters, generator and NumPy RNG states (the env's, and its observation
space's, which a default reset samples), autoreset mask and the layers'
episode state), pickling (everything but what ``_compile`` rebuilds), and
``offload``/``onload`` (the model and state moved off the accelerator between
collection and training).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
from gymnasium.spaces import Space

from . import _backend, torch_route
from .groups import to_device
from .options import model_device
from .planning import Snapshot, deep_copy

_torch: Any = _backend.torch

__all__ = ["Snapshots"]


_COUNTER_LIMIT = 2**62  # far beyond any episode; leaves room to count on without overflow


def _check_counters(elapsed, num_envs) -> None:
    """A snapshot's step counter(s): non-negative whole numbers below 2**62,
    one per env for the vector env."""
    if num_envs is None:
        if isinstance(elapsed, bool) or not isinstance(elapsed, (int, np.integer)) or not 0 <= elapsed < _COUNTER_LIMIT:
            raise ValueError(f"the snapshot's step counter must be an int in [0, 2**62), got {elapsed!r}")
        return
    values = elapsed.cpu().numpy() if _torch is not None and isinstance(elapsed, _torch.Tensor) else elapsed
    if not isinstance(values, np.ndarray) or values.shape != (num_envs,) or values.dtype != np.int64:
        raise ValueError(
            f"the snapshot's step counters must be a ({num_envs},) int64 array, got {type(values).__name__} "
            f"{getattr(values, 'shape', '')} {getattr(values, 'dtype', '')}".rstrip()
        )
    if num_envs and not (0 <= int(values.min()) and int(values.max()) < _COUNTER_LIMIT):
        raise ValueError("the snapshot's step counters must lie in [0, 2**62)")


def _space_rngs(space) -> list:
    """The NumPy generators of ``space`` and of every space inside it (a
    ``Dict``'s, a ``Tuple``'s, a ``Sequence``'s or a ``Graph``'s parts each
    sample from their own), in a fixed order: what a sample of it draws from."""
    out = [space.np_random]
    parts = getattr(space, "spaces", None)
    if isinstance(parts, Mapping):
        parts = list(parts.values())
    if not isinstance(parts, (list, tuple)):
        parts = []
    parts = list(parts) + [getattr(space, name, None) for name in ("feature_space", "node_space", "edge_space")]
    for part in parts:
        if isinstance(part, Space):
            out += _space_rngs(part)
    return out


def _is_tensor(x) -> bool:
    return _torch is not None and isinstance(x, _torch.Tensor)


def _copy_counters(elapsed):
    """The step counter(s), copied where they are an array or a tensor (the vector env's)."""
    if isinstance(elapsed, np.ndarray):
        return np.copy(elapsed)
    return elapsed.clone() if _is_tensor(elapsed) else elapsed


class Snapshots:
    """``get_state``/``set_state``, pickling and offloading, for both envs."""

    # what the env that mixes this in has (WorldModelBase and the front ends)
    world_model: Any
    _offloaded: Any
    _ensemble: Any
    _reward_layer: Any
    _note_state_device: Any
    observation_space: Any

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.__dict__.get("_ensemble") is not None:
            state["_ensemble_episode"] = self._ensemble.state()
        layer = self.__dict__.get("_reward_layer")
        if layer is not None and layer.base is not None:
            state["_reward_base"] = layer.base.copy()
        for name in self._COMPILED:
            state.pop(name, None)
        generator = state.pop("_generator", None)
        state["_generator_state"] = None if generator is None else (str(generator.device), generator.get_state())
        return state

    def __setstate__(self, state):
        saved = state.pop("_generator_state", None)
        self.__dict__.update(state)
        self._generator = None
        if saved is not None:
            self._generator = _torch.Generator(device=saved[0])
            self._generator.set_state(saved[1])
        shared = self.__dict__.get("_all_true")
        if isinstance(shared, np.ndarray):  # one read-only array handed out in every info: read-only again
            shared.flags.writeable = False
        self._compile()
        if _is_tensor(self.__dict__.get("_elapsed")):  # output="torch": the host mask a view of the device mask again
            torch_route.restore_counters(self, self._autoreset)

    def _has_position(self) -> bool:  # pragma: no cover - each env defines it
        raise NotImplementedError

    def get_state(self, copy: bool = False) -> Snapshot:
        """A snapshot of the env's position: model state, last observation,
        step counter(s), the generator's and the NumPy RNG's state (and, for
        the vector env, the autoreset mask).

        By default the snapshot *holds references* to the model state and
        observation (cheap; right for models that return new tensors each
        step). ``copy=True`` clones every tensor and array in them, for models
        that update their state in place; such a snapshot is copied again
        each time it is restored, so it can be restored any number of times.

        Example:
            >>> import gymnasium as gym, numpy as np
            >>> from wmenv import WorldModelEnv
            >>> env = WorldModelEnv(None, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
            ...                     transition_fn=lambda m, s, a: (s + a, s + a, 0.0),
            ...                     initial_state=np.zeros(1, np.float32), torch_actions=False)
            >>> _ = env.reset(seed=0)
            >>> snap = env.get_state()
            >>> first = env.step(np.ones(1, np.float32))[0]
            >>> env.set_state(snap)
            >>> bool((env.step(np.ones(1, np.float32))[0] == first).all())
            True
        """
        if not self._has_position():
            raise RuntimeError("Call reset() before get_state().")
        state, obs = self._state, self._obs
        if copy:
            state, obs = deep_copy(state), deep_copy(obs)
        return Snapshot(
            state=state,
            observation=obs,
            elapsed=_copy_counters(self._elapsed),
            generator_state=None if self._generator is None else self._generator.get_state(),
            np_random_state=deep_copy(self.np_random.bit_generator.state),  # type: ignore[attr-defined]
            autoreset=None if getattr(self, "_autoreset", None) is None else self._autoreset.copy(),
            copied=bool(copy),
            env=type(self).__name__,
            num_envs=self._snapshot_envs(),
            ensemble=None if self._ensemble is None else self._ensemble.state(),
            reward_base=None if self._reward_layer is None or self._reward_layer.base is None
            else self._reward_layer.base.copy(),
            space_rng_states=[deep_copy(rng.bit_generator.state) for rng in _space_rngs(self.observation_space)],
        )  # fmt: skip

    def _snapshot_envs(self) -> Optional[int]:  # pragma: no cover - each env defines it
        raise NotImplementedError

    def _check_snapshot(self, snapshot) -> None:
        """A snapshot of this kind of env and size, with counters it can go on from."""
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"set_state takes a snapshot from get_state(), got {type(snapshot).__name__}")
        mine, envs = type(self).__name__, self._snapshot_envs()
        if snapshot.env and (snapshot.env, snapshot.num_envs) != (mine, envs):
            theirs = snapshot.env + ("" if snapshot.num_envs is None else f" with num_envs={snapshot.num_envs}")
            raise ValueError(
                f"set_state got a snapshot of a {theirs}; this env is a {mine}"
                + ("" if envs is None else f" with num_envs={envs}")
            )
        _check_counters(snapshot.elapsed, envs)

    def set_state(self, snapshot: Snapshot) -> None:
        """Restores a :meth:`get_state` snapshot: the same actions then replay
        the same trajectory, bit for bit (the model's randomness included,
        when it draws from the ``generator`` the env hands it).

        Args:
            snapshot: what :meth:`get_state` returned, on an env of the same
                kind and size (its example restores one).
        """
        self._check_snapshot(snapshot)
        state, obs = snapshot.state, snapshot.observation
        if snapshot.copied:
            state, obs = deep_copy(state), deep_copy(obs)
        self._state, self._obs = state, obs
        self._elapsed = _copy_counters(snapshot.elapsed)
        if self._generator is not None and snapshot.generator_state is not None:
            self._generator.set_state(snapshot.generator_state)
        self.np_random.bit_generator.state = deep_copy(snapshot.np_random_state)  # type: ignore[attr-defined]
        if snapshot.space_rng_states is not None:
            rngs = _space_rngs(self.observation_space)
            if len(rngs) == len(snapshot.space_rng_states):  # the env's own space: always, through _check_snapshot
                for rng, saved in zip(rngs, snapshot.space_rng_states):
                    rng.bit_generator.state = deep_copy(saved)
        if snapshot.autoreset is not None:
            self._autoreset = snapshot.autoreset.copy()
        if self._ensemble is not None:
            self._ensemble.restore(snapshot.ensemble)
        if self._reward_layer is not None and snapshot.reward_base is not None:
            self._reward_layer.base = snapshot.reward_base.copy()
        self._note_state_device(state)
        if _is_tensor(self._elapsed):  # the device copies of the counters and the ended mask replay too
            torch_route.restore_counters(self, self._autoreset)

    def offload(self, device="cpu") -> None:
        """Moves the model (an ``nn.Module``) and the state to ``device`` (the
        CPU), freeing the accelerator between collection and training;
        ``step`` refuses to run until :meth:`onload` brings them back."""
        if self._offloaded is not None or _torch is None:
            return
        home = model_device(self.world_model, getattr(self, "device", None))
        if isinstance(self.world_model, _torch.nn.Module):
            self.world_model.to(device)
        self._state = to_device(self._state, device)
        self._offloaded = home

    def onload(self) -> None:
        """Moves the model and the state back to the device :meth:`offload` took them from."""
        home = self._offloaded
        if home is None:
            return
        if isinstance(self.world_model, _torch.nn.Module):
            self.world_model.to(home)
        self._state = to_device(self._state, home)
        self._offloaded = None

    def _refuse_offloaded(self):
        raise RuntimeError(
            f"the env is offloaded (offload() moved its model and state off {self._offloaded}): call onload() "
            "before step()"
        )
