"""The vector env's two output="torch" routes give the same steps.

A model on the CPU takes the host route (NumPy mode's core call, its arrays
handed out as tensors); a model on an accelerator, or ``grad=True``, takes the
device route (counters and the ended mask as device tensors). The device
route is forced here on the CPU, so that it is held to the host route's
results, step for step, without a GPU: autoresets, partial resets, time
limits, snapshots, pickles, and kept results that never change.
"""

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from wmenv import WorldModelVectorEnv, torch_route
from wmenv.torch_route import TORCH_BATCH, HostTorchBatch, TorchBatch

N = 6
OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def step_fn(model, state, action):
    nxt = state * 0.9 + action.sum(-1, keepdim=True)
    return {"state": nxt, "observation": nxt, "reward": nxt[:, 0], "terminated": nxt[:, 1] > 1.2}


def reset_fn(model, seed=None, options=None):
    return {"state": torch.full((N, 3), 0.5), "observation": torch.full((N, 3), 0.5)}


def in_place_step(model, state, action):
    state.mul_(0.9).add_(action.sum(-1, keepdim=True))  # writes into the state it was given
    return state, state, state[:, 0]


@pytest.fixture(params=["host", "device"])
def route(request, monkeypatch):
    if request.param == "device":
        monkeypatch.setattr(torch_route, "torch_batch_route", lambda env, plan: TORCH_BATCH)
    return request.param


def make(backend, transition=step_fn, **kwargs):
    kwargs.setdefault("max_episode_steps", 7)
    return WorldModelVectorEnv(
        None, N, OBS, ACT, transition_fn=transition, reset_fn=reset_fn, backend=backend, output="torch", **kwargs
    )


def actions(steps, seed=0, high=1.0):
    """Random actions; ``high=0``: actions under which no episode terminates."""
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.uniform(-0.5, high, (N, 2)).astype(np.float32)) for _ in range(steps)]


def run(env, acts):
    return [env.step(a) for a in acts]


def flat(step):
    obs, reward, terminated, truncated, info = step
    return [obs, reward, terminated, truncated, info["elapsed_steps"]]


def assert_same(a, b):
    for x, y in zip(flat(a), flat(b)):
        assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y)


def test_each_route_is_taken_where_it_should_be(backend, route):
    env = make(backend)
    env.reset(seed=0)
    expected = HostTorchBatch if route == "host" else TorchBatch
    assert isinstance(env._route, expected)
    assert isinstance(make(backend, grad=True)._route, TorchBatch)  # tensors that keep their graph


def test_the_routes_step_alike_through_autoresets_and_time_limits(backend):
    host = make(backend)
    device = make(backend)
    device._route = TORCH_BATCH
    host.reset(seed=0)
    device.reset(seed=0)
    acts = actions(40)
    a, b = run(host, acts), run(device, acts)
    ended = sum(int((s[2] | s[3]).sum()) for s in a)
    assert ended > 5  # both time limits and terminations happened, and were autoreset
    for x, y in zip(a, b):
        assert_same(x, y)
    assert np.array_equal(host.elapsed_steps, device.elapsed_steps)


def test_kept_results_never_change(backend, route):
    env = make(backend)
    env.reset(seed=0)
    kept = run(env, actions(30))
    copies = [[t.clone() for t in flat(s)] for s in kept]
    env.reset(options={"reset_mask": np.array([True, False] * (N // 2))})
    run(env, actions(5, seed=1))
    snap = env.get_state()
    run(env, actions(3, seed=2))
    env.set_state(snap)
    run(env, actions(3, seed=3))
    for step, copy in zip(kept, copies):
        for t, c in zip(flat(step), copy):
            assert torch.equal(t, c)


def test_kept_observations_of_an_in_place_model_never_change(backend, route):
    env = make(backend, transition=in_place_step, max_episode_steps=None)
    env.reset(seed=0)
    kept = run(env, actions(10))
    copies = [s[0].clone() for s in kept]
    run(env, actions(3, seed=1))
    assert all(torch.equal(s[0], c) for s, c in zip(kept, copies))
    assert not torch.equal(kept[0][0], kept[-1][0])  # the model did move


def test_a_partial_reset_zeroes_only_the_masked_counters(backend, route):
    env = make(backend, max_episode_steps=None)
    env.reset(seed=0)
    last = run(env, actions(3, high=0))[-1]
    before = last[4]["elapsed_steps"].clone()
    mask = np.array([True, False, False, True, False, False])
    obs, _ = env.reset(options={"reset_mask": mask})
    assert torch.equal(last[4]["elapsed_steps"], before)  # the last step's counters are its own
    assert env.elapsed_steps.tolist() == [0, 3, 3, 0, 3, 3]
    assert isinstance(obs, torch.Tensor)
    step = env.step(actions(1, high=0)[0])
    assert step[4]["elapsed_steps"].tolist() == [1, 4, 4, 1, 4, 4]


def test_snapshots_and_pickles_replay_on_either_route(backend, route):
    env = make(backend)
    env.reset(seed=0)
    run(env, actions(9))
    snap = env.get_state(copy=True)
    clone = pickle.loads(pickle.dumps(env))
    acts = actions(12, seed=4)
    first = run(env, acts)
    env.set_state(snap)
    again = run(env, acts)
    from_pickle = run(clone, acts)
    for x, y, z in zip(first, again, from_pickle):
        assert_same(x, y)
        assert_same(x, z)


def test_switching_routes_carries_the_counters_and_the_ended_mask(backend):
    env = make(backend)
    env.reset(seed=0)
    acts = actions(20)
    reference = make(backend)
    reference.reset(seed=0)
    expected = run(reference, acts)
    for i, a in enumerate(acts):  # alternate routes every few steps
        env._route = TORCH_BATCH if (i // 3) % 2 else HostTorchBatch(env._plan)
        assert_same(env.step(a), expected[i])


def test_disabled_autoreset_refuses_ended_envs_on_either_route(backend, route):
    env = make(backend, autoreset_mode=gym.vector.AutoresetMode.DISABLED, max_episode_steps=2)
    env.reset(seed=0)
    last = run(env, actions(2, high=0))[-1]
    assert last[3].all() and not last[2].any()  # the time limit, on every env
    with pytest.raises(RuntimeError, match="have ended"):
        env.step(actions(1)[0])
    env.reset(options={"reset_mask": np.ones(N, bool)})
    assert env.step(actions(1, high=0)[0])[4]["elapsed_steps"].tolist() == [1] * N
