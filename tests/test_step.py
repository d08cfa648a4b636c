"""The contract for step results: every accepted form, rewards, flags, info, atomicity, autograd."""

import numpy as np
import pytest
import torch

from conftest import ACT1, BOX2
from models import Recorder

OBS = np.array([1.0, 2.0], np.float32)
ACTION = np.array([0.5], np.float32)


def stepped(make_env, result, **kwargs):
    model = Recorder(result=result)
    kwargs.setdefault("initial_state", "s0")
    kwargs.setdefault("initial_observation", OBS)
    env = make_env(model, BOX2, ACT1, **kwargs)
    env.reset()
    return env, env.step(ACTION)


def test_six_tuple(make_env):
    env, (obs, r, term, trunc, info) = stepped(make_env, ("s1", OBS, 1.0, True, True, {"k": 1}))
    assert env.state == "s1" and np.array_equal(obs, OBS) and (r, term, trunc) == (1.0, True, True)
    assert info == {"k": 1, "elapsed_steps": 1}  # the state is env.state; info_model_state is off by default
    _, (*_, info) = stepped(make_env, ("s1", OBS, 1.0, True, True, {"k": 1}), info_model_state=True)
    assert info == {"k": 1, "model_state": "s1", "elapsed_steps": 1}


def test_five_tuple_state_is_the_observation(make_env):
    env, (obs, r, term, trunc, info) = stepped(make_env, (OBS, 2.0, False, True, {}))
    assert np.array_equal(env.state, OBS) and (r, term, trunc) == (2.0, False, True)


def test_five_tuple_state_from_info(make_env):
    env, (obs, *_, info) = stepped(make_env, (OBS, 2.0, False, False, {"model_state": "hidden"}))
    assert env.state == "hidden" and info["model_state"] == "hidden"


def test_four_tuple(make_env):
    env, (obs, r, term, trunc, info) = stepped(make_env, (OBS, 3.0, True, {"model_state": "h"}))
    assert env.state == "h" and (r, term, trunc) == (3.0, True, False)


def test_three_tuple(make_env):
    env, (obs, r, term, trunc, info) = stepped(make_env, ("s1", OBS, 4.0))
    assert env.state == "s1" and np.array_equal(obs, OBS) and (r, term, trunc) == (4.0, False, False)


def test_two_tuple_keeps_the_observation(make_env):
    # (fix) the reference dropped the observation of a 2-tuple
    env, (obs, r, *_) = stepped(make_env, ("s1", OBS + 1))
    assert env.state == "s1" and np.array_equal(obs, OBS + 1) and r == 0.0


def test_one_tuple(make_env):
    env, (obs, *_) = stepped(make_env, (OBS + 2,))
    assert np.array_equal(env.state, OBS + 2) and np.array_equal(obs, OBS + 2)


def test_bare_result_is_state_and_observation(make_env):
    state = torch.tensor([3.0, 4.0])
    env, (obs, *_) = stepped(make_env, state)
    assert env.state is state and np.array_equal(obs, [3.0, 4.0])


@pytest.mark.parametrize("n", [0, 7, 9])
def test_bad_tuple_lengths(make_env, n):
    env = make_env(Recorder(result=(OBS,) * n), BOX2, ACT1, initial_observation=OBS)
    env.reset()
    with pytest.raises(ValueError, match=f"tuple of {n} items; accepted forms are a mapping, .*bare next state"):
        env.step(ACTION)


def test_mapping_full(make_env):
    env, (obs, r, term, trunc, info) = stepped(
        make_env,
        {"state": "s1", "observation": OBS, "reward": 1.5, "terminated": True, "truncated": True, "info": {"k": 1}},
    )
    assert env.state == "s1" and (r, term, trunc) == (1.5, True, True) and info["k"] == 1


def test_mapping_next_state_and_done(make_env):
    env, (obs, r, term, trunc, info) = stepped(make_env, {"next_state": "s2", "obs": OBS, "done": True})
    assert env.state == "s2" and term is True and trunc is False and r == 0.0


def test_mapping_defaults(make_env):
    start = torch.tensor([7.0, 8.0])
    env, (obs, r, term, trunc, info) = stepped(make_env, {"reward": 1.0}, initial_state=start, info_model_state=True)
    assert env.state is start and np.array_equal(obs, [7.0, 8.0])
    assert (r, term, trunc) == (1.0, False, False) and info["model_state"] is start


def test_mapping_observation_defaults_to_next_state(make_env):
    env, (obs, *_) = stepped(make_env, {"state": torch.tensor([5.0, 6.0])})
    assert np.array_equal(obs, [5.0, 6.0])


@pytest.mark.parametrize("key", ["observation", "obs", "image", "pixels", "next_observation", "next_obs"])
def test_mapping_observation_keys(make_env, key):
    env, (obs, *_) = stepped(make_env, {"state": "s", key: OBS + 3})
    assert np.array_equal(obs, OBS + 3)


