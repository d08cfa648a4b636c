"""Device results reach the host through one synchronisation per step.

Without a GPU, the staged path is exercised by treating CPU tensors as if they
lived on a device; with one, the CUDA tests below run for real."""

import numpy as np
import pytest
import torch

from wmenv import WorldModelVectorEnv, _staging

from conftest import ACT1, BOX2

OBS = torch.tensor([1.0, 2.0])


@pytest.fixture
def every_tensor_on_device(monkeypatch):
    copies = []

    def pick(x):
        hit = isinstance(x, torch.Tensor)
        if hit:
            copies.append(x)
        return hit

    monkeypatch.setattr(_staging, "is_device_tensor", pick)
    return copies


def test_stage_to_host_copies_picked_leaves_only(every_tensor_on_device):
    tree = ({"a": torch.ones(2), "b": [torch.zeros(1), "text"]}, 3.0)
    out = _staging.stage_to_host(tree)
    assert out[1] == 3.0 and out[0]["b"][1] == "text"
    assert torch.equal(out[0]["a"], torch.ones(2)) and out[0]["a"].data_ptr() != tree[0]["a"].data_ptr()
    assert len(every_tensor_on_device) == 2


def test_contains_device_tensor_on_cpu():
    assert not _staging.contains_device_tensor({"a": (torch.zeros(1), [np.zeros(1)])})


RESULTS = [
    lambda s: ("s1", OBS.clone(), torch.tensor(0.5), torch.tensor(True), torch.tensor(False), {"k": 1}),
    lambda s: (OBS.clone(), torch.tensor(0.25), False, False, {"model_state": "h"}),
    lambda s: ("s1", OBS.clone()),
    lambda s: {"state": "s1", "obs": OBS.clone(), "reward": torch.tensor([2.0])},
    lambda s: OBS.clone(),
]


@pytest.mark.parametrize("make_result", RESULTS)
def test_staged_path_gives_the_same_step(make_env, every_tensor_on_device, make_result):
    seen = {}

    def reward_fn(m, next_state, obs, action):
        seen.setdefault("reward_fn", []).append(obs)
        return torch.tensor(0.75)

    def build():
        return make_env(
            None,
            BOX2,
            ACT1,
            transition_fn=lambda m, s, a: make_result(s),
            reward_fn=reward_fn,
            terminal_fn=lambda m, s, o: torch.tensor(False),
            initial_state="s0",
            initial_observation=OBS.numpy(),
        )

    plain, staged = build(), build()
    plain.reset(seed=0)
    staged.reset(seed=0)
    staged._stage = True
    action = np.array([0.5], np.float32)
    a = plain.step(action)
    b = staged.step(action)
    assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]
    assert a[4].keys() == b[4].keys() and a[4]["elapsed_steps"] == b[4]["elapsed_steps"]
    assert every_tensor_on_device  # the staged path ran
    # reward_fn saw the raw (unstaged) observation on both paths
    assert all(isinstance(o, torch.Tensor) for o in seen.get("reward_fn", []))


def test_staged_vector_step(backend, every_tensor_on_device):
    def step(model, state, action):
        return state, torch.ones(3, 2), torch.full((3,), 0.5)

    def build():
        return WorldModelVectorEnv(
            None,
            3,
            BOX2,
            ACT1,
            transition_fn=step,
            initial_state=torch.zeros(3, 2),
            initial_observation=torch.zeros(3, 2),
            backend=backend,
        )

    plain, staged = build(), build()
    plain.reset()
    staged.reset()
    staged._stage = True
    a = plain.step(np.zeros((3, 1), np.float32))
    b = staged.step(np.zeros((3, 1), np.float32))
    for x, y in zip(a[:4], b[:4]):
        assert np.array_equal(x, y)
    assert every_tensor_on_device


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class CudaModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def forward(self, state, action):
        nxt = torch.tanh(self.layer(torch.cat([state, action])))
        return {"state": nxt, "observation": nxt, "reward": nxt.sum(), "terminated": nxt[0] > 2}

    def reset(self, seed=None, options=None):
        state = torch.zeros(2, device=self.layer.weight.device)
        return state, state


@cuda
def test_cuda_step_synchronises_once(make_env, monkeypatch):
    model = CudaModel().cuda()
    env = make_env(model, BOX2, ACT1, device="cuda")
    env.reset(seed=0)
    syncs = []
    real = torch.cuda.Stream.synchronize
    monkeypatch.setattr(torch.cuda.Stream, "synchronize", lambda self: syncs.append(1) or real(self))
    obs, reward, terminated, truncated, info = env.step(np.array([0.5], np.float32))
    assert len(syncs) == 1
    assert isinstance(obs, np.ndarray) and type(reward) is float and env.state.is_cuda
    expected = model(torch.zeros(2, device="cuda"), torch.tensor([0.5], device="cuda"))["state"].cpu().numpy()
    assert np.allclose(obs, expected)


@cuda
def test_cuda_detected_from_the_reset_state(make_env):
    env = make_env(
        CudaModel().cuda(),
        BOX2,
        ACT1,
        torch_actions=True,
        action_transform_fn=lambda m, a: torch.as_tensor(a, device="cuda"),
    )
    env.reset()
    assert env._stage
    obs, *_ = env.step(np.array([0.5], np.float32))
    assert isinstance(obs, np.ndarray)


@cuda
def test_cuda_vector_env(backend):
    class Batched(CudaModel):
        def forward(self, state, action):
            nxt = torch.tanh(self.layer(torch.cat([state, action], -1)))
            return {"state": nxt, "observation": nxt, "reward": nxt.sum(-1)}

        def reset(self, seed=None, options=None):
            state = torch.zeros(len(options["reset_mask"]), 2, device="cuda")
            return state, state

    env = WorldModelVectorEnv(Batched().cuda(), 4, BOX2, ACT1, device="cuda", backend=backend, max_episode_steps=2)
    env.reset(seed=0)
    for _ in range(3):
        obs, reward, terminated, truncated, _ = env.step(np.zeros((4, 1), np.float32))
    assert obs.shape == (4, 2) and reward.dtype == np.float32 and env.state.is_cuda
