"""run_step: the single env's step in one core call, and the env's use of it."""

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from wmenv import _spaces

BOX2 = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
ACT1 = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
GRAD = (torch.is_grad_enabled, torch._C._set_grad_enabled)


def plan(transition, *, grad=GRAD, limit=None, info_model_state=False, protect=False, reward_fn=None):
    return (
        transition,
        _spaces.action_spec(ACT1, torch, None, True),
        _spaces.observation_spec(BOX2),
        reward_fn,
        None,
        info_model_state,
        protect,
        None,
        grad,
        limit,
    )


def step_result(state, action):
    nxt = state + action
    return {"state": nxt, "observation": nxt, "reward": nxt.sum(), "terminated": nxt[0] > 5}


def test_run_step_is_convert_transition_normalize(core):
    state = torch.zeros(2)
    seen = []

    def transition(s, a):
        seen.append((s, a, torch.is_grad_enabled()))
        return step_result(s, a)

    out = core.run_step(plan(transition, info_model_state=True), state, np.array([0.5], np.float32), 7)
    next_state, obs, reward, terminated, truncated, info = out
    assert seen[0][0] is state and isinstance(seen[0][1], torch.Tensor) and seen[0][2] is False
    assert torch.equal(next_state, torch.full((2,), 0.5))
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.tolist() == [0.5, 0.5]
    assert reward == 1.0 and type(reward) is float
    assert terminated is False and truncated is False
    assert list(info) == ["model_state", "elapsed_steps"] and info["elapsed_steps"] == 7
    assert torch.is_grad_enabled()


def test_run_step_time_limit_sets_truncated(core):
    p = plan(step_result, limit=3)
    assert core.run_step(p, torch.zeros(2), np.zeros(1, np.float32), 2)[4] is False
    assert core.run_step(p, torch.zeros(2), np.zeros(1, np.float32), 3)[4] is True
    assert core.run_step(p, torch.zeros(2), np.zeros(1, np.float32), 10**30)[4] is True


def test_run_step_restores_autograd_after_an_error(core):
    def broken(s, a):
        assert not torch.is_grad_enabled()
        raise KeyError("model failed")

    with pytest.raises(KeyError, match="model failed"):
        core.run_step(plan(broken), torch.zeros(2), np.zeros(1, np.float32), 1)
    assert torch.is_grad_enabled()
    with pytest.raises(ValueError, match=r"observation must have shape \(2,\), got \(3,\)"):
        core.run_step(plan(lambda s, a: torch.zeros(3)), torch.zeros(2), np.zeros(1, np.float32), 1)
    assert torch.is_grad_enabled()
    with pytest.raises(ValueError, match="action must hold 1 element"):
        core.run_step(plan(step_result), torch.zeros(2), np.zeros(3, np.float32), 1)
    assert torch.is_grad_enabled()


def test_run_step_leaves_autograd_alone_without_a_switch_or_when_off(core):
    modes = []

    def transition(s, a):
        modes.append(torch.is_grad_enabled())
        return step_result(s, a)

    core.run_step(plan(transition, grad=None), torch.zeros(2), np.zeros(1, np.float32), 1)
    with torch.no_grad():
        core.run_step(plan(transition), torch.zeros(2), np.zeros(1, np.float32), 1)
        assert not torch.is_grad_enabled()  # off before, so not turned on after
    assert modes == [True, False]


def test_run_step_calls_reward_fn_with_the_converted_action(core):
    got = []

    def reward_fn(next_state, obs, action):
        got.append(action)
        return 2.5

    out = core.run_step(
        plan(lambda s, a: (s + a, s + a), reward_fn=reward_fn), torch.zeros(2), np.ones(1, np.float32), 1
    )
    assert out[2] == 2.5 and isinstance(got[0], torch.Tensor)


def test_run_step_copies_an_observation_the_model_hands_back_in_place(core):
    buffer = torch.zeros(2)

    def in_place(s, a):
        buffer.add_(1.0)
        return buffer, buffer

    p = plan(in_place, protect=True)
    first = core.run_step(p, buffer, np.zeros(1, np.float32), 1)[1]
    second = core.run_step(p, buffer, np.zeros(1, np.float32), 2)[1]
    core.run_step(p, buffer, np.zeros(1, np.float32), 3)
    assert first.tolist() == [1.0, 1.0] and second.tolist() == [2.0, 2.0]  # copied at once: the model holds it
    assert not np.shares_memory(first, buffer.numpy())


