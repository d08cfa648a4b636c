"""``wmenv.check(env)``: a report to read before training on a world model env.

It steps the env and says how each output was interpreted, what was cast and
lost, how often observations left the space's bounds, whether the ecosystem's
checkers (Gymnasium's, and Stable-Baselines3's when installed) pass, whether a
seeded rollout repeats, whether both backends agree, and what a step costs.

Example:
    >>> import gymnasium as gym, numpy as np
    >>> import wmenv
    >>> env = wmenv.WorldModelEnv(None, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2,)),
    ...                           transition_fn=lambda m, s, a: (s, s, 0.0),
    ...                           initial_state=np.zeros(2, np.float32), torch_actions=False)
    >>> report = wmenv.check(env, steps=5)
    >>> report.ok
    True
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import _backend, adapters
from ._base import SHARED_OPTIONS
from .tree import map_leaves
from .vocabulary import OBSERVATION_KEYS

__all__ = ["check", "CheckReport"]


@dataclass
class CheckReport:
    """What :func:`check` found. ``ok`` is False when any check failed."""

    lines: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no check failed."""
        return not self.failures

    def say(self, line: str) -> None:
        """Adds a line to the report."""
        self.lines.append(line)

    def fail(self, line: str) -> None:
        """Adds a line to the report and marks the report failed."""
        self.failures.append(line)
        self.lines.append("FAIL " + line)

    def __str__(self) -> str:
        head = "wmenv check: " + ("ok" if self.ok else f"{len(self.failures)} failure(s)")
        body = [head] + ["  " + line for line in self.lines]
        if self.warnings:
            body.append("  warnings:")
            body += ["    " + w for w in self.warnings]
        return "\n".join(body)


def _describe_reset_pair(result, env) -> str:
    """Which of the two 2-tuple reset forms was read, and why."""
    first, second = tuple(result)
    if not isinstance(second, Mapping):
        return "a 2-tuple read as (state, obs): its second item is not a mapping, so it is no info dict"
    if env._matches(first, env._model_obs_spec):
        return (
            "a 2-tuple read as (obs, info): its second item is a mapping and its first matches the observation "
            "space's structure and shape"
        )
    return (
        "a 2-tuple read as (state, obs): its first item does not match the observation space's structure and "
        "shape, so the mapping is the observation"
    )


def _describe_result(result, kind: str, env=None) -> str:
    if kind == "reset" and env is not None and isinstance(result, tuple) and len(result) == 2:
        return _describe_reset_pair(result, env)
    if isinstance(result, Mapping):
        keys = list(result.keys())
        obs_key = next((k for k in OBSERVATION_KEYS if k in result), None)
        parts = [f"a mapping with keys {keys}"]
        parts.append(f"observation from {obs_key!r}" if obs_key else "no observation key: the state stands in")
        if kind == "step":
            parts.append("reward from 'reward'" if "reward" in result else "no reward: reward_fn or 0.0")
            term = "terminated" if "terminated" in result else "done" if "done" in result else None
            parts.append(f"termination from {term!r}" if term else "no termination: terminal_fn or False")
        return "; ".join(parts)
    if isinstance(result, tuple):
        forms = {
            "step": {
                6: "(next_state, obs, reward, terminated, truncated, info)",
                5: "(obs, reward, terminated, truncated, info)",
                4: "(obs, reward, done, info)",
                3: "(next_state, obs, reward)",
                2: "(next_state, obs)",
                1: "(next_state,)",
            },
            "reset": {3: "(state, obs, info)", 2: "(state, obs) or (obs, info)"},
        }[kind]
        return f"a {len(result)}-tuple read as {forms.get(len(result), 'its first item as the observation')}"
    return f"a bare {type(result).__name__}, taken as the {'next state and ' if kind == 'step' else ''}observation"


class _Step(tuple):
    """A step's record in a rollout, ``(obs, reward, terminated, truncated[,
    elapsed])``, told apart from a reset's observation, which may itself be
    a tuple (a ``Tuple`` space's)."""


def _rollout(env, seed: int, actions) -> list:
    obs, _ = env.reset(seed=seed)
    out = [copy.deepcopy(obs)]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append(_Step((copy.deepcopy(obs), reward, terminated, truncated)))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(copy.deepcopy(obs))
    return out


