"""WorldModelVectorEnv, checked against gymnasium's SyncVectorEnv."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from wmenv import WorldModelEnv, WorldModelVectorEnv
from wmenv.vector import merge_by_mask

OBS = gym.spaces.Box(-100.0, 100.0, (2,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
N = 4


class Counter:
    """Env i counts steps and terminates after i + 2 of them; state rows are
    [count, env id]. Works batched (state (n, 2)) and single (state (2,))."""

    def __init__(self, num_envs=None, env_id=0):
        self.num_envs = num_envs
        self.env_id = env_id
        self.calls = 0
        self.resets = []

    def reset(self, seed=None, options=None):
        self.resets.append(None if options is None else options.get("reset_mask"))
        if self.num_envs is None:
            state = torch.tensor([0.0, self.env_id])
        else:
            state = torch.stack([torch.zeros(self.num_envs), torch.arange(self.num_envs, dtype=torch.float32)], 1)
        return state, state.clone()

    def step(self, state, action):
        self.calls += 1
        count = state[..., 0] + 1
        ident = state[..., 1]
        nxt = torch.stack([count, ident], -1)
        reward = count + 0.5 * ident + action.reshape(count.shape).double()
        return {"state": nxt, "observation": nxt, "reward": reward, "terminated": count >= ident + 2}


def make_vec(make, backend, mode=AutoresetMode.NEXT_STEP, n=N, **kwargs):
    kwargs.setdefault("max_episode_steps", 4)
    return make(Counter(n), n, OBS, ACT, backend=backend, autoreset_mode=mode, **kwargs)


def make_sync(backend, mode, n=N):
    fns = [
        lambda i=i: WorldModelEnv(
            Counter(env_id=i), OBS, ACT, backend=backend, max_episode_steps=4, info_model_state=False
        )
        for i in range(n)
    ]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


def test_is_a_gymnasium_vector_env(backend):
    env = make_vec(WorldModelVectorEnv, backend)
    assert isinstance(env, gym.vector.VectorEnv)
    assert env.num_envs == N and env.single_observation_space is OBS and env.single_action_space is ACT
    assert env.observation_space == gym.vector.utils.batch_space(OBS, N)
    assert env.action_space == gym.vector.utils.batch_space(ACT, N)
    assert env.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    same = make_vec(WorldModelVectorEnv, backend, AutoresetMode.SAME_STEP)
    assert same.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert WorldModelVectorEnv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_num_envs_is_validated(backend, bad):
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        WorldModelVectorEnv(Counter(2), bad, OBS, ACT, backend=backend)


def test_autoreset_mode_is_validated(backend):
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        WorldModelVectorEnv(Counter(2), 2, OBS, ACT, backend=backend, autoreset_mode="sometimes")
    env = WorldModelVectorEnv(Counter(2), 2, OBS, ACT, backend=backend, autoreset_mode="SameStep")
    assert env.autoreset_mode is AutoresetMode.SAME_STEP


def test_shared_validation(backend):
    with pytest.raises(TypeError, match="observation_space must be a gymnasium.spaces.Space"):
        WorldModelVectorEnv(Counter(2), 2, "box", ACT, backend=backend)
    with pytest.raises(ValueError, match="max_episode_steps"):
        WorldModelVectorEnv(Counter(2), 2, OBS, ACT, backend=backend, max_episode_steps=0)
    with pytest.raises(TypeError, match="cannot find a transition"):
        WorldModelVectorEnv(object(), 2, OBS, ACT, backend=backend)


def test_one_model_call_per_step_and_batched_results(backend):
    env = make_vec(WorldModelVectorEnv, backend, n=8, max_episode_steps=None)
    obs, info = env.reset(seed=0)
    assert obs.shape == (8, 2) and obs.dtype == np.float32
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(np.zeros((8, 1), np.float32))
    assert env.world_model.calls == 3
    assert reward.dtype == np.float32 and reward.shape == (8,)
    assert terminated.dtype == np.bool_ and terminated.shape == (8,) and truncated.dtype == np.bool_
    assert isinstance(obs, np.ndarray) and obs.shape == (8, 2)
    assert info["elapsed_steps"].tolist() == [0, 3, 3, 3, 3, 3, 3, 3]  # env 0 ended at 2, reset at 3


def test_observation_is_zero_copy_without_a_merge(backend):
    made = []

    def step(model, state, action):
        out = torch.zeros(3, 2)
        made.append(out.data_ptr())
        return state, out, torch.zeros(3)

    env = WorldModelVectorEnv(
        None,
        3,
        OBS,
        ACT,
        transition_fn=step,
        backend=backend,
        initial_state=torch.zeros(3, 2),
        initial_observation=torch.zeros(3, 2),
    )
    env.reset()
    obs = env.step(np.zeros((3, 1), np.float32))[0]
    assert obs.__array_interface__["data"][0] == made[0]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"reward": torch.zeros(3)}, r"reward must hold 4 values, one per env \(shape \(4,\)\), got shape \(3,\)"),
        (
            {"reward": torch.zeros(4), "terminated": np.zeros((2, 3), bool)},
            r"terminated must hold 4 values, one per env \(shape \(4,\)\), got shape \(2, 3\)",
        ),
        (
            {"reward": torch.zeros(4), "observation": torch.zeros(3, 2)},
            r"observation must have shape \(4, 2\), got \(3, 2\)",
        ),
        ({"reward": None, "observation": torch.zeros(4, 2)}, None),
    ],
)
def test_bad_batch_shapes(backend, bad, message):
    def step(model, state, action):
        return {"state": state, "observation": torch.zeros(4, 2), **bad}

    env = WorldModelVectorEnv(
        None,
        4,
        OBS,
        ACT,
        transition_fn=step,
        backend=backend,
        initial_state=torch.zeros(4, 2),
        initial_observation=np.zeros((4, 2)),
    )
    env.reset()
    if message is None:
        assert env.step(np.zeros((4, 1), np.float32))[1].tolist() == [0.0] * 4
        return
    with pytest.raises(ValueError, match=message):
        env.step(np.zeros((4, 1), np.float32))
    assert env.elapsed_steps.tolist() == [0] * 4


def test_reward_and_reward_fn_shapes(backend):
    env = WorldModelVectorEnv(
        None,
        4,
        OBS,
        ACT,
        backend=backend,
        initial_state=torch.zeros(4, 2),
        transition_fn=lambda m, s, a: (s, s),
        reward_fn=lambda m, s, o, a: torch.ones(4, 1),
        terminal_fn=lambda m, s: s[:, 0] > -1,
    )
    env.reset()
    _, reward, terminated, truncated, _ = env.step(np.zeros((4, 1), np.float32))
    assert reward.tolist() == [1.0] * 4 and terminated.all() and not truncated.any()


def actions(n, t):
    return np.full((n, 1), 0.25 * (t % 3), np.float32)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_matches_sync_vector_env(backend, mode):
    ours = make_vec(WorldModelVectorEnv, backend, mode)
    theirs = make_sync(backend, mode)
    a_obs, _ = ours.reset(seed=1)
    b_obs, _ = theirs.reset(seed=1)
    assert np.array_equal(a_obs, b_obs)
    for t in range(12):
        a = ours.step(actions(N, t))
        b = theirs.step(actions(N, t))
        assert np.array_equal(a[0], b[0]), (t, a[0], b[0])
        assert np.allclose(a[1], b[1]), (t, a[1], b[1])
        assert np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3]), t
        if mode is AutoresetMode.SAME_STEP:
            assert ("final_obs" in a[4]) == ("final_obs" in b[4]), t
            if "final_obs" in b[4]:
                assert np.array_equal(a[4]["_final_obs"], b[4]["_final_obs"])
                assert np.array_equal(a[4]["_final_info"], b[4]["_final_info"])
                for i in np.flatnonzero(b[4]["_final_obs"]):
                    assert np.array_equal(a[4]["final_obs"][i], b[4]["final_obs"][i])
                for key in ("elapsed_steps", "_elapsed_steps"):
                    assert np.array_equal(a[4]["final_info"][key], b[4]["final_info"][key])


def test_disabled_matches_sync_vector_env_with_manual_resets(backend):
    ours = make_vec(WorldModelVectorEnv, backend, AutoresetMode.DISABLED)
    theirs = make_sync(backend, AutoresetMode.DISABLED)
    ours.reset(seed=0)
    theirs.reset(seed=0)
    for t in range(10):
        a = ours.step(actions(N, t))
        b = theirs.step(actions(N, t))
        for x, y in zip(a[:4], b[:4]):
            assert np.allclose(x, y), t
        done = a[2] | a[3]
        if done.any():
            ra, _ = ours.reset(options={"reset_mask": done.copy()})
            rb, _ = theirs.reset(options={"reset_mask": done.copy()})
            assert np.array_equal(ra, rb)


def test_disabled_refuses_to_step_ended_envs(backend):
    env = make_vec(WorldModelVectorEnv, backend, AutoresetMode.DISABLED)
    env.reset()
    env.step(actions(N, 0))
    env.step(actions(N, 0))  # env 0 ends here
    with pytest.raises(RuntimeError, match=r"envs \[0\] have ended"):
        env.step(actions(N, 0))


def test_partial_reset_merges_state_and_observation_leaves(backend):
    seen = []

    def reset_fn(model, seed, options):
        seen.append(options["reset_mask"].copy())
        k = len(seen)
        state = {"h": torch.full((3, 2), float(k)), "pos": (np.full((3,), k, np.int64),)}
        return state, {"vec": torch.full((3, 2), float(k)), "img": np.full((3, 1, 2), k, np.uint8)}, {}

    space = gym.spaces.Dict({"vec": OBS, "img": gym.spaces.Box(0, 255, (1, 2), np.uint8)})
    env = WorldModelVectorEnv(
        None, 3, space, ACT, reset_fn=reset_fn, transition_fn=lambda m, s, a: (s, None), backend=backend
    )
    obs, _ = env.reset()
    assert seen[0].tolist() == [True, True, True]
    mask = np.array([False, True, False])
    obs, _ = env.reset(options={"reset_mask": mask})
    assert seen[1].tolist() == [False, True, False]
    assert obs["vec"][:, 0].tolist() == [1.0, 2.0, 1.0] and obs["img"][:, 0, 0].tolist() == [1, 2, 1]
    assert obs["img"].dtype == np.uint8
    assert env.state["h"][:, 0].tolist() == [1.0, 2.0, 1.0]
    assert env.state["pos"][0].tolist() == [1, 2, 1]


def test_partial_reset_resets_counters_of_masked_envs_only(backend):
    env = make_vec(WorldModelVectorEnv, backend, AutoresetMode.DISABLED, max_episode_steps=None)
    env.reset()
    env.step(actions(N, 0))
    env.reset(options={"reset_mask": np.array([False, False, True, False])})
    assert env.elapsed_steps.tolist() == [1, 1, 0, 1]
    assert env.world_model.resets[-1].tolist() == [False, False, True, False]


@pytest.mark.parametrize(
    "mask, error, message",
    [
        ([True, False, True, True], TypeError, "must be a numpy array"),
        (np.ones(3, bool), ValueError, r"must have shape \(4,\)"),
        (np.ones(4, int), TypeError, "must have dtype bool"),
        (np.zeros(4, bool), ValueError, "at least one True"),
    ],
)
def test_reset_mask_is_validated(backend, mask, error, message):
    env = make_vec(WorldModelVectorEnv, backend)
    env.reset()
    with pytest.raises(error, match=message):
        env.reset(options={"reset_mask": mask})


def test_time_limits_per_env(backend):
    env = make_vec(WorldModelVectorEnv, backend, AutoresetMode.NEXT_STEP, n=6, max_episode_steps=4)
    env.reset()
    truncated_at = {}
    for t in range(1, 5):
        _, _, terminated, truncated, _ = env.step(actions(6, 0))
        for i in np.flatnonzero(truncated):
            truncated_at.setdefault(int(i), t)
    assert truncated_at == {2: 4, 3: 4, 4: 4, 5: 4}  # env 2 also terminates at 4


def test_merge_failure_leaves_env_unchanged(backend):
    def reset_fn(model, seed, options):
        return ("not a batch", torch.zeros(2, 2))

    env = WorldModelVectorEnv(
        None, 2, OBS, ACT, reset_fn=reset_fn, transition_fn=lambda m, s, a: (s, torch.ones(2, 2)), backend=backend
    )
    env.reset()
    before = env.state
    with pytest.raises(TypeError, match=r"cannot merge state \(a str\) by reset_mask"):
        env.reset(options={"reset_mask": np.array([True, False])})
    assert env.state is before


def test_discrete_actions_are_checked_per_env(backend):
    env = WorldModelVectorEnv(
        None,
        3,
        OBS,
        gym.spaces.Discrete(2),
        transition_fn=lambda m, s, a: (s, torch.zeros(3, 2)),
        initial_state=0,
        backend=backend,
    )
    env.reset()
    env.step(np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"action 2 of env 1 is outside Discrete\(2\)"):
        env.step(np.array([0, 2, 1]))


def test_actions_reach_the_model_batched(backend):
    seen = []
    env = WorldModelVectorEnv(
        None,
        3,
        OBS,
        gym.spaces.Discrete(4),
        transition_fn=lambda m, s, a: seen.append(a) or (s, torch.zeros(3, 2)),
        initial_state=0,
        backend=backend,
    )
    env.reset()
    env.step(np.array([0, 3, 1]))
    assert seen[0].dtype == torch.int64 and seen[0].tolist() == [0, 3, 1]


def test_pickle(backend):
    env = make_vec(WorldModelVectorEnv, backend)
    env.reset(seed=3)
    env.step(actions(N, 1))
    clone = pickle.loads(pickle.dumps(env))
    a = env.step(actions(N, 2))
    b = clone.step(actions(N, 2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_render_and_close(backend):
    class Closing(Counter):
        closed = 0

        def close(self):
            self.closed += 1

    model = Closing(2)
    env = WorldModelVectorEnv(
        model,
        2,
        OBS,
        ACT,
        backend=backend,
        render_mode="rgb_array",
        render_fn=lambda m, s: np.zeros((2, 4, 4, 3), np.uint8),
    )
    env.reset()
    assert env.render().shape == (2, 4, 4, 3)
    env.close()
    env.close()
    assert model.closed == 1


def test_merge_by_mask_unit():
    mask = np.array([True, False, True])
    assert merge_by_mask(mask, np.array([1, 2, 3]), np.array([7, 8, 9])).tolist() == [1, 8, 3]
    merged = merge_by_mask(mask, torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[7.0], [8.0], [9.0]]))
    assert merged[:, 0].tolist() == [1.0, 8.0, 3.0]
    assert merge_by_mask(mask, [np.zeros(3)], [np.ones(3)])[0].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="must return the full batch"):
        merge_by_mask(mask, np.zeros(2), np.ones(3))
    assert merge_by_mask(np.ones(3, bool), "anything", "old") == "anything"


class LSTMState:
    """DIAMOND-style state: frames (n, 2) and an LSTM's (h, c), each (1, n, 3)."""

    def reset(self, seed=None, options=None):
        n = len(options["reset_mask"])
        state = (torch.zeros(n, 2), (torch.zeros(1, n, 3), torch.zeros(1, n, 3)))
        return state, state[0]

    def step(self, state, action):
        frames, (h, c) = state
        done = torch.zeros(frames.shape[0], dtype=torch.bool)
        done[0] = True  # env 0 ends every step, the others never
        return {"state": (frames + 1, (h + 1, c + 1)), "observation": frames + 1, "terminated": done}