def test_run_step_hands_a_fresh_tensor_out_without_a_copy(core):
    made = []

    def fresh(s, a):
        nxt = s + a
        obs = nxt * 2
        made.append(obs.data_ptr())  # an address, not the tensor: holding it would be sharing
        return nxt, obs

    p = plan(fresh, protect=True)
    obs = core.run_step(p, torch.zeros(2), np.ones(1, np.float32), 1)[1]
    assert obs.__array_interface__["data"][0] == made[0] and obs.tolist() == [2.0, 2.0]
    unprotected = core.run_step(plan(lambda s, a: (s, s)), torch.zeros(2), np.ones(1, np.float32), 1)[1]
    assert unprotected.base is not None  # without protect a state alias is viewed, as conversions do


@pytest.mark.parametrize(
    "bad, error, message",
    [
        ([None] * 10, TypeError, "step plan must be a 10-tuple"),
        ((None,) * 9, TypeError, "step plan must be a 10-tuple"),
        ("grad", TypeError, r"grad_switch must be None or an \(is_grad_enabled, set_grad_enabled\) pair"),
    ],
)
def test_run_step_rejects_malformed_plans(core, bad, error, message):
    if bad == "grad":
        bad = plan(step_result, grad=(torch.is_grad_enabled,))
    with pytest.raises(error, match=message):
        core.run_step(bad, torch.zeros(2), np.zeros(1, np.float32), 1)


def test_backends_agree_on_run_step():
    from wmenv import _backend

    results = []
    for name in _backend.available():
        core = _backend.load(name)
        p = plan(step_result, limit=2, info_model_state=True, protect=True)
        state, rows = torch.zeros(2), []
        for t in range(1, 4):
            state, obs, reward, terminated, truncated, info = core.run_step(p, state, np.ones(1, np.float32), t)
            rows.append((obs.tolist(), reward, terminated, truncated, sorted(info)))
        results.append(rows)
    assert all(r == results[0] for r in results)


# The env: the one-call step is the step wherever the options allow it.


class CounterModel:
    def reset(self):
        return torch.zeros(2), torch.zeros(2)

    def step(self, state, action):
        return step_result(state, action)


def counter_model():
    return CounterModel()


def test_env_steps_in_one_call_and_gives_what_the_long_way_gives(make_env):
    fast = make_env(counter_model(), BOX2, ACT1, max_episode_steps=3)
    slow = make_env(
        counter_model(), BOX2, ACT1, max_episode_steps=3, action_transform_fn=lambda m, a: torch.from_numpy(a)
    )
    assert fast._plan is not None and slow._plan is None
    for env in (fast, slow):
        env.reset(seed=0)
    for _ in range(3):
        a = np.full(1, 0.5, np.float32)
        got, want = fast.step(a), slow.step(a)
        assert got[0].tolist() == want[0].tolist() and got[1:4] == want[1:4] and got[4] == want[4]
    assert got[3] is True and fast.elapsed_steps == 3
    assert torch.equal(fast.state, slow.state)


def test_env_options_changed_after_construction_reach_the_step(make_env):
    env = make_env(counter_model(), BOX2, ACT1)
    env.reset(seed=0)
    env.step(np.zeros(1, np.float32))
    env.info_model_state = True
    assert "model_state" in env.step(np.zeros(1, np.float32))[4]
    env.max_episode_steps = 3
    assert env.step(np.zeros(1, np.float32))[3] is True
    env.max_episode_steps = None
    assert env.step(np.zeros(1, np.float32))[3] is False
    with pytest.raises(ValueError, match="max_episode_steps must be None or a positive int"):
        env.max_episode_steps = 0


def test_env_runs_the_model_without_autograd_and_leaves_it_on(make_env):
    modes = []

    class Model:
        def step(self, state, action):
            modes.append(torch.is_grad_enabled())
            return state, state

    env = make_env(Model(), BOX2, ACT1, initial_state=torch.zeros(2))
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(1, np.float32))
    assert modes == [False] * 3 and torch.is_grad_enabled()
    grad_env = make_env(Model(), BOX2, ACT1, initial_state=torch.zeros(2), grad=True)
    grad_env.reset(seed=0)
    grad_env.step(np.zeros(1, np.float32))
    grad_env.step(np.zeros(1, np.float32))
    assert modes[3:] == [True, True]


def test_pickled_env_keeps_its_options_and_plan(make_env):
    import pickle

    env = make_env(counter_model(), BOX2, ACT1, max_episode_steps=2, info_model_state=True)
    copy = pickle.loads(pickle.dumps(env))
    assert copy.max_episode_steps == 2 and copy.info_model_state is True and copy._plan is not None
    copy.reset(seed=0)
    copy.step(np.zeros(1, np.float32))
    out = copy.step(np.zeros(1, np.float32))
    assert out[3] is True and "model_state" in out[4]


