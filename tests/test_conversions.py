"""Conversions: observations to NumPy and the space, actions to what the model takes."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import ACT1, BOX2
from models import DLPackOnly, Recorder

OBS = np.array([1.0, 2.0], np.float32)


class ArrayInterfaceOnly:
    def __init__(self, array):
        self.__array_interface__ = array.__array_interface__
        self._keep = array


def step_obs(make_env, obs, space=BOX2, **kwargs):
    env = make_env(Recorder(result=lambda s, a: ("s", obs)), space, ACT1, **kwargs)
    env.reset()
    return env.step(np.zeros(1, np.float32))[0]


class Fresh:
    """Makes a new observation tensor each step and keeps only its address."""

    def __init__(self, make):
        self.make, self.addresses = make, []

    def step(self, state, action):
        obs = self.make()
        self.addresses.append(obs.data_ptr())
        return "s", obs


def test_cpu_tensor_observation_shares_memory(make_env):
    model = Fresh(lambda: torch.tensor([1.0, 2.0]))
    env = make_env(model, BOX2, ACT1)
    env.reset()
    obs = env.step(np.zeros(1, np.float32))[0]
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.tolist() == [1.0, 2.0]
    assert obs.__array_interface__["data"][0] == model.addresses[0]


def test_a_tensor_someone_else_holds_is_copied(make_env):
    tensor = torch.tensor([1.0, 2.0])
    obs = step_obs(make_env, tensor)
    tensor[0] = 42.0  # the holder writes into it later: the observation it was is unchanged
    assert obs.tolist() == [1.0, 2.0] and not np.shares_memory(obs, tensor.numpy())


def test_zero_copy_observation_keeps_its_owner_alive(make_env):
    env = make_env(Recorder(result=lambda s, a: ("s", torch.arange(2, dtype=torch.float32) + 5)), BOX2, ACT1)
    env.reset()
    obs = env.step(np.zeros(1, np.float32))[0]
    import gc

    gc.collect()
    assert np.array_equal(obs, [5.0, 6.0])


def test_strided_tensor_observation_is_viewed_with_its_strides(make_env):
    model = Fresh(lambda: torch.arange(12, dtype=torch.float32).reshape(3, 4).t())  # (4, 3), not contiguous
    space = gym.spaces.Box(-100, 100, (4, 3), np.float32)
    env = make_env(model, space, ACT1)
    env.reset()
    obs = env.step(np.zeros(1, np.float32))[0]
    assert np.array_equal(obs, np.arange(12, dtype=np.float32).reshape(3, 4).T)
    assert obs.__array_interface__["data"][0] == model.addresses[0] and not obs.flags.c_contiguous


def test_image_observation_is_not_copied(make_env):
    model = Fresh(lambda: torch.zeros(3, 64, 64, dtype=torch.uint8))
    space = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    env = make_env(model, space, ACT1)
    env.reset()
    obs = env.step(np.zeros(1, np.float32))[0]
    assert obs.__array_interface__["data"][0] == model.addresses[0]


def test_requires_grad_tensors_are_detached(make_env):
    tensor = torch.tensor([1.0, 2.0], requires_grad=True)
    obs = step_obs(make_env, tensor)
    assert np.array_equal(obs, [1.0, 2.0])


def test_dlpack_objects_are_read_and_copied(make_env):
    array = np.array([3.0, 4.0], np.float32)
    obs = step_obs(make_env, DLPackOnly(array))
    assert np.array_equal(obs, array) and not np.shares_memory(obs, array)  # the producer may write again


def test_array_interface_objects_are_read_and_copied(make_env):
    array = np.array([3.0, 4.0], np.float32)
    obs = step_obs(make_env, ArrayInterfaceOnly(array))
    assert np.array_equal(obs, array) and not np.shares_memory(obs, array)


def test_python_lists_become_arrays(make_env):
    obs = step_obs(make_env, [1, 2])
    assert obs.dtype == np.float32 and np.array_equal(obs, [1.0, 2.0])


@pytest.mark.parametrize(
    "source", [np.array([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([1, 2])]
)
def test_box_observation_is_cast_to_the_space_dtype(make_env, source):
    obs = step_obs(make_env, source)
    assert obs.dtype == np.float32 and np.array_equal(obs, [1.0, 2.0])


BATCH_HINT = ": a leading batch of one; pass batched_model=True when the model always works on batches"


@pytest.mark.parametrize(
    "source, got",
    [(np.zeros(3), "(3,)"), (torch.zeros(1, 2), "(1, 2)" + BATCH_HINT), (1.0, "()"), (np.zeros((2, 2)), "(2, 2)")],
)
def test_box_observation_shape_error(make_env, source, got):
    with pytest.raises(ValueError) as raised:
        step_obs(make_env, source)
    assert str(raised.value) == f"observation must have shape (2,), got {got}"


DICT = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (2, 2), np.uint8), "vec": BOX2})


def test_dict_observation_per_key(make_env):
    obs = step_obs(make_env, {"image": torch.ones(2, 2, dtype=torch.int32), "vec": np.zeros(2), "extra": 1}, DICT)
    assert set(obs) == {"image", "vec"}
    assert obs["image"].dtype == np.uint8 and obs["vec"].dtype == np.float32
    assert DICT.contains(obs)


def test_discrete_observations_are_numpy_integer_scalars(make_env):
    """As Discrete.sample() gives them, and Gymnasium's and SB3's checkers expect."""
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check

    cells = gym.spaces.Discrete(5)
    mixed = gym.spaces.Dict({"cell": cells, "pos": BOX2})

    def step(m, s, a):
        nxt = (s + 1) % 5
        return {"state": nxt, "observation": nxt, "reward": float(nxt), "terminated": bool(nxt == 4)}

    env = make_env(None, cells, ACT1, transition_fn=step, initial_state=torch.tensor(0), initial_observation=0)
    obs, _ = env.reset(seed=0)
    assert type(obs) is np.int64 and obs == 0
    obs = env.step(np.zeros(1, np.float32))[0]
    assert type(obs) is np.int64 and obs == 1 and cells.contains(obs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium warns about a 0-d array observation for a Discrete space
        check_env(env, skip_render_check=True)
    sb3_check(env)
    dict_env = make_env(
        None, mixed, ACT1, initial_state=torch.tensor(0),
        transition_fn=lambda m, s, a: (s + 1, {"cell": s + 1, "pos": torch.zeros(2)}),
    )  # fmt: skip
    obs, _ = dict_env.reset(seed=0, options={"state": torch.tensor(2), "observation": {"cell": 2, "pos": np.ones(2)}})
    assert type(obs["cell"]) is np.int64 and obs["pos"].dtype == np.float32
    obs = dict_env.step(np.zeros(1, np.float32))[0]
    assert type(obs["cell"]) is np.int64 and obs["cell"] == 3
    torch_env = make_env(None, cells, ACT1, transition_fn=step, initial_state=torch.tensor(0), output="torch")
    torch_env.reset(seed=0)
    assert isinstance(torch_env.step(np.zeros(1, np.float32))[0], torch.Tensor)  # torch mode keeps tensors


def test_dict_observation_shape_error_names_the_key(make_env):
    with pytest.raises(ValueError, match=r"observation\['vec'\] must have shape \(2,\), got \(3,\)"):
        step_obs(make_env, {"image": np.zeros((2, 2)), "vec": np.zeros(3)}, DICT)


def test_dict_observation_missing_key(make_env):
    with pytest.raises(ValueError, match=r"observation lacks the key 'vec' that the Dict space requires"):
        step_obs(make_env, {"image": np.zeros((2, 2))}, DICT)


def test_dict_observation_must_be_a_mapping(make_env):
    with pytest.raises(TypeError, match="observation must be a mapping for a Dict space, got ndarray"):
        step_obs(make_env, np.zeros(2), DICT)


TUPLE = gym.spaces.Tuple((BOX2, gym.spaces.Discrete(4)))


def test_tuple_observation_per_item(make_env):
    obs = step_obs(make_env, [torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor(3)], TUPLE)
    assert isinstance(obs, tuple) and obs[0].dtype == np.float32 and obs[1].dtype == np.int64
    assert TUPLE.contains(obs)


def test_tuple_observation_errors(make_env):
    with pytest.raises(ValueError, match=r"observation\[0\] must have shape \(2,\), got \(1,\)"):
        step_obs(make_env, (np.zeros(1), 1), TUPLE)
    with pytest.raises(ValueError, match="observation must have 2 items for a Tuple space, got 3"):
        step_obs(make_env, (np.zeros(2), 1, 2), TUPLE)
    with pytest.raises(TypeError, match="observation must be a tuple for a Tuple space, got dict"):
        step_obs(make_env, {"a": 1}, TUPLE)


def test_unconstrained_space_converts_nested_leaves(make_env):
    space = gym.spaces.Text(5)
    obs = step_obs(make_env, {"a": [torch.ones(1), (torch.zeros(2),)]}, space)
    assert isinstance(obs["a"], list) and isinstance(obs["a"][0], np.ndarray)
    assert isinstance(obs["a"][1], tuple) and isinstance(obs["a"][1][0], np.ndarray)


def received_action(make_env, space, action, **kwargs):
    model = Recorder(result=lambda s, a: ("s", OBS))
    env = make_env(model, BOX2, space, **kwargs)
    env.reset()
    env.step(action)
    return model.calls[0][1]


@pytest.mark.parametrize(
    "space, action, dtype",
    [
        (gym.spaces.Box(-1, 1, (2,), np.float32), [0.5, 0.25], torch.float32),
        (gym.spaces.Box(-1, 1, (2,), np.float64), np.array([0.5, 0.25], np.float32), torch.float64),
        (gym.spaces.Discrete(3), 2, torch.int64),
        (gym.spaces.Discrete(3), np.int64(1), torch.int64),
        (gym.spaces.MultiDiscrete([3, 4]), [2, 3], torch.int64),
        (gym.spaces.MultiBinary(3), np.array([1, 0, 1], np.int8), torch.int64),
    ],
)
def test_action_dtype_follows_the_space(make_env, space, action, dtype):
    # (fix) the reference made every action float32
    got = received_action(make_env, space, action)
    assert isinstance(got, torch.Tensor) and got.dtype == dtype and tuple(got.shape) == space.shape
    assert np.array_equal(got.numpy(), np.asarray(action))


def test_numpy_action_shares_memory_with_the_tensor(make_env):
    action = np.array([0.5, 0.25], np.float32)
    got = received_action(make_env, gym.spaces.Box(-1, 1, (2,), np.float32), action)
    assert got.data_ptr() == action.__array_interface__["data"][0]


def test_readonly_numpy_action_is_copied_without_warning(make_env, recwarn):
    action = np.array([0.5], np.float32)
    action.flags.writeable = False
    got = received_action(make_env, ACT1, action)
    assert float(got[0]) == 0.5 and not [w for w in recwarn if "not writable" in str(w.message)]


def test_reversed_numpy_action(make_env):
    action = np.array([1.0, 2.0], np.float32)[::-1]
    got = received_action(make_env, gym.spaces.Box(-5, 5, (2,), np.float32), action)
    assert got.tolist() == [2.0, 1.0]


def test_tensor_action_is_detached_and_cast(make_env):
    action = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    got = received_action(make_env, ACT1, action)
    assert not got.requires_grad and got.dtype == torch.float32 and float(got[0]) == 0.5


def test_tensor_action_is_moved_to_device(make_env):
    got = received_action(make_env, ACT1, torch.tensor([0.5]), device="cpu")
    assert got.device.type == "cpu"


def test_action_transform_fn_output_goes_unchanged(make_env):
    marker = object()
    assert received_action(make_env, ACT1, [0.5], action_transform_fn=lambda m, a: marker) is marker


def test_torch_actions_false_passes_the_action_as_given(make_env):
    action = [0.5]
    assert received_action(make_env, ACT1, action, torch_actions=False) is action


@pytest.mark.parametrize(
    "action, got", [(np.zeros(3, np.float32), "(3,)"), (torch.zeros(2, 2), "(2, 2)"), ([], "(0,)")]
)
def test_action_element_count_error(make_env, action, got):
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    shape = got.replace("(", "[(]").replace(")", "[)]")
    with pytest.raises(
        ValueError, match=rf"action must hold 2 elements for Box\(-1.0, 1.0, \(2,\), float32\), got shape {shape}"
    ):
        received_action(make_env, space, action)


def test_action_element_count_checked_without_torch_actions(make_env):
    with pytest.raises(ValueError, match="action must hold 1 element for"):
        received_action(make_env, ACT1, [1.0, 2.0], torch_actions=False)


@pytest.mark.parametrize("action", [np.array([[0.1, 0.2]], np.float32), torch.tensor([[0.1], [0.2]])])
def test_action_with_the_right_count_is_reshaped(make_env, action):
    got = received_action(make_env, gym.spaces.Box(-1, 1, (2,), np.float32), action)
    assert tuple(got.shape) == (2,)


@pytest.mark.parametrize("action", [3, -1, np.int64(7), torch.tensor(3)])
def test_discrete_range(make_env, action):
    with pytest.raises(ValueError, match=r"action .* is outside Discrete\(3\) \(valid: 0 to 2\)"):
        received_action(make_env, gym.spaces.Discrete(3), action)


def test_discrete_with_start(make_env):
    space = gym.spaces.Discrete(3, start=5)
    assert int(received_action(make_env, space, 7)) == 7
    with pytest.raises(ValueError, match=r"action 4 is outside Discrete\(3, start=5\) \(valid: 5 to 7\)"):
        received_action(make_env, space, 4)


def test_box_bounds_are_not_enforced(make_env):
    assert float(received_action(make_env, ACT1, [5.0])[0]) == 5.0


def test_dict_action_space_passes_through(make_env):
    space = gym.spaces.Dict({"a": gym.spaces.Discrete(2)})
    action = {"a": 1}
    assert received_action(make_env, space, action) is action


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_observations_and_actions(make_env):
    obs_tensor = torch.tensor([1.0, 2.0], device="cuda")
    model = Recorder(result=lambda s, a: ("s", obs_tensor, torch.tensor(0.5, device="cuda")))
    env = make_env(model, BOX2, ACT1, device="cuda")
    env.reset()
    obs, reward, *_ = env.step(np.array([0.5], np.float32))
    assert isinstance(obs, np.ndarray) and np.array_equal(obs, [1.0, 2.0]) and reward == 0.5
    assert model.calls[0][1].device.type == "cuda"