def test_partial_resets_with_a_declared_batch_axis(backend):
    axes = {"state[1][0]": 1, "state[1][1]": 1}
    env = WorldModelVectorEnv(LSTMState(), 3, OBS, ACT, batch_axes=axes, backend=backend)
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros((3, 1), np.float32))
    frames, (h, c) = env.state
    assert h[0, :, 0].tolist() == [1.0, 3.0, 3.0] and frames[:, 0].tolist() == [1.0, 3.0, 3.0]  # env 0 reset at step 2


def test_merge_error_names_the_leaf_shape_axis_and_num_envs(backend):
    env = WorldModelVectorEnv(LSTMState(), 3, OBS, ACT, backend=backend)
    env.reset(seed=0)
    env.step(np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError) as raised:
        env.step(np.zeros((3, 1), np.float32))
    assert str(raised.value) == (
        "cannot merge state[1][0] by reset_mask: it has shape (1, 3, 3), and its batch axis 0 should have 3 entries "
        "(num_envs=3); declare where its batch axis is with WorldModelVectorEnv(..., batch_axes={'state[1][0]': AXIS})"
    )
    with pytest.raises(TypeError, match="batch_axes must be an int or a dict"):
        WorldModelVectorEnv(LSTMState(), 3, OBS, ACT, batch_axes="1")
