"""The one-call step's plans: what a step hands the core, decided once.

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

from typing import Any, NamedTuple, Optional

__all__ = ["BatchPlan", "StepPlan"]


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