def test_info_none_is_empty(make_env):
    _, (*_, info) = stepped(make_env, ("s", OBS, 0.0, False, False, None))
    assert info == {"elapsed_steps": 1}
    _, (*_, info) = stepped(make_env, {"state": "s", "obs": OBS, "info": None}, info_model_state=True)
    assert info == {"model_state": "s", "elapsed_steps": 1}
    _, (*_, info) = stepped(make_env, (OBS, 0.0, False, None))
    assert info["elapsed_steps"] == 1


def test_info_is_a_new_dict_and_model_values_win(make_env):
    model_info = {"model_state": "mine", "elapsed_steps": 99}
    _, (*_, info) = stepped(make_env, ("s", OBS, 0.0, False, False, model_info))
    assert info == {"model_state": "mine", "elapsed_steps": 99} and info is not model_info
    info["x"] = 1
    assert "x" not in model_info


def test_info_model_state_false(make_env):
    _, (*_, info) = stepped(make_env, ("s", OBS), info_model_state=False)
    assert info == {"elapsed_steps": 1}


def test_reward_fn_and_terminal_fn_get_raw_outputs_and_model_action(make_env):
    seen = []
    raw_obs = torch.tensor([1.0, 2.0], dtype=torch.float64)

    def reward_fn(m, next_state, observation, action):
        seen.append(("r", next_state, observation, action))
        return torch.tensor(0.25)

    def terminal_fn(m, next_state, observation, action):
        seen.append(("t", next_state, observation, action))
        return np.array([True])

    env, (obs, r, term, *_) = stepped(make_env, ("s1", raw_obs), reward_fn=reward_fn, terminal_fn=terminal_fn)
    assert r == 0.25 and term is True
    for _, s, o, a in seen:
        assert s == "s1" and o is raw_obs
        assert isinstance(a, torch.Tensor) and a.dtype == torch.float32


def test_result_values_win_over_fns(make_env):
    called = []
    _, (_, r, term, *_) = stepped(
        make_env,
        ("s", OBS, 2.0, True, False, {}),
        reward_fn=lambda *a: called.append(1),
        terminal_fn=lambda *a: called.append(1),
    )
    assert (r, term) == (2.0, True) and called == []


def test_defaults_without_fns(make_env):
    _, (_, r, term, trunc, _) = stepped(make_env, ("s", OBS))
    assert (r, term, trunc) == (0.0, False, False)


@pytest.mark.parametrize("value", [np.zeros(3), torch.zeros(3), [1.0, 2.0, 3.0]])
def test_reward_with_several_elements_is_an_error(make_env, value):
    env = make_env(Recorder(result=("s", OBS, value)), BOX2, ACT1, initial_observation=OBS)
    env.reset()
    with pytest.raises(ValueError, match=r"reward must hold one element, got shape \(3,\); use WorldModelVectorEnv"):
        env.step(ACTION)


@pytest.mark.parametrize("value", [np.zeros((2, 1), bool), torch.zeros(2, dtype=torch.bool), np.zeros(0)])
def test_terminated_with_other_than_one_element_is_an_error(make_env, value):
    env = make_env(
        Recorder(result={"state": "s", "obs": OBS, "terminated": value}), BOX2, ACT1, initial_observation=OBS
    )
    env.reset()
    with pytest.raises(ValueError, match="terminated must hold one element, got shape .*WorldModelVectorEnv"):
        env.step(ACTION)


def test_truncated_with_several_elements_is_an_error(make_env):
    env = make_env(Recorder(result=("s", OBS, 0.0, False, np.ones(2), {})), BOX2, ACT1, initial_observation=OBS)
    env.reset()
    with pytest.raises(ValueError, match="truncated must hold one element"):
        env.step(ACTION)


def test_reward_none_from_reward_fn_is_an_error(make_env):
    env = make_env(Recorder(result=("s", OBS)), BOX2, ACT1, initial_observation=OBS, reward_fn=lambda m: None)
    env.reset()
    with pytest.raises(TypeError, match="reward must be a number or a one-element array, got None"):
        env.step(ACTION)


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.1, 0.1),
        (np.float64(0.1), 0.1),
        (np.array([0.1]), 0.1),
        (torch.tensor(0.1, dtype=torch.float64), 0.1),
        (torch.tensor([[0.1]], dtype=torch.float64), 0.1),
        (np.float32(0.5), 0.5),
        (3, 3.0),
        (True, 1.0),
        (np.array(7, np.int64), 7.0),
    ],
)
def test_reward_is_a_full_precision_python_float(make_env, value, expected):
    _, (_, r, term, trunc, _) = stepped(make_env, ("s", OBS, value))
    assert type(r) is float and r == expected
    assert type(term) is bool and type(trunc) is bool


