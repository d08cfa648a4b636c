"""The arity rule for user callables and finding the model's methods."""

import inspect

import numpy as np
import pytest

from conftest import ACT1, BOX2, needs_torch, torch
from models import Recorder

OBS = np.zeros(2, np.float32)
ACTION = np.zeros(1, np.float32)


class Uninspectable:
    """A callable whose signature cannot be read: it receives every argument."""

    def __init__(self, fn):
        self.fn = fn

    @property
    def __signature__(self):
        raise ValueError("no signature")

    def __call__(self, *args):
        return self.fn(*args)


def test_uninspectable_really_is():
    with pytest.raises(ValueError):
        inspect.signature(Uninspectable(print))


@pytest.mark.parametrize(
    "make_fn, expected",
    [
        (lambda log: lambda: log.append(()) or OBS, 0),
        (lambda log: lambda m: log.append((m,)) or OBS, 1),
        (lambda log: lambda m, seed: log.append((m, seed)) or OBS, 2),
        (lambda log: lambda m, seed, options: log.append((m, seed, options)) or OBS, 3),
        (lambda log: lambda *args: log.append(args) or OBS, 3),
        (lambda log: Uninspectable(lambda *args: log.append(args) or OBS), 3),
        (lambda log: lambda m, seed=None, options=None, extra=None: log.append((m, seed, options)) or OBS, 3),
    ],
)
def test_reset_fn_arity(make_env, make_fn, expected):
    log = []
    model = Recorder()
    env = make_env(model, BOX2, ACT1, reset_fn=make_fn(log))
    env.reset(seed=5)
    assert log == [(model, 5, {})[:expected]]


@pytest.mark.parametrize(
    "make_fn, expected",
    [
        (lambda log: lambda m: log.append((m,)) or OBS, 1),
        (lambda log: lambda m, s: log.append((m, s)) or OBS, 2),
        (lambda log: lambda m, s, a: log.append((m, s, a)) or OBS, 3),
        (lambda log: lambda *args: log.append(args) or OBS, 3),
        (lambda log: Uninspectable(lambda *args: log.append(args) or OBS), 3),
    ],
)
def test_transition_fn_arity(make_env, make_fn, expected):
    log = []
    model = Recorder()
    env = make_env(model, BOX2, ACT1, transition_fn=make_fn(log), initial_state="s", torch_actions=False)
    env.reset()
    env.step(ACTION)
    assert len(log) == 1 and len(log[0]) == expected
    assert log[0][0] is model
    if expected >= 2:
        assert log[0][1] == "s"
    if expected == 3:
        assert log[0][2] is ACTION


@pytest.mark.parametrize("arity", [1, 2, 3, 4, None])
def test_reward_and_terminal_fn_arity(make_env, arity):
    rewards, terminals = [], []

    def make(log, value):
        if arity is None:
            return lambda *args: log.append(args) or value
        params = ", ".join(f"p{i}" for i in range(arity))
        return eval(f"lambda {params}: log.append(({params},)) or value", {"log": log, "value": value})

    model = Recorder(result=("next", np.ones(2, np.float32)))
    env = make_env(
        model, BOX2, ACT1, reward_fn=make(rewards, 1.5), terminal_fn=make(terminals, True), torch_actions=False
    )
    env.reset()
    _, reward, terminated, _, _ = env.step(ACTION)
    assert reward == 1.5 and terminated is True
    full_length = 4 if arity is None else arity
    for log in (rewards, terminals):
        assert len(log[0]) == full_length
        assert log[0][0] is model
        if full_length >= 2:
            assert log[0][1] == "next"
        if full_length >= 3:
            assert np.array_equal(log[0][2], np.ones(2))
        if full_length == 4:
            assert log[0][3] is ACTION


@pytest.mark.parametrize("arity", [1, 2, 3, None])
def test_render_fn_arity(make_env, arity):
    log = []
    fns = {
        1: lambda m: log.append((m,)) or OBS,
        2: lambda m, s: log.append((m, s)) or OBS,
        3: lambda m, s, o: log.append((m, s, o)) or OBS,
        None: lambda *args: log.append(args) or OBS,
    }
    env = make_env(Recorder(), BOX2, ACT1, render_fn=fns[arity], initial_state="s")
    env.reset()
    env.render()
    assert len(log[0]) == (3 if arity is None else arity)


@pytest.mark.parametrize("arity", [1, 2, None])
def test_action_transform_fn_arity(make_env, arity):
    model = Recorder(result=lambda s, a: (s, OBS))
    fns = {1: lambda m: "from-model-only", 2: lambda m, a: ("transformed", a), None: lambda *args: args}
    env = make_env(model, BOX2, ACT1, action_transform_fn=fns[arity])
    env.reset()
    env.step(ACTION)
    received = model.calls[0][1]
    if arity == 1:
        assert received == "from-model-only"
    elif arity == 2:
        assert received[0] == "transformed" and received[1] is ACTION
    else:
        assert received[0] is model and received[1] is ACTION


