"""wmenv._core and wmenv._core_py: same names, signatures, results and errors."""

import ast
import inspect
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import wmenv
from wmenv import _backend, _core_py, _spaces

from models import DLPackOnly


@pytest.fixture(scope="module")
def cores(native_core):
    return native_core, _backend.load("python")


def public(module):
    return sorted(n for n in module.__all__)


def test_same_public_names(cores):
    native, python = cores
    assert public(native) == public(python)
    assert sorted(n for n in dir(native) if not n.startswith("_")) == public(native)
    assert native.OBSERVATION_KEYS == python.OBSERVATION_KEYS


def native_parameters(fn):
    first = fn.__doc__.splitlines()[0]
    inside = first[first.index("(") + 1 : first.rindex(")")]
    params = []
    for part in re.split(r",\s*(?![^\[]*\])", inside):
        name, _, rest = part.partition(":")
        default = rest.partition("=")[2].strip() or None
        params.append((name.strip(), default))
    return params


def python_parameters(fn):
    return [
        (p.name, None if p.default is inspect.Parameter.empty else repr(p.default))
        for p in inspect.signature(fn).parameters.values()
    ]


def test_same_signatures(cores):
    native, python = cores
    for name in public(python):
        fn = getattr(python, name)
        if callable(fn):
            assert native_parameters(getattr(native, name)) == python_parameters(fn), name


def test_stub_matches_the_twin():
    stub = Path(wmenv.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    stubbed = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            args = node.args
            given = [repr(ast.literal_eval(d)) for d in args.defaults]
            defaults = [None] * (len(args.args) - len(args.defaults)) + given
            stubbed[node.name] = list(zip((a.arg for a in args.args), defaults))
    functions = {n: python_parameters(getattr(_core_py, n)) for n in _core_py.__all__ if callable(getattr(_core_py, n))}
    assert stubbed == functions
    assert (Path(wmenv.__file__).with_name("py.typed")).exists()


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # compared by type and message
        return ("raise", type(exc), str(exc))


def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, torch.Tensor):
        if a is b:
            return True
        same_meta = a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
        if not same_meta:
            return False
        if a.is_floating_point() or a.is_complex():
            return bool(torch.allclose(a.detach(), b.detach(), rtol=0, atol=0, equal_nan=True))
        return torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


def assert_twins(cores, name, *args):
    native, python = cores
    got_native = outcome(getattr(native, name), *args)
    got_python = outcome(getattr(python, name), *args)
    assert got_native[0] == got_python[0], (got_native, got_python)
    if got_native[0] == "raise":
        assert got_native[1:] == got_python[1:]
    else:
        assert same(got_native[1], got_python[1]), (got_native[1], got_python[1])


class MappingOnly:
    """A Mapping that is not a dict."""

    def __init__(self, **items):
        self._items = items

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def keys(self):
        return self._items.keys()

    def get(self, key, default=None):
        return self._items.get(key, default)


from collections.abc import Mapping  # noqa: E402

Mapping.register(MappingOnly)

LEAVES = [
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.arange(6, dtype=np.float64)[::2],
    torch.arange(6, dtype=torch.float32).reshape(2, 3),
    torch.arange(12, dtype=torch.int16).reshape(3, 4).t(),
    torch.tensor([1.0, 2.0], requires_grad=True),
    torch.tensor(True),
    torch.zeros(0, 3),
    torch.tensor([1, 2], dtype=torch.uint8),
    torch.tensor([1.5], dtype=torch.float16),
    torch.tensor([1.5], dtype=torch.bfloat16),
    torch.tensor([1 + 2j]),
    torch.arange(4.0)[1:],
    DLPackOnly(np.array([1, 2, 3], np.int32)),
    3.5,
    7,
    True,
    [1, 2],
    "text",
    None,
    np.float32(2.5),
]


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda x: type(x).__name__)
def test_to_numpy(cores, leaf):
    assert_twins(cores, "to_numpy", leaf)


def test_to_numpy_zero_copy_on_both(cores):
    for core in cores:
        t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
        a = core.to_numpy(t)
        assert a.__array_interface__["data"][0] == t.data_ptr() and a.strides == (4, 12)
        t[0, 0] = 9
        assert a[0, 0] == 9
        assert a.flags.writeable


BOX = _spaces.observation_spec(gym.spaces.Box(-1, 1, (2,), np.float32))
DICT = _spaces.observation_spec(gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (1,)), "b": gym.spaces.Discrete(3)}))
TUPLE = _spaces.observation_spec(gym.spaces.Tuple((gym.spaces.Box(0, 1, (2,)), gym.spaces.MultiBinary(2))))
NESTED = _spaces.observation_spec(gym.spaces.Dict({"t": gym.spaces.Tuple((gym.spaces.Box(0, 1, (2,)),))}))

