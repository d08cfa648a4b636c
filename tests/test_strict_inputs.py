"""Partial-reset merges change only the masked envs, and wrong inputs are
refused at the earliest point with a ValueError that names the option or
value: batch axes, start-state batches, integer actions, snapshots, strings
posing as numbers, counters at their limit, discounts."""

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from wmenv import WorldModelEnv, WorldModelVectorEnv, _staging, repeat_state
from wmenv.autoreset import merge_by_mask

OBS = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
MASK = np.array([True, False])


# 4. Merges change only the masked envs.


def test_merge_keeps_the_old_dtype_of_envs_not_reset():
    old = np.array([1.5, 2.5])
    merged = merge_by_mask(MASK, np.array([7, 8], np.int64), old)
    assert merged.dtype == np.float64 and merged.tolist() == [7.0, 2.5]
    t = merge_by_mask(MASK, torch.tensor([7, 8]), torch.tensor([1.5, 2.5]))
    assert t.dtype == torch.float32 and t.tolist() == [7.0, 2.5]


def test_merge_refuses_a_lossy_dtype():
    with pytest.raises(ValueError, match=r"cannot merge state by reset_mask: the reset's dtype float64 cannot be cast"):
        merge_by_mask(MASK, np.array([0.5, 1.5]), np.array([1, 2], np.int64))


@pytest.mark.parametrize(
    "new, old, message",
    [
        (
            {"h": np.zeros(2)},
            {"h": np.ones(2), "c": np.ones(2)},
            r"state by reset_mask: the reset's keys \['h'\] differ from the current keys \['c', 'h'\]",
        ),
        (
            (np.zeros(2),),
            (np.ones(2), np.ones(2)),
            r"state by reset_mask: the reset gave 1 items, the value it replaces has 2",
        ),
        (np.zeros(2), torch.ones(2), r"state by reset_mask: the reset gave a array, the value it replaces is a tensor"),
        ({"h": np.zeros(2)}, (np.ones(2),), r"the reset gave a dict, the value it replaces is a sequence"),
    ],
)
def test_merge_refuses_another_structure(new, old, message):
    with pytest.raises(ValueError, match=message):
        merge_by_mask(MASK, new, old)


def test_a_partial_reset_that_drops_a_state_key_is_refused(backend):
    def reset(model, seed, options):
        if options["reset_mask"].all():
            return {"state": {"h": torch.zeros(2, 2), "c": torch.zeros(2, 2)}, "observation": torch.zeros(2, 2)}
        return {"state": {"h": torch.zeros(2, 2)}, "observation": torch.zeros(2, 2)}

    env = WorldModelVectorEnv(
        None, 2, OBS, ACT, backend=backend, reset_fn=reset, transition_fn=lambda m, s, a: (s, s["h"])
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"cannot merge state by reset_mask: the reset's keys"):
        env.reset(options={"reset_mask": MASK})


def test_a_numpy_reset_into_a_tensor_state_is_refused(backend):
    def reset(model, seed, options):
        return np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32)

    env = WorldModelVectorEnv(
        None, 2, OBS, ACT, backend=backend, reset_fn=reset, transition_fn=lambda m, s, a: (torch.ones(2, 2),) * 2
    )
    env.reset(seed=0)
    env.step(np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match=r"the reset gave a array, the value it replaces is a tensor"):
        env.reset(options={"reset_mask": MASK})


def test_an_int_reset_keeps_other_envs_float_state(backend):
    def reset(model, seed, options):
        return np.zeros((2, 2), np.int64), np.zeros((2, 2), np.float32)

    env = WorldModelVectorEnv(
        None,
        2,
        OBS,
        ACT,
        backend=backend,
        reset_fn=reset,
        transition_fn=lambda m, s, a: (s + 1.5, np.asarray(s + 1.5, np.float32)),
        torch_actions=False,
    )
    env.reset(seed=0)
    env.step(np.zeros((2, 1), np.float32))
    env.reset(options={"reset_mask": MASK})
    assert env.state.dtype == np.float64 and env.state[:, 0].tolist() == [0.0, 1.5]


# 6. Wrong inputs are refused at once, naming what is wrong.


