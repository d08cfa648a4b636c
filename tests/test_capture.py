"""capture=True: the vector env's step recorded once as a CUDA graph and replayed.

Without a GPU, :class:`EagerGraph` stands in for the CUDA graph: it "records"
by running the step once and keeping its outputs, and each replay runs the
step again and writes into those same outputs, as a graph writes into its
buffers. Under it, the captured route is held to the uncaptured one step for
step (autoresets, time limits, partial resets, snapshots, pickles, in-place
models) and to the ownership rule (kept results never change although the
graph's buffers do). The recording refuses, as CUDA does, to synchronise: a
model that reads a tensor's value in Python fails to record. The tests at
the end run the real CUDA graph and skip without CUDA.
"""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from torch.utils._python_dispatch import TorchDispatchMode

from wmenv import WorldModelVectorEnv, capture
from wmenv.capture import CapturedBatch, CaptureError
from wmenv.torch_route import HostTorchBatch, TorchBatch
from wmenv.tree import leaves

N = 6
OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")


class NoSync(TorchDispatchMode):
    """Refuses what CUDA refuses while a stream is capturing: reading a value on the host."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise RuntimeError("operation not permitted when stream is capturing")
        return func(*args, **(kwargs or {}))


class EagerGraph:
    """A CUDA graph's contract on the CPU: recorded once, replays write into the recorded outputs."""

    made = []

    def __init__(self, device):
        self.device, self.body, self.outputs = device, None, None
        self.warm_ups = self.replays = 0
        EagerGraph.made.append(self)

    def warm_up(self, body):
        self.warm_ups += 1
        body()

    def record(self, body):
        with NoSync():
            self.outputs = body()
        self.body = body
        return self.outputs

    def replay(self):
        self.replays += 1
        fresh = self.body()
        for static, new in zip(leaves(self.outputs), leaves(fresh)):
            if isinstance(static, torch.Tensor) and static is not new:
                static.copy_(new)


@pytest.fixture
def eager(monkeypatch):
    """Capture on the CPU, through :class:`EagerGraph`."""
    EagerGraph.made = []
    monkeypatch.setattr(capture, "new_graph", EagerGraph)
    monkeypatch.setattr(capture, "capturable", lambda device: device is not None)
    return EagerGraph


def step_fn(model, state, action):
    nxt = state * 0.9 + action.sum(-1, keepdim=True)
    return {
        "state": nxt,
        "observation": nxt * 2,
        "reward": nxt[:, 0],
        "terminated": nxt[:, 1] > 1.2,
        "info": {"energy": nxt.abs().sum(-1), "kind": "mlp"},
    }


def reset_fn(model, seed=None, options=None):
    return {"state": torch.full((N, 3), 0.5), "observation": torch.full((N, 3), 1.0)}


def in_place_step(model, state, action):
    state.mul_(0.9).add_(action.sum(-1, keepdim=True))  # writes into the state it was given
    return state, state, state[:, 0]


def branching_step(model, state, action):
    nxt = state + action.sum(-1, keepdim=True)
    if nxt.sum() > 0:  # a Python branch on a tensor's value: a synchronisation
        nxt = nxt * 0.5
    return nxt, nxt, nxt[:, 0]


def make(backend, transition=step_fn, capture=True, **kwargs):
    kwargs.setdefault("max_episode_steps", 7)
    return WorldModelVectorEnv(
        None,
        N,
        OBS,
        ACT,
        transition_fn=transition,
        reset_fn=reset_fn,
        backend=backend,
        output="torch",
        capture=capture,
        **kwargs,
    )


def actions(steps, seed=0, high=1.0):
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.uniform(-0.5, high, (N, 2)).astype(np.float32)) for _ in range(steps)]


def flat(step):
    obs, reward, terminated, truncated, info = step
    return [obs, reward, terminated, truncated, info["elapsed_steps"], info["energy"]]


def assert_same(a, b):
    for x, y in zip(flat(a), flat(b)):
        assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y)


def pair(backend, **kwargs):
    """A captured env and an uncaptured one, reset alike."""
    a, b = make(backend, **kwargs), make(backend, capture=False, **kwargs)
    a.reset(seed=0)
    b.reset(seed=0)
    return a, b


def test_capture_steps_as_the_uncaptured_env_through_autoresets_and_time_limits(backend, eager):
    captured, plain = pair(backend)
    acts = actions(40)
    a = [captured.step(x) for x in acts]
    b = [plain.step(x) for x in acts]
    assert sum(int((s[2] | s[3]).sum()) for s in a) > 5  # terminations and time limits, autoreset
    for x, y in zip(a, b):
        assert_same(x, y)
        assert x[4]["kind"] == "mlp"
    assert isinstance(captured._route, CapturedBatch)
    (graph,) = eager.made  # recorded once, then replayed
    assert graph.warm_ups == 1 and graph.replays == 40 - capture.WARMUP_STEPS
    assert np.array_equal(captured.elapsed_steps, plain.elapsed_steps)