def _episode_lengths(report, trajectory, steps: int) -> None:
    """How long the single env's episodes were; all of one step is a probability head's mark."""
    lengths, length = [], 0
    for item in trajectory[1:]:
        if not isinstance(item, _Step):  # a reset
            continue
        length += 1
        if item[2] or item[3]:
            lengths.append(length)
            length = 0
    mean = f", mean length {np.mean(lengths):.1f} steps" if lengths else ""
    report.say(f"episodes ended in {steps} steps: {len(lengths)}{mean}")
    if len(lengths) == steps and steps > 1 and max(lengths) == 1:
        report.fail(
            "every episode ends at its first step: a termination head that gives a probability reads as True "
            "wherever it is nonzero (pass terminated_threshold=0.5)"
        )


def _same(a, b) -> bool:
    try:
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
        if isinstance(a, (tuple, list)):
            return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
        if isinstance(a, np.ndarray):
            return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return a == b or (a != a and b != b)
    except Exception:
        return False


def _rebuild(env, backend: str, **changes):
    """The same env on another backend (the vector env with its own options
    too), with ``changes`` to its options."""
    options = {name: getattr(env, name) for name in SHARED_OPTIONS if name != "backend"}
    capture = changes.pop("capture", getattr(env, "capture", False))
    options.update(changes)
    if hasattr(env, "num_envs"):
        return type(env)(
            env.world_model,
            env.num_envs,
            *env._given_spaces,
            backend=backend,
            autoreset_mode=env.autoreset_mode,
            batch_axes=env.batch_axes,
            group_size=env.group_size,
            capture=capture,
            **options,
        )
    return type(env)(env.world_model, *env._given_spaces, backend=backend, **options)


def _spied_rollout(env, rollout, seed: int, actions):
    """``(rollout(env, seed, actions), raw)``: ``raw`` holds the first result of
    the transition and of the reset, to say how they were read. The one-call
    step holds the transition it was built with, so it is rebuilt around the
    spy and again afterwards."""
    raw: dict = {}
    transition, reset_call = env._transition, env._reset_call

    seconds = raw["seconds"] = []

    def spy(kind, call):
        def spied(*args):
            start = time.perf_counter()
            result = call(*args)
            if kind == "step":
                seconds.append(time.perf_counter() - start)
            raw.setdefault(kind, result)
            return result

        return spied

    env._transition = spy("step", transition)
    if reset_call is not None:
        env._reset_call = spy("reset", reset_call)
    ensemble = env._ensemble
    if ensemble is not None:  # what the members gave, before one prediction is chosen
        members_call = ensemble.transition
        ensemble.transition = spy("members", members_call)
    env._build_plan()
    try:
        return rollout(env, seed, actions), raw
    finally:
        env._transition, env._reset_call = transition, reset_call
        if ensemble is not None:
            ensemble.transition = members_call
        env._build_plan()


def _say_model_speed(report, env, raw) -> None:
    """Seconds per model call and frames per second, over the spied rollout:
    what matters for slow (video) models, where one call can take seconds."""
    seconds = raw.get("seconds") or []
    if not seconds:
        return
    envs = env._snapshot_envs()  # None for the single env
    chunk = env._chunk or 1
    frames = (envs or 1) * chunk
    per_call = float(np.mean(seconds))
    frames_word = f"{chunk} frame{'s' if chunk > 1 else ''}"
    per = f"{envs} envs x {frames_word}" if envs else frames_word
    report.say(
        f"model calls: {len(seconds)}, {per_call:.3g} s per call (slowest {max(seconds):.3g} s), "
        f"{frames / max(per_call, 1e-12):,.1f} frames/s ({per} per call)"
    )


_MEASURES = {
    "max_std": "max_i ||std_i|| (MOPO)",
    "disagreement": "max_ij ||mean_i - mean_j|| (MOReL)",
    "std_of_means": "||std of the members' means||",
}


