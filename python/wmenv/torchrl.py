"""TorchRL's ``EnvBase`` over a WorldModelVectorEnv: batched TensorDicts on the model's device.

``TorchRLEnv(vector_env)`` is an ``EnvBase`` with ``batch_size=[num_envs]``
whose step is one ``vector_env.step`` (one model call for every env). The
vector env must be built with ``output="torch"`` (observations, rewards and
flags stay tensors on the model's device). TorchRL resets envs itself,
through the ``"_reset"`` mask of ``env.reset(tensordict)``, which becomes
the vector env's ``options["reset_mask"]`` (a partial reset, merged by
mask, which also clears those envs' pending autoreset).
``autoreset_mode=AutoresetMode.DISABLED`` suits it best (stepping an env that
ended is then an error, as TorchRL expects); with ``NEXT_STEP`` an env that
TorchRL steps without resetting is reset by the vector env instead.
:meth:`TorchRLEnv.from_model` builds a vector env with ``DISABLED``.

Specs come from the Gymnasium spaces: a ``Box`` is ``Bounded`` (or
``Unbounded`` where its bounds are infinite), ``Discrete`` is
``Categorical`` (the action an integer index, shape ``(num_envs,)``),
``MultiDiscrete`` is ``MultiCategorical``, ``MultiBinary`` is ``Binary``, and a
``Dict`` observation space gives one entry per key. The observation is under
``"observation"`` (a ``Box`` space) or under its keys (a ``Dict`` space);
``"reward"`` is ``(num_envs, 1)`` float32 and ``"done"``,
``"terminated"``, ``"truncated"`` are ``(num_envs, 1)`` bool, as TorchRL
expects. ``set_seed(s)`` reseeds the vector env (its next reset uses ``s``).

Example:
    >>> import gymnasium as gym, torch
    >>> from wmenv.torchrl import TorchRLEnv
    >>> env = TorchRLEnv.from_model(
    ...     None, 4, gym.spaces.Box(-9, 9, (2,)), gym.spaces.Box(-1, 1, (2,)),
    ...     transition_fn=lambda m, s, a: (s + a, s + a, -(s + a).abs().sum(1)), initial_state=torch.zeros(4, 2))
    >>> td = env.rollout(3)
    >>> td.batch_size, td["next", "reward"].shape
    (torch.Size([4, 3]), torch.Size([4, 3, 1]))
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Bounded, Categorical, Composite, MultiCategorical, Unbounded
from torchrl.envs import EnvBase

from .vector import WorldModelVectorEnv

__all__ = ["TorchRLEnv", "spec_of"]


def _torch_dtype(dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros((), dtype)).dtype


def spec_of(space: spaces.Space, num_envs: int, device):
    """The TorchRL spec of ``num_envs`` envs' values of a Gymnasium ``space``."""
    if isinstance(space, spaces.Box):
        shape = (num_envs, *space.shape)
        dtype = _torch_dtype(space.dtype)
        if np.isfinite(space.low).all() and np.isfinite(space.high).all():
            low = torch.as_tensor(np.array(np.broadcast_to(space.low, space.shape)), dtype=dtype, device=device)
            high = torch.as_tensor(np.array(np.broadcast_to(space.high, space.shape)), dtype=dtype, device=device)
            return Bounded(low.expand(shape), high.expand(shape), shape=shape, dtype=dtype, device=device)
        return Unbounded(shape=shape, dtype=dtype, device=device)
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise TypeError(f"TorchRLEnv maps Discrete spaces that start at 0; this one starts at {space.start}")
        return Categorical(int(space.n), shape=(num_envs,), dtype=torch.int64, device=device)
    if isinstance(space, spaces.MultiDiscrete):
        nvec = torch.as_tensor(space.nvec.reshape(-1), dtype=torch.int64)
        if space.nvec.ndim != 1:
            raise TypeError("TorchRLEnv maps one-dimensional MultiDiscrete spaces")
        return MultiCategorical(nvec, shape=(num_envs, len(nvec)), dtype=torch.int64, device=device)
    if isinstance(space, spaces.MultiBinary):
        n = int(np.prod(space.shape))
        return Binary(n, shape=(num_envs, *space.shape), dtype=torch.int8, device=device)
    if isinstance(space, spaces.Dict):
        return Composite({k: spec_of(s, num_envs, device) for k, s in space.spaces.items()}, shape=(num_envs,))
    raise TypeError(f"TorchRLEnv has no TorchRL spec for a {type(space).__name__} space")


