"""Each env's step route, chosen once: the one-call core step or the composed step.

A step is either **one core call** (``run_step``, ``run_step_batch``: action
conversion, the model call, the result, counters and the autograd switch,
with nothing of Python's between them), or **composed** where an option needs
something between those parts (an action transform, actions moved to a
device, staged or torch results, ``check``'s first look at the keys):
prepare the action (:func:`prepare_action`), call the model and read its
result (the env's result kind, :mod:`wmenv.output`). The envs choose their
route in ``_compile`` and again only when an option or the state's device
changes; their ``step`` calls it without asking which it is.

Both envs compile, when they are built (and again when an option or the
state's device changes), a plan of everything their step needs that does not
change from step to step, so that the step is one core call (``run_step``,
``run_step_batch``) that re-decides nothing. Both cores read a plan as a
tuple by position (a tuple subclass's own slots); these ``NamedTuple``s give
the slots names where the plans are built and changed
(``plan._replace(protect=False)``), and are handed to the core as they are.

Example:
    >>> plan = BatchPlan(None, None, None, None, None, 4, True, None, None, 200, None)
    >>> plan._replace(protect=False, max_episode_steps=None).max_episode_steps is None
    True
    >>> isinstance(plan, tuple) and len(plan)
    11
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import numpy as np

from . import _backend, _spaces, _staging
from .batch_reset import note_start_indices
from .output import host_results

_torch: Any = _backend.torch

__all__ = [
    "BatchPlan",
    "ComposedBatch",
    "ComposedStep",
    "OneCallBatch",
    "OneCallStep",
    "StepPlan",
    "batch_plan",
    "batch_route",
    "prepare_action",
    "single_route",
    "step_plan",
]


class StepPlan(NamedTuple):
    """``run_step``'s plan: a single env's step."""

    transition: Any  # (state, action) -> the model's result
    action_spec: Any  # convert_action's spec
    obs_spec: Any  # the observation space's spec
    reward_fn: Any  # the reward adapter, or None
    terminal_fn: Any  # the termination adapter, or None
    info_model_state: bool  # info["model_state"] = the next state
    protect: bool  # observations handed out never change later (the ownership rule)
    cast_hook: Any  # called on each lossy cast, for check's report
    grad_switch: Any  # (is_enabled, set_enabled): autograd off around the call, or None
    max_episode_steps: Optional[int]  # the time limit, in model calls


class BatchPlan(NamedTuple):
    """``run_step_batch``'s plan: a vector env's step."""

    transition: Any
    action_spec: Any
    obs_spec: Any
    reward_fn: Any
    terminal_fn: Any
    num_envs: int
    protect: bool
    cast_hook: Any
    grad_switch: Any
    max_episode_steps: Optional[int]
    action_check: Any  # called on the converted actions (a Discrete space's range), or None


def _grad_switch(env):
    """``(is_enabled, set_enabled)`` for a core that turns autograd off around the call, or ``None``."""
    if not env._no_grad or _torch is None:
        return None
    return (_torch.is_grad_enabled, _torch._C._set_grad_enabled)


def step_plan(env) -> Optional[StepPlan]:
    """The single env's step in one core call (action conversion, transition,
    result, time limit, autograd switch), for options that need nothing
    between those parts: no action transform, batch of one, device or torch output."""
    if env._transform is not None or env._batch_of_one or env._action_device is not None or env._torch_out is not None:
        return None
    return StepPlan(
        transition=env._transition,
        action_spec=env._action_spec,
        obs_spec=env._model_obs_spec,
        reward_fn=env._reward,
        terminal_fn=env._terminal,
        info_model_state=env.info_model_state,
        protect=True,  # observations handed out never change later
        cast_hook=env._cast_hook,
        grad_switch=_grad_switch(env),
        max_episode_steps=env._step_limit,
    )


def batch_plan(env) -> Optional[BatchPlan]:
    """The vector env's model call and result in one core call, for options
    that need nothing between its parts (no action transform, device actions
    or torch output that keeps the autograd graph); a Discrete space's range
    check rides along. With ``output="torch"`` the torch route uses it while
    the model runs on the CPU (:class:`wmenv.torch_route.HostTorchBatch`)."""
    if env._transform is not None or env._action_device is not None:
        return None
    if env._torch_out is not None and env._torch_out.keep_graph:
        return None
    check = None
    if env._discrete is not None:
        low, n = env._discrete
        check = functools.partial(check_discrete_range, low, n, env.single_action_space)
    return BatchPlan(
        transition=env._transition,
        action_spec=env._action_spec,
        obs_spec=env._obs_spec,
        reward_fn=env._reward,
        terminal_fn=env._terminal,
        num_envs=env.num_envs,
        protect=True,  # observations handed out never change later
        cast_hook=env._cast_hook,
        grad_switch=_grad_switch(env),
        max_episode_steps=env._step_limit,
        action_check=check,
    )


def check_discrete_range(low, n, space, action):
    """A ValueError naming the first env whose action is outside ``space``."""
    values = action.cpu().numpy() if _torch is not None and isinstance(action, _torch.Tensor) else np.asarray(action)
    bad = (values < low) | (values >= low + n)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(
            f"action {int(values.reshape(-1)[i])} of env {i} is outside {space!r} (valid: {low} to {low + n - 1})"
        )


def prepare_action(env, action):
    """The action as the model receives it: converted (or the action
    transform's), checked, with the batch of one a ``batched_model`` works on,
    on the model's device when actions go there."""
    if env._transform is not None:
        return env._transform(action)
    model_action = env._action_for_model(action, env._action_spec)
    if env._batch_of_one:
        model_action = _spaces.add_batch_of_one(model_action)
    if env._discrete is not None:  # a vector env's Discrete range, checked per env
        low, n = env._discrete
        check_discrete_range(low, n, env.single_action_space, model_action)
    if env._action_device is not None:
        model_action = _staging.to_device(model_action, env._action_device)
    return model_action


# ---- the single env's routes: ``step(env, action, elapsed)`` -> (state, obs, reward, terminated, truncated, info)


class ComposedStep:
    """Prepare the action, call the model, read the result by the env's result kind."""

    def step(self, env, action, elapsed):
        """The step, then the one-call route once the keys have been looked at."""
        results = env._results
        with env._autograd_off:
            state, obs, reward, terminated, truncated, info = results.step(
                env, env._state, prepare_action(env, action), elapsed
            )
            if env._batch_of_one and obs is not None:
                obs = _spaces.first_of_batch(obs)
        if obs is None:
            obs = results.sample(env)
        limit = env._step_limit
        if limit is not None and elapsed >= limit:
            truncated = results.truncated(truncated)
        return state, obs, reward, terminated, truncated, info


class OneCallStep:
    """The whole step in one ``run_step`` core call."""

    __slots__ = ("plan",)

    def __init__(self, plan: StepPlan):
        self.plan = plan

    def step(self, env, action, elapsed):
        """The step's one core call; a sample of the space when the result has no observation."""
        out = env._run_step(self.plan, env._state, action, elapsed)
        if out[1] is None:  # a result without an observation: a sample of the space
            return (out[0], env._results.sample(env), *out[2:])
        return out


class FirstLook(ComposedStep):
    """Composed until the result's keys have been looked at (``check``'s
    report), then the one-call route."""

    def step(self, env, action, elapsed):
        out = super().step(env, action, elapsed)
        env._route = single_route(env)
        return out


_COMPOSED, _FIRST_LOOK = ComposedStep(), FirstLook()


def single_route(env):
    """The single env's route: one call where the plan allows it, else composed."""
    plan = env._plan
    if plan is None or env._stage:
        return _COMPOSED
    return _FIRST_LOOK if env._notes.unchecked else OneCallStep(plan)


# ---- the vector env's routes: ``step(env, actions)`` -> Gymnasium's batched step


class HostBatch:
    """A NumPy-output vector step: the batch, then the autoreset mode's turn."""

    # the counters handed out in info: a copy, since reset_counters writes into env._elapsed
    handed_counters = staticmethod(np.ndarray.copy)

    def step(self, env, actions):
        state, obs, reward, terminated, truncated, info, elapsed, ended = self.advance(env, actions)
        mode = env._autoreset_route
        state, obs = mode.after_step(env, state, obs, reward, terminated, truncated, info, elapsed, ended)
        info.setdefault("elapsed_steps", self.handed_counters(elapsed))
        info.setdefault("_elapsed_steps", env._all_true)
        if env._reset_info:  # an autoreset from start data says where each env started, as reset does
            note_start_indices(env, info)
        if env._info_model_state:
            info.setdefault("model_state", state)
        env._state, env._obs, env._elapsed = state, obs, elapsed
        env._autoreset = mode.ended_mask(env, ended)
        return obs, reward, terminated, truncated, info

    def reset_counters(self, env, mask) -> None:
        """Zeroes the counters and the autoreset mask of the envs ``mask`` reset."""
        env._elapsed[mask] = 0
        env._autoreset[mask] = False

    def rollout_advance(self, env):
        """``advance(state, actions) -> (state, obs, reward, terminated)`` for
        a rollout, without hand-out tracking, time limit or autograd switch
        (the rollout holds that around its loop)."""
        results = host_results(env)
        return lambda state, actions: results.step_batch(env, state, prepare_action(env, actions), False)[:4]


class ComposedBatch(HostBatch):
    """Prepare the actions, call the model, read the batch by the env's result kind."""

    def advance(self, env, actions):
        """The batch and its counters through the result kind, under the env's autograd rule."""
        with env._autograd_off:
            out = env._results.step_batch(env, env._state, prepare_action(env, actions))
        elapsed, ended = env._count_steps(env._elapsed, out[3], out[4], env._step_limit)
        return (*out, elapsed, ended)


class OneCallBatch(HostBatch):
    """The batch's model call and result in one ``run_step_batch`` core call."""

    __slots__ = ("plan",)

    def __init__(self, plan: BatchPlan):
        self.plan = plan

    def advance(self, env, actions):
        """The batch and its counters in one core call."""
        return env._run_step_batch(self.plan, env._state, actions, env._elapsed)

    def rollout_advance(self, env):
        """A rollout's advance through the same core call, without time limit or ownership checks."""
        # no ownership check (rows copy each step), no autograd switch (the
        # rollout holds it around its loop), no time limit; counters thrown away
        plan = self.plan._replace(protect=False, grad_switch=None, max_episode_steps=None)
        counters = np.zeros(env.num_envs, np.int64)
        run = env._run_step_batch
        return lambda state, actions: run(plan, state, actions, counters)[:4]


_COMPOSED_BATCH = ComposedBatch()


def batch_route(env):
    """The vector env's route: torch's, one call, or composed."""
    plan = env._plan
    if env._torch_out is not None:
        from .torch_route import torch_batch_route

        return torch_batch_route(env, plan)
    if plan is None or env._stage:
        return _COMPOSED_BATCH
    return OneCallBatch(plan)
