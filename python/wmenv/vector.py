"""WorldModelVectorEnv: num_envs rollouts of a world model in one call per step."""

from __future__ import annotations

from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from . import _backend, _spaces
from ._base import WorldModelBase
from .autoreset import MODES, check_autoreset_mode, check_batch_axes_option, merge_by_mask
from .batch_reset import reset_batch, reset_options
from .capture import check_capture
from .groups import check_group_size, check_num_envs, check_seeds
from .imagination import imagine
from .options import document_options
from .planning import Rollout, open_loop
from .route import batch_plan, batch_route

__all__ = ["WorldModelVectorEnv", "merge_by_mask"]

_torch: Any = _backend.torch


@document_options
class WorldModelVectorEnv(WorldModelBase, gym.vector.VectorEnv):
    """``num_envs`` rollouts of a world model, advanced by one model call per step.

    The model and adapters see batches (a leading ``num_envs`` dimension on
    every leaf, ``reward`` and ``terminated`` of shape ``(num_envs,)``).
    Partial resets call the reset with ``options["reset_mask"]`` (a bool
    array); what it returns is merged by that mask, so only the masked envs
    change. ``batched_model`` is accepted for symmetry with WorldModelEnv and
    changes nothing: this env's model always works on the whole batch.

    Args:
        world_model: the model, as for WorldModelEnv.
        num_envs: how many rollouts each model call advances.
        observation_space: the single env's observation space (batched by Gymnasium's rule).
        action_space: the single env's action space.
        seed: seeds the spaces and the env's generator.
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default), ``SAME_STEP``
            or ``DISABLED``: what a step does about envs that ended.
        batch_axes: where the batch axis of state leaves is, for partial
            resets: 0 by default, an int for all leaves, or a dict from leaf
            paths (``"state[1][0]"``) to axes (see :func:`merge_by_mask`).
        group_size: groups of this many consecutive envs share each reset's
            start (see :mod:`wmenv.groups`).
        capture: with ``output="torch"`` and the model on CUDA, record the
            step once as a CUDA graph and replay it every step (see
            :mod:`wmenv.capture`); elsewhere the env warns and steps uncaptured.
        {shared options}

    Example:
        >>> import numpy as np, gymnasium as gym, torch
        >>> from wmenv import WorldModelVectorEnv
        >>> def step(model, state, action):
        ...     nxt = state + action
        ...     return nxt, nxt, -nxt.abs().sum(dim=1)
        >>> env = WorldModelVectorEnv(
        ...     None, 8, gym.spaces.Box(-10, 10, (2,)), gym.spaces.Box(-1, 1, (2,)),
        ...     transition_fn=step, initial_state=torch.zeros(8, 2), initial_observation=torch.zeros(8, 2))
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.ones((8, 2), np.float32))
        >>> obs.shape, reward.dtype, terminated.dtype
        ((8, 2), dtype('float32'), dtype('bool'))
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30, "autoreset_mode": AutoresetMode.NEXT_STEP}
    _reset_batch = reset_batch  # resets all envs or the masked ones (wmenv.batch_reset)

    def __init__(
        self,
        world_model: Any,
        num_envs: int,
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
        autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
        batched_model: bool = False,
        batch_axes: Any = 0,
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
        group_size: Optional[int] = None,
        capture: bool = False,
    ):
        self.num_envs = check_num_envs(num_envs)
        self.group_size = check_group_size(group_size, self.num_envs)
        self._env_seeds = None
        self.autoreset_mode = check_autoreset_mode(autoreset_mode, output)
        self._autoreset_route = MODES[self.autoreset_mode]  # what a step does about envs that ended
        self._store_options(world_model, observation_space, action_space, locals())
        self.capture = check_capture(capture, self)
        self._batch_of_one = False  # batched_model changes nothing here: the model always sees the whole batch
        self.batch_axes = check_batch_axes_option(batch_axes)
        self._axes_checked = not isinstance(batch_axes, dict)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        observation_space, action_space = self._chunked(observation_space, action_space)
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.observation_space = batch_space(observation_space, self.num_envs)
        self.action_space = batch_space(action_space, self.num_envs)
        self._state = None
        self._obs = None
        self._elapsed = np.zeros(self.num_envs, np.int64)
        self._autoreset = np.zeros(self.num_envs, np.bool_)
        self._reset_info = None  # the info of this step's autoreset, if any
        # info["_elapsed_steps"] is all True every step: one read-only array, not one per step
        self._all_true = np.ones(self.num_envs, np.bool_)
        self._all_true.flags.writeable = False
        self._compile()
        if seed is not None:
            self._seed(seed)

    def _compile_specs(self):
        self._obs_spec, self._action_spec, self._discrete = _spaces.batch_specs(
            self.single_action_space, self.observation_space, self.action_space, self.num_envs, self.torch_actions
        )
        self._model_obs_spec = self._obs_spec

    def _build_plan(self):
        self._plan = batch_plan(self)
        self._route = batch_route(self)

    def _seeded_spaces(self):
        return (self.single_observation_space, self.single_action_space, self.observation_space, self.action_space)

    def _has_position(self) -> bool:
        return self._obs is not None

    def _snapshot_envs(self) -> Optional[int]:
        return self.num_envs

    @property
    def state(self):
        """The current batched model state."""
        return self._state

    @property
    def elapsed_steps(self) -> np.ndarray:
        """Steps taken by each env since its last reset."""
        if _torch is not None and isinstance(self._elapsed, _torch.Tensor):
            return self._elapsed.cpu().numpy()
        return self._elapsed.copy()

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        """Resets all envs, or those ``options["reset_mask"]`` (a bool array)
        selects, merging the reset's result into the batch by that mask.

        Args:
            seed: seeds the env's generator, NumPy RNG and spaces (an int,
                or one int per env).
            options: passed to the reset, with ``reset_mask`` set.

        Returns:
            ``(obs, info)``: the batched observations and the reset's info.

        Example:
            >>> import numpy as np, gymnasium as gym, torch
            >>> from wmenv import WorldModelVectorEnv
            >>> env = WorldModelVectorEnv(None, 3, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
            ...     transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]), initial_state=torch.zeros(3, 1),
            ...     initial_observation=torch.zeros(3, 1))
            >>> _ = env.reset(seed=0)
            >>> _ = env.step(np.ones((3, 1), np.float32))
            >>> obs, info = env.reset(options={"reset_mask": np.array([True, False, False])})
            >>> obs[:, 0].tolist()
            [0.0, 1.0, 1.0]
        """
        seed, self._env_seeds = check_seeds(seed, self.num_envs)
        super().reset(seed=seed)
        if seed is not None:
            self._seed(seed)
        options, mask, old_state, old_obs = reset_options(self, options)
        try:
            with self._autograd_off:
                state, obs, info = self._reset_batch(seed, options, mask, old_state, old_obs)
        finally:
            self._env_seeds = None  # per-env seeds serve this reset only
        self._note_state_device(state)
        self._state, self._obs = state, obs
        self._route.reset_counters(self, mask)
        return obs, info

    def rollout(self, actions, state, discount=None, observations: bool = True, horizon=None) -> Rollout:
        """Evaluates ``num_envs`` open-loop action sequences from a batched
        ``state``, with one model call per horizon step: the primitive of
        CEM/MPPI planners.

        ``actions`` has shape ``(horizon, num_envs, *single_action_shape)``.
        A rollout's rewards after the step on which it terminated are 0 (that
        step's reward counts); ``discount`` (optional) weights ``returns``.
        ``observations=False`` keeps no observations (``Rollout.observations``
        is ``None``): planning on rewards alone, e.g. with a pixel model,
        skips converting and storing every candidate's frames.
        There are no autoresets and no time limit. The env's own state,
        counters, autoreset mask and generator are left as they were (the
        model's draws come from a generator restored afterwards).

        ``actions`` may instead be a policy, ``policy(state) -> actions``,
        with ``horizon`` steps (``rollout(policy, state, horizon)``, or
        ``horizon=``; a float third argument is still the discount):
        closed-loop imagination, differentiable with ``output="torch"`` and
        ``grad=True`` (see :mod:`wmenv.imagination`).

        Example:
            >>> import numpy as np, gymnasium as gym, torch
            >>> from wmenv import WorldModelVectorEnv, repeat_state
            >>> env = WorldModelVectorEnv(None, 4, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
            ...     transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]), initial_state=torch.zeros(4, 1))
            >>> plan = np.ones((3, 4, 1), np.float32)
            >>> env.rollout(plan, repeat_state(torch.zeros(1), 4)).returns.tolist()
            [6.0, 6.0, 6.0, 6.0]
        """
        if self.relative_reward:
            raise ValueError(
                "rollout starts from a state, with no previous observation to difference against: build the env "
                "with relative_reward=False to plan on the reward model's scores"
            )
        if callable(actions):  # a policy: closed-loop, differentiable imagination (wmenv.imagination)
            if horizon is None and isinstance(discount, (int, np.integer)) and not isinstance(discount, bool):
                horizon, discount = discount, None  # rollout(policy, state, horizon): an int third is the horizon
            return imagine(self, actions, state, horizon, discount, observations)
        if horizon is not None:
            raise TypeError("horizon= is for a policy rollout; an action array's first axis is its horizon")
        return open_loop(self, actions, state, discount, observations)

    def step(self, actions):
        """Advances all ``num_envs`` rollouts in one model call: batched
        ``(obs, reward, terminated, truncated, info)``, with autoresets as
        ``autoreset_mode`` says.

        Args:
            actions: a batch of ``num_envs`` actions (NumPy or a tensor).

        Example:
            >>> import numpy as np, gymnasium as gym, torch
            >>> from wmenv import WorldModelVectorEnv
            >>> env = WorldModelVectorEnv(None, 3, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
            ...     transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]), initial_state=torch.zeros(3, 1))
            >>> _ = env.reset(seed=0)
            >>> obs, reward, terminated, truncated, info = env.step(np.ones((3, 1), np.float32))
            >>> reward.tolist(), terminated.tolist(), info["elapsed_steps"].tolist()
            ([1.0, 1.0, 1.0], [False, False, False], [1, 1, 1])
        """
        if self._obs is None:
            raise RuntimeError("Call reset() before step().")
        if self._offloaded is not None:
            self._refuse_offloaded()
        self._autoreset_route.check(self)
        return self._route.step(self, actions)

    def render(self):
        """Frames of all envs as one batched NumPy array (``render_fn``'s, or
        the observation's ``image``/``pixels``/``rgb`` entry, or the
        observation; channels-first images as ``(num_envs, H, W, 3)`` ``uint8``).

        Example:
            >>> import numpy as np, gymnasium as gym, torch
            >>> from wmenv import WorldModelVectorEnv
            >>> env = WorldModelVectorEnv(None, 3, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
            ...     transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]), initial_state=torch.zeros(3, 1))
            >>> _ = env.reset(seed=0)
            >>> env.render().shape
            (3, 1)
        """
        return self._frame(self._obs, 1)

    def close_extras(self, **kwargs):
        """Calls the model's ``close()`` when it has one (once)."""
        self._close_model()