@pytest.mark.parametrize("value", [np.bool_(True), torch.tensor(True), np.array([1]), torch.tensor([1.0]), 1])
def test_terminated_is_a_python_bool(make_env, value):
    _, (_, _, term, _, _) = stepped(make_env, {"state": "s", "obs": OBS, "terminated": value})
    assert term is True


def test_step_before_reset(make_env):
    env = make_env(Recorder(result=("s", OBS)), BOX2, ACT1)
    with pytest.raises(RuntimeError, match=r"^Call reset\(\) before step\(\)\.$"):
        env.step(ACTION)


def test_time_limit(make_env):
    env = make_env(Recorder(result=("s", OBS)), BOX2, ACT1, max_episode_steps=3, initial_observation=OBS)
    env.reset()
    flags = [env.step(ACTION)[3] for _ in range(3)]
    assert flags == [False, False, True]
    assert env.step(ACTION)[4]["elapsed_steps"] == 4


@pytest.mark.parametrize("where", ["transition", "reward_fn", "terminal_fn", "action", "observation"])
def test_failure_leaves_the_env_unchanged(make_env, where):
    class Boom(Exception):
        pass

    state = {"n": 0}

    def transition(m, s, a):
        if where == "transition" and state["n"] == 1:
            raise Boom("transition")
        if where == "observation" and state["n"] == 1:
            return ("bad", np.zeros(5, np.float32))
        return (f"s{state['n']}", OBS + state["n"])

    def reward_fn(m):
        if where == "reward_fn" and state["n"] == 1:
            raise Boom("reward")
        return 0.0

    def terminal_fn(m):
        if where == "terminal_fn" and state["n"] == 1:
            raise Boom("terminal")
        return False

    env = make_env(
        Recorder(),
        BOX2,
        ACT1,
        transition_fn=transition,
        reward_fn=reward_fn,
        terminal_fn=terminal_fn,
        initial_observation=OBS,
    )
    env.reset()
    env.step(ACTION)
    before = (env.state, env._obs.copy(), env.elapsed_steps)
    state["n"] = 1
    bad_action = np.zeros(3, np.float32) if where == "action" else ACTION
    with pytest.raises((Boom, ValueError)) as caught:
        env.step(bad_action)
    if where in ("transition", "reward_fn", "terminal_fn"):
        assert type(caught.value) is Boom
    after = (env.state, env._obs, env.elapsed_steps)
    assert after[0] == before[0] and np.array_equal(after[1], before[1]) and after[2] == before[2]
    assert torch.is_grad_enabled()


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def forward(self, state, action):
        return self.layer(torch.cat([state, action]))


def test_model_runs_without_grad_by_default(make_env):
    env = make_env(Linear(), BOX2, ACT1, initial_state=torch.zeros(2))
    env.reset()
    for _ in range(3):
        env.step(ACTION)
    assert not env.state.requires_grad and env.state.grad_fn is None
    assert torch.is_grad_enabled()


def test_grad_true_keeps_the_graph(make_env):
    env = make_env(Linear(), BOX2, ACT1, initial_state=torch.zeros(2), grad=True)
    env.reset()
    for _ in range(3):
        obs, *_ = env.step(ACTION)
    assert env.state.requires_grad and env.state.grad_fn is not None
    assert isinstance(obs, np.ndarray)  # detached for the policy


def test_no_grad_covers_adapters(make_env):
    seen = []

    def reward_fn(m):
        seen.append(torch.is_grad_enabled())
        return 0.0

    env = make_env(
        Recorder(result=("s", OBS)),
        BOX2,
        ACT1,
        reward_fn=reward_fn,
        reset_fn=lambda m: seen.append(torch.is_grad_enabled()) or OBS,
    )
    env.reset()
    env.step(ACTION)
    assert seen == [False, False]


def test_user_no_grad_context_is_respected(make_env):
    env = make_env(Recorder(result=("s", OBS)), BOX2, ACT1, initial_observation=OBS)
    env.reset()
    with torch.no_grad():
        env.step(ACTION)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_reward_requiring_grad_gives_no_autograd_warning(backend):
    # torch warns once per process, so this runs in a fresh one with warnings as errors
    import subprocess
    import sys

    code = (
        "import numpy as np, torch, gymnasium as gym; from wmenv import WorldModelEnv\n"
        "r = torch.tensor(0.5, requires_grad=True); t = torch.tensor([1.0], requires_grad=True)\n"
        "env = WorldModelEnv(None, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (1,)), backend=BACKEND,\n"
        "    transition_fn=lambda m, s, a: ('s', np.zeros(2, np.float32), r, t, False, None))\n"
        "env.reset(); out = env.step(np.zeros(1, np.float32)); assert out[1:3] == (0.5, True), out\n"
    ).replace("BACKEND", repr(backend))
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