OBSERVATIONS = [
    (np.zeros(2), BOX),
    (np.zeros(3), BOX),
    (torch.zeros(2, dtype=torch.float64), BOX),
    ([1, 2], BOX),
    (5, BOX),
    (None, BOX),
    ({"a": [0.5], "b": 2}, DICT),
    ({"a": [0.5], "b": 2, "extra": 1}, DICT),
    ({"a": [0.5]}, DICT),
    ({"a": [0.5, 1], "b": 2}, DICT),
    (MappingOnly(a=torch.ones(1), b=np.int32(1)), DICT),
    (np.zeros(2), DICT),
    ((np.zeros(2), [1, 0]), TUPLE),
    ([np.zeros(2), [1, 0]], TUPLE),
    ((np.zeros(2),), TUPLE),
    ((np.zeros(2), [1, 0, 1]), TUPLE),
    ({"x": 1}, TUPLE),
    ({"t": (np.zeros(3),)}, NESTED),
    ({"t": (np.zeros(2),)}, NESTED),
    ({"a": [torch.ones(1), (2.0, None)], "b": MappingOnly(c=torch.zeros(1))}, None),
]


@pytest.mark.parametrize("obs, spec", OBSERVATIONS)
def test_conform_observation(cores, obs, spec):
    assert_twins(cores, "conform_observation", obs, spec)
    assert_twins(cores, "conform_observation", obs, spec, "obs[3]")


@pytest.mark.parametrize("obs, spec", OBSERVATIONS + [(torch.zeros(2), BOX), (object(), BOX), ([[1], [2, 3]], BOX)])
def test_matches_structure(cores, obs, spec):
    assert_twins(cores, "matches_structure", obs, spec)


SCALARS = [
    0.1,
    3,
    True,
    False,
    np.float64(0.1),
    np.float32(0.1),
    np.array(0.1),
    np.array([[0.1]]),
    np.zeros(3),
    np.zeros(0),
    torch.tensor(0.1, dtype=torch.float64),
    torch.tensor([[2]]),
    torch.zeros(2),
    torch.tensor(True),
    [0.5],
    [0.5, 1.0],
    None,
    "x",
    np.array([True]),
    float("nan"),
    2**70,
]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_as_reward_and_as_flag(cores, value):
    assert_twins(cores, "as_reward", value)
    assert_twins(cores, "as_flag", value, "terminated")
    assert_twins(cores, "as_flag", value, "truncated")


OBS = np.array([1.0, 2.0], np.float32)
STEP_RESULTS = [
    ("s", OBS, 1.0, True, False, {"k": 1}),
    ("s", OBS, 1.0, True, None, None),
    (OBS, 1.0, False, False, {"model_state": "h"}),
    (OBS, 1.0, False, False, None),
    (OBS, 1.0, True, {"elapsed_steps": 9}),
    ("s", OBS, 0.5),
    ("s", OBS),
    (OBS,),
    (),
    (1, 2, 3, 4, 5, 6, 7),
    OBS,
    {"state": "s", "obs": OBS, "reward": 2.0, "done": True, "truncated": np.array([True]), "info": None},
    {"next_state": "n", "pixels": OBS, "terminated": None, "done": False},
    {"reward": torch.tensor([1.0, 2.0])},
    MappingOnly(state="s", observation=OBS, reward=0.25, truncated=True, info=MappingOnly(k=2)),
    ("s", OBS, 1.0, True, False, [1]),
    ("s", np.zeros(3)),
    ("s", OBS, 1.0, np.zeros(2), False, {}),
]


@pytest.mark.parametrize(
    "result", STEP_RESULTS, ids=lambda r: type(r).__name__ + str(len(r)) if hasattr(r, "__len__") else "x"
)
@pytest.mark.parametrize("with_fns", [False, True])
@pytest.mark.parametrize("info_model_state", [True, False])
def test_normalize_step(cores, result, with_fns, info_model_state):
    reward_fn = (lambda s, o, a: 0.75) if with_fns else None
    terminal_fn = (lambda s, o, a: np.array([1])) if with_fns else None
    assert_twins(
        cores, "normalize_step", result, torch.zeros(2), "action", BOX, reward_fn, terminal_fn, 4, info_model_state
    )


def test_normalize_step_adapters_get_raw_values(cores):
    for core in cores:
        seen = []
        core.normalize_step(("s", [3, 4]), "old", "act", BOX, lambda *a, log=seen: log.append(a) or 1.0, None, 1, True)
        assert seen == [("s", [3, 4], "act")]