def test_batch_axes_naming_no_leaf_is_refused(backend):
    env = WorldModelVectorEnv(
        None,
        2,
        OBS,
        ACT,
        backend=backend,
        batch_axes={"state['hc']": 1},
        initial_state={"h": torch.zeros(1, 2, 4)},
        initial_observation=np.zeros((2, 2), np.float32),
        transition_fn=lambda m, s, a: (s, torch.zeros(2, 2)),
    )
    with pytest.raises(ValueError, match=r"batch_axes names \"state\['hc'\]\", which is no leaf of the state"):
        env.reset(seed=0)


def test_encode_fn_with_the_wrong_batch_size_is_refused(backend):
    data = np.zeros((10, 2), np.float32)
    env = WorldModelVectorEnv(
        None,
        3,
        OBS,
        ACT,
        backend=backend,
        start_data=data,
        encode_fn=lambda m, obs, actions: torch.zeros(1, 2),  # one state for three draws
        transition_fn=lambda m, s, a: (s, s),
    )
    with pytest.raises(ValueError, match=r"a start-state draw for 3 envs gave state of shape \(1, 2\)"):
        env.reset(seed=0)


@pytest.mark.parametrize(
    "action, message",
    [
        ([5, 0], r"action \[5, 0\] is outside MultiDiscrete\(\[3 3\]\): entry 0 is 5 \(valid: 0 to 2\)"),
        ([0, -1], r"entry 1 is -1 \(valid: 0 to 2\)"),
        (np.array([2**63, 0], np.uint64), r"entry 0 is 9223372036854775808 \(valid: 0 to 2\)"),
        (torch.tensor([1, 3]), r"entry 1 is 3"),
    ],
)
def test_multi_discrete_actions_are_range_checked(backend, action, message):
    env = WorldModelEnv(
        None,
        OBS,
        gym.spaces.MultiDiscrete([3, 3]),
        backend=backend,
        initial_state=torch.zeros(2),
        transition_fn=lambda m, s, a: (s, s),
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_multi_discrete_start_and_multi_binary_ranges(backend):
    for space, good, bad, message in (
        (gym.spaces.MultiDiscrete([2, 2], start=[5, -1]), [6, 0], [4, 0], r"entry 0 is 4 \(valid: 5 to 6\)"),
        (gym.spaces.MultiBinary(3), [1, 0, 1], [1, 2, 0], r"entry 1 is 2 \(valid: 0 to 1\)"),
    ):
        env = WorldModelEnv(
            None, OBS, space, backend=backend, initial_state=torch.zeros(2), transition_fn=lambda m, s, a: (s, s)
        )
        env.reset(seed=0)
        env.step(np.array(good))
        with pytest.raises(ValueError, match=message):
            env.step(np.array(bad))


def test_vector_multi_discrete_actions_are_range_checked(backend):
    env = WorldModelVectorEnv(
        None,
        2,
        OBS,
        gym.spaces.MultiDiscrete([3, 3]),
        backend=backend,
        initial_state=torch.zeros(2, 2),
        transition_fn=lambda m, s, a: (s, s),
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"outside MultiDiscrete"):
        env.step(np.array([[0, 0], [0, 7]]))


@pytest.mark.parametrize("value", [2**70, 2**63, -(2**70)])
def test_huge_discrete_actions_are_out_of_range(backend, value):
    env = WorldModelEnv(
        None,
        OBS,
        gym.spaces.Discrete(3),
        backend=backend,
        initial_state=torch.zeros(2),
        transition_fn=lambda m, s, a: (s, s),
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action {value} is outside Discrete\(3\) \(valid: 0 to 2\)"):
        env.step(value)


def test_snapshots_of_another_env_are_refused(backend):
    def make(n):
        return WorldModelVectorEnv(
            None, n, OBS, ACT, backend=backend, initial_state=torch.zeros(n, 2), transition_fn=lambda m, s, a: (s, s)
        )

    three, four = make(3), make(4)
    single = WorldModelEnv(
        None, OBS, ACT, backend=backend, initial_state=torch.zeros(2), transition_fn=lambda m, s, a: (s, s)
    )
    for env in (three, four, single):
        env.reset(seed=0)
    with pytest.raises(ValueError, match=r"snapshot of a WorldModelVectorEnv with num_envs=4; this env is a "):
        three.set_state(four.get_state())
    with pytest.raises(
        ValueError, match=r"snapshot of a WorldModelVectorEnv with num_envs=3; this env is a WorldModelEnv"
    ):
        single.set_state(three.get_state())
    with pytest.raises(ValueError, match=r"snapshot of a WorldModelEnv; this env is a WorldModelVectorEnv"):
        three.set_state(single.get_state())


@pytest.mark.parametrize(
    "field, value",
    [("reward", "2"), ("terminated", "False"), ("truncated", "True"), ("reward", np.array(["1.5"]))],
)
def test_strings_are_not_numbers(backend, field, value):
    result = {"state": torch.zeros(2), "observation": torch.zeros(2), field: value}
    env = WorldModelEnv(
        None, OBS, ACT, backend=backend, initial_state=torch.zeros(2), transition_fn=lambda m, s, a: result
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"{field} must be a number or a one-element array of numbers"):
        env.step(np.zeros(1, np.float32))


def test_vector_strings_are_not_numbers(backend):
    env = WorldModelVectorEnv(
        None,
        2,
        OBS,
        ACT,
        backend=backend,
        initial_state=torch.zeros(2, 2),
        transition_fn=lambda m, s, a: {"state": s, "observation": s, "terminated": np.array(["False", "True"])},
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"terminated must hold numbers, one per env, got an array of dtype <U5"):
        env.step(np.zeros((2, 1), np.float32))


# 7. Counters cannot overflow.


def test_a_counter_at_its_limit_is_refused(core):
    with pytest.raises(ValueError, match=r"a step counter is at its largest value"):
        core.count_steps(np.array([0, np.iinfo(np.int64).max], np.int64), np.zeros(2, bool), np.zeros(2, bool), None)


def test_snapshot_counters_are_validated(backend):
    import dataclasses

    env = WorldModelVectorEnv(
        None, 2, OBS, ACT, backend=backend, initial_state=torch.zeros(2, 2), transition_fn=lambda m, s, a: (s, s)
    )
    env.reset(seed=0)
    snap = env.get_state()
    for bad in (np.array([0, np.iinfo(np.int64).max]), np.array([0, -1]), np.zeros(3, np.int64), [0, 0]):
        with pytest.raises(ValueError, match=r"the snapshot's step counters"):
            env.set_state(dataclasses.replace(snap, elapsed=np.asarray(bad) if not isinstance(bad, list) else bad))
    single = WorldModelEnv(
        None, OBS, ACT, backend=backend, initial_state=torch.zeros(2), transition_fn=lambda m, s, a: (s, s)
    )
    single.reset(seed=0)
    with pytest.raises(ValueError, match=r"the snapshot's step counter must be an int in \[0, 2\*\*62\)"):
        single.set_state(dataclasses.replace(single.get_state(), elapsed=2**63 - 1))


# 5. output="torch" follows the same rules.


def test_torch_output_snapshots_replay_the_autoreset_mask(backend):
    class Ends:
        def step(self, s, a):
            nxt = s + 1
            return {"state": nxt, "observation": nxt, "terminated": nxt[:, 0] >= torch.tensor([9.0, 2.0])}

    env = WorldModelVectorEnv(
        Ends(),
        2,
        OBS,
        ACT,
        backend=backend,
        output="torch",
        initial_state=torch.zeros(2, 2),
        initial_observation=torch.zeros(2, 2),
    )
    env.reset(seed=0)
    env.step(np.zeros((2, 1), np.float32))
    snap = env.get_state()
    env.step(np.zeros((2, 1), np.float32))  # env 1 ends
    first = env.step(np.zeros((2, 1), np.float32))[0].clone()  # env 1 reset
    env.set_state(snap)
    env.step(np.zeros((2, 1), np.float32))
    again = env.step(np.zeros((2, 1), np.float32))[0]
    assert torch.equal(first, again) and again[1, 0] == 0.0 and again[0, 0] == 3.0


def test_torch_output_start_data_resets_give_tensors(backend):
    env = WorldModelVectorEnv(
        None,
        2,
        OBS,
        ACT,
        backend=backend,
        output="torch",
        start_data=torch.arange(20, dtype=torch.float32).reshape(10, 2),
        transition_fn=lambda m, s, a: (s, s),
    )
    obs, info = env.reset(seed=0)
    assert isinstance(obs, torch.Tensor) and obs.shape == (2, 2)
    env.reset(options={"reset_mask": MASK})
    assert isinstance(env._obs, torch.Tensor)


# 8. Other accelerators are synchronised too.


def test_staging_synchronises_every_accelerator(monkeypatch):
    calls = []

    class Accelerator:
        @staticmethod
        def synchronize(device=None):
            calls.append(device)

    monkeypatch.setattr(torch, "accelerator", Accelerator, raising=False)
    _staging._synchronize(torch.device("cpu"))
    assert calls == []
    _staging._synchronize(torch.device("meta"))
    assert calls == [torch.device("meta")]


def test_non_cuda_copies_are_blocking():
    seen = []

    class Host:
        def copy_(self, source, non_blocking=False):
            seen.append(non_blocking)

    _staging._copy_non_blocking(Host(), torch.zeros(1))
    assert seen == [False]


# 9. Smaller seams.


def test_staging_refuses_self_containing_lists():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="more than 64 levels deep"):
        _staging.HostStager(predicate=lambda x: False).stage(loop)


def _same(model, state, action):
    return state, state


@pytest.mark.parametrize("clone", [pickle.loads, copy.deepcopy])
def test_the_shared_info_mask_stays_read_only_after_a_copy(backend, clone):
    env = WorldModelVectorEnv(None, 2, OBS, ACT, backend=backend, initial_state=torch.zeros(2, 2), transition_fn=_same)
    other = clone(pickle.dumps(env)) if clone is pickle.loads else clone(env)
    other.reset(seed=0)
    info = other.step(np.zeros((2, 1), np.float32))[4]
    assert not info["_elapsed_steps"].flags.writeable


def test_rollout_of_horizon_zero_has_the_spaces_layout(backend):
    space = gym.spaces.Dict({"pos": OBS, "img": gym.spaces.Box(0, 255, (3, 4, 4), np.uint8)})
    env = WorldModelVectorEnv(None, 2, space, ACT, backend=backend, transition_fn=lambda m, s, a: (s, s))
    out = env.rollout(np.zeros((0, 2, 1), np.float32), torch.zeros(2, 2))
    assert out.observations["pos"].shape == (0, 2, 2) and out.observations["img"].shape == (0, 2, 3, 4, 4)
    assert out.rewards.shape == (0, 2) and out.returns.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("discount", ["0.5", -1, float("nan"), 1.5, True])
def test_rollout_refuses_a_bad_discount(backend, discount):
    env = WorldModelVectorEnv(
        None, 2, OBS, ACT, backend=backend, initial_state=torch.zeros(2, 2), transition_fn=lambda m, s, a: (s, s)
    )
    with pytest.raises(ValueError, match=r"discount must be None or a number in \[0, 1\]"):
        env.rollout(np.zeros((2, 2, 1), np.float32), repeat_state(torch.zeros(2), 2), discount=discount)


def test_big_endian_box_actions_reach_the_model(backend):
    seen = []
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.dtype(">f4"))
    env = WorldModelEnv(
        None,
        OBS,
        space,
        backend=backend,
        initial_state=torch.zeros(2),
        transition_fn=lambda m, s, a: (seen.append(a), (s + a, s + a))[1],
    )
    env.reset(seed=0)
    obs = env.step(np.array([0.5, -0.5], ">f4"))[0]
    assert obs.tolist() == [0.5, -0.5] and seen[0].dtype == torch.float32


def test_same_step_final_observation_survives_a_buffer_model(backend):
    class Buffer:
        def __init__(self):
            self.out, self.calls = torch.zeros(2, 2), 0

        def step(self, s, a):
            self.calls += 1
            torch.add(s, 1, out=self.out)
            return {
                "state": self.out.clone(),
                "observation": self.out,
                "terminated": torch.tensor([self.calls == 2, False]),
            }

    env = WorldModelVectorEnv(
        Buffer(),
        2,
        OBS,
        ACT,
        backend=backend,
        autoreset_mode=AutoresetMode.SAME_STEP,
        initial_state=torch.zeros(2, 2),
    )
    env.reset(seed=0)
    env.step(np.zeros((2, 1), np.float32))
    final = env.step(np.zeros((2, 1), np.float32))[4]["final_obs"][0]
    for _ in range(3):
        env.step(np.zeros((2, 1), np.float32))
    assert final.tolist() == [2.0, 2.0]
