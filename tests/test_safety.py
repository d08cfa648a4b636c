"""Hostile and unusual model outputs: no crash, no freed memory, no wrong value,
and the same result or error on both backends.

Every case that could crash the interpreter runs in a forked child
(``isolated``): a segfault or an abort fails that test instead of the run.
"""

import gc
import os
import signal
import sys
import time
import traceback

import gymnasium as gym
import numpy as np
import pytest
import torch

from wmenv import WorldModelEnv, WorldModelVectorEnv, _backend, _spaces

from test_core_parity import assert_twins, cores  # noqa: F401  (the fixture)


def isolated(fn, *args):
    """Runs ``fn(*args)`` in a forked child; re-raises its failure here, and
    reports a crash (a signal) as one. The child must not start a parallel
    torch kernel: OpenMP's thread pool does not survive a fork."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        code = 0
        try:
            fn(*args)
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            code = 1
        os.close(write)
        os._exit(code)
    os.close(write)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child hung")
        time.sleep(0.005)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    if os.WIFSIGNALED(status):
        pytest.fail(f"the child crashed with signal {os.WTERMSIG(status)}")
    assert os.WEXITSTATUS(status) == 0, report


def churn():
    """Allocations that reuse freed memory, so a dangling view shows garbage.
    (Small tensors only: a parallel torch kernel in a forked child can hang.)"""
    junk = [torch.full((n,), 7.0) for n in (4, 8, 16, 64, 1024) for _ in range(20)]
    junk += [np.full(1 << 20, 7.0) for _ in range(4)]
    gc.collect()
    return junk


BOX4 = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACT1 = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


# 1. Kept arrays own the memory they view, whatever the model does to the tensor.

REBINDS = {
    "set_": lambda t: t.set_(torch.ones(8)),
    "data": lambda t: setattr(t, "data", torch.ones(8)),
    "resize_": lambda t: t.resize_(1 << 20),
    "storage_resize_": lambda t: t.untyped_storage().resize_(0),
    "del": lambda t: None,
}


def _kept_array_survives(backend, how):
    core = _backend.load(backend)
    t = torch.zeros(4)
    a = core.to_numpy(t)
    try:
        REBINDS[how](t)
    except RuntimeError as exc:  # resizing memory a NumPy array views is refused by torch
        assert "not resizable" in str(exc)
    del t
    junk = churn()
    assert a.tolist() == [0.0, 0.0, 0.0, 0.0]
    a[:] = 5.0  # writing into it must not corrupt anything
    junk.append(torch.zeros(4))
    churn()
    assert a.tolist() == [5.0] * 4


@pytest.mark.parametrize("how", list(REBINDS))
def test_kept_array_owns_its_memory(backend, how):
    isolated(_kept_array_survives, backend, how)


class Rebinding(torch.nn.Module):
    """A model whose state tensor is rebound every step (``.data =``)."""

    def __init__(self):
        super().__init__()
        self.h = torch.zeros(4)

    def reset(self, seed=None, options=None):
        self.h = torch.zeros(4)
        return self.h, self.h

    def forward(self, state, action):
        self.h.data = self.h + 1
        return self.h, self.h


def _reset_observation_survives_rebinding(backend):
    env = WorldModelEnv(Rebinding(), BOX4, ACT1, backend=backend)
    first, _ = env.reset(seed=0)
    kept = [first]
    for _ in range(5):
        kept.append(env.step(np.zeros(1, np.float32))[0])
        churn()
    assert [k.tolist() for k in kept] == [[float(i)] * 4 for i in range(6)]


def test_reset_observation_survives_a_rebinding_model(backend):
    isolated(_reset_observation_survives_rebinding, backend)


# Aliasing: an in-place model never changes an observation the user kept.


class InPlace(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.h = torch.zeros(4)

    def reset(self, seed=None, options=None):
        self.h.zero_()
        return self.h, self.h

    def forward(self, state, action):
        self.h.add_(1)
        return self.h, self.h


def test_in_place_model_never_changes_kept_observations(make_env):
    env = make_env(InPlace(), BOX4, ACT1)
    env.reset(seed=0)
    kept = [env.step(np.zeros(1, np.float32))[0] for _ in range(6)]
    assert [k[0] for k in kept] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    addresses = {k.__array_interface__["data"][0] for k in kept}
    assert len(addresses) == 6


def test_in_place_vector_model_never_changes_kept_observations(backend):
    class Batched:
        def __init__(self):
            self.h = torch.zeros(3, 4)

        def reset(self, seed=None, options=None):
            self.h.zero_()
            return self.h, self.h

        def step(self, state, action):
            self.h.add_(1)
            return self.h, self.h

    env = WorldModelVectorEnv(Batched(), 3, BOX4, ACT1, backend=backend)
    env.reset(seed=0)
    kept = [env.step(np.zeros((3, 1), np.float32))[0] for _ in range(4)]
    assert [k[0, 0] for k in kept] == [1.0, 2.0, 3.0, 4.0]


def test_alternating_buffers_never_change_a_kept_observation(make_env):
    buffers = [torch.zeros(4) for _ in range(2)]
    count = iter(range(1000))

    def step(model, state, action):
        i = next(count)
        t = buffers[i % 2]
        t.fill_(float(i))  # writes into the buffer it returned two steps ago
        return t, t

    env = make_env(
        None, BOX4, ACT1, transition_fn=step, initial_state=torch.zeros(4), initial_observation=torch.zeros(4)
    )
    env.reset(seed=0)
    kept = [env.step(np.zeros(1, np.float32))[0] for _ in range(6)]
    assert [k[0] for k in kept] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert not any(np.shares_memory(k, b.numpy()) for k in kept for b in buffers)


def test_fresh_tensors_stay_zero_copy(make_env):
    made = []

    def step(model, state, action):
        nxt = state + 1
        obs = nxt * 10
        made.append(obs.data_ptr())  # an address, not the tensor: holding it would be sharing
        return nxt, obs

    env = make_env(
        None, BOX4, ACT1, transition_fn=step, initial_state=torch.zeros(4), initial_observation=torch.zeros(4)
    )
    env.reset(seed=0)
    for i in range(4):
        obs = env.step(np.zeros(1, np.float32))[0]
        assert obs.__array_interface__["data"][0] == made[-1]  # a view of the model's tensor, not a copy
        assert obs[0] == 10.0 * (i + 1)


def test_secure_observation_on_the_core(core):
    spec = _spaces.observation_spec(BOX4)
    held = torch.zeros(4)
    out = core.secure_observation((None, core.conform_observation(held, spec, "observation", True)), 1)
    assert not np.shares_memory(out[1], held.numpy())  # the caller still holds the tensor: copied
    out = core.secure_observation((None, core.conform_observation(torch.ones(4), spec, "observation", True)), 1)
    assert out[1].base is not None and out[1].tolist() == [1.0] * 4  # nothing else holds it: a view
    mine = np.zeros(4, np.float32)
    out = core.secure_observation((mine,), 0)
    assert out[0] is not mine and np.array_equal(out[0], mine)  # the caller holds it: copied
    items = ({"a": np.ones(2), "b": (np.zeros(3), np.zeros(0))},)
    assert core.secure_observation(items, 0) is items  # nothing shared: the same tuple
    with pytest.raises(TypeError, match="items must be a tuple, got list"):
        core.secure_observation([mine], 0)
    with pytest.raises(IndexError, match="index 3 is outside a tuple of 1 items"):
        core.secure_observation((mine,), 3)


def test_secure_observation_copies_memory_another_library_owns(core):
    class DLPackOnly:
        def __init__(self, array):
            self.array = array

        def __dlpack__(self, **kwargs):
            return self.array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

    source = np.arange(4, dtype=np.float32)
    spec = _spaces.observation_spec(BOX4)
    out = core.secure_observation((None, core.conform_observation(DLPackOnly(source), spec, "observation", True)), 1)
    assert np.array_equal(out[1], source) and not np.shares_memory(out[1], source)
    numpy_backed = torch.from_numpy(source)
    out = core.conform_observation(numpy_backed, spec, "observation", True)
    assert not np.shares_memory(out, source)  # torch did not allocate it: copied at once
    assert np.shares_memory(core.conform_observation(numpy_backed, spec), source)  # unprotected: a view


# 2. Conjugate and negative-bit views have the right values.

Z = torch.tensor([1 + 2j, 3 - 4j])


@pytest.mark.parametrize(
    "make",
    [
        lambda: Z.conj().imag,
        lambda: Z.conj(),
        lambda: Z.conj().real,
        lambda: torch._neg_view(torch.tensor([1.0, -2.0])),
    ],
    ids=["conj_imag", "conj", "conj_real", "neg_view"],
)
def test_conjugate_and_negative_views_resolve(core, make):
    view = make()
    expected = view.resolve_conj().resolve_neg().clone().numpy()
    np.testing.assert_array_equal(core.to_numpy(view), expected)


def test_vector_rewards_from_a_negative_view_keep_their_sign(backend):
    def step(model, state, action):
        rewards = torch.tensor([1 + 2j, 3 - 4j]).conj().imag
        return state, state, rewards

    env = WorldModelVectorEnv(
        None,
        2,
        BOX4,
        ACT1,
        transition_fn=step,
        initial_state=torch.zeros(2, 4),
        initial_observation=torch.zeros(2, 4),
        backend=backend,
    )
    env.reset(seed=0)
    rewards = env.step(np.zeros((2, 1), np.float32))[1]
    assert rewards.tolist() == [-2.0, 4.0]


# 3. Unbounded nesting is a clear error, never a stack overflow.


def self_list():
    x = []
    x.append(x)
    return x


def self_dict():
    d = {}
    d["d"] = d
    return d


def deep_list(depth=200_000):
    x = []
    for _ in range(depth):
        x = [x]
    return x


NESTINGS = {"self_list": self_list, "self_dict": self_dict, "deep_list": deep_list}

TOO_DEEP = "nests containers more than 64 levels deep"


def _nesting_is_an_error(backend, make):
    core = _backend.load(backend)
    with pytest.raises(ValueError, match=TOO_DEEP):
        core.conform_observation(make(), None)
    env = WorldModelEnv(
        None,
        gym.spaces.Text(8),
        gym.spaces.Discrete(2),
        initial_state=0,
        transition_fn=lambda m, s, a: (s, make()),
        backend=backend,
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=TOO_DEEP):
        env.step(0)
    render = WorldModelEnv(
        None,
        gym.spaces.Text(8),
        gym.spaces.Discrete(2),
        initial_state=0,
        transition_fn=lambda m, s, a: s,
        render_fn=lambda m, s, o: make(),
        backend=backend,
    )
    render.reset(seed=0)
    with pytest.raises(ValueError, match=TOO_DEEP):
        render.render()


@pytest.mark.parametrize("kind", ["self_list", "self_dict", "deep_list"])
def test_unbounded_nesting_is_a_clear_error(backend, kind):
    isolated(_nesting_is_an_error, backend, NESTINGS[kind])


def _nesting_errors_match(cores):
    for make in (self_list, self_dict, lambda: deep_list(65), lambda: deep_list(1000)):
        assert_twins(cores, "conform_observation", make(), None)
    assert_twins(cores, "conform_observation", deep_list(60), None)


def test_nesting_errors_match(cores):
    isolated(_nesting_errors_match, cores)


# 4. A container changed while it is converted.


class Emptier:
    """A leaf whose conversion empties the list it sits in."""

    def __init__(self, owner):
        self.owner = owner

    def __array__(self, dtype=None, copy=None):
        self.owner.clear()
        return np.ones(2, np.float32)


def _mutated_container(backend):
    core = _backend.load(backend)
    outer = []
    outer.extend([Emptier(outer), np.zeros(2), np.zeros(2)])
    out = core.conform_observation(outer, None)
    assert len(out) == 3 and out[0].tolist() == [1.0, 1.0]
    spec = _spaces.observation_spec(gym.spaces.Tuple([gym.spaces.Box(0, 1, (2,))] * 3))
    outer = []
    outer.extend([Emptier(outer), np.zeros(2), np.zeros(2)])
    out = core.conform_observation(outer, spec)
    assert len(out) == 3


def test_container_mutated_during_conversion(backend):
    isolated(_mutated_container, backend)


def test_mutated_container_results_match(cores):
    for spec in (None, _spaces.observation_spec(gym.spaces.Tuple([gym.spaces.Box(0, 1, (2,))] * 3))):
        made = []
        for _ in range(2):
            outer = []
            outer.extend([Emptier(outer), np.zeros(2), np.zeros(2)])
            made.append(outer)
        native, python = cores
        a, b = native.conform_observation(made[0], spec), python.conform_observation(made[1], spec)
        assert len(a) == len(b) == 3


# 5. .numpy() that does not return an ndarray.


class OddNumpy(torch.Tensor):
    def numpy(self, *args, **kwargs):
        return [1, 2, 3]


def _odd_numpy(backend):
    core = _backend.load(backend)
    t = torch.zeros(3).as_subclass(OddNumpy)
    with pytest.raises(TypeError, match=r"OddNumpy.numpy\(\) returned a list, not a numpy.ndarray"):
        core.to_numpy(t)
    with pytest.raises(TypeError, match="not a numpy.ndarray"):
        core.to_numpy(torch.zeros(3, dtype=torch.bfloat16).as_subclass(OddNumpy))


def test_numpy_returning_a_non_array_is_a_type_error(backend):
    isolated(_odd_numpy, backend)


# 6. Errors raised by user objects surface unchanged.


class BadLen(list):
    def __len__(self):
        raise ZeroDivisionError("len")

    def __iter__(self):
        raise ZeroDivisionError("iter")


class ItemsAsLists:
    def __init__(self, pairs):
        self.pairs = pairs

    def __getitem__(self, key):
        return dict(self.pairs)[key]

    def __iter__(self):
        return iter(k for k, _ in self.pairs)

    def __len__(self):
        return len(self.pairs)

    def __contains__(self, key):
        return key in dict(self.pairs)

    def get(self, key, default=None):
        return dict(self.pairs).get(key, default)

    def items(self):
        return [list(p) for p in self.pairs]


class AnyKey:
    """Claims every key, unhashable ones too."""

    def __contains__(self, key):
        return True

    def __getitem__(self, key):
        return np.zeros(1)

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def items(self):
        return []


class RaisingDLPack:
    @property
    def __dlpack__(self):
        raise KeyError("dlpack property")

    def __dlpack_device__(self):
        return (1, 0)

    def __array__(self, dtype=None, copy=None):
        return np.zeros(1)


from collections.abc import Mapping  # noqa: E402

Mapping.register(ItemsAsLists)
Mapping.register(AnyKey)

BOX2 = _spaces.observation_spec(gym.spaces.Box(0, 1, (2,)))
TUPLE2 = _spaces.observation_spec(gym.spaces.Tuple([gym.spaces.Box(0, 1, (2,))] * 2))
UNHASHABLE_DICT = (1, (["a"],), (None,))


def test_user_errors_surface_unchanged(cores):
    native, python = cores
    for core in cores:
        with pytest.raises(ZeroDivisionError):
            core.matches_structure(BadLen([np.zeros(2), np.zeros(2)]), TUPLE2)
        with pytest.raises(ZeroDivisionError):
            core.normalize_reset((BadLen([1, 2]), {}), TUPLE2, None, None)
        with pytest.raises(TypeError, match="unhashable"):
            core.conform_observation(AnyKey(), UNHASHABLE_DICT)
        with pytest.raises(KeyError, match="dlpack property"):
            core.to_numpy(RaisingDLPack())
        out = core.conform_observation(ItemsAsLists([("a", np.zeros(1))]), None)
        assert list(out) == ["a"]
        with pytest.raises(TypeError, match=r"items\(\) must give \(key, value\) pairs"):
            core.conform_observation(ItemsAsLists([("a", 1, 2)]), None)
    assert_twins(cores, "matches_structure", BadLen([np.zeros(2), np.zeros(2)]), TUPLE2)
    assert_twins(cores, "conform_observation", AnyKey(), UNHASHABLE_DICT)
    assert_twins(cores, "to_numpy", RaisingDLPack())
    assert_twins(cores, "conform_observation", ItemsAsLists([("a", 1, 2)]), None)


# 7. Discrete spaces near the int64 limits.


@pytest.mark.parametrize("torch_actions", [True, False])
def test_discrete_checks_are_exact_near_int64_limits(make_env, torch_actions):
    start = 2**63 - 2
    space = gym.spaces.Discrete(2, start=start)
    env = make_env(
        None,
        BOX4,
        space,
        transition_fn=lambda m, s, a: (s, s),
        initial_state=torch.zeros(4),
        torch_actions=torch_actions,
    )
    env.reset(seed=0)
    for action in (start, start + 1, np.int64(start + 1)):
        env.step(action)
    with pytest.raises(ValueError, match=f"valid: {start} to {start + 1}"):
        env.step(start - 1)
    low = make_env(
        None,
        BOX4,
        gym.spaces.Discrete(3, start=-(2**63)),
        transition_fn=lambda m, s, a: (s, s),
        initial_state=torch.zeros(4),
        torch_actions=torch_actions,
    )
    low.reset(seed=0)
    low.step(-(2**63))
    with pytest.raises(ValueError, match="outside"):
        low.step(-(2**63) + 3)


# 8. One behaviour per odd input, on both backends.


SUB_BYTE = [
    getattr(torch, name) for name in ("uint1", "uint4", "uint7", "int1", "int4", "int7") if hasattr(torch, name)
]


@pytest.mark.parametrize("dtype", SUB_BYTE, ids=str)
def test_sub_byte_dtypes_are_refused_alike(cores, dtype):
    t = torch.empty(3, dtype=dtype)
    assert_twins(cores, "to_numpy", t)
    for core in cores:
        with pytest.raises(TypeError, match="unsupported ScalarType"):
            core.to_numpy(t)


@pytest.mark.parametrize("reward", [torch.tensor(1 + 0j), torch.tensor([1 + 0j]), np.complex128(1 + 0j), 1 + 0j])
def test_complex_rewards_are_refused_alike(cores, reward):
    assert_twins(cores, "as_reward", reward)
    for core in cores:
        with pytest.raises(TypeError):
            core.as_reward(reward)


def _fake_and_masked(backend):
    import warnings

    from torch._subclasses.fake_tensor import FakeTensorMode

    core = _backend.load(backend)
    with FakeTensorMode():
        fake = torch.zeros(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masked = torch.masked.masked_tensor(torch.tensor([1.0, 2.0]), torch.tensor([True, False]))
    for t in (fake, masked):
        with pytest.raises(RuntimeError, match="not supported for tensor subclasses"):
            core.to_numpy(t)


def test_fake_and_masked_tensors_are_refused(backend):
    isolated(_fake_and_masked, backend)


class Device:
    def __init__(self, device):
        self.device = device

    def __dlpack__(self, **kwargs):
        return np.zeros(2).__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.device

    def __array__(self, dtype=None, copy=None):
        return np.ones(2)


@pytest.mark.parametrize(
    "device", [None, (1,), (1, 0, 0), [1, 0], "cpu", (1.0, 0), (True, 0), (2, 0), (object(), 0)], ids=repr
)
def test_unusual_dlpack_devices_alike(cores, device):
    assert_twins(cores, "to_numpy", Device(device))


class LyingTuple(tuple):
    def __len__(self):
        return 1

    def __iter__(self):
        return iter(tuple.__iter__(self))

    def __getitem__(self, i):
        return "lie"


class ShortList(list):
    def __iter__(self):
        return iter([np.zeros(2)])


@pytest.mark.parametrize(
    "value", [LyingTuple((np.zeros(2), np.ones(2))), ShortList([np.zeros(2), np.ones(2)])], ids=["tuple", "list"]
)
def test_overridden_sequence_protocols_alike(cores, value):
    assert_twins(cores, "conform_observation", value, None)
    assert_twins(cores, "conform_observation", value, TUPLE2)
    assert_twins(cores, "matches_structure", value, TUPLE2)
    assert_twins(cores, "parse_step", LyingTuple(("s", np.zeros(2))), None)
    assert_twins(cores, "normalize_reset", LyingTuple(("s", np.zeros(2))), BOX2, None, None)


# 9. set_torch validates before it registers anything.


class HalfTorch:
    Tensor = torch.Tensor


def _half_torch(backend):
    core = _backend.load(backend)
    for module in (HalfTorch(), object(), type("T", (), {"Tensor": 3, "from_numpy": torch.from_numpy})()):
        with pytest.raises(TypeError, match="set_torch needs the torch module or None"):
            core.set_torch(module)
    # the previous registration is whole: tensors and actions still work
    assert core.to_numpy(torch.ones(2)).tolist() == [1.0, 1.0]
    spec = _spaces.action_spec(gym.spaces.Discrete(3), torch, None, True)
    assert core.convert_action(1, spec).dtype == torch.int64
    before = sys.getrefcount(torch.Tensor)
    for _ in range(100):
        core.set_torch(torch)
    assert sys.getrefcount(torch.Tensor) - before < 5
    core.set_torch(None)
    core.set_torch(torch)


def test_set_torch_is_all_or_nothing(backend):
    isolated(_half_torch, backend)
