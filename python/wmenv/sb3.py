"""Stable-Baselines3 over a WorldModelVectorEnv: one model call per VecEnv step.

SB3 takes its own ``VecEnv`` type, not Gymnasium vector envs; this adapter
gives it one whose ``step_wait`` advances every rollout in a single batched
model call. SB3 expects envs that reset themselves in the step that ends them
(Gymnasium's SAME_STEP autoreset), with the last observation in
``info["terminal_observation"]``: the adapter builds its env that way. It also
reports each finished episode in ``info["episode"]`` (``r``, ``l``, ``t``, as
SB3's ``Monitor`` does), so ``ep_rew_mean`` is logged with no ``VecMonitor``.

Example:
    >>> import gymnasium as gym, numpy as np, torch
    >>> from wmenv.sb3 import WorldModelVecEnv
    >>> def step(model, state, action):
    ...     nxt = torch.clamp(state + 0.1 * action, -1, 1)
    ...     return nxt, nxt, -nxt.abs().sum(dim=1)
    >>> venv = WorldModelVecEnv.from_model(
    ...     None, 4, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2,)), transition_fn=step,
    ...     initial_state=torch.zeros(4, 2), initial_observation=torch.zeros(4, 2), max_episode_steps=20)
    >>> venv.reset().shape
    (4, 2)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from .vector import WorldModelVectorEnv

__all__ = ["WorldModelVecEnv"]


_OWN_KEYS = frozenset(
    ("elapsed_steps", "_elapsed_steps", "final_obs", "_final_obs", "final_info", "_final_info", "model_state")
)


def _spread_model_info(info: dict, infos: list) -> None:
    """The model's own ``info`` entries (uncertainty, decoded extras) into
    SB3's one-dict-per-env list: a value with one row per env is split by
    env (only where its ``"_key"`` mask, if any, is True); any other value
    goes to every env as it is."""
    n = len(infos)
    for key, value in info.items():
        if key in _OWN_KEYS or (key.startswith("_") and key[1:] in info):
            continue
        mask = info.get("_" + key)
        rows = getattr(value, "shape", None)
        if rows is not None and len(rows) >= 1 and rows[0] == n:
            for i in range(n):
                if mask is None or bool(mask[i]):
                    infos[i][key] = value[i]
        else:
            for i in range(n):
                infos[i][key] = value


class WorldModelVecEnv(VecEnv):
    """A Stable-Baselines3 ``VecEnv`` over a :class:`WorldModelVectorEnv`.

    Args:
        env: a WorldModelVectorEnv built with ``autoreset_mode=SAME_STEP``
            (see :meth:`from_model`, which builds one).
    """

    def __init__(self, env: WorldModelVectorEnv):
        if not isinstance(env, WorldModelVectorEnv):
            raise TypeError(f"env must be a WorldModelVectorEnv, got {type(env).__name__}")
        if env.autoreset_mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                "Stable-Baselines3 resets envs in the step that ends them: build the WorldModelVectorEnv with "
                f"autoreset_mode=AutoresetMode.SAME_STEP (got {env.autoreset_mode}), or use WorldModelVecEnv.from_model"
            )
        self.env = env
        self._actions: Optional[np.ndarray] = None
        # Episode statistics as SB3's Monitor reports them (info["episode"]),
        # so ep_rew_mean / ep_len_mean are logged without a VecMonitor.
        self._returns = np.zeros(env.num_envs, np.float64)
        self._lengths = np.zeros(env.num_envs, np.int64)
        self._start = time.time()
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    @classmethod
    def from_model(cls, world_model, num_envs, observation_space, action_space, **kwargs) -> WorldModelVecEnv:
        """Builds the vector env (SAME_STEP autoreset) and wraps it; ``kwargs``
        are WorldModelVectorEnv's keyword options."""
        kwargs["autoreset_mode"] = AutoresetMode.SAME_STEP
        return cls(WorldModelVectorEnv(world_model, num_envs, observation_space, action_space, **kwargs))

    def reset(self):
        """Resets every env: the batched observations."""
        seed = self._seeds[0]
        options = dict(self._options[0]) if self._options[0] else None
        obs, info = self.env.reset(seed=seed, options=options)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Keeps the actions for :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self):
        """Steps with the kept actions: SB3's ``(obs, rewards, dones, infos)``."""
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        infos = [{"TimeLimit.truncated": bool(truncated[i] and not terminated[i])} for i in range(self.num_envs)]
        _spread_model_info(info, infos)
        if dones.any():
            final_obs = info["final_obs"]
            elapsed = round(time.time() - self._start, 6)
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = final_obs[i]
                infos[i]["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]), "t": elapsed}
            self._returns[dones] = 0.0
            self._lengths[dones] = 0
        return obs, rewards, dones, infos

    def close(self) -> None:
        """Closes the wrapped env."""
        self.env.close()

    def seed(self, seed: Optional[int] = None):
        """Seeds the next reset (all rollouts share one model call, so one seed)."""
        self._seeds = [seed] + [None] * (self.num_envs - 1)
        return [seed] * self.num_envs

    def _count(self, indices) -> int:
        return len(list(self._get_indices(indices)))

    def get_attr(self, attr_name: str, indices=None) -> list:
        """The attribute of the wrapped env, once per selected env."""
        return [getattr(self.env, attr_name)] * self._count(indices)

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        """Sets the attribute on the wrapped env."""
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list:
        """Calls the wrapped env's method, once per selected env."""
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * self._count(indices)

    def env_is_wrapped(self, wrapper_class, indices=None) -> list:
        """Whether the wrapped env is wrapped by ``wrapper_class``, per selected env."""
        return [False] * self._count(indices)

    def get_images(self) -> Sequence[Optional[np.ndarray]]:
        """The frame of each env."""
        frames = self.env.render()
        return [None] * self.num_envs if frames is None else list(frames)