def test_normalize_step_propagates_adapter_errors(cores):
    class Boom(Exception):
        pass

    def fail(*args):
        raise Boom("x")

    for core in cores:
        with pytest.raises(Boom):
            core.normalize_step(("s", OBS), None, None, BOX, fail, None, 1, True)


RESET_RESULTS = [
    OBS,
    (OBS, {"k": 1}),
    (OBS.astype(np.float64), {"k": 1}),
    (torch.zeros(5), {"k": 1}),
    ("s", OBS),
    ("s", OBS, None),
    ("s", OBS, [1]),
    (OBS, "x", "y", "z"),
    (),
    {"state": "s", "obs": OBS, "info": {"a": 1}},
    {},
    MappingOnly(image=OBS),
    None,
    ("s", np.zeros(4)),
]


@pytest.mark.parametrize("result", RESET_RESULTS, ids=lambda r: type(r).__name__)
@pytest.mark.parametrize("defaults", [(None, None), ("s0", np.ones(2))])
def test_normalize_reset(cores, result, defaults):
    assert_twins(cores, "normalize_reset", result, BOX, *defaults)


def action_spec(space, torch_actions=True, device=None):
    return _spaces.action_spec(space, torch, device, torch_actions)


ACTIONS = [
    (gym.spaces.Box(-1, 1, (2,), np.float32), [0.5, 0.25]),
    (gym.spaces.Box(-1, 1, (2,), np.float32), np.array([[0.5, 0.25]], np.float32)),
    (gym.spaces.Box(-1, 1, (2,), np.float32), np.array([0.5, 0.25, 1.0])),
    (gym.spaces.Box(-1, 1, (2,), np.float32), torch.tensor([[0.5], [0.25]], dtype=torch.float64)),
    (gym.spaces.Box(-1, 1, (2,), np.float32), torch.zeros(3)),
    (gym.spaces.Box(-1, 1, (2,), np.float32), "ab"),
    (gym.spaces.Box(-1, 1, (2,), np.float32), np.array([2.0, 1.0], np.float32)[::-1]),
    (gym.spaces.Box(-1, 1, (), np.float64), 0.5),
    (gym.spaces.Discrete(3), 2),
    (gym.spaces.Discrete(3), 3),
    (gym.spaces.Discrete(3, start=-2), -3),
    (gym.spaces.Discrete(3), np.int64(1)),
    (gym.spaces.Discrete(3), torch.tensor(5)),
    (gym.spaces.Discrete(3), [1, 2]),
    (gym.spaces.Discrete(3), 2**70),
    (gym.spaces.MultiDiscrete([2, 3]), [1, 2]),
    (gym.spaces.MultiBinary(3), np.array([1, 0, 1], np.int8)),
    (gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), {"a": 1}),
]


@pytest.mark.parametrize("space, action", ACTIONS, ids=lambda x: repr(x)[:30])
@pytest.mark.parametrize("torch_actions", [True, False])
def test_convert_action(cores, space, action, torch_actions):
    assert_twins(cores, "convert_action", action, action_spec(space, torch_actions))


def test_convert_action_shares_numpy_memory(cores):
    spec = action_spec(gym.spaces.Box(-1, 1, (2,), np.float32))
    for core in cores:
        a = np.array([0.5, 0.25], np.float32)
        assert core.convert_action(a, spec).data_ptr() == a.__array_interface__["data"][0]


def test_readonly_action_is_copied(cores):
    spec = action_spec(gym.spaces.Box(-1, 1, (2,), np.float32))
    for core in cores:
        a = np.array([0.5, 0.25], np.float32)
        a.flags.writeable = False
        t = core.convert_action(a, spec)
        assert t.data_ptr() != a.__array_interface__["data"][0] and t.tolist() == [0.5, 0.25]


def test_set_torch_none_disables_tensor_paths(cores):
    spec = action_spec(gym.spaces.Box(-1, 1, (2,), np.float32), torch_actions=False)
    for core in cores:
        core.set_torch(None)
        try:
            assert isinstance(core.to_numpy(np.zeros(1)), np.ndarray)
            assert isinstance(core.to_numpy(torch.zeros(1)), np.ndarray)  # through DLPack
            assert core.convert_action([1, 2], spec) == [1, 2]
        finally:
            core.set_torch(torch)
        assert isinstance(core.convert_action([1, 2], action_spec(gym.spaces.Box(-1, 1, (2,)))), torch.Tensor)