def test_kept_results_never_change_although_the_graph_rewrites_its_buffers(backend, eager):
    env = make(backend, info_model_state=True)
    env.reset(seed=0)
    kept = [env.step(a) for a in actions(20)]
    states = [s[4]["model_state"] for s in kept]
    copies = [[t.clone() for t in flat(s)] for s in kept]
    state_copies = [s.clone() for s in states]
    env.reset(options={"reset_mask": np.array([True, False] * (N // 2))})
    [env.step(a) for a in actions(5, seed=1)]
    for step, copy in zip(kept, copies):
        for t, c in zip(flat(step), copy):
            assert torch.equal(t, c)
    for s, c in zip(states, state_copies):
        assert torch.equal(s, c)


def test_partial_resets_snapshots_and_pickles_replay_alike(backend, eager):
    captured, plain = pair(backend)
    for env in (captured, plain):
        [env.step(a) for a in actions(6)]
        env.reset(options={"reset_mask": np.array([True, False, True, False, False, True])})
    assert np.array_equal(captured.elapsed_steps, plain.elapsed_steps)
    snap_a, snap_b = captured.get_state(), plain.get_state()
    first = [captured.step(a) for a in actions(5, seed=1)]
    captured.set_state(snap_a)
    again = [captured.step(a) for a in actions(5, seed=1)]
    plain.set_state(snap_b)
    reference = [plain.step(a) for a in actions(5, seed=1)]
    for x, y, z in zip(first, again, reference):
        assert_same(x, y)
        assert_same(x, z)
    revived = pickle.loads(pickle.dumps(captured))
    assert revived.capture is True
    for a in actions(6, seed=2):
        assert_same(revived.step(a), plain.step(a))
    assert isinstance(revived._route, CapturedBatch)  # recorded again after unpickling


def test_an_in_place_model_replays_alike_and_its_kept_observations_stay(backend, eager):
    captured, plain = pair(backend, transition=in_place_step, max_episode_steps=None)
    acts = actions(12)
    a = [captured.step(x) for x in acts]
    copies = [s[0].clone() for s in a]
    b = [plain.step(x) for x in acts]
    for x, y, c in zip(a, b, copies):
        assert torch.equal(x[0], y[0]) and torch.equal(x[0], c)
        assert torch.equal(x[1], y[1])


def test_disabled_autoreset_and_a_changed_time_limit_replay_alike(backend, eager):
    captured, plain = pair(backend, autoreset_mode=AutoresetMode.DISABLED, max_episode_steps=None)
    for env in (captured, plain):
        [env.step(a) for a in actions(4, high=0.0)]
        env.max_episode_steps = 9  # the time limit is recorded into the graph: the route records again
    for i, a in enumerate(actions(5, seed=1, high=0.0)):
        x, y = captured.step(a), plain.step(a)
        assert_same(x, y)
        assert bool(x[3].all()) == (i == 4)  # the new limit, replayed, truncated every env at step 9
    assert len(eager.made) == 2 and eager.made[1].replays == 3


def test_a_model_that_synchronises_fails_to_record_and_the_env_steps_on_uncaptured(backend, eager):
    captured, plain = pair(backend, transition=branching_step, max_episode_steps=None)
    acts = actions(6)
    for a in acts[: capture.WARMUP_STEPS]:
        assert_same_basic(captured.step(a), plain.step(a))
    with pytest.raises(CaptureError, match="synchronisation") as err:
        captured.step(acts[capture.WARMUP_STEPS])
    assert "capturing" in str(err.value.__cause__)
    assert type(captured._route) is TorchBatch  # the failed step changed nothing; the env goes on uncaptured
    for a in acts[capture.WARMUP_STEPS :]:
        assert_same_basic(captured.step(a), plain.step(a))


def assert_same_basic(a, b):
    for x, y in zip(a[:4], b[:4]):
        assert torch.equal(x, y)


def test_a_changed_state_shape_is_refused_with_what_changed(backend, eager):
    env = make(backend, max_episode_steps=None)
    env.reset(seed=0)
    [env.step(a) for a in actions(capture.WARMUP_STEPS + 2)]
    env.reset(options={"state": torch.zeros(N, 4), "observation": torch.zeros(N, 3)})
    with pytest.raises(CaptureError, match=r"state leaf 0 is \(6, 4\).*recorded with \(6, 3\)"):
        env.step(actions(1)[0])


def test_a_state_leaf_that_is_not_a_tensor_is_refused(backend, eager):
    def step_with_count(model, state, action):
        x, count = state
        nxt = x + action.sum(-1, keepdim=True)
        return (nxt, count + 1), nxt, nxt[:, 0]

    def reset_pair(model, seed=None, options=None):
        return (torch.zeros(N, 3), 0), torch.zeros(N, 3)

    env = WorldModelVectorEnv(
        None, N, OBS, ACT, transition_fn=step_with_count, reset_fn=reset_pair, backend=backend, output="torch",
        capture=True,
    )  # fmt: skip
    env.reset(seed=0)
    [env.step(a) for a in actions(capture.WARMUP_STEPS)]
    with pytest.raises(CaptureError, match="leaf 1 is a int"):
        env.step(actions(1)[0])
    assert type(env._route) is TorchBatch
    obs = env.step(actions(1)[0])[0]  # uncaptured from now on
    assert env.state[1] == capture.WARMUP_STEPS + 1 and obs.shape == (N, 3)


def test_on_the_cpu_capture_warns_once_and_steps_as_the_host_route(backend):
    captured, plain = pair(backend)
    acts = actions(10)
    with pytest.warns(RuntimeWarning, match="steps uncaptured"):
        first = captured.step(acts[0])
    assert isinstance(captured._route, HostTorchBatch)
    assert_same(first, plain.step(acts[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        for a in acts[1:]:
            assert_same(captured.step(a), plain.step(a))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"output": "numpy"}, 'needs output="torch"'),
        ({"grad": True}, "grad=True"),
        ({"members": 3}, "members="),
        ({"progress": True}, "progress="),
        ({"global_rng": True}, "global_rng="),
        ({"chunk": 2}, "chunk="),
        ({"reward_model": lambda obs: obs.sum(-1)}, "reward_model="),
    ],
)
def test_options_a_graph_cannot_replay_are_refused_when_built(options, message):
    options = {"output": "torch", **options}
    with pytest.raises(ValueError, match=message):
        WorldModelVectorEnv(
            None, N, OBS, ACT, transition_fn=step_fn, reset_fn=reset_fn, capture=True, **options
        )  # fmt: skip


def test_adapters_that_take_the_env_generator_are_refused_and_capture_must_be_a_bool():
    def noisy(model, state, action, *, generator):
        return state + torch.randn(state.shape, generator=generator), state, state[:, 0]

    with pytest.raises(ValueError, match="generator"):
        WorldModelVectorEnv(None, N, OBS, ACT, transition_fn=noisy, reset_fn=reset_fn, output="torch", capture=True)
    with pytest.raises(TypeError, match="capture must be True or False"):
        WorldModelVectorEnv(None, N, OBS, ACT, transition_fn=step_fn, reset_fn=reset_fn, output="torch", capture=1)
    assert WorldModelVectorEnv(None, N, OBS, ACT, transition_fn=step_fn, reset_fn=reset_fn).capture is False


# ---- the real CUDA graph


def cuda_reset(model, seed=None, options=None):
    return {"state": torch.full((N, 3), 0.5, device="cuda"), "observation": torch.full((N, 3), 1.0, device="cuda")}


def cuda_pair(backend, transition=step_fn, **kwargs):
    kwargs.setdefault("max_episode_steps", 7)
    envs = [
        WorldModelVectorEnv(
            None,
            N,
            OBS,
            ACT,
            transition_fn=transition,
            reset_fn=cuda_reset,
            backend=backend,
            output="torch",
            device="cuda",
            capture=cap,
            **kwargs,
        )  # fmt: skip
        for cap in (True, False)
    ]
    for env in envs:
        env.reset(seed=0)
    return envs


@needs_cuda
def test_cuda_graph_steps_as_the_uncaptured_env(backend):
    captured, plain = cuda_pair(backend)
    kept = []
    for a in actions(40):
        x, y = captured.step(a), plain.step(a)
        kept.append((x, [t.clone() for t in flat(x)]))
        for p, q in zip(flat(x), flat(y)):
            assert p.device.type == "cuda"
            torch.testing.assert_close(p, q)
    assert isinstance(captured._route, CapturedBatch) and captured._route.graph is not None
    for step, copy in kept:
        for t, c in zip(flat(step), copy):
            assert torch.equal(t, c)


@needs_cuda
def test_cuda_graph_refuses_a_model_that_synchronises(backend):
    captured, _ = cuda_pair(backend, transition=branching_step, max_episode_steps=None)
    for a in actions(capture.WARMUP_STEPS):
        captured.step(a)
    with pytest.raises(CaptureError):
        captured.step(actions(1)[0])
    captured.step(actions(1)[0])  # uncaptured from now on


@needs_cuda
def test_cuda_graph_step_synchronises_once(backend):
    captured, _ = cuda_pair(backend, max_episode_steps=None)
    acts = [a.cuda() for a in actions(capture.WARMUP_STEPS + 3, high=0.0)]
    for a in acts[: capture.WARMUP_STEPS + 1]:
        captured.step(a)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with pytest.warns(UserWarning) as record:
            captured.step(acts[-1])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len([w for w in record if "synchroniz" in str(w.message)]) == 1
