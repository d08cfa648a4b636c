"""WorldModelEnv: a world model as a Gymnasium environment."""

from __future__ import annotations

from typing import Any, Callable, Optional

import gymnasium as gym

from . import _spaces
from ._base import _NOT_RESET, WorldModelBase, _torch
from .options import document_options
from .route import single_route, step_plan

__all__ = ["WorldModelEnv", "make_world_model_env"]


@document_options
class WorldModelEnv(WorldModelBase, gym.Env):
    """A trained world model as a single Gymnasium environment.

    The model predicts the next state, observation, reward and termination;
    adapters (``reset_fn``, ``transition_fn``, ``reward_fn``, ...) fill in what
    it does not. The README lists every accepted form.

    Args:
        world_model: the model; its ``reset``/``step``-like methods are found
            by name, or it is called directly.
        observation_space: the space observations are conformed to.
        action_space: the space actions are converted for.
        seed: seeds the spaces and the env's generator.
        {shared options}

    Example:
        >>> import numpy as np, gymnasium as gym
        >>> from wmenv import WorldModelEnv
        >>> def step(state, action):
        ...     nxt = state + action
        ...     return nxt, nxt, float(-abs(nxt).sum())
        >>> env = WorldModelEnv(
        ...     None, gym.spaces.Box(-10, 10, (2,)), gym.spaces.Box(-1, 1, (2,)),
        ...     initial_state=np.zeros(2, np.float32),
        ...     initial_observation=np.zeros(2, np.float32),
        ...     transition_fn=lambda m, s, a: step(s, a), torch_actions=False)
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.ones(2, np.float32))
        >>> reward
        -2.0
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        world_model: Any,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        *,
        initial_observation: Any = None,
        initial_state: Any = None,
        reset_fn: Optional[Callable] = None,
        transition_fn: Optional[Callable] = None,
        reward_fn: Optional[Callable] = None,
        terminal_fn: Optional[Callable] = None,
        render_fn: Optional[Callable] = None,
        action_transform_fn: Optional[Callable] = None,
        max_episode_steps: Optional[int] = None,
        render_mode: Optional[str] = None,
        device: Any = None,
        torch_actions: bool = True,
        seed: Optional[int] = None,
        info_model_state: bool = False,
        grad: bool = False,
        backend: Optional[str] = None,
        batched_model: bool = False,
        start_data: Any = None,
        encode_fn: Optional[Callable] = None,
        start_context: Optional[int] = None,
        output: str = "numpy",
        members: Optional[int] = None,
        member: Any = "random",
        uncertainty: Optional[str] = None,
        penalty: float = 0.0,
        halt_threshold: Optional[float] = None,
        halt_reward: float = 0.0,
        terminated_threshold: Optional[float] = None,
        global_rng: bool = False,
        reward_model: Optional[Callable] = None,
        success_threshold: Optional[float] = None,
        relative_reward: bool = False,
        progress: Any = None,
        chunk: Optional[int] = None,
        chunk_reward: Any = "sum",
        chunk_frames: bool = True,
    ):
        self._store_options(world_model, observation_space, action_space, locals())
        self._batch_of_one = self.batched_model
        observation_space, action_space = self._chunked(observation_space, action_space)
        self.observation_space = observation_space
        self.action_space = action_space
        self._state = None
        self._obs = _NOT_RESET
        self._elapsed = 0
        self._compile()
        if seed is not None:
            self._seed(seed)

    def _compile_specs(self):
        self._obs_spec = _spaces.observation_spec(self.observation_space)
        self._model_obs_spec = _spaces.with_leading_one(self._obs_spec) if self._batch_of_one else self._obs_spec
        self._action_spec = _spaces.action_spec(self.action_space, _torch, None, self.torch_actions)
        # Discrete observations go out as np.int64 scalars (NumPy mode; the cores give 0-d arrays)
        self._scalars = None if self._torch_out is not None else _spaces.discrete_scalars(self.observation_space)

    def _build_plan(self):
        self._plan = step_plan(self)
        self._route = single_route(self)

    def _seeded_spaces(self):
        return (self.observation_space, self.action_space)

    def _has_position(self) -> bool:
        return self._obs is not _NOT_RESET

    def _snapshot_envs(self) -> Optional[int]:
        return None

    @property
    def state(self):
        """The current model state."""
        return self._state

    @property
    def elapsed_steps(self) -> int:
        """Steps taken since the last reset."""
        return int(self._elapsed)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        """Starts an episode: ``(obs, info)`` from the reset adapter, the
        model's reset method, ``start_data``, or the default reset.

        Args:
            seed: seeds the env's generator, NumPy RNG and spaces.
            options: passed to the reset (``{}`` when ``None``);
                ``{"state": s}`` (and optionally ``"observation"``) starts
                from ``s`` without calling the reset.

        Returns:
            ``(obs, info)``: the first observation and the reset's info.

        Example:
            >>> import numpy as np, gymnasium as gym
            >>> from wmenv import WorldModelEnv
            >>> env = WorldModelEnv(None, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
            ...                     transition_fn=lambda m, s, a: (s + a, s + a, float(s[0])),
            ...                     initial_state=np.zeros(1, np.float32), torch_actions=False)
            >>> obs, info = env.reset(seed=0, options={"state": np.full(1, 2.0, np.float32)})
            >>> obs.tolist(), info
            ([2.0], {})
        """
        super().reset(seed=seed)
        if seed is not None:
            self._seed(seed)
        if options is None:
            options = {}
        with self._autograd_off:
            state, obs, info = self._reset_result(seed, options)
        self._note_state_device(state)
        self._state = state
        self._obs = obs
        self._elapsed = 0
        if self._ensemble is not None:
            self._ensemble.new_episode()
        self._rebase_reward(obs)
        return (obs if self._scalars is None else self._scalars(obs)), info

    def step(self, action):
        """Advances the model one step: ``(obs, reward, terminated,
        truncated, info)`` with a Python ``float`` and ``bool``s (tensors with
        ``output="torch"``); ``info`` holds ``elapsed_steps``. An error in the
        model or an adapter leaves the env as it was.

        Args:
            action: an action of ``action_space`` (NumPy, a tensor, a number or a list).

        Example:
            >>> import numpy as np, gymnasium as gym
            >>> from wmenv import WorldModelEnv
            >>> env = WorldModelEnv(None, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
            ...                     transition_fn=lambda m, s, a: (s + a, s + a, float(s[0])),
            ...                     initial_state=np.zeros(1, np.float32), torch_actions=False)
            >>> _ = env.reset(seed=0)
            >>> obs, reward, terminated, truncated, info = env.step(np.ones(1, np.float32))
            >>> obs.tolist(), reward, terminated, truncated, info["elapsed_steps"]
            ([1.0], 0.0, False, False, 1)
        """
        if self._obs is _NOT_RESET:
            raise RuntimeError("Call reset() before step().")
        if self._offloaded is not None:
            self._refuse_offloaded()
        elapsed = self._elapsed + 1
        state, obs, reward, terminated, truncated, info = self._route.step(self, action, elapsed)
        self._state = state
        self._obs = obs
        self._elapsed = elapsed
        if self._scalars is not None:
            obs = self._scalars(obs)
        return obs, reward, terminated, truncated, info

    def render(self):
        """The current frame: ``render_fn``'s, or the observation's
        ``image``/``pixels``/``rgb`` entry, or the observation, as NumPy
        (channels-first images as ``(H, W, 3)`` ``uint8``).

        Example:
            >>> import numpy as np, gymnasium as gym
            >>> from wmenv import WorldModelEnv
            >>> frames = gym.spaces.Box(0, 1, (3, 8, 8))
            >>> env = WorldModelEnv(None, frames, gym.spaces.Discrete(2), render_mode="rgb_array",
            ...                     transition_fn=lambda m, s, a: (s, s, 0.0),
            ...                     initial_observation=np.ones((3, 8, 8), np.float32), torch_actions=False)
            >>> _ = env.reset(seed=0)
            >>> frame = env.render()
            >>> frame.shape, frame.dtype, int(frame.max())
            ((8, 8, 3), dtype('uint8'), 255)
        """
        return self._frame(None if self._obs is _NOT_RESET else self._obs, 0)

    def close(self):
        """Calls the model's ``close()`` when it has one (once)."""
        self._close_model()


def make_world_model_env(world_model, **kwargs) -> WorldModelEnv:
    """Builds a :class:`WorldModelEnv`; ``kwargs`` are its constructor's.

    Example:
        >>> import gymnasium as gym
        >>> from wmenv import make_world_model_env
        >>> env = make_world_model_env(lambda s, a: s, observation_space=gym.spaces.Box(0, 1, (1,)),
        ...                            action_space=gym.spaces.Discrete(2), torch_actions=False)
        >>> isinstance(env, gym.Env)
        True
    """
    return WorldModelEnv(world_model, **kwargs)
