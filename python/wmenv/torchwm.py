"""TorchWM's ``WorldModelEnv`` and ``make_world_model_env`` with TorchWM's defaults.

Migrating from TorchWM is a one-line import change::

    from world_models.envs import WorldModelEnv, make_world_model_env   # before
    from wmenv.torchwm import WorldModelEnv, make_world_model_env       # after

Two defaults differ from :class:`wmenv.WorldModelEnv`, as in TorchWM: the next
model state is put in ``info["model_state"]`` on every step, and a seed seeds
the observation and action spaces with the same value. Every fix of wmenv
(see the README's list of differences) applies.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> from wmenv.torchwm import WorldModelEnv
    >>> env = WorldModelEnv(None, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-1, 1, (1,)),
    ...                     transition_fn=lambda m, s, a: (a, a), initial_state=np.zeros(1, np.float32),
    ...                     torch_actions=False)
    >>> _ = env.reset(seed=0)
    >>> env.step(np.ones(1, np.float32))[4]["model_state"]
    array([1.], dtype=float32)
"""

from __future__ import annotations

from . import env as _env

__all__ = ["WorldModelEnv", "make_world_model_env"]


class WorldModelEnv(_env.WorldModelEnv):
    """:class:`wmenv.WorldModelEnv` with TorchWM's defaults (``info_model_state=True``,
    both spaces seeded with the seed itself)."""

    def __init__(self, world_model, observation_space, action_space, **kwargs):
        kwargs.setdefault("info_model_state", True)
        super().__init__(world_model, observation_space, action_space, **kwargs)

    def _seed(self, seed):
        super()._seed(seed)
        self.action_space.seed(seed)  # TorchWM seeds both spaces with the seed itself


def make_world_model_env(world_model, **kwargs) -> WorldModelEnv:
    """Builds a :class:`WorldModelEnv` with TorchWM's defaults; ``kwargs`` are its constructor's."""
    return WorldModelEnv(world_model, **kwargs)