BATCH_OBS = _spaces.observation_spec(gym.vector.utils.batch_space(gym.spaces.Box(-1, 1, (2,), np.float32), 3))
BATCH_RESULTS = [
    {
        "state": "s",
        "observation": torch.zeros(3, 2),
        "reward": torch.ones(3, dtype=torch.float64),
        "terminated": torch.tensor([True, False, True]),
    },
    {"state": "s", "observation": torch.zeros(3, 2)},
    ("s", np.zeros((3, 2)), [1, 2, 3], np.array([[0], [1], [0]]), None, None),
    ("s", np.zeros((3, 2)), np.ones(3), np.zeros(3), np.ones(3), {"k": np.arange(3)}),
    ("s", np.zeros((3, 2)), np.ones(2)),
    ("s", np.zeros((3, 2)), None, np.zeros(4), False, None),
    ("s", np.zeros((2, 2)), np.ones(3)),
    ("s", torch.zeros(3, 2)),
    (np.zeros((3, 2)), 1.0, False, False, None),
]


@pytest.mark.parametrize("result", BATCH_RESULTS, ids=lambda r: type(r).__name__ + str(len(r)))
@pytest.mark.parametrize("with_fns", [False, True])
def test_normalize_step_batch(cores, result, with_fns):
    reward_fn = (lambda s, o, a: torch.full((3, 1), 0.5)) if with_fns else None
    terminal_fn = (lambda s, o, a: [1, 0, 1]) if with_fns else None
    assert_twins(cores, "normalize_step_batch", result, "old", "act", BATCH_OBS, reward_fn, terminal_fn, 3)


def test_normalize_step_batch_defaults_are_zeros(cores):
    for core in cores:
        for _ in range(20):  # fresh arrays each time: never uninitialised memory
            _, _, reward, terminated, truncated, _ = core.normalize_step_batch(
                ("s", np.zeros((3, 2))), None, None, BATCH_OBS, None, None, 3
            )
            assert reward.tolist() == [0.0] * 3 and not terminated.any() and not truncated.any()


@pytest.mark.parametrize(
    "value",
    [
        torch.arange(3),
        np.ones((3, 1)),
        [True, False, True],
        1.0,
        None,
        np.zeros(4),
        torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.bool_)])
def test_as_batch(cores, value, dtype):
    assert_twins(cores, "as_batch", value, 3, dtype, "reward")


def _batch_sources():
    """Tensors of every layout and dtype the native core copies directly, and
    some it leaves to the general path; each holds 3 values."""
    grid = torch.arange(9.0).reshape(3, 3)
    return {
        "strided column": torch.arange(6.0).reshape(3, 2)[:, 1],
        "transposed row": grid.t()[1],
        "(3, 1)": torch.tensor([[0.5], [0.0], [-1.5]]),
        "(1, 3, 1)": torch.tensor([[[1.0], [2.0], [3.0]]]),
        "transposed (3, 3) block": grid.t()[:, :1].reshape(3, 1),
        "offset slice": torch.arange(10.0)[5:8],
        "expanded": torch.tensor([2.5]).expand(3),
        "bool": torch.tensor([True, False, True]),
        "int8": torch.tensor([0, -1, 7], dtype=torch.int8),
        "uint8": torch.tensor([0, 255, 1], dtype=torch.uint8),
        "int16": torch.tensor([0, -300, 2], dtype=torch.int16),
        "int32": torch.tensor([0, 1 << 20, -5], dtype=torch.int32),
        "int64": torch.tensor([0, 1 << 40, -5]),
        "float64": torch.tensor([0.1, 0.0, -2.0], dtype=torch.float64),
        "nan and -0.0": torch.tensor([float("nan"), -0.0, float("inf")]),
        "float16": torch.tensor([0.5, 0.0, 1.0], dtype=torch.float16),
        "bfloat16": torch.tensor([0.5, 0.0, 1.0], dtype=torch.bfloat16),
        "negative view": torch._neg_view(torch.tensor([1.0, -2.0, 0.0])),
        "requires_grad": torch.tensor([1.0, 0.0, 3.0], requires_grad=True),
        "4 values": torch.zeros(4),
        "2 values strided": torch.arange(4.0)[::2],
        "no values": torch.zeros(0),
    }


