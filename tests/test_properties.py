"""Property-based parity: generated model outputs of accepted and rejected
forms give identical results, or the same exception type and message, on
both backends. Bounded (``EXAMPLES`` per property) so the suite stays quick;
set ``WMENV_HYPOTHESIS_EXAMPLES`` for a longer hunt."""

import os

import gymnasium as gym
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wmenv import _spaces

from test_core_parity import assert_twins, cores  # noqa: F401  (the fixture)

EXAMPLES = int(os.environ.get("WMENV_HYPOTHESIS_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

NP_DTYPES = [
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.bool_,
    np.complex64,
    np.complex128,
]
TORCH_DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
    torch.complex64,
]

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(NP_DTYPES))
    arr = draw(hnp.arrays(dtype, shapes))
    view = draw(st.sampled_from(["plain", "offset", "reversed", "zero_stride", "transposed", "readonly"]))
    if view == "offset" and arr.ndim and arr.shape[0] > 1:
        arr = arr[1:]
    elif view == "reversed" and arr.ndim:
        arr = arr[::-1]
    elif view == "zero_stride":
        arr = np.broadcast_to(arr, (2,) + arr.shape)
    elif view == "transposed":
        arr = arr.T
    elif view == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
    return arr


@st.composite
def tensors(draw):
    base = draw(
        hnp.arrays(
            np.float64, shapes, elements=st.one_of(st.floats(-1e3, 1e3), st.sampled_from([np.nan, np.inf, -np.inf]))
        )
    )
    t = torch.from_numpy(base.copy()).to(draw(st.sampled_from(TORCH_DTYPES)))
    view = draw(st.sampled_from(["plain", "offset", "transposed", "expanded", "conj", "neg", "grad"]))
    if view == "offset" and t.dim() and t.shape[0] > 1:
        t = t[1:]
    elif view == "transposed" and t.dim() >= 2:
        t = t.transpose(0, 1)
    elif view == "expanded":
        t = t.expand((2,) + tuple(t.shape))
    elif view == "conj" and t.is_complex():
        t = t.conj()
    elif view == "neg" and t.is_complex():
        t = t.conj().imag
    elif view == "grad" and t.is_floating_point():
        t = t.clone().requires_grad_(True)
    return t


class Odd(list):
    """A list subclass that reports one item too many."""

    def __len__(self):
        return super().__len__() + 1


scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.complex_numbers(max_magnitude=1e6),
    st.none(),
    st.text(max_size=3),
    st.builds(np.float32, st.floats(-1e6, 1e6)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
)
leaves = st.one_of(
    arrays(),
    tensors(),
    scalars,
    st.lists(st.floats(-1, 1), max_size=3),
    st.builds(Odd, st.lists(st.integers(0, 3), max_size=2)),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.sampled_from(["a", "b", "obs", "state"]), children, max_size=3),
    ),
    max_leaves=6,
)

box_spaces = st.builds(
    lambda shape, dtype: gym.spaces.Box(0, 1, shape, dtype),
    hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3),
    st.sampled_from([np.float32, np.float64, np.uint8, np.int64]),
)
spaces = st.recursive(
    st.one_of(
        box_spaces,
        st.builds(gym.spaces.Discrete, st.integers(1, 5)),
        st.builds(gym.spaces.MultiBinary, st.integers(1, 3)),
    ),
    lambda children: st.one_of(
        st.builds(lambda subs: gym.spaces.Tuple(subs), st.lists(children, min_size=1, max_size=2)),
        st.builds(lambda d: gym.spaces.Dict(d), st.dictionaries(st.sampled_from(["a", "b"]), children, min_size=1)),
    ),
    max_leaves=3,
)


@st.composite
def observation_and_spec(draw):
    space = draw(spaces)
    spec = _spaces.observation_spec(space)
    if draw(st.booleans()):  # an accepted form: a sample, maybe as tensors or lists
        sample = space.sample()
        form = draw(st.sampled_from(["numpy", "torch", "list"]))
        obs = _convert(sample, form)
    else:
        obs = draw(trees)
    return obs, spec


def _convert(x, form):
    if isinstance(x, dict):
        return {k: _convert(v, form) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_convert(v, form) for v in x)
    arr = np.asarray(x)
    if form == "torch" and arr.dtype != np.uint16:
        return torch.from_numpy(arr.copy())
    if form == "list":
        return arr.tolist()
    return arr


@SETTINGS
@given(leaf=leaves)
def test_to_numpy_property(cores, leaf):
    assert_twins(cores, "to_numpy", leaf)


@SETTINGS
@given(case=observation_and_spec())
def test_conform_observation_property(cores, case):
    obs, spec = case
    assert_twins(cores, "conform_observation", obs, spec)
    assert_twins(cores, "matches_structure", obs, spec)


@SETTINGS
@given(tree=trees)
def test_unconstrained_tree_property(cores, tree):
    assert_twins(cores, "conform_observation", tree, None, "obs")


@SETTINGS
@given(value=leaves)
def test_reward_and_flag_property(cores, value):
    assert_twins(cores, "as_reward", value)
    assert_twins(cores, "as_flag", value, "terminated")


@SETTINGS
@given(
    items=st.lists(trees, max_size=7),
    as_mapping=st.booleans(),
    spec=st.sampled_from([None, (0, (2,), np.dtype(np.float32))]),
)
def test_step_and_reset_results_property(cores, items, as_mapping, spec):
    if as_mapping:
        keys = ["state", "observation", "reward", "terminated", "truncated", "info", "done"]
        result = dict(zip(keys, items))
    else:
        result = tuple(items)
    assert_twins(cores, "parse_step", result, "s")
    assert_twins(cores, "normalize_step", result, "s", 0, spec, None, None, 1, True)
    assert_twins(cores, "normalize_reset", result, spec, None, None)
    assert_twins(cores, "normalize_step_batch", result, "s", 0, None, None, None, 2)


action_spaces = st.one_of(
    box_spaces,
    st.builds(gym.spaces.Discrete, st.integers(1, 5), start=st.integers(-(2**62), 2**62)),
    st.builds(gym.spaces.MultiDiscrete, st.lists(st.integers(1, 4), min_size=1, max_size=3)),
    st.builds(gym.spaces.MultiBinary, st.integers(1, 3)),
)


@SETTINGS
@given(space=action_spaces, action=st.one_of(leaves, st.just("sample")), to_torch=st.booleans())
def test_convert_action_property(cores, space, action, to_torch):
    spec = _spaces.action_spec(space, torch, None, to_torch)
    if isinstance(action, str) and action == "sample":
        action = space.sample()
    assert_twins(cores, "convert_action", action, spec)