# run_step_batch: the vector env's step in one core call.


def batch_plan(transition, n=3, *, grad=GRAD, limit=None, check=None, protect=False):
    return (
        transition,
        _spaces.action_spec(gym.spaces.Box(-1.0, 1.0, (3, 1), np.float32), torch, None, True),
        _spaces.observation_spec(gym.spaces.Box(-10.0, 10.0, (3, 2), np.float32)),
        None,
        None,
        n,
        protect,
        None,
        grad,
        limit,
        check,
    )


def batch_result(state, action):
    nxt = state + action
    return {"state": nxt, "observation": nxt, "reward": nxt[:, 0], "terminated": nxt[:, 0] > 1.5}


def test_run_step_batch_steps_and_counts(core):
    modes, checked = [], []

    def transition(s, a):
        modes.append(torch.is_grad_enabled())
        return batch_result(s, a)

    p = batch_plan(transition, limit=2, check=checked.append)
    elapsed = np.array([0, 1, 5], np.int64)
    out = core.run_step_batch(p, torch.zeros(3, 2), np.ones((3, 1), np.float32), elapsed)
    state, obs, reward, terminated, truncated, info, counted, ended = out
    assert modes == [False] and torch.is_grad_enabled() and isinstance(checked[0], torch.Tensor)
    assert obs.shape == (3, 2) and reward.dtype == np.float32 and reward.tolist() == [1.0, 1.0, 1.0]
    assert terminated.tolist() == [False] * 3
    assert counted.tolist() == [1, 2, 6] and truncated.tolist() == [False, True, True]
    assert ended.tolist() == [False, True, True] and elapsed.tolist() == [0, 1, 5]
    assert info == {}


def test_run_step_batch_check_and_errors_leave_autograd_on(core):
    def refuse(action):
        raise ValueError("action 7 of env 0 is outside")

    with pytest.raises(ValueError, match="action 7 of env 0"):
        core.run_step_batch(
            batch_plan(batch_result, check=refuse),
            torch.zeros(3, 2),
            np.ones((3, 1), np.float32),
            np.zeros(3, np.int64),
        )
    assert torch.is_grad_enabled()
    with pytest.raises(ValueError, match="reward must hold 3 values"):
        core.run_step_batch(
            batch_plan(lambda s, a: (s, s, torch.zeros(2))),
            torch.zeros(3, 2),
            np.ones((3, 1), np.float32),
            np.zeros(3, np.int64),
        )
    assert torch.is_grad_enabled()
    with pytest.raises(TypeError, match="batch step plan must be an 11-tuple"):
        core.run_step_batch(batch_plan(batch_result)[:10], torch.zeros(3, 2), np.ones((3, 1), np.float32), None)
    with pytest.raises(TypeError, match="num_envs must be an int, got float"):
        core.run_step_batch(batch_plan(batch_result, n=3.0), torch.zeros(3, 2), np.ones((3, 1), np.float32), None)


def test_backends_agree_on_run_step_batch():
    from wmenv import _backend

    results = []
    for name in _backend.available():
        core = _backend.load(name)
        state, elapsed, rows = torch.zeros(3, 2), np.zeros(3, np.int64), []
        p = batch_plan(batch_result, limit=3, protect=True)
        for _ in range(3):
            state, obs, reward, terminated, truncated, info, elapsed, ended = core.run_step_batch(
                p, state, np.full((3, 1), 0.5, np.float32), elapsed
            )
            rows.append((obs.tolist(), reward.tolist(), terminated.tolist(), truncated.tolist(), ended.tolist()))
        results.append(rows)
    assert all(r == results[0] for r in results)


def test_vector_env_steps_in_one_call_with_discrete_actions(backend):
    from wmenv import WorldModelVectorEnv

    def transition(model, state, action):
        nxt = state + action.unsqueeze(-1).float()
        return {"state": nxt, "observation": nxt, "reward": torch.ones(2), "terminated": nxt[:, 0] >= 3}

    env = WorldModelVectorEnv(
        None,
        2,
        BOX2,
        gym.spaces.Discrete(2),
        transition_fn=transition,
        initial_state=torch.zeros(2, 2),
        backend=backend,
    )
    assert env._plan is not None
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 2 of env 1 is outside Discrete\(2\)"):
        env.step(np.array([1, 2]))
    assert torch.is_grad_enabled()
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(np.array([1, 0]))
    assert terminated.tolist() == [True, False] and info["elapsed_steps"].tolist() == [3, 3]
    obs, reward, terminated, truncated, info = env.step(np.array([1, 1]))  # env 0 autoresets (next step)
    assert reward.tolist() == [0.0, 1.0] and info["elapsed_steps"].tolist() == [0, 4]