class TorchRLEnv(EnvBase):
    """A WorldModelVectorEnv (``output="torch"``) as a TorchRL ``EnvBase`` of
    ``batch_size=[num_envs]``."""

    def __init__(self, env: WorldModelVectorEnv, device: Any = None):
        if not isinstance(env, WorldModelVectorEnv):
            raise TypeError(f"env must be a WorldModelVectorEnv, got {type(env).__name__}")
        if env.output != "torch":
            raise ValueError('TorchRLEnv needs a WorldModelVectorEnv built with output="torch" (tensors in and out)')
        if device is None:
            given = getattr(env, "device", None)
            device = given if given is not None else _model_device(env)
        n = env.num_envs
        super().__init__(device=device, batch_size=torch.Size([n]))
        self.env = env
        obs_space = env.single_observation_space
        self._dict_obs = isinstance(obs_space, spaces.Dict)
        obs_spec = spec_of(obs_space, n, self.device)
        self.observation_spec = obs_spec.clone() if self._dict_obs else Composite(observation=obs_spec, shape=(n,))
        self.action_spec = spec_of(env.single_action_space, n, self.device)
        self.reward_spec = Unbounded(shape=(n, 1), dtype=torch.float32, device=self.device)
        flag = Categorical(2, shape=(n, 1), dtype=torch.bool, device=self.device)
        self.done_spec = Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(n,))
        self._seed: Optional[int] = None

    @classmethod
    def from_model(cls, world_model, num_envs, observation_space, action_space, **kwargs) -> TorchRLEnv:
        """Builds the WorldModelVectorEnv (``output="torch"``, ``autoreset_mode=DISABLED``) and wraps it."""
        for name in ("output", "autoreset_mode"):
            if name in kwargs:
                raise TypeError(f"TorchRLEnv.from_model sets {name} itself")
        env = WorldModelVectorEnv(
            world_model,
            num_envs,
            observation_space,
            action_space,
            output="torch",
            autoreset_mode=AutoresetMode.DISABLED,
            **kwargs,
        )
        return cls(env)

    def _here(self, t):
        """``t`` on the env's device (perf: ``to()`` is an op even where it changes nothing)."""
        return t if t.device == self.device else t.to(self.device)

    def _observation(self, obs) -> dict:
        if self._dict_obs:
            return {k: self._here(v) for k, v in obs.items()}
        return {"observation": self._here(obs)}

    def _flags(self, terminated, truncated) -> dict:
        terminated = self._here(terminated).unsqueeze(-1)
        truncated = self._here(truncated).unsqueeze(-1)
        return {"done": terminated | truncated, "terminated": terminated, "truncated": truncated}

    def _reset(self, tensordict: Optional[TensorDictBase] = None, **kwargs) -> TensorDictBase:
        n = self.env.num_envs
        options = None
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(n).cpu().numpy().astype(bool)
            if mask.all() or not self.env._has_position():
                options = None
            elif mask.any():
                options = {"reset_mask": mask}
            else:  # nothing to reset: the current observations
                obs = self.env._obs
                zeros = torch.zeros(n, dtype=torch.bool, device=self.device)
                return TensorDict({**self._observation(obs), **self._flags(zeros, zeros)}, batch_size=self.batch_size)
        seed, self._seed = self._seed, None
        obs, _ = self.env.reset(seed=seed, options=options)
        zeros = torch.zeros(n, dtype=torch.bool, device=self.device)
        return TensorDict({**self._observation(obs), **self._flags(zeros, zeros)}, batch_size=self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        obs, reward, terminated, truncated, _ = self.env.step(action)
        out = {
            **self._observation(obs),
            "reward": self._here(reward).unsqueeze(-1),  # (num_envs,) float32 from the vector env
            **self._flags(terminated, truncated),
        }
        return TensorDict(out, batch_size=self.batch_size)

    def _set_seed(self, seed: Optional[int]) -> None:
        self._seed = seed

    def close(self, *, raise_if_closed: bool = True) -> None:
        """Closes the wrapped vector env."""
        self.env.close()
        super().close(raise_if_closed=raise_if_closed)


def _model_device(env) -> torch.device:
    model = env.world_model
    if isinstance(model, torch.nn.Module):
        for param in model.parameters():
            return param.device
        for buffer in model.buffers():
            return buffer.device
    return torch.device("cpu")
