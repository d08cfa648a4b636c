"""WorldModelVectorEnv: num_envs rollouts of a world model in one call per step."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from . import _backend, _spaces, _staging
from ._base import WorldModelBase, _is_grad_enabled, _set_grad_enabled
from .autoreset import MODES, check_batch_axes, check_reset_mask, merge_by_mask, scatter_by_mask
from .chunks import repeat_frames
from .groups import check_group_size, check_seeds, share_within_groups
from .imagination import imagine
from .output import first_leaf
from .planning import ObservationRows, Rollout, check_discount, discounted_returns
from .route import BatchPlan

__all__ = ["WorldModelVectorEnv", "merge_by_mask"]

_torch: Any = _backend.torch


def _check_discrete_range(low, n, space, action):
    """A ValueError naming the first env whose action is outside ``space``."""
    values = action.cpu().numpy() if _torch is not None and isinstance(action, _torch.Tensor) else np.asarray(action)
    bad = (values < low) | (values >= low + n)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(
            f"action {int(values.reshape(-1)[i])} of env {i} is outside {space!r} (valid: {low} to {low + n - 1})"
        )


def _check_num_envs(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"num_envs must be a positive int, got {value!r}")
    return int(value)


def _autoreset_mode(value):
    try:
        return AutoresetMode(value)
    except ValueError:
        allowed = ", ".join(f"AutoresetMode.{m.name}" for m in AutoresetMode)
        raise ValueError(f"autoreset_mode must be one of {allowed}, got {value!r}") from None


def _env_slice(obs, i):
    if isinstance(obs, dict):
        return {k: _env_slice(v, i) for k, v in obs.items()}
    if isinstance(obs, (tuple, list)):
        return type(obs)(_env_slice(v, i) for v in obs)
    return obs[i]


class WorldModelVectorEnv(WorldModelBase, gym.vector.VectorEnv):
    """``num_envs`` rollouts of a world model, advanced by one model call per step.

    The spaces given are the single-env spaces; the model and adapters see
    batches (a leading ``num_envs`` dimension on every leaf, ``reward`` and
    ``terminated`` of shape ``(num_envs,)``). Takes WorldModelEnv's keyword
    options, plus ``autoreset_mode`` (NEXT_STEP, SAME_STEP or DISABLED).

    ``batch_axes`` says where the batch axis of state leaves is, for partial
    resets: 0 by default, an int for all leaves, or a dict from leaf paths
    (``"state[1][0]"``) to axes (see :func:`merge_by_mask`).

    ``batched_model`` is accepted for symmetry with WorldModelEnv and changes
    nothing: this env's model always works on the whole batch.

    Partial resets call the reset with ``options["reset_mask"]`` (a bool array);
    what it returns is merged by that mask, so only the masked envs change.

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
    ):
        self.num_envs = _check_num_envs(num_envs)
        self.group_size = check_group_size(group_size, self.num_envs)
        self._env_seeds = None
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self._autoreset_route = MODES[self.autoreset_mode]  # what a step does about envs that ended
        self._store_options(world_model, observation_space, action_space, locals())
        self._batch_of_one = False  # batched_model changes nothing here: the model always sees the whole batch
        if self.output == "torch" and self.autoreset_mode is AutoresetMode.SAME_STEP:
            raise ValueError(
                'output="torch" works with autoreset_mode NEXT_STEP or DISABLED; SAME_STEP\'s final_obs is an '
                "object array of NumPy observations"
            )
        if not isinstance(batch_axes, (int, dict)) or isinstance(batch_axes, bool):
            raise TypeError(f"batch_axes must be an int or a dict from state paths to ints, got {batch_axes!r}")
        self.batch_axes = batch_axes
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
        self._obs_spec = _spaces.observation_spec(self.observation_space)
        self._model_obs_spec = self._obs_spec
        self._action_spec = _spaces.action_spec(self.action_space, _torch, None, self.torch_actions)
        space = self.single_action_space
        if isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
            # Gymnasium batches these into an integer Box: keep the per-entry ranges, one row per env
            self._action_spec = _spaces.batched_action_spec(
                _spaces.action_spec(space, _torch, None, self.torch_actions), self.num_envs
            )
        self._discrete = (
            (int(space.start), int(space.n)) if isinstance(space, gym.spaces.Discrete) and self._action_spec else None
        )
        if self._discrete is not None:  # the batched MultiDiscrete's range: checked per env, naming the env
            self._action_spec = self._action_spec[:4] + (None,) + self._action_spec[5:]

    def _build_plan(self):
        """The step's model call and result in one core call, for options that
        need nothing between its parts (no action transform, device actions
        or torch output); a Discrete space's range check rides along."""
        self._plan = self._batch_plan = None
        if self._transform is not None or self._action_device is not None or self._torch_out is not None:
            return
        grad_switch = (_is_grad_enabled, _set_grad_enabled) if self._no_grad and _torch is not None else None
        space = self.single_action_space
        self._batch_plan = BatchPlan(
            transition=self._transition,
            action_spec=self._action_spec,
            obs_spec=self._obs_spec,
            reward_fn=self._reward,
            terminal_fn=self._terminal,
            num_envs=self.num_envs,
            protect=True,  # observations handed out never change later
            cast_hook=self._cast_hook,
            grad_switch=grad_switch,
            max_episode_steps=self._step_limit,
            action_check=None
            if self._discrete is None
            else functools.partial(_check_discrete_range, *self._discrete, space),
        )
        self._plan = self._batch_plan

    def _seed(self, seed):
        self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        if self._generator is not None:
            self._generator.manual_seed(seed)
        for i, space in enumerate(
            (self.single_observation_space, self.single_action_space, self.observation_space, self.action_space)
        ):
            space.seed(seed + i)

    def _has_position(self) -> bool:
        return self._obs is not None

    def _snapshot_envs(self) -> Optional[int]:
        return self.num_envs

    def __setstate__(self, state):
        super().__setstate__(state)
        if _torch is not None and isinstance(self.__dict__.get("_elapsed"), _torch.Tensor):
            # output="torch": the host mask is a view of the device mask again, not a pickled copy
            restored = np.array(self._autoreset, np.bool_)
            self._make_ended_mask(self._elapsed.device)
            self._ended.copy_(_torch.from_numpy(restored))
            self._sync_ended()

    def get_state(self, copy: bool = False):
        snapshot = super().get_state(copy)
        if _torch is not None and isinstance(snapshot.elapsed, _torch.Tensor):  # output="torch": counters on the device
            snapshot = dataclasses.replace(snapshot, elapsed=snapshot.elapsed.clone())
        return snapshot

    def set_state(self, snapshot) -> None:
        super().set_state(snapshot)
        if self._torch_out is not None and isinstance(self._elapsed, _torch.Tensor):
            # the device copies of the counters and the ended mask replay too
            restored = self._autoreset
            self._elapsed = self._elapsed.clone()
            self._make_ended_mask(self._elapsed.device)
            self._ended.copy_(_torch.from_numpy(restored))
            self._sync_ended()
        elif self._torch_out is not None and isinstance(snapshot.elapsed, np.ndarray):
            self._elapsed = np.copy(snapshot.elapsed)

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

    def _reset_batch(self, seed, options, mask, state, obs, device_mask=None):
        """Runs the reset and merges its result into ``(state, obs)`` by ``mask``
        (``device_mask``: the same mask already on the model's device)."""
        if self._ensemble is not None:
            self._ensemble.new_episode(mask, self._env_seeds)
        group = options.get("group_size", self.group_size)
        if self._start is not None and "state" not in options:
            out = self._reset_from_data(mask, state, obs)
        else:
            new_state, new_obs, info = self._reset_result(seed, options)
            self._check_axes(new_state)
            out = (
                merge_by_mask(mask, new_state, state, self.batch_axes, "state", device_mask),
                merge_by_mask(mask, new_obs, obs, 0, "observation", device_mask),
                info,
            )
        if group:
            state, obs, info = out  # groups of envs share their first reset env's start
            info = dict(info)
            if "start_index" in info:
                info["start_index"] = share_within_groups(info["start_index"], mask, group)
            info["group"] = np.arange(self.num_envs) // group
            out = (
                share_within_groups(state, mask, group, self.batch_axes, "state"),
                share_within_groups(obs, mask, group, 0, "observation"),
                info,
            )
        self._rebase_reward(out[1], mask)
        return out

    def _check_axes(self, state):
        """``batch_axes`` names leaves of the state (checked on the first reset's state)."""
        if not self._axes_checked:
            check_batch_axes(self.batch_axes, state)
            self._axes_checked = True

    def _reset_from_data(self, mask, state, obs):
        """Only the masked envs draw start states (one encode_fn call for all of them)."""
        count = int(mask.sum())
        generators = None
        if self._env_seeds is not None and _torch is not None:  # each env's draw from its own seed
            generators = [_torch.Generator().manual_seed(self._env_seeds[i]) for i in np.flatnonzero(mask)]
        part_state, part_obs, indices = self._start.draw(
            count, self._generator, self.np_random, batched=True, generators=generators
        )
        self._check_axes(part_state)
        new_state = scatter_by_mask(mask, part_state, state, self.batch_axes, "state")
        del part_state
        start_index = np.full(self.num_envs, -1, np.int64)
        start_index[mask] = indices
        if self._chunk and self.chunk_frames:  # the real frame, repeated over the chunk
            part_obs = repeat_frames(part_obs, self._chunk, 1)
        if self._torch_out is not None:
            merged = [scatter_by_mask(mask, part_obs, obs, 0, "observation")]
            del part_obs
            out = (new_state, self._torch_out.observation(merged.pop(), self._obs_spec, protect=True))
            return self._torch_out.secure(out, 1) + ({"start_index": start_index},)
        raw = [self._to_numpy(part_obs, None)]
        del part_obs
        merged = [scatter_by_mask(mask, raw.pop(), obs, 0, "observation")]
        # held by nothing but the tuple below, so that only true sharing (the
        # start state viewing the observation) costs a copy
        out = (new_state, self._to_numpy(merged.pop(), self._obs_spec, "observation", True, self._cast_hook))
        return self._secure(out, 1) + ({"start_index": start_index},)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        """Resets all envs, or those ``options["reset_mask"]`` (a bool array)
        selects, merging the reset's result into the batch by that mask.

        Args:
            seed: seeds the env's generator, NumPy RNG and spaces.
            options: passed to the reset, with ``reset_mask`` set.
        """
        seed, self._env_seeds = check_seeds(seed, self.num_envs)
        super().reset(seed=seed)
        if seed is not None:
            self._seed(seed)
        options = {} if options is None else dict(options)
        if "group_size" in options:
            check_group_size(options["group_size"], self.num_envs)
        mask = options.get("reset_mask")
        if mask is None:
            mask = np.ones(self.num_envs, np.bool_)
            options["reset_mask"] = mask
            old_state = old_obs = None
        else:
            check_reset_mask(mask, self.num_envs)
            old_state, old_obs = self._state, self._obs
        try:
            with self._autograd_off:
                state, obs, info = self._reset_batch(seed, options, mask, old_state, old_obs)
        finally:
            self._env_seeds = None  # per-env seeds serve this reset only
        self._note_state_device(state)
        self._state, self._obs = state, obs
        if self._torch_out is not None:
            self._reset_device_counters(mask, state)
        else:
            self._elapsed[mask] = 0
        self._autoreset[mask] = False
        return obs, info

    def _reset_device_counters(self, mask, state):
        """``output="torch"``: step counters and the ended mask live on the
        model's device; the mask's host copy, ``self._autoreset``, is a view of
        it on the CPU, or of a pinned host buffer the step copies it into."""
        out = self._torch_out
        if out.device is None:
            leaf = first_leaf(self._obs)
            out.device = None if leaf is None else leaf.device
        if not isinstance(self._elapsed, _torch.Tensor):
            self._elapsed = _torch.as_tensor(self._elapsed, device=out.device)
            self._make_ended_mask(self._elapsed.device)
        mask_t = _torch.from_numpy(mask).to(self._elapsed.device)
        self._elapsed = _torch.where(mask_t, _torch.zeros_like(self._elapsed), self._elapsed)
        self._ended[mask_t] = False
        self._autoreset[mask] = False

    def _make_ended_mask(self, device) -> None:
        self._ended = _torch.zeros(self.num_envs, dtype=_torch.bool, device=device)
        if self._ended.device.type == "cpu":
            self._ended_host = None
            self._autoreset = self._ended.numpy()
        else:
            pin = _torch.cuda.is_available() and self._ended.device.type == "cuda"
            self._ended_host = _torch.zeros(self.num_envs, dtype=_torch.bool, pin_memory=pin)
            self._autoreset = self._ended_host.numpy()

    def _check_discrete(self, action):
        low, n = self._discrete
        _check_discrete_range(low, n, self.single_action_space, action)

    def _model_action(self, actions):
        """The actions as the model receives them (converted, checked, on its device)."""
        if self._transform is not None:
            return self._transform(actions)
        model_action = self._action_for_model(actions, self._action_spec)
        if self._discrete is not None:
            self._check_discrete(model_action)
        if self._action_device is not None:
            model_action = _staging.to_device(model_action, self._action_device)
        return model_action

    def _advance(self, state, actions, protect):
        """One batched model call from ``state``: the normalized
        ``(state, obs, reward, terminated, truncated, info)``; with
        ``protect``, an observation that is safe to hand out."""
        model_action = self._model_action(actions)
        result = self._transition(state, model_action)
        reward_fn, terminal_fn = self._reward, self._terminal
        if self._stage:
            result, reward_fn, terminal_fn = self._staged_from(state, result, model_action), None, None
        out = self._normalize_step_batch(
            result,
            state,
            model_action,
            self._obs_spec,
            reward_fn,
            terminal_fn,
            self.num_envs,
            protect,
            self._cast_hook,
        )
        if not protect:
            return out
        del result  # what still shares the observation's memory now is the model's, or the state
        return self._secure(out, 1)

    def _rollout_advance(self):
        """``advance(state, actions) -> (state, obs, reward, terminated)`` for
        a rollout: the step's one core call where the step has one, without
        hand-out tracking, time limit or autograd switch (the rollout holds
        that around its loop), and its counters thrown away; else _advance."""
        if self._plan is None or self._stage:
            return lambda state, actions: self._advance(state, actions, False)[:4]
        # no ownership check (rows copy each step), no autograd switch (the
        # rollout holds it around its loop), no time limit
        plan = self._batch_plan._replace(protect=False, grad_switch=None, max_episode_steps=None)
        counters = np.zeros(self.num_envs, np.int64)
        run = self._run_step_batch
        return lambda state, actions: run(plan, state, actions, counters)[:4]

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
        with ``horizon=`` steps: closed-loop imagination, differentiable with
        ``output="torch"`` and ``grad=True`` (see :mod:`wmenv.imagination`).

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
            return imagine(self, actions, state, horizon, discount, observations)
        if horizon is not None:
            raise TypeError("horizon= is for a policy rollout; an action array's first axis is its horizon")
        actions = (
            actions.detach().cpu().numpy() if _torch is not None and isinstance(actions, _torch.Tensor) else actions
        )
        actions = np.asarray(actions)
        want = (self.num_envs,) + tuple(self.single_action_space.shape or ())
        if actions.ndim < 1 or tuple(actions.shape[1:]) != want:
            raise ValueError(
                f"actions must have shape (horizon, {', '.join(map(str, want))}), got {tuple(actions.shape)}"
            )
        horizon = actions.shape[0]
        discount = check_discount(discount)
        saved = None if self._generator is None else self._generator.get_state()
        # each step's observation is copied into its row as it arrives, so a
        # model that writes into one buffer cannot change earlier rows
        rows = ObservationRows(horizon, self._obs_spec, self.num_envs) if observations else None
        rewards = np.zeros((horizon, self.num_envs), np.float32)
        done = np.zeros(self.num_envs, np.bool_)
        flags = np.zeros((horizon, self.num_envs), np.bool_)
        advance = self._rollout_advance()
        try:
            with self._autograd_off:
                for t in range(horizon):
                    state, obs, reward, term = advance(state, actions[t])
                    if rows is not None:
                        rows.write(t, obs)
                    rewards[t] = np.where(done, 0.0, reward)
                    done = done | term
                    flags[t] = done
        finally:
            if saved is not None:
                self._generator.set_state(saved)
        kept = None if rows is None else rows.rows
        return Rollout(kept, rewards, flags, discounted_returns(rewards, discount), state)

    def _torch_step(self, actions):
        """``output="torch"``: the step with observations, rewards, flags,
        counters and the autoreset mask on the model's device, and one
        synchronisation (learning which envs ended, to decide on resets).

        perf: a steady step costs a handful of tensor ops beyond the model's
        own (the op-count test holds it there): the counter's increment, the
        time limit's compare, one in-place ``logical_or`` into the ended mask
        (whose host copy is a permanent NumPy view on the CPU, a pinned buffer
        elsewhere), a zeros for each flag the model does not give, and the
        copies the ownership rule asks for. Nothing is detached, reshaped or
        cast that already is what it should be."""
        out = self._torch_out
        n = self.num_envs
        with self._autograd_off:
            model_action = self._model_action(actions)
            result = self._transition(self._state, model_action)
            state, raw_obs, reward, terminated, truncated, info = self._parse_step(result, self._state)
            if reward is None and self._reward is not None:
                reward = self._reward(state, raw_obs, model_action)
            if terminated is None and self._terminal is not None:
                terminated = self._terminal(state, raw_obs, model_action)
            if info is not None and not isinstance(info, dict):
                raise TypeError(f"info must be a mapping or None, got {type(info).__name__}")
            info = {} if info is None else dict(info)
            elapsed = self._elapsed + 1
            held = [
                out.observation(raw_obs, self._obs_spec, protect=True),
                out.zeros(n, _torch.float32, elapsed)
                if reward is None
                else out.batch(reward, n, _torch.float32, "reward"),
                None if terminated is None else out.batch(terminated, n, _torch.bool, "terminated"),
                None if truncated is None or truncated is False else out.batch(truncated, n, _torch.bool, "truncated"),
            ]
            # what still shares their memory now is the model's, or the state: only that is copied
            del result, raw_obs, reward, terminated, truncated
            obs, reward, terminated, truncated = out.secure_each(held)
            can_end = terminated is not None or truncated is not None or self._step_limit is not None
            if terminated is None:
                terminated = out.zeros(n, _torch.bool, elapsed)
            limit = self._step_limit
            if limit is not None:
                at_limit = elapsed >= limit
                truncated = at_limit if truncated is None else truncated | at_limit
            elif truncated is None:
                truncated = out.zeros(n, _torch.bool, elapsed)
            reset_now = self._autoreset_route.resets_before_stepping(self)
            if reset_now:
                mask, mask_t = self._autoreset.copy(), self._ended
                state, obs, self._reset_info = self._reset_batch(None, {"reset_mask": mask}, mask, state, obs, mask_t)
                reward = _torch.where(mask_t, _torch.zeros_like(reward), reward)
                terminated = terminated & ~mask_t
                truncated = truncated & ~mask_t
                elapsed = _torch.where(mask_t, _torch.zeros_like(elapsed), elapsed)
        if can_end:
            _torch.logical_or(terminated, truncated, out=self._ended)
            self._sync_ended()  # the step's one synchronisation
        elif reset_now:
            self._ended.zero_()
            self._sync_ended()
        info.setdefault("elapsed_steps", elapsed)
        info.setdefault("_elapsed_steps", self._all_true)
        if self._reset_info:
            self._autoreset_info(info)
        if self._info_model_state:
            info.setdefault("model_state", state)
        self._state, self._obs, self._elapsed = state, obs, elapsed
        return obs, reward, terminated, truncated, info

    def _sync_ended(self) -> None:
        """The ended mask's host copy (``self._autoreset``): on the CPU a view
        of the device mask itself, so nothing to do."""
        host = self._ended_host
        if host is not None:
            host.copy_(self._ended)

    def step(self, actions):
        """Advances all ``num_envs`` rollouts in one model call: batched
        ``(obs, reward, terminated, truncated, info)``, with autoresets as
        ``autoreset_mode`` says."""
        if self._obs is None:
            raise RuntimeError("Call reset() before step().")
        if self._offloaded is not None:
            self._refuse_offloaded()
        route = self._autoreset_route
        route.check(self)
        if self._torch_out is not None:
            return self._torch_step(actions)
        plan = self._plan
        if plan is not None and not self._stage:  # the model call and its result in one core call
            state, obs, reward, terminated, truncated, info, elapsed, ended = self._run_step_batch(
                plan, self._state, actions, self._elapsed
            )
        else:
            state, obs, reward, terminated, truncated, info = self._with_grad_off(
                self._advance, self._state, actions, True
            )
            elapsed, ended = self._count_steps(self._elapsed, terminated, truncated, self._step_limit)
        state, obs = route.after_step(self, state, obs, reward, terminated, truncated, info, elapsed, ended)
        info.setdefault("elapsed_steps", elapsed.copy())
        info.setdefault("_elapsed_steps", self._all_true)
        if self._reset_info:  # an autoreset from start data says where each env started, as reset does
            self._autoreset_info(info)
        if self._info_model_state:
            info.setdefault("model_state", state)
        self._state, self._obs, self._elapsed = state, obs, elapsed
        self._autoreset = route.ended_mask(self, ended)
        return obs, reward, terminated, truncated, info

    def _autoreset_info(self, info):
        """The start indices of this step's autoresets (``-1`` where an env
        was not reset), in ``info`` with their ``_start_index`` mask."""
        start = self._reset_info.get("start_index")
        self._reset_info = None
        if start is not None:
            info.setdefault("start_index", start)
            info.setdefault("_start_index", start >= 0)

    def _autoreset_next(self, state, obs, reward, terminated, truncated, elapsed, ended):
        """NEXT_STEP: the envs that ended last step are reset instead of
        stepped (their reward, flags and counter zeroed in place)."""
        mask = self._autoreset
        state, obs, reset_info = self._reset_batch(None, {"reset_mask": mask.copy()}, mask, state, obs)
        self._reset_info = reset_info
        reward[mask] = 0.0
        terminated[mask] = False
        truncated[mask] = False
        elapsed[mask] = 0  # these envs were reset, not stepped
        ended[mask] = False
        return state, obs

    def _autoreset_same(self, state, obs, info, elapsed, done):
        """SAME_STEP: the envs that ended this step are reset now, their last
        observation and info kept in Gymnasium's layout (final_obs an object
        array, final_info a dict of per-env arrays, each with its "_" mask)."""
        final_obs = np.empty(self.num_envs, dtype=object)
        for i in np.flatnonzero(done):
            final_obs[i] = _env_slice(obs, i)
        final_info = {"elapsed_steps": np.where(done, elapsed, 0), "_elapsed_steps": done.copy()}
        info["final_obs"], info["_final_obs"] = final_obs, done.copy()
        info["final_info"], info["_final_info"] = final_info, done.copy()
        state, obs, reset_info = self._reset_batch(None, {"reset_mask": done}, done, state, obs)
        self._reset_info = reset_info
        elapsed[done] = 0
        return state, obs

    def render(self):
        """Frames of all envs as one batched NumPy array (``render_fn``'s, or
        the observation's ``image``/``pixels``/``rgb`` entry, or the observation)."""
        return self._frame(self._obs, 1)

    def close_extras(self, **kwargs):
        """Calls the model's ``close()`` when it has one (once)."""
        self._close_model()
