"""Step and reset results parsed into their parts, and the one-call steps
that chain action conversion, the model's call and the result (the twin
of ``csrc/results.cpp``)."""

from __future__ import annotations

from collections.abc import Mapping

from ..vocabulary import OBSERVATION_KEYS
from .actions import convert_action
from .arrays import secure_observation
from .common import _BOOL, _FLOAT32, _zeros
from .observations import conform_observation, matches_structure
from .scalars import as_batch, as_flag, as_reward, count_steps

_STEP_FORMS = (
    "a mapping, (next_state, obs, reward, terminated, truncated, info), "
    "(obs, reward, terminated, truncated, info), (obs, reward, done, info), "
    "(next_state, obs, reward), (next_state, obs), (next_state,) or a bare next state"
)


def _info_dict(info):
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise TypeError(f"info must be a mapping or None, got {type(info).__name__}")
    return dict(info)


def _observation_from_mapping(result, default):
    for key in OBSERVATION_KEYS:
        if key in result:
            return result[key]
    return default


def parse_step(result, state):
    """The raw ``(next_state, obs, reward, terminated, truncated, info)`` of a
    step result; ``reward``/``terminated`` are ``None`` when it has none."""
    reward = terminated = info = None
    truncated = False
    if isinstance(result, tuple):
        if type(result) is not tuple:
            result = tuple(result)  # a subclass is read through its own iteration, once
        n = len(result)
        if n == 5:
            obs, reward, terminated, truncated, info = result
            next_state = info["model_state"] if isinstance(info, Mapping) and "model_state" in info else obs
        elif n == 6:
            next_state, obs, reward, terminated, truncated, info = result
        elif n == 4:
            obs, reward, terminated, info = result
            next_state = info["model_state"] if isinstance(info, Mapping) and "model_state" in info else obs
        elif n == 3:
            next_state, obs, reward = result
        elif n == 2:
            next_state, obs = result
        elif n == 1:
            next_state = obs = result[0]
        else:
            raise ValueError(f"a transition returned a tuple of {n} items; accepted forms are {_STEP_FORMS}")
    elif type(result) is dict or isinstance(result, Mapping):  # perf: a dict without the ABC's check
        if "state" in result:
            next_state = result["state"]
        elif "next_state" in result:
            next_state = result["next_state"]
        else:
            next_state = state
        obs = _observation_from_mapping(result, next_state)
        reward = result.get("reward")
        terminated = result.get("terminated")
        if terminated is None:
            terminated = result.get("done")
        truncated = result.get("truncated", False)
        info = result.get("info")
    else:
        next_state = obs = result
    return next_state, obs, reward, terminated, truncated, info


def normalize_step(
    result,
    state,
    action,
    obs_spec,
    reward_fn,
    terminal_fn,
    elapsed_steps,
    info_model_state,
    protect=False,
    cast_hook=None,
):
    """Parses one transition result into
    ``(next_state, obs, reward, terminated, truncated, info)``.

    ``reward_fn`` and ``terminal_fn`` are ``None`` or callables taking
    ``(next_state, raw_observation, action)``; they run only when the result
    carries no reward or termination. ``info`` is a new dict holding
    ``elapsed_steps`` and, when ``info_model_state``, ``model_state``.
    ``protect`` and ``cast_hook`` are :func:`conform_observation`'s.
    """
    next_state, obs, reward, terminated, truncated, info = parse_step(result, state)
    if reward is None:
        reward = 0.0 if reward_fn is None else reward_fn(next_state, obs, action)
    if terminated is None:
        terminated = False if terminal_fn is None else terminal_fn(next_state, obs, action)
    reward = as_reward(reward)
    terminated = as_flag(terminated, "terminated")
    if type(truncated) is not bool:
        truncated = False if truncated is None else as_flag(truncated, "truncated")
    if info is None:  # perf: the usual case, one dict display (in the order the general one gives)
        info = (
            {"model_state": next_state, "elapsed_steps": elapsed_steps}
            if info_model_state
            else {"elapsed_steps": elapsed_steps}
        )
    else:
        info = _info_dict(info)
        if info_model_state and "model_state" not in info:
            info["model_state"] = next_state
        if "elapsed_steps" not in info:
            info["elapsed_steps"] = elapsed_steps
    obs = conform_observation(obs, obs_spec, "observation", protect, cast_hook)
    return next_state, obs, reward, terminated, truncated, info


def _items(x, n):
    """The ``n`` items of a tuple or of a tuple subclass (a ``NamedTuple``
    plan), read as the compiled core reads them (the tuple's own slots, not
    an overridden ``__getitem__``); ``None`` for anything else."""
    if type(x) is tuple:  # perf: an exact tuple is its own items
        return x if len(x) == n else None
    if isinstance(x, tuple) and tuple.__len__(x) == n:
        return tuple.__getitem__(x, slice(None))
    return None


def _grad_off(grad):
    """Checks ``grad_switch`` and turns autograd off when it is on; returns
    whether to turn it back on."""
    if grad is None:
        return False
    grad = _items(grad, 2)
    if grad is None:
        raise TypeError("grad_switch must be None or an (is_grad_enabled, set_grad_enabled) pair")
    restore = bool(grad[0]())
    if restore:
        grad[1](False)
    return restore