def _say_ensemble(report, env, raw) -> None:
    """The ensemble form detected in the members' first result, and what is done with it."""
    options = env._ensemble_options
    if options is None:
        return
    result = raw.get("members")
    if isinstance(result, Mapping) and result.get("std") is not None:
        heads = "mean and std heads (observations sampled from the chosen member's Gaussian)"
    elif isinstance(result, Mapping) and result.get("log_var") is not None:
        heads = "mean and log_var heads (std = exp(log_var / 2); observations sampled)"
    else:
        heads = "mean heads only (deterministic members)"
    axis = "a leading member axis" + ("" if env._snapshot_envs() is None else ", before the batch axis")
    listed = isinstance(env.world_model, (list, tuple))
    stacked = f", stacked from a list of {options.members} modules" if listed else ""
    member = options.member if isinstance(options.member, str) else f"index {options.member}"
    form = f"on {axis}{stacked}"
    if env._ensemble is not None and env._ensemble.member_index is not None:
        form = "each env's chosen member computed alone (member_index; no member axis)"
    report.say(f"ensemble: {options.members} members {form}; {heads}; member: {member}")
    if options.uncertainty is not None:
        extra = f"; penalty {options.penalty:g}" if options.penalty else ""
        if options.halt_threshold is not None:
            extra += f"; halt above {options.halt_threshold:g} with reward {options.halt_reward:g}"
        report.say(f"uncertainty: {options.uncertainty}, {_MEASURES[options.uncertainty]}{extra}")


def _say_reading(report, env, raw) -> None:
    """How the model is called and its results read, and what was cast."""
    report.say("model call: " + adapters.describe_transition(env.world_model, env.transition_fn))
    report.say("reset: " + (_describe_result(raw["reset"], "reset", env) if "reset" in raw else _reset_source(env)))
    if "step" in raw:
        report.say("step: " + _describe_result(raw["step"], "step"))
    for path, (src, dst, lossy, low, high) in env._notes.casts.items():
        loss = f", LOSSY (values in [{low:g}, {high:g}])" if lossy else ""
        report.say(f"cast: {path} {src} -> {dst}{loss}")
        if lossy:
            report.fail(f"{path}: casting {src} to {dst} loses information")


def _determinism_and_backends(report, env, rollout, trajectory, seed: int, actions) -> None:
    """A seeded rollout repeats, and every other backend gives the same one."""
    again = rollout(env, seed, actions)
    deterministic = _same(trajectory, again)
    if deterministic:
        report.say(f"determinism: the same seed ({seed}) and actions gave the same trajectory")
    else:
        hint = (
            "pass global_rng=True, so that the model's torch.randn draws come from the env's generator, or "
            if not env.global_rng
            else ""
        )
        report.fail(
            "determinism: the same seed and actions gave different trajectories; "
            + hint
            + "draw the model's randomness from the torch.Generator the env hands adapters and methods "
            "that declare a keyword-only generator parameter (or seed the model in reset(seed=...))"
        )
    for other in _backend.available():
        if other == env.backend:
            continue
        if not deterministic:
            report.say(f"backends: {env.backend} and {other} not compared (the model is not deterministic)")
            continue
        try:
            if _same(rollout(_rebuild(env, other), seed, actions), again):
                report.say(f"backends: {env.backend} and {other} agree")
            else:
                report.fail(f"backends: {env.backend} and {other} gave different trajectories")
        except Exception as exc:
            report.fail(f"backends: the {other} backend raised {type(exc).__name__}: {exc}")


def _keep_warnings(report, caught) -> None:
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in report.warnings:
            report.warnings.append(text)


def _reset_source(env) -> str:
    if env._start is not None:
        return "start_data (each reset draws a start state from the data" + (
            ", through encode_fn)" if env.encode_fn is not None else "; the observation is the state)"
        )
    return "default (initial_state / initial_observation)"