# The autograd switch: torch's own pair goes straight to c10::GradMode in the
# native core; any other pair is called as given, on both backends.


def test_a_foreign_grad_switch_is_called_as_given(core):
    calls = []

    def is_enabled():
        calls.append("is")
        return torch.is_grad_enabled()

    def set_enabled(mode):
        calls.append(mode)
        torch._C._set_grad_enabled(mode)

    modes = []

    def transition(s, a):
        modes.append(torch.is_grad_enabled())
        return step_result(s, a)

    core.run_step(plan(transition, grad=(is_enabled, set_enabled)), torch.zeros(2), np.zeros(1, np.float32), 1)
    assert calls == ["is", False, True] and modes == [False] and torch.is_grad_enabled()
    with pytest.raises(ValueError, match="action must hold 1 element"):
        core.run_step(plan(transition, grad=(is_enabled, set_enabled)), torch.zeros(2), np.zeros(3, np.float32), 1)
    assert calls[3:] == ["is", False, True] and torch.is_grad_enabled()


def _native_grad_mode_follows_registration():
    from wmenv import _core

    assert _core._native_grad_mode()
    _core.set_torch(None)
    assert not _core._native_grad_mode()

    class NoSwitch:  # a torch-like module without an autograd switch
        Tensor = torch.Tensor
        from_numpy = staticmethod(torch.from_numpy)

    _core.set_torch(NoSwitch())
    assert not _core._native_grad_mode()
    modes = []

    def transition(s, a):
        modes.append(torch.is_grad_enabled())
        return step_result(s, a)

    _core.run_step(plan(transition), torch.zeros(2), np.zeros(1, np.float32), 1)  # through the Python pair
    assert modes == [False] and torch.is_grad_enabled()
    _core.set_torch(torch)
    assert _core._native_grad_mode()
    # the C functions answer what torch answers, both ways, and leave it as it was
    _core.run_step(plan(transition), torch.zeros(2), np.zeros(1, np.float32), 1)
    with torch.no_grad():
        _core.run_step(plan(transition), torch.zeros(2), np.zeros(1, np.float32), 1)
        assert not torch.is_grad_enabled()
    assert modes == [False, False, False] and torch.is_grad_enabled()


@pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="runtime symbol lookup is POSIX-only")
def test_native_grad_mode_is_found_and_follows_registration(native_core):
    from test_safety import isolated

    isolated(_native_grad_mode_follows_registration)


class _Reordered(tuple):
    """A tuple subclass whose indexing lies: both cores read its own slots."""

    def __getitem__(self, i):
        raise AssertionError("the core must read the tuple's own slots")

    def __iter__(self):
        raise AssertionError("the core must read the tuple's own slots")


def test_run_step_takes_named_tuple_plans_and_tuple_subclasses(core):
    from wmenv.route import BatchPlan, StepPlan

    out = core.run_step(StepPlan(*plan(step_result, limit=1)), torch.zeros(2), np.ones(1, np.float32), 1)
    assert out[1].tolist() == [1.0, 1.0] and out[4] is True
    # a subclass is read through its own slots, as the compiled core reads any tuple
    out = core.run_step(_Reordered(plan(step_result, grad=_Reordered(GRAD))), torch.zeros(2), np.ones(1), 1)
    assert out[2] == 2.0 and torch.is_grad_enabled()
    batch = BatchPlan(
        lambda s, a: (s + a, s + a, (s + a).sum(1)),
        _spaces.action_spec(gym.spaces.Box(-1, 1, (3, 1), np.float32), torch, None, True),
        _spaces.observation_spec(gym.spaces.Box(-9, 9, (3, 1), np.float32)),
        None, None, 3, False, None, GRAD, None, None,
    )  # fmt: skip
    out = core.run_step_batch(batch, torch.zeros(3, 1), np.ones((3, 1), np.float32), np.zeros(3, np.int64))
    assert out[2].tolist() == [1.0] * 3 and out[6].tolist() == [1] * 3
    with pytest.raises(TypeError, match="step plan must be a 10-tuple"):
        core.run_step(StepPlan(*plan(step_result))[:9], torch.zeros(2), np.ones(1), 1)