def run_step(plan, state, action, elapsed_steps):
    """One whole single-env step in one call: :func:`convert_action`, the
    transition, :func:`normalize_step` and the time limit.

    ``plan`` is ``(transition, action_spec, obs_spec, reward_fn, terminal_fn,
    info_model_state, protect, cast_hook, grad_switch, max_episode_steps)``:
    ``transition(state, model_action)`` gives the step result; the next five
    are :func:`normalize_step`'s; ``grad_switch`` is ``None`` (autograd left
    as it is) or ``(is_grad_enabled, set_grad_enabled)``, and then autograd is
    off from the action's conversion to the result's and back on afterwards
    (also on an error) when it was on; ``max_episode_steps`` is ``None`` or a
    number that ``elapsed_steps`` reaching sets ``truncated``.
    Returns :func:`normalize_step`'s tuple.
    """
    plan = _items(plan, 10)
    if plan is None:
        raise TypeError("step plan must be a 10-tuple")
    transition, action_spec, obs_spec, reward_fn, terminal_fn, info_model_state, protect, cast_hook, grad, limit = plan
    restore = _grad_off(grad)
    try:
        model_action = convert_action(action, action_spec)
        result = transition(state, model_action)
        out = normalize_step(
            result,
            state,
            model_action,
            obs_spec,
            reward_fn,
            terminal_fn,
            elapsed_steps,
            info_model_state,
            protect,
            cast_hook,
        )
        del result  # the model's raw outputs go: what still shares memory after that is shared
        if protect:
            out = secure_observation(out, 1)
    finally:
        if restore:
            tuple.__getitem__(grad, 1)(True)
    if limit is not None and elapsed_steps >= limit:
        out = out[:4] + (True,) + out[5:]
    return out


def run_step_batch(plan, state, action, elapsed):
    """One whole vector-env step in one call: :func:`convert_action`,
    ``action_check(model_action)`` (when not ``None``), the transition,
    :func:`normalize_step_batch` and :func:`count_steps` on ``elapsed``.

    ``plan`` is ``(transition, action_spec, obs_spec, reward_fn, terminal_fn,
    num_envs, protect, cast_hook, grad_switch, max_episode_steps,
    action_check)``; ``grad_switch`` as in :func:`run_step` (autograd is off
    up to the end of the normalization). Returns
    ``(next_state, obs, reward, terminated, truncated, info, elapsed, ended)``.
    """
    plan = _items(plan, 11)
    if plan is None:
        raise TypeError("batch step plan must be an 11-tuple")
    transition, action_spec, obs_spec, reward_fn, terminal_fn, num_envs, protect, cast_hook, grad, limit, check = plan
    if type(num_envs) is not int:
        raise TypeError(f"num_envs must be an int, got {type(num_envs).__name__}")
    restore = _grad_off(grad)
    try:
        model_action = convert_action(action, action_spec)
        if check is not None:
            check(model_action)
        result = transition(state, model_action)
        out = normalize_step_batch(
            result, state, model_action, obs_spec, reward_fn, terminal_fn, num_envs, protect, cast_hook
        )
        del result
        if protect:
            out = secure_observation(out, 1)
    finally:
        if restore:
            tuple.__getitem__(grad, 1)(True)
    return out + count_steps(elapsed, out[3], out[4], limit)


def normalize_step_batch(
    result, state, action, obs_spec, reward_fn, terminal_fn, num_envs, protect=False, cast_hook=None
):
    """Parses a batched transition result into ``(next_state, obs, reward,
    terminated, truncated, info)``: ``reward`` a new ``float32`` array and the
    flags new ``bool`` arrays of shape ``(num_envs,)``, ``obs`` conformed to
    the batched ``obs_spec``, ``info`` a new dict; ``protect`` and
    ``cast_hook`` are :func:`conform_observation`'s."""
    next_state, obs, reward, terminated, truncated, info = parse_step(result, state)
    if reward is None and reward_fn is None:
        reward = _zeros(num_envs, _FLOAT32)
    else:
        reward = as_batch(
            reward if reward is not None else reward_fn(next_state, obs, action), num_envs, _FLOAT32, "reward"
        )
    if terminated is None and terminal_fn is None:
        terminated = _zeros(num_envs, _BOOL)
    else:
        if terminated is None:
            terminated = terminal_fn(next_state, obs, action)
        terminated = as_batch(terminated, num_envs, _BOOL, "terminated")
    if truncated is None or truncated is False:
        truncated = _zeros(num_envs, _BOOL)
    else:
        truncated = as_batch(truncated, num_envs, _BOOL, "truncated")
    info = _info_dict(info)
    obs = conform_observation(obs, obs_spec, "observation", protect, cast_hook)
    return next_state, obs, reward, terminated, truncated, info


def normalize_reset(result, obs_spec, default_state, default_obs, protect=False, cast_hook=None):
    """Parses a reset result into ``(state, obs, info)``.

    A state the result does not carry is ``default_state``, or the raw
    observation when that is ``None``; an observation it does not carry is
    ``default_obs``. ``obs`` is ``None`` when none is known (the caller samples).
    ``protect`` and ``cast_hook`` are :func:`conform_observation`'s.
    """
    state = default_state
    info = None
    if isinstance(result, tuple):
        if type(result) is not tuple:
            result = tuple(result)
        n = len(result)
        if n == 2:
            first, second = result
            if isinstance(second, Mapping) and matches_structure(first, obs_spec):
                obs, info = first, second
            else:
                state, obs = first, second
        elif n == 3:
            state, obs, info = result
        elif n == 0:
            raise ValueError(
                "a reset returned an empty tuple; "
                "expected obs, (obs, info), (state, obs), (state, obs, info) or a mapping"
            )
        else:
            obs = result[0]
    elif type(result) is dict or isinstance(result, Mapping):  # perf: a dict without the ABC's check
        if "state" in result:
            state = result["state"]
        obs = _observation_from_mapping(result, default_obs)
        info = result.get("info")
    else:
        obs = result
    if state is None:
        state = obs
    info = _info_dict(info)
    return state, conform_observation(obs, obs_spec, "observation", protect, cast_hook), info