def check(env, *, steps: int = 50, seed: int = 0) -> CheckReport:
    """Steps ``env`` and reports how its outputs were read and whether the
    usual checkers pass: a :class:`~wmenv.WorldModelEnv`, or a
    :class:`~wmenv.WorldModelVectorEnv` (batched actions; determinism, the
    backends and the batch's dtypes and shapes are checked, there being no
    ecosystem checker for vector envs). An env with ``output="torch"`` is
    checked as the same env with ``output="numpy"``, and its seeded steps are
    compared with that env's.

    Example:
        >>> import gymnasium as gym, numpy as np, torch
        >>> import wmenv
        >>> env = wmenv.WorldModelVectorEnv(None, 4, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
        ...     transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]), initial_state=torch.zeros(4, 1))
        >>> wmenv.check(env, steps=5).ok
        True
    """
    from .vector import WorldModelVectorEnv

    if getattr(env, "output", "numpy") == "torch":
        return _check_torch_output(env, steps, seed)
    if isinstance(env, WorldModelVectorEnv):
        return _check_vector(env, steps, seed)
    report = CheckReport()
    space = env.observation_space
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # 1. how outputs are read
        try:
            trajectory, raw = _spied_rollout(env, _rollout, seed, actions)
        except Exception as exc:
            report.fail(f"stepping raised {type(exc).__name__}: {exc}")
            return report
        outside = sum(not space.contains(item[0] if isinstance(item, _Step) else item) for item in trajectory)
        report.say(f"backend: {env.backend}")
        _say_reading(report, env, raw)
        _say_ensemble(report, env, raw)
        _say_model_speed(report, env, raw)
        for kind, keys in env._notes.unknown_keys.items():
            report.fail(f"{kind} result keys {list(keys)} were not recognised; the observation fell back")
        report.say(f"observations outside the observation space: {outside} of {len(trajectory)}")
        _episode_lengths(report, trajectory, len(actions))
        # 2. determinism under a seed, and 3. both backends agree
        _determinism_and_backends(report, env, _rollout, trajectory, seed, actions)
        # 4. the ecosystem's checkers
        try:
            from gymnasium.utils.env_checker import check_env as gym_check

            gym_check(env, skip_render_check=env.render_mode is None)
            report.say("gymnasium check_env: passed")
        except Exception as exc:
            report.fail(f"gymnasium check_env: {type(exc).__name__}: {exc}")
        try:
            from stable_baselines3.common.env_checker import check_env as sb3_check
        except ImportError:
            report.say("stable-baselines3 check_env: not installed")
        else:
            try:
                sb3_check(env, warn=True)
                report.say("stable-baselines3 check_env: passed")
            except Exception as exc:
                report.fail(f"stable-baselines3 check_env: {type(exc).__name__}: {exc}")
        # 5. cost of a step
        env.reset(seed=seed)
        start = time.perf_counter()
        n = 0
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            n += 1
            if terminated or truncated:
                env.reset()
        report.say(f"step: {(time.perf_counter() - start) / max(n, 1) * 1e6:.1f} us (model included)")
    _keep_warnings(report, caught)
    return report


