"""Both envs driven by NumPy-only models, on both backends, with no torch.

These are the behaviours a wheel must keep on every Python it is built for:
the wheel matrix (.ci/wheels.py) runs this module, and the rest of the suite
that needs no torch, in venvs where torch is not installed.
"""

import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import wmenv
from wmenv import WorldModelEnv, WorldModelVectorEnv

BOX2 = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
ACT2 = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
N = 6


def drift(model, state, action):
    """A point that drifts with the action; it ends on leaving the unit square."""
    nxt = (np.asarray(state, np.float32) + 0.25 * np.asarray(action, np.float32)).astype(np.float32)
    out = np.abs(nxt).max(axis=-1) >= 1.0
    return {"state": nxt, "observation": nxt, "reward": -np.abs(nxt).sum(axis=-1), "terminated": out}


class Starts:
    """A reset drawing start points from its own generator, reseeded by a seed."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def __call__(self, model, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        state = self.rng.uniform(-0.5, 0.5, (N, 2)).astype(np.float32)
        return state, state.copy()


class InPlace:
    """A model that writes every result into one buffer it keeps (as many do)."""

    def __init__(self, shape):
        self.buf = np.zeros(shape, np.float32)

    def step(self, state, action):
        self.buf += 0.1 * np.asarray(action, np.float32)
        return self.buf, self.buf, float(self.buf.sum()) if self.buf.ndim == 1 else self.buf.sum(axis=-1)


def single(backend, **kwargs):
    kwargs.setdefault("max_episode_steps", 20)
    return WorldModelEnv(
        None,
        BOX2,
        ACT2,
        transition_fn=drift,
        initial_state=np.zeros(2, np.float32),
        initial_observation=np.zeros(2, np.float32),
        torch_actions=False,
        backend=backend,
        **kwargs,
    )


def vector(backend, **kwargs):
    kwargs.setdefault("max_episode_steps", 20)
    return WorldModelVectorEnv(
        None, N, BOX2, ACT2, transition_fn=drift, reset_fn=Starts(), torch_actions=False, backend=backend, **kwargs
    )


def trajectory(env, steps, seed=0):
    env.action_space.seed(seed)
    out = [env.reset(seed=seed)]
    for _ in range(steps):
        out.append(env.step(env.action_space.sample()))
    return out


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def test_the_package_works_where_torch_cannot_be_imported():
    # torch blocked in a fresh interpreter: every module imports and an env steps
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, gymnasium as gym, wmenv, wmenv.check, wmenv.ensemble, wmenv.planning, wmenv.groups\n"
        "env = wmenv.WorldModelEnv(None, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2,)),\n"
        "    transition_fn=lambda m, s, a: (s, s, 0.0), initial_state=np.zeros(2, np.float32), torch_actions=False)\n"
        "env.reset(seed=0); env.step(np.zeros(2, np.float32)); print('ok', wmenv.backend())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr


def test_single_env_episode_types_and_time_limit(backend):
    env = single(backend, max_episode_steps=3)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (2,) and info == {}
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert type(reward) is float and type(terminated) is bool and truncated is True and not terminated
    assert env.elapsed_steps == 3


def test_single_env_terminates_where_the_model_says(backend):
    env = single(backend)
    env.reset(seed=0)
    ends = [env.step(np.ones(2, np.float32))[2] for _ in range(4)]
    assert ends == [False, False, False, True]


def test_single_env_passes_gymnasium_check_env(backend):
    # made through the registry so that check_env can also build it with each render mode
    env = gym.make(
        "wmenv/WorldModel-v0",
        world_model=None,
        observation_space=BOX2,
        action_space=ACT2,
        transition_fn=drift,
        initial_state=np.zeros(2, np.float32),
        initial_observation=np.zeros(2, np.float32),
        torch_actions=False,
        render_fn=lambda model, state: np.zeros((4, 4, 3), np.uint8),
        render_mode="rgb_array",
        backend=backend,
    ).unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []


def test_discrete_actions_reach_the_model_as_ints_and_are_range_checked(backend):
    seen = []

    def step(model, state, action):
        seen.append(action)
        return state, np.zeros(2, np.float32), 0.0

    env = WorldModelEnv(
        None, BOX2, gym.spaces.Discrete(3), transition_fn=step, initial_state=np.zeros(2), torch_actions=False
    )
    env.reset(seed=0)
    env.step(np.int64(2))
    assert int(seen[0]) == 2
    with pytest.raises(ValueError):
        env.step(3)


def test_dict_observations_are_converted_per_key(backend):
    space = gym.spaces.Dict({"pos": BOX2, "frame": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)})

    def step(model, state, action):
        nxt = state + np.asarray(action, np.float32)
        return nxt, {"pos": nxt, "frame": np.full((4, 4, 3), 7, np.int64)}, 1.0

    env = WorldModelEnv(
        None,
        space,
        ACT2,
        transition_fn=step,
        initial_state=np.zeros(2, np.float32),
        initial_observation={"pos": np.zeros(2, np.float32), "frame": np.zeros((4, 4, 3), np.uint8)},
        torch_actions=False,
        backend=backend,
    )
    env.reset(seed=0)
    obs, *_ = env.step(np.full(2, 0.5, np.float32))
    assert obs["frame"].dtype == np.uint8 and (obs["frame"] == 7).all()
    assert obs["pos"].dtype == np.float32 and np.allclose(obs["pos"], 0.5)


def test_vector_env_shapes_and_dtypes(backend):
    env = vector(backend)
    obs, info = env.reset(seed=1)
    assert obs.shape == (N, 2) and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(np.zeros((N, 2), np.float32))
    assert reward.shape == (N,) and reward.dtype == np.float32
    assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
    assert env.observation_space.contains(obs)


def test_next_step_autoreset_resets_only_the_ended_envs(backend):
    env = vector(backend)
    obs0, _ = env.reset(seed=3)
    push = np.zeros((N, 2), np.float32)
    push[0] = 1.0  # env 0 runs out of the square; the others stand still
    for _ in range(8):
        obs, reward, terminated, truncated, info = env.step(push)
        if terminated[0]:
            break
    assert terminated[0] and not terminated[1:].any()
    before = obs.copy()
    obs, reward, terminated, truncated, info = env.step(push)
    # the ended env was reset (its action ignored, reward 0); the others stepped from where they were
    assert reward[0] == 0.0 and not terminated[0] and env.elapsed_steps[0] == 0
    assert np.array_equal(obs[1:], before[1:]) and np.abs(obs[0]).max() <= 0.5


def test_same_step_autoreset_reports_the_final_observation(backend):
    env = vector(backend, autoreset_mode=AutoresetMode.SAME_STEP)
    env.reset(seed=3)
    push = np.zeros((N, 2), np.float32)
    push[2] = -1.0
    for _ in range(8):
        obs, reward, terminated, truncated, info = env.step(push)
        if terminated[2]:
            break
    assert terminated[2] and info["_final_obs"][2] and not info["_final_obs"][[0, 1, 3, 4, 5]].any()
    final = info["final_obs"][2]
    assert np.abs(final).max() >= 1.0 and np.abs(obs[2]).max() <= 0.5  # obs is already the new episode's


def test_disabled_autoreset_needs_a_masked_reset(backend):
    env = vector(backend, autoreset_mode=AutoresetMode.DISABLED)
    env.reset(seed=0)
    mask = np.zeros(N, np.bool_)
    mask[1] = True
    before = env.step(np.full((N, 2), 0.5, np.float32))[0].copy()
    obs, _ = env.reset(options={"reset_mask": mask})
    assert np.array_equal(obs[~mask], before[~mask]) and not np.array_equal(obs[1], before[1])
    with pytest.raises(ValueError):
        env.reset(options={"reset_mask": np.zeros(N, np.bool_)})
    with pytest.raises(ValueError):
        env.reset(options={"reset_mask": np.ones(N + 1, np.bool_)})


def test_kept_observations_never_change_under_an_in_place_model(backend):
    model = InPlace((2,))
    env = WorldModelEnv(
        model, BOX2, ACT2, initial_state=np.zeros(2, np.float32), initial_observation=np.zeros(2, np.float32),
        torch_actions=False, backend=backend,
    )  # fmt: skip
    kept = [env.reset(seed=0)[0]]
    for _ in range(5):
        kept.append(env.step(np.ones(2, np.float32))[0])
    assert [float(o[0]) for o in kept] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    vec = WorldModelVectorEnv(
        InPlace((N, 2)), N, BOX2, ACT2, initial_state=np.zeros((N, 2), np.float32), torch_actions=False,
        initial_observation=np.zeros((N, 2), np.float32), backend=backend,
    )  # fmt: skip
    kept = [vec.reset(seed=0)[0]]
    for _ in range(4):
        kept.append(vec.step(np.ones((N, 2), np.float32))[0])
    assert [float(o[0, 0]) for o in kept] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_snapshots_replay_the_same_steps(backend):
    for env, action in ((single(backend), np.full(2, 0.3, np.float32)), (vector(backend), np.full((N, 2), 0.3))):
        env.reset(seed=5)
        env.step(action.astype(np.float32))
        snap = env.get_state(copy=True)
        first = [env.step(action.astype(np.float32)) for _ in range(3)]
        env.set_state(snap)
        again = [env.step(action.astype(np.float32)) for _ in range(3)]
        assert same(first, again)


def test_pickled_vector_env_steps_like_the_original(backend):
    env = vector(backend)
    env.reset(seed=2)
    clone = pickle.loads(pickle.dumps(env))
    action = np.full((N, 2), 0.2, np.float32)
    assert same(env.step(action), clone.step(action))


def test_backends_agree_step_for_step():
    if "native" not in wmenv._backend.available():
        pytest.skip("native backend not built")
    for make in (single, vector):
        runs = [trajectory(make(name), 30, seed=7) for name in ("native", "python")]
        assert same(runs[0], runs[1])


def test_per_env_seeds_do_not_depend_on_position(backend):
    env = vector(backend)
    seeds = list(range(100, 100 + N))
    obs_a, _ = env.reset(seed=seeds)
    obs_b, _ = env.reset(seed=seeds[::-1])
    assert obs_a.shape == (N, 2)
    with pytest.raises(ValueError):
        env.reset(seed=seeds[:-1])


def test_rollout_from_a_batch_of_states(backend):
    env = vector(backend)
    env.reset(seed=0)
    actions = np.full((5, N, 2), 0.25, np.float32)
    out = env.rollout(actions, np.zeros((N, 2), np.float32))
    assert out.observations.shape == (5, N, 2) and out.rewards.shape == (5, N)
    # each step moves 0.0625 along both axes: none has reached the edge of the unit square
    assert np.allclose(out.observations[:, 0, 0], [0.0625 * k for k in range(1, 6)])
    assert np.allclose(out.rewards[:, 0], [-0.125 * k for k in range(1, 6)])
    assert not out.terminated.any()
    # at full speed the fourth step reaches the edge: that step's reward counts, later ones are 0
    out = env.rollout(np.ones((6, N, 2), np.float32), np.zeros((N, 2), np.float32))
    assert out.terminated[3:].all() and not out.terminated[:3].any()
    assert np.allclose(out.rewards[:, 0], [-0.5, -1.0, -1.5, -2.0, 0.0, 0.0])
    assert np.allclose(out.returns, -5.0)
    # the env's own position is untouched by a rollout
    assert env.elapsed_steps.tolist() == [0] * N


def test_check_reports_ok_for_both_envs(backend):
    for env in (single(backend), vector(backend)):
        report = wmenv.check(env, steps=10)
        assert report.ok, report


def test_a_bad_model_result_is_a_clear_error(backend):
    env = WorldModelEnv(
        None,
        BOX2,
        ACT2,
        transition_fn=lambda m, s, a: (s, np.zeros(3, np.float32), 0.0),
        initial_state=np.zeros(2, np.float32),
        initial_observation=np.zeros(2, np.float32),
        torch_actions=False,
        backend=backend,
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2, np.float32))
