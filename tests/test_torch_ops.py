"""output="torch" costs a handful of tensor ops beyond the model's own.

A count, not a time: torch.profiler records the aten ops a steady-state step
dispatches (top-level ones: an op's own sub-ops are not counted twice), and
the env's are what the step adds to the model's. On a GPU each is a kernel
launch or a dispatch of several microseconds, so this is the bookkeeping a
learner pays per step. The vector env's device route (the one a model on an
accelerator takes) is held to 6 (the counter's increment, the time limit's
compare, the ended mask's in-place logical_or, a zeros for the termination the
model does not give, and the copies of the observation and reward that share
the next state's memory), and so is the single step; a vector step reads
nothing back from the device but its ended mask (no .item(), no other copy).

A model on the CPU takes the host route instead (NumPy mode's core call, its
arrays handed out through ``torch.from_numpy``): it computes nothing with
torch at all, so what it dispatches is metadata only (``from_numpy``'s
``lift_fresh``, and what ``Tensor.numpy()`` dispatches), which the test
holds it to.
"""

import collections

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from wmenv import WorldModelEnv, WorldModelVectorEnv
from wmenv.torch_route import TORCH_BATCH, HostTorchBatch

profiler = pytest.importorskip("torch.profiler")

OBS = gym.spaces.Box(-np.inf, np.inf, (8,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
BOUND = 6
# ops that compute nothing: from_numpy's, and the ones Tensor.numpy() dispatches on a plain CPU tensor
METADATA = {"aten::lift_fresh", "aten::detach", "aten::to", "aten::resolve_conj", "aten::resolve_neg", "aten::alias"}


class MLP(nn.Module):
    """bench/vector.py's model: its observation is its next state, the reward a view of the same output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, state, action):
        out = self.net(torch.cat([state, action], dim=-1))
        return out[..., :8], out[..., :8], out[..., 8]


def top_level_ops(fn, repeats=4):
    for _ in range(3):
        fn()
    with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    ops = collections.Counter(
        e.name
        for e in prof.events()
        if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    )
    return {name: count / repeats for name, count in ops.items()}


def extra_ops(env_step, raw_step):
    env, raw = top_level_ops(env_step), top_level_ops(raw_step)
    extra = {k: v - raw.get(k, 0) for k, v in env.items() if v - raw.get(k, 0) > 0}
    return sum(extra.values()), extra


def vector_env_and_raw(backend, limit, n=16):
    model = MLP().eval().requires_grad_(False)
    env = WorldModelVectorEnv(
        model, n, OBS, ACT, backend=backend, output="torch", max_episode_steps=limit,
        initial_state=torch.zeros(n, 8), initial_observation=torch.zeros(n, 8),
    )  # fmt: skip
    env.reset(seed=0)
    action = torch.full((n, 2), 0.1)
    state = [torch.zeros(n, 8)]

    def raw():
        with torch.no_grad():
            state[0] = model(state[0], action)[0]

    return env, action, raw


@pytest.mark.parametrize("limit", [None, 500])
def test_vector_device_route_adds_at_most_six_ops(backend, limit):
    env, action, raw = vector_env_and_raw(backend, limit)
    env._route = TORCH_BATCH  # the route a model on an accelerator takes, here on the CPU
    count, extra = extra_ops(lambda: env.step(action), raw)
    assert count <= BOUND, extra
    assert "aten::_local_scalar_dense" not in extra and "aten::item" not in extra, extra  # no hidden syncs
    assert extra.get("aten::copy_", 0) + extra.get("aten::_to_copy", 0) <= 1, extra  # the ended mask, at most


@pytest.mark.parametrize("limit", [None, 500])
def test_vector_host_route_computes_nothing_with_torch(backend, limit):
    env, action, raw = vector_env_and_raw(backend, limit)
    assert isinstance(env._route, HostTorchBatch)  # a model on the CPU
    count, extra = extra_ops(lambda: env.step(action), raw)
    assert set(extra) <= METADATA, extra
    assert extra.get("aten::lift_fresh", 0) <= 5, extra  # observation, reward, two flags, the counters
    obs, reward, terminated, truncated, info = env.step(action)
    assert all(isinstance(x, torch.Tensor) for x in (obs, reward, terminated, truncated, info["elapsed_steps"]))


def test_single_torch_step_adds_at_most_six_ops(backend):
    model = MLP().eval().requires_grad_(False)
    env = WorldModelEnv(
        model, OBS, ACT, backend=backend, output="torch", max_episode_steps=500,
        initial_state=torch.zeros(8), initial_observation=torch.zeros(8),
    )  # fmt: skip
    env.reset(seed=0)
    action = torch.full((2,), 0.1)
    state = [torch.zeros(8)]

    def raw():
        with torch.no_grad():
            state[0] = model(state[0], action)[0]

    count, extra = extra_ops(lambda: env.step(action), raw)
    assert count <= BOUND, extra
    assert "aten::_local_scalar_dense" not in extra and "aten::item" not in extra, extra


def test_a_model_that_gives_fresh_outputs_costs_no_copies(backend):
    """The copies above are the ownership rule's; a model whose observation and
    reward share nothing with its next state gets none."""

    def step(model, state, action):
        nxt = state + action.sum(-1, keepdim=True)
        return {"state": nxt, "observation": nxt * 1.0, "reward": nxt[:, 0] * 1.0, "terminated": nxt[:, 0] > 100}

    n = 8
    env = WorldModelVectorEnv(
        None, n, gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), ACT, transition_fn=step, backend=backend,
        output="torch", initial_state=torch.zeros(n, 1),
    )  # fmt: skip
    env.reset(seed=0)
    action = torch.full((n, 2), 0.1)
    ops = top_level_ops(lambda: env.step(action))
    assert "aten::clone" not in ops, ops