@pytest.mark.parametrize("name", list(_batch_sources()))
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.bool_)])
def test_as_batch_tensor_layouts_and_dtypes(cores, name, dtype):
    value = _batch_sources()[name]
    assert_twins(cores, "as_batch", value, 3, dtype, "reward")
    values = value.detach().resolve_neg().float().reshape(-1)
    probability = value.is_floating_point() and value.dtype != torch.bfloat16 and value.numel() == 3
    if np.dtype(dtype) == np.bool_ and probability and bool(((values != 0) & (values != 1)).any()):
        for core in cores:  # a float that is neither 0 nor 1 is no flag (a probability head)
            with pytest.raises(ValueError, match="a float that is neither 0 nor 1"):
                core.as_batch(value, 3, dtype, "terminated")
        return
    if value.numel() == 3 and value.dtype != torch.bfloat16:  # NumPy has no bfloat16: both raise alike
        expected = value.detach().resolve_neg().numpy().reshape(3).astype(dtype)
        for core in cores:
            out = core.as_batch(value, 3, dtype, "reward")
            assert out.dtype == dtype and out.shape == (3,) and out.flags.c_contiguous and out.flags.writeable
            np.testing.assert_array_equal(out, expected)


def test_as_batch_of_no_envs_and_dtype_likes(cores):
    assert_twins(cores, "as_batch", torch.zeros(0), 0, np.dtype(np.float32), "reward")
    assert_twins(cores, "as_batch", torch.zeros(1, 0), 0, np.dtype(np.bool_), "terminated")
    for dtype in ("float32", np.float32, bool, "?", "nonsense", None):
        assert_twins(cores, "as_batch", torch.tensor([1.0, 0.0]), 2, dtype, "reward")
        assert_twins(cores, "as_batch", np.array([1.0, 0.0]), 2, dtype, "reward")


def test_as_batch_copies(cores):
    for core in cores:
        source = torch.zeros(3)
        out = core.as_batch(source, 3, np.dtype(np.float32), "reward")
        out[0] = 5
        assert source[0] == 0


BAD_SPECS = [
    (),
    (0,),
    (0, (2,)),
    (0, [2], np.dtype(np.float32)),
    (0, (2,), "float32"),
    (0.0, (2,), np.dtype("f4")),
    (1, ("a",), ()),
    (1, ["a"], [None]),
    (2,),
    (2, [None]),
    (3, ()),
    ("0", (2,), np.dtype("f4")),
    [0, (2,)],
    "box",
]


@pytest.mark.parametrize("spec", BAD_SPECS, ids=repr)
def test_malformed_specs_are_type_errors_not_crashes(cores, spec):
    assert_twins(cores, "conform_observation", np.zeros(2), spec)
    assert_twins(cores, "matches_structure", np.zeros(2), spec)
    assert_twins(cores, "normalize_step", ("s", np.zeros(2)), None, None, spec, None, None, 1, True)
    native, _ = cores
    with pytest.raises(TypeError, match="observation spec must be None or a tuple"):
        native.conform_observation(np.zeros(2), spec)


@pytest.mark.parametrize("spec", [(), ("a",) * 8, [1] * 9, "spec"], ids=repr)
def test_malformed_action_specs(cores, spec):
    assert_twins(cores, "convert_action", np.zeros(2), spec)


COUNTERS = [
    (np.array([0, 4, 9]), np.array([False, True, False]), np.array([False, False, False]), 5),
    (np.array([0, 4, 9]), np.array([False, True, False]), np.array([True, False, False]), None),
    (np.array([2**62, 1]), np.zeros(2, bool), np.zeros(2, bool), 2**70),
    (np.array([0, 1]), np.zeros(2, bool), np.zeros(2, bool), -(2**70)),
    (np.array([0.0, 1.0]), np.zeros(2, bool), np.zeros(2, bool), 5),
    (np.array([0, 1]), np.zeros(3, bool), np.zeros(2, bool), 5),
    (np.array([0, 1]), np.zeros(2, bool), np.zeros(2, bool), 2.5),
    (np.array([[0, 1]]), np.zeros(2, bool), np.zeros(2, bool), 5),
    ([0, 1], np.zeros(2, bool), np.zeros(2, bool), 5),
]


@pytest.mark.parametrize("elapsed, terminated, truncated, limit", COUNTERS)
def test_count_steps(cores, elapsed, terminated, truncated, limit):
    native, python = cores
    a, b = truncated.copy(), truncated.copy()
    got_native = outcome(native.count_steps, elapsed, terminated, a, limit)
    got_python = outcome(python.count_steps, elapsed, terminated, b, limit)
    assert got_native[0] == got_python[0], (got_native, got_python)
    if got_native[0] == "raise":
        assert got_native[1:] == got_python[1:]
    else:
        assert same(got_native[1], got_python[1]) and np.array_equal(a, b)
    readonly = truncated.copy()
    readonly.flags.writeable = False
    assert_twins(
        cores, "count_steps", np.array([0, 1]), np.zeros(2, bool), readonly[:2] if len(readonly) >= 2 else readonly, 5
    )