@pytest.mark.parametrize(
    "method, expected",
    [
        ("def reset(self): return self.log.append(()) or OBS", ()),
        ("def reset(self, seed): return self.log.append((seed,)) or OBS", (4,)),
        ("def reset(self, seed, options): return self.log.append((seed, options)) or OBS", (4, {})),
        ("def reset(self, *args): return self.log.append(args) or OBS", (4, {})),
    ],
)
def test_model_reset_method_arity(make_env, method, expected):
    namespace = {"OBS": OBS}
    exec(f"class M:\n    log = []\n    def step(self, s, a): return s\n    {method}", namespace)
    model = namespace["M"]()
    env = make_env(model, BOX2, ACT1)
    env.reset(seed=4)
    assert model.log == [expected]


def test_signatures_are_inspected_once(make_env, monkeypatch):
    calls = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda *a, **k: calls.append(a) or real(*a, **k))
    env = make_env(
        Recorder(result=lambda s, a: (s, OBS)),
        BOX2,
        ACT1,
        reward_fn=lambda m, s: 1.0,
        terminal_fn=lambda m: False,
        render_fn=lambda m, s, o: OBS,
        action_transform_fn=lambda m, a: a,
        reset_fn=lambda m, seed: OBS,
    )
    built = len(calls)
    assert built > 0
    env.reset()
    for _ in range(5):
        env.step(ACTION)
    env.render()
    env.reset()
    assert len(calls) == built


@pytest.mark.parametrize("name", ["reset_env", "reset_state", "reset"])
def test_reset_method_discovery_order(make_env, name):
    names = ["reset_env", "reset_state", "reset"]
    attrs = {
        n: (lambda self, seed=None, options=None, n=n: (self.log.append(n), np.full(2, 1, np.float32))[1])
        for n in names[names.index(name) :]
    }
    attrs["log"] = []
    attrs["step"] = lambda self, s, a: s
    model = type("M", (), attrs)()
    make_env(model, BOX2, ACT1).reset()
    assert model.log == [name]


def test_default_reset_uses_initial_values(make_env):
    env = make_env(Recorder(), BOX2, ACT1, initial_state="s0", initial_observation=np.ones(2, np.float64))
    obs, info = env.reset()
    assert env.state == "s0" and obs.dtype == np.float32 and np.array_equal(obs, np.ones(2)) and info == {}


def test_default_reset_samples_without_initial_observation(make_env):
    env = make_env(Recorder(), BOX2, ACT1, seed=1)
    obs, _ = env.reset()
    assert BOX2.contains(obs)


TRANSITIONS = ["env_step", "step", "predict_step", "predict", "imagine_step", "transition"]


@pytest.mark.parametrize("name", TRANSITIONS)
def test_transition_method_discovery_order(make_env, name):
    attrs = {n: (lambda self, s, a, n=n: (n, np.zeros(2, np.float32))) for n in TRANSITIONS[TRANSITIONS.index(name) :]}
    attrs["__call__"] = lambda self, s, a: ("call", np.zeros(2, np.float32))
    model = type("M", (), attrs)()
    env = make_env(model, BOX2, ACT1)
    env.reset()
    env.step(ACTION)
    assert env.state == name


def test_callable_model_is_the_transition(make_env):
    env = make_env(lambda s, a: ("called", np.zeros(2, np.float32)), BOX2, ACT1)
    env.reset()
    env.step(ACTION)
    assert env.state == "called"


@needs_torch
def test_module_is_called_with_state_and_action(make_env):
    class Net(torch.nn.Module):
        def forward(self, state, action):
            return state + action.sum()

    env = make_env(Net(), BOX2, ACT1, initial_state=torch.zeros(2))
    env.reset()
    obs, *_ = env.step(np.array([0.5], np.float32))
    assert np.allclose(obs, 0.5)


@needs_torch
def test_module_with_one_input_gets_the_action(make_env):
    class Net(torch.nn.Module):
        def forward(self, action):
            return action.repeat(2)

    env = make_env(Net(), BOX2, ACT1, initial_state=torch.zeros(2))
    env.reset()
    obs, *_ = env.step(np.array([0.25], np.float32))
    assert np.allclose(obs, 0.25)


class OneInput:
    def step(self, action):
        self.args = (action,)
        return "s", OBS


class TwoInputs:
    def step(self, state, action=None):
        self.args = (state, action)
        return "s", OBS


@needs_torch
@pytest.mark.parametrize("klass", [OneInput, TwoInputs])
def test_method_arity_decides_action_or_state_and_action(make_env, klass):
    model = klass()
    env = make_env(model, BOX2, ACT1, initial_state="s0")
    env.reset()
    env.step(ACTION)
    if klass is OneInput:
        assert len(model.args) == 1 and isinstance(model.args[0], torch.Tensor)  # the action alone
    else:
        assert model.args[0] == "s0" and isinstance(model.args[1], torch.Tensor)


def test_method_with_varargs_gets_state_and_action(make_env):
    class M:
        def step(self, *args):
            return ("varargs", len(args)), np.zeros(2, np.float32)

    env = make_env(M(), BOX2, ACT1)
    env.reset()
    env.step(ACTION)
    assert env.state == ("varargs", 2)


def test_no_transition_is_a_type_error_at_construction(make_env):
    class NoModel:
        pass

    with pytest.raises(TypeError, match="env_step, step, predict_step, predict, imagine_step, transition"):
        make_env(NoModel(), BOX2, ACT1)


def test_transition_fn_makes_any_model_work(make_env):
    env = make_env(object(), BOX2, ACT1, transition_fn=lambda m, s, a: np.zeros(2, np.float32))
    env.reset()
    env.step(ACTION)
