"""output="torch", the host staging rules and actions to a device.

The staging rules (one synchronisation per step, no buffer a later step
overwrites under a returned array) run on the CPU with injected allocators,
copiers and synchronisers; the CUDA tests at the end run where a GPU is."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from wmenv import WorldModelEnv, WorldModelVectorEnv, _staging
from wmenv.output import TorchOutput

BOX3 = gym.spaces.Box(-100.0, 100.0, (3,), np.float32)
ACT1 = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Single(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 5)

    def forward(self, state, action):
        out = self.layer(torch.cat([state, action], -1))
        nxt = torch.tanh(out[..., :3])
        return {"state": nxt, "observation": nxt.double(), "reward": out[..., 3], "terminated": out[..., 4] > 0.3}

    def reset(self, seed=None, options=None):
        n = len(options["reset_mask"]) if "reset_mask" in options else None
        state = (
            torch.zeros(3, device=self.layer.weight.device)
            if n is None
            else torch.zeros(n, 3, device=self.layer.weight.device)
        )
        return state, state


def test_torch_output_matches_numpy_output(backend):
    runs = {}
    for output in ("numpy", "torch"):
        env = WorldModelEnv(Single(), BOX3, ACT1, output=output, max_episode_steps=4, backend=backend)
        obs, _ = env.reset(seed=0)
        trace = [np.asarray(obs)]
        for i in range(6):
            obs, reward, terminated, truncated, info = env.step(np.full(1, 0.1 * i, np.float32))
            if output == "torch":
                assert isinstance(obs, torch.Tensor) and obs.dtype == torch.float32
                assert reward.shape == () and reward.dtype == torch.float32 and terminated.dtype == torch.bool
                reward, terminated, truncated = float(reward), bool(terminated), bool(truncated)
            trace.append((np.asarray(obs), np.float32(reward), terminated, truncated, info["elapsed_steps"]))
            if terminated or truncated:
                obs, _ = env.reset()
                trace.append(np.asarray(obs))
        runs[output] = trace
    for a, b in zip(runs["numpy"], runs["torch"]):
        if isinstance(a, tuple):
            assert np.allclose(a[0], b[0]) and a[1:] == b[1:]
        else:
            assert np.allclose(a, b)


def test_torch_output_vector_env_matches_numpy(backend):
    runs = {}
    for output in ("numpy", "torch"):
        env = WorldModelVectorEnv(Single(), 5, BOX3, ACT1, output=output, max_episode_steps=3, backend=backend)
        env.reset(seed=0)
        trace = []
        for i in range(7):
            obs, reward, terminated, truncated, info = env.step(np.full((5, 1), 0.1 * i, np.float32))
            as_np = [
                np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x)
                for x in (obs, reward, terminated, truncated, info["elapsed_steps"])
            ]
            trace.append(as_np)
        runs[output] = trace
        if output == "torch":
            assert isinstance(obs, torch.Tensor) and reward.dtype == torch.float32 and terminated.dtype == torch.bool
    for a, b in zip(runs["numpy"], runs["torch"]):
        for x, y in zip(a, b):
            assert np.allclose(x, y), (x, y)


def test_torch_output_errors_and_options():
    with pytest.raises(ValueError, match="output must be one of 'numpy', 'torch'"):
        WorldModelEnv(Single(), BOX3, ACT1, output="jax")
    with pytest.raises(ValueError, match="SAME_STEP"):
        WorldModelVectorEnv(Single(), 2, BOX3, ACT1, output="torch", autoreset_mode="SameStep")
    env = WorldModelEnv(
        None,
        BOX3,
        ACT1,
        output="torch",
        transition_fn=lambda m, s, a: (s, torch.zeros(4)),
        initial_state=torch.zeros(3),
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"observation must have shape \(3,\), got \(4,\)"):
        env.step(np.zeros(1, np.float32))
    out = TorchOutput(None)
    with pytest.raises(ValueError, match="reward must hold one element"):
        out.scalar(torch.zeros(2), torch.float32, "reward")
    with pytest.raises(ValueError, match="reward must hold 3 values"):
        out.batch(torch.zeros(2), 3, torch.float32, "reward")


# Host staging rules, on the CPU.


class FakeDevice:
    """Stands in for the device side: records allocations, copies and syncs."""

    def __init__(self):
        self.buffers, self.copied, self.syncs = [], [], []

    def allocate(self, source):
        buffer = torch.empty(source.shape, dtype=source.dtype)
        self.buffers.append((buffer.data_ptr(), buffer.numel()))  # not the buffer: a held buffer is shared
        return buffer

    def copy(self, host, source):
        self.copied.append(source)
        host.copy_(source)

    def synchronize(self, device):
        self.syncs.append(device)


def test_stager_copies_every_picked_leaf_and_synchronises_once():
    fake = FakeDevice()
    stager = _staging.HostStager(fake.allocate, fake.copy, fake.synchronize, predicate=lambda x: torch.is_tensor(x))
    tree = (torch.ones(2), {"a": torch.zeros(3), "b": [torch.full((1,), 2.0), "text"]}, 0.5)
    out = stager.stage(tree)
    assert len(fake.copied) == 3 and len(fake.syncs) == 1 and stager.synchronizations == 1
    assert out[2] == 0.5 and out[1]["b"][1] == "text" and torch.equal(out[1]["a"], torch.zeros(3))
    stager.stage(("no tensors", 1.0))
    assert stager.synchronizations == 1  # nothing on a device: no synchronisation


def test_returned_arrays_never_alias_a_later_steps_buffer(make_env, monkeypatch):
    fake = FakeDevice()
    monkeypatch.setattr(_staging, "is_device_tensor", lambda x: isinstance(x, torch.Tensor))
    count = iter(range(100))

    def step(model, state, action):
        value = float(next(count))
        return state, torch.full((3,), value), torch.tensor(value), torch.tensor(False), False, {}

    env = make_env(None, BOX3, ACT1, transition_fn=step, initial_state=torch.zeros(3), initial_observation=np.zeros(3))
    env.reset(seed=0)
    env._stage = True
    env._stager = _staging.HostStager(fake.allocate, fake.copy, fake.synchronize)
    kept = [env.step(np.zeros(1, np.float32)) for _ in range(5)]
    assert [k[0][0] for k in kept] == [0.0, 1.0, 2.0, 3.0, 4.0]  # earlier observations unchanged
    assert [k[1] for k in kept] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(fake.syncs) == 5  # one per step
    addresses = {k[0].__array_interface__["data"][0] for k in kept}
    assert len(addresses) == 5  # a fresh buffer each step while the arrays live
    buffer_addresses = {ptr for ptr, numel in fake.buffers if numel == 3}
    assert addresses <= buffer_addresses  # the observations are views of the staging buffers, no extra copy


def test_actions_to_a_cpu_device_are_left_alone():
    t = torch.zeros(2)
    assert _staging.to_device(t, None) is t and _staging.to_device(t, torch.device("cpu")) is t


# On a GPU.


@cuda
def test_cuda_step_has_one_synchronisation_point(backend):
    model = Single().cuda()
    env = WorldModelEnv(model, BOX3, ACT1, device="cuda", backend=backend)
    env.reset(seed=0)
    env.step(np.zeros(1, np.float32))  # warm-up: allocator, kernels
    allowed = torch.cuda.Stream.synchronize
    calls = []

    def sync(stream):
        calls.append(1)
        torch.cuda.set_sync_debug_mode(0)
        try:
            return allowed(stream)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    try:
        torch.cuda.Stream.synchronize = sync
        torch.cuda.set_sync_debug_mode("error")
        obs, reward, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
    finally:
        torch.cuda.set_sync_debug_mode(0)
        torch.cuda.Stream.synchronize = allowed
    assert len(calls) == 1 and isinstance(obs, np.ndarray) and type(reward) is float


@cuda
def test_cuda_returned_arrays_live_in_pinned_buffers_that_are_not_reused(backend):
    model = Single().cuda()
    env = WorldModelEnv(model, BOX3, ACT1, device="cuda", backend=backend)
    env.reset(seed=0)
    kept = [env.step(np.full(1, 0.1 * i, np.float32))[0] for i in range(4)]
    values = [k.copy() for k in kept]
    for _ in range(20):
        env.step(np.zeros(1, np.float32))
    assert all(np.array_equal(k, v) for k, v in zip(kept, values))
    assert len({k.__array_interface__["data"][0] for k in kept}) == 4


@cuda
def test_cuda_torch_output_stays_on_the_device(backend):
    env = WorldModelVectorEnv(
        Single().cuda(), 8, BOX3, ACT1, device="cuda", output="torch", max_episode_steps=3, backend=backend
    )
    env.reset(seed=0)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(np.zeros((8, 1), np.float32))
    assert obs.is_cuda and reward.is_cuda and terminated.is_cuda and info["elapsed_steps"].is_cuda