def _vector_rollout(env, seed: int, actions) -> list:
    """The batch's steps; with autoreset_mode DISABLED the ended envs are
    reset (by mask) before the next step, as its users do."""
    obs, _ = env.reset(seed=seed)
    out = [copy.deepcopy(obs)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        elapsed = np.asarray(info.get("elapsed_steps", np.zeros(env.num_envs, np.int64)))
        out.append(_Step((copy.deepcopy(obs), reward.copy(), terminated.copy(), truncated.copy(), elapsed.copy())))
        obs = _reset_ended(env, terminated, truncated)
        if obs is not None:
            out.append(copy.deepcopy(obs))
    return out


def _reset_ended(env, terminated, truncated):
    """With autoreset_mode DISABLED, resets the envs that ended (by mask) and
    returns the observations; otherwise ``None``."""
    from gymnasium.vector import AutoresetMode

    ended = np.asarray(terminated) | np.asarray(truncated)
    if env.autoreset_mode != AutoresetMode.DISABLED or not ended.any():
        return None
    return env.reset(options={"reset_mask": ended})[0]


class _AsNumpy:
    """A torch-mode env whose steps come out as NumPy mode hands them out
    (arrays, and the single env's Python scalars), to compare the two."""

    def __init__(self, env):
        self.env, self.vector = env, hasattr(env, "num_envs")
        self.num_envs = getattr(env, "num_envs", None)
        self.autoreset_mode = getattr(env, "autoreset_mode", None)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return _numpy(obs), _numpy(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.vector:
            return _numpy(obs), _numpy(reward), _numpy(terminated), _numpy(truncated), _numpy(info)
        return _numpy(obs), float(reward), bool(terminated), bool(truncated), _numpy(info)


def _numpy(tree):
    torch = _backend.torch
    return map_leaves(lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, tree)


def _check_torch_output(env, steps: int, seed: int) -> CheckReport:
    """``check`` for ``output="torch"``: the checks run on the same env with
    ``output="numpy"`` (Gymnasium's and SB3's checkers take NumPy and Python
    scalars; the two modes share every rule but the last conversion), and the
    torch env's seeded steps are compared with that env's."""
    twin = _rebuild(env, env.backend, output="numpy", capture=False)
    report = check(twin, steps=steps, seed=seed)
    report.lines.insert(
        0,
        "output: torch; checked as the same env with output='numpy' (the checkers take NumPy), "
        "and the torch env's steps compared with it",
    )
    if any(line.startswith(("determinism", "stepping")) for line in report.failures):
        report.say("output: torch not compared (the numpy env did not step, or not the same way twice)")
        return report
    twin.action_space.seed(seed)
    actions = [twin.action_space.sample() for _ in range(steps)]
    rollout = _vector_rollout if hasattr(env, "num_envs") else _rollout
    try:
        same = _same(rollout(_AsNumpy(env), seed, actions), rollout(twin, seed, actions))
    except Exception as exc:
        report.fail(f"output: torch: stepping raised {type(exc).__name__}: {exc}")
        return report
    if same:
        report.say("output: torch and numpy gave the same trajectory")
    else:
        report.fail("output: torch and numpy gave different trajectories from the same seed and actions")
    return report


def _check_vector(env, steps: int, seed: int) -> CheckReport:
    """``check`` for a WorldModelVectorEnv."""
    report = CheckReport()
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trajectory, raw = _spied_rollout(env, _vector_rollout, seed, actions)
        except Exception as exc:
            report.fail(f"stepping raised {type(exc).__name__}: {exc}")
            return report
        report.say(f"backend: {env.backend}; num_envs: {env.num_envs}; autoreset: {env.autoreset_mode.name}")
        _say_reading(report, env, raw)
        _say_ensemble(report, env, raw)
        _say_model_speed(report, env, raw)
        space = env.single_observation_space
        outside = total = 0
        for item in trajectory:
            obs = item[0] if isinstance(item, _Step) else item
            for i in range(env.num_envs):
                total += 1
                outside += not space.contains(_row(obs, i))
        report.say(f"observations outside the observation space: {outside} of {total}")
        n = env.num_envs
        stepped_items = [item for item in trajectory[1:] if isinstance(item, _Step)]  # DISABLED's resets left out
        for item in stepped_items:
            _, reward, terminated, truncated, _ = item
            for name, value, dtype in (("reward", reward, np.float32), ("terminated", terminated, np.bool_)):
                if not isinstance(value, np.ndarray) or value.shape != (n,) or value.dtype != dtype:
                    report.fail(f"{name} is not a ({n},) {np.dtype(dtype)} array")
                    break
        lengths = [
            int(e)
            for item in stepped_items
            for e, t, u in zip(item[4], item[2], item[3])
            if (t or u) and e > 0  # an episode that ended at this step, and how long it was
        ]
        stepped = sum(int((item[4] > 0).sum()) for item in stepped_items)
        mean = f", mean length {np.mean(lengths):.1f} steps" if lengths else ""
        report.say(f"episodes ended in {steps} batched steps: {len(lengths)}{mean}")
        if stepped and lengths and len(lengths) == stepped and max(lengths) == 1:
            report.fail(
                "every episode ends at its first step: a termination head that gives a probability reads as "
                "True wherever it is nonzero (pass terminated_threshold=0.5)"
            )
        _determinism_and_backends(report, env, _vector_rollout, trajectory, seed, actions)
        env.reset(seed=seed)
        start = time.perf_counter()
        for action in actions:
            _reset_ended(env, *env.step(action)[2:4])
        per_call = (time.perf_counter() - start) / max(len(actions), 1)
        report.say(
            f"step: {per_call * 1e6:.1f} us per batched call (model included), "
            f"{n / max(per_call, 1e-12):,.0f} env-steps/s"
        )
    _keep_warnings(report, caught)
    return report


def _row(obs, i):
    return map_leaves(lambda x: np.asarray(x)[i], obs)
