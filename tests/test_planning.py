"""Randomness that reproduces, snapshots, batched rollouts and start states from data."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from wmenv import Snapshot, WorldModelVectorEnv, repeat_state

BOX3 = gym.spaces.Box(-100.0, 100.0, (3,), np.float32)
ACT1 = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


class Noisy:
    """A stochastic model that draws from the generator it is handed."""

    def __init__(self):
        self.calls = 0

    def reset(self, seed=None, options=None, *, generator):
        state = torch.rand(3, generator=generator)
        return state, state

    def step(self, state, action, *, generator):
        self.calls += 1
        nxt = state + 0.1 * torch.randn(state.shape, generator=generator) + action.sum()
        return {"state": nxt, "observation": nxt, "reward": nxt.sum(), "terminated": nxt[0] > 50}


def trajectory(env, seed=None, steps=5, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    out = [obs.copy()]
    for _ in range(steps):
        out.append(env.step(np.full(env.action_space.shape, 0.5, np.float32))[0].copy())
    return np.stack(out)


def test_same_seed_same_trajectory_and_different_seeds_differ(make_env):
    env = make_env(Noisy(), BOX3, ACT1)
    a, b, c = trajectory(env, 1), trajectory(env, 1), trajectory(env, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    other = make_env(Noisy(), BOX3, ACT1)
    assert np.array_equal(trajectory(other, 1), a)


def test_unseeded_envs_draw_random_seeds_and_streams_continue(make_env):
    a, b = make_env(Noisy(), BOX3, ACT1), make_env(Noisy(), BOX3, ACT1)
    assert not np.array_equal(trajectory(a), trajectory(b))
    seeded = make_env(Noisy(), BOX3, ACT1)
    first = trajectory(seeded, 4)
    assert not np.array_equal(trajectory(seeded), first)  # reset() without a seed continues the stream
    assert torch.equal(
        make_env(Noisy(), BOX3, ACT1, seed=4).generator.get_state(), torch.Generator().manual_seed(4).get_state()
    )


def test_check_env_passes_on_a_stochastic_model(make_env):
    env = make_env(Noisy(), BOX3, ACT1, max_episode_steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def test_adapters_declaring_generator_receive_it_and_others_do_not(make_env):
    seen = {}

    def reset_fn(model, seed, options, *, generator):
        seen["reset"] = generator
        return torch.zeros(3), torch.zeros(3)

    def transition_fn(model, state, action, *, generator):
        seen["step"] = generator
        return state, state

    def reward_fn(model, state, obs, action, *, generator):
        seen["reward"] = generator
        return 0.0

    def terminal_fn(model, state, obs, action, generator=None):  # not keyword-only: not given
        seen["terminal"] = generator
        return False

    env = make_env(
        None, BOX3, ACT1, reset_fn=reset_fn, transition_fn=transition_fn, reward_fn=reward_fn, terminal_fn=terminal_fn
    )
    env.reset(seed=0)
    env.step(np.zeros(1, np.float32))
    assert seen["reset"] is seen["step"] is seen["reward"] is env.generator and seen["terminal"] is None


def test_module_forward_with_generator(make_env):
    class Module(torch.nn.Module):
        def forward(self, state, action, *, generator):
            nxt = state + torch.rand(3, generator=generator)
            return nxt, nxt

    env = make_env(Module(), BOX3, ACT1, initial_state=torch.zeros(3), initial_observation=torch.zeros(3))
    assert np.array_equal(trajectory(env, 3), trajectory(env, 3))


def test_vector_env_reproduces_across_partial_resets(backend):
    class Batched:
        def reset(self, seed=None, options=None, *, generator):
            state = torch.rand(len(options["reset_mask"]), 3, generator=generator)
            return state, state

        def step(self, state, action, *, generator):
            nxt = state + torch.rand(state.shape, generator=generator)
            return {"state": nxt, "observation": nxt, "terminated": nxt[:, 0] > 3}

    def run(seed):
        env = WorldModelVectorEnv(Batched(), 4, BOX3, ACT1, backend=backend)
        obs, _ = env.reset(seed=seed)
        out = [obs.copy()]
        for _ in range(10):
            out.append(env.step(np.zeros((4, 1), np.float32))[0].copy())
        return np.stack(out)

    assert np.array_equal(run(5), run(5)) and not np.array_equal(run(5), run(6))


# Snapshots.


def test_snapshot_replays_bit_for_bit(make_env):
    env = make_env(Noisy(), BOX3, ACT1, max_episode_steps=50)
    env.reset(seed=0)
    env.step(np.zeros(1, np.float32))
    snap = env.get_state()
    assert isinstance(snap, Snapshot)
    first = [env.step(np.full(1, 0.3, np.float32)) for _ in range(4)]
    env.set_state(snap)
    again = [env.step(np.full(1, 0.3, np.float32)) for _ in range(4)]
    for (o1, r1, *_, i1), (o2, r2, *_, i2) in zip(first, again):
        assert np.array_equal(o1, o2) and r1 == r2 and i1["elapsed_steps"] == i2["elapsed_steps"]
    with pytest.raises(TypeError, match="snapshot from get_state"):
        env.set_state({"state": 1})
    with pytest.raises(RuntimeError, match="reset"):
        make_env(Noisy(), BOX3, ACT1).get_state()


class InPlace:
    def __init__(self):
        self.h = torch.zeros(3)

    def reset(self, seed=None, options=None):
        self.h = torch.zeros(3)
        return self.h, self.h

    def step(self, state, action):
        state.add_(1.0)
        return state, state


def test_copy_snapshot_protects_against_in_place_models(make_env):
    env = make_env(InPlace(), BOX3, ACT1)
    env.reset(seed=0)
    shared, copied = env.get_state(), env.get_state(copy=True)
    env.step(np.zeros(1, np.float32))
    assert shared.state[0].item() == 1.0 and copied.state[0].item() == 0.0
    for _ in range(2):  # a copied snapshot can be restored again and again
        env.set_state(copied)
        assert env.step(np.zeros(1, np.float32))[0][0] == 1.0


def test_vector_snapshot_replays_across_an_autoreset(backend):
    class Ends:
        def reset(self, seed=None, options=None, *, generator):
            state = torch.rand(len(options["reset_mask"]), 3, generator=generator)
            return state, state

        def step(self, state, action, *, generator):
            nxt = state + torch.rand(state.shape, generator=generator)
            done = torch.zeros(state.shape[0], dtype=torch.bool)
            done[0] = True
            return {"state": nxt, "observation": nxt, "reward": nxt[:, 1], "terminated": done}

    env = WorldModelVectorEnv(Ends(), 3, BOX3, ACT1, backend=backend)
    env.reset(seed=0)
    env.step(np.zeros((3, 1), np.float32))  # env 0 ends: the next step resets it
    snap = env.get_state()
    assert snap.autoreset.tolist() == [True, False, False]
    first = [env.step(np.zeros((3, 1), np.float32)) for _ in range(3)]
    env.set_state(snap)
    again = [env.step(np.zeros((3, 1), np.float32)) for _ in range(3)]
    for a, b in zip(first, again):
        assert all(np.array_equal(x, y) for x, y in zip(a[:4], b[:4]))


def test_reset_from_a_given_state_skips_the_reset_adapter(make_env):
    model = Noisy()
    calls = []
    env = make_env(model, BOX3, ACT1, reset_fn=lambda m, s, o: calls.append(1) or (torch.ones(3), torch.ones(3)))
    obs, _ = env.reset(options={"state": torch.full((3,), 2.0)})
    assert calls == [] and obs.tolist() == [2.0, 2.0, 2.0] and env.state[0].item() == 2.0
    obs, _ = env.reset(options={"state": "latent", "observation": np.zeros(3, np.float64)})
    assert env.state == "latent" and obs.dtype == np.float32


def test_repeat_state():
    state = {"h": torch.arange(3.0), "z": (np.ones(2), 1.5), "name": "x"}
    batched = repeat_state(state, 4)
    assert batched["h"].shape == (4, 3) and batched["z"][0].shape == (4, 2) and batched["z"][1].tolist() == [1.5] * 4
    assert batched["name"] == "x"
    batched["h"][0, 0] = 99
    assert state["h"][0] == 0 and batched["h"][1, 0] == 0  # copies, not views
    with pytest.raises(ValueError, match="positive int"):
        repeat_state(state, 0)


# Batched rollouts.


class Counted:
    """state + action each step; reward = the new state's first entry; ends when it passes 2."""

    def __init__(self):
        self.calls = 0

    def reset(self, seed=None, options=None):
        state = torch.zeros(len(options["reset_mask"]), 3)
        return state, state

    def step(self, state, action):
        self.calls += 1
        nxt = state + action
        return {"state": nxt, "observation": nxt, "reward": nxt[:, 0], "terminated": nxt[:, 0] > 2}


def test_rollout_one_model_call_per_step_and_masked_rewards(backend):
    model = Counted()
    env = WorldModelVectorEnv(model, 2, BOX3, ACT1, backend=backend, max_episode_steps=100)
    env.reset(seed=0)
    env.step(np.zeros((2, 1), np.float32))
    before = (env.state.clone(), env.elapsed_steps, env._autoreset.copy(), env.generator.get_state())
    model.calls = 0
    actions = np.zeros((5, 2, 1), np.float32)
    actions[:, 0] = 1.0  # rollout 0: 1, 2, 3 (terminates), 4, 5; rollout 1 stays at 0
    result = env.rollout(actions, repeat_state(torch.zeros(3), 2), discount=0.5)
    assert model.calls == 5
    assert result.observations.shape == (5, 2, 3) and result.rewards.shape == (5, 2)
    assert result.rewards[:, 0].tolist() == [1.0, 2.0, 3.0, 0.0, 0.0]
    assert result.terminated[:, 0].tolist() == [False, False, True, True, True]
    assert result.returns.tolist() == [1.0 + 0.5 * 2.0 + 0.25 * 3.0, 0.0]
    assert torch.equal(env.state, before[0]) and np.array_equal(env.elapsed_steps, before[1])
    assert np.array_equal(env._autoreset, before[2]) and torch.equal(env.generator.get_state(), before[3])
    assert env.rollout(actions, repeat_state(torch.zeros(3), 2)).returns.tolist() == [6.0, 0.0]
    with pytest.raises(ValueError, match=r"actions must have shape \(horizon, 2, 1\)"):
        env.rollout(np.zeros((5, 3, 1)), repeat_state(torch.zeros(3), 2))


def test_rollout_one_call_path_matches_the_long_way(backend):
    grads = []

    def transition(model, state, action):
        grads.append(torch.is_grad_enabled())
        nxt = state + action.float().reshape(-1, 1)
        return {"state": nxt, "observation": nxt, "reward": nxt[:, 0] * 2, "terminated": nxt[:, 1] > 3}

    def make(space):
        return WorldModelVectorEnv(
            None,
            3,
            BOX3,
            space,
            backend=backend,
            transition_fn=transition,
            initial_state=torch.zeros(3, 3),
            max_episode_steps=2,
        )

    for space, actions in (
        (ACT1, np.linspace(-1, 1, 4 * 3, dtype=np.float32).reshape(4, 3, 1)),
        (gym.spaces.Discrete(3), np.array([[0, 1, 2]] * 4)),
    ):
        fast, slow = make(space), make(space)
        slow._plan = None  # the long way
        assert fast._plan is not None
        for env in (fast, slow):
            env.reset(seed=0)
            env.step(actions[0])
        start = repeat_state(torch.ones(3), 3)
        got = [env.rollout(actions, start, discount=0.9) for env in (fast, slow)]
        for field in ("observations", "rewards", "terminated", "returns"):
            assert np.array_equal(getattr(got[0], field), getattr(got[1], field)), field
        if space is not ACT1:
            with pytest.raises(ValueError, match="outside Discrete"):
                fast.rollout(np.full((2, 3), 5), start)
    assert not any(grads) and torch.is_grad_enabled()


# Start states from real data.


def test_data_driven_resets_reproduce_under_a_seed(make_env):
    data = np.arange(50, dtype=np.float32).reshape(50, 1).repeat(3, axis=1)
    encoded = []

    def encode(model, observations):
        encoded.append(observations)
        return torch.as_tensor(observations) * 10

    env = make_env(None, BOX3, ACT1, transition_fn=lambda m, s, a: (s, s), start_data=data, encode_fn=encode)
    obs, info = env.reset(seed=3)
    again, info2 = env.reset(seed=3)
    assert np.array_equal(obs, again) and info["start_index"] == info2["start_index"]
    assert np.array_equal(obs, data[info["start_index"]]) and env.state[0].item() == obs[0] * 10
    starts = {env.reset()[1]["start_index"] for _ in range(20)}
    assert len(starts) > 3


def test_data_driven_windows_with_actions(make_env):
    data = {
        "observations": torch.arange(20.0).reshape(10, 2).repeat(1, 1)[:, :1].repeat(1, 3),
        "actions": torch.arange(10.0).reshape(10, 1),
    }
    seen = {}

    def encode(model, observations, actions):
        seen["obs"], seen["act"] = observations, actions
        return observations[-1]

    env = make_env(
        None, BOX3, ACT1, transition_fn=lambda m, s, a: (s, s), start_data=data, encode_fn=encode, start_context=4
    )
    obs, info = env.reset(seed=0)
    i = info["start_index"]
    assert seen["obs"].shape == (4, 3) and seen["act"].shape == (4, 1) and 3 <= i <= 9
    assert seen["act"][:, 0].tolist() == [float(j) for j in range(i - 3, i + 1)]
    assert np.array_equal(obs, data["observations"][i].numpy())
    with pytest.raises(ValueError, match="fewer than start_context=11"):
        make_env(None, BOX3, ACT1, transition_fn=lambda m, s, a: (s, s), start_data=data, start_context=11)


@pytest.mark.parametrize("data", [np.arange(60.0).reshape(20, 3), torch.arange(60.0).reshape(20, 3)])
def test_torch_output_merges_start_data_into_partial_resets(backend, data):
    """NumPy (float64) or tensor start data, merged into torch-mode observations by autoresets and masks."""
    env = WorldModelVectorEnv(
        torch.nn.Identity(), 4, BOX3, ACT1, backend=backend, output="torch", max_episode_steps=2,
        transition_fn=lambda m, s, a: (s + 1000, s + 1000), start_data=data,
    )  # fmt: skip
    obs, info = env.reset(seed=0)
    rows = torch.as_tensor(np.asarray(data), dtype=torch.float32)
    assert torch.equal(obs, rows[torch.from_numpy(info["start_index"])])
    for _ in range(2):
        obs, _, _, truncated, _ = env.step(torch.zeros(4, 1))
    assert truncated.all() and obs.dtype == torch.float32
    obs, _, _, _, info = env.step(torch.zeros(4, 1))  # the autoreset step: every env starts from the data
    assert isinstance(obs, torch.Tensor) and torch.equal(obs, rows[torch.from_numpy(info["start_index"])])
    before = obs.clone()
    mask = np.array([True, False, True, False])
    obs, info = env.reset(options={"reset_mask": mask})
    assert torch.equal(obs[~torch.from_numpy(mask)], before[~torch.from_numpy(mask)])
    assert torch.equal(obs[torch.from_numpy(mask)], rows[torch.from_numpy(info["start_index"][mask])])
    assert env.step(torch.zeros(4, 1))[0].dtype == torch.float32


def test_snapshots_replay_the_observation_samples_of_later_resets(backend):
    """A default reset without initial_observation samples the observation
    space (each part of a Dict from its own generator): a snapshot restores
    those generators, so a replay through later resets samples the same."""
    from wmenv import WorldModelEnv

    space = gym.spaces.Dict({"x": BOX3, "k": gym.spaces.Discrete(5)})

    def step(m, s, a):
        return {"state": s + 1, "observation": {"x": (s + 1).float(), "k": torch.tensor(0)}}

    def run(env, steps):
        out = []
        for _ in range(steps):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            out.append(obs)
            if terminated or truncated:
                out.append(env.reset()[0])
        return out

    env = WorldModelEnv(
        None, space, ACT1, transition_fn=step, initial_state=torch.zeros(3), max_episode_steps=2, backend=backend
    )
    env.reset(seed=0)
    snap = env.get_state(copy=True)
    first = run(env, 5)
    env.set_state(snap)
    again = run(env, 5)
    assert len(first) == 7 and [o["k"] for o in first] == [o["k"] for o in again]
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(first, again))
    vector = WorldModelVectorEnv(
        None, 3, BOX3, ACT1, transition_fn=lambda m, s, a: s + 1, initial_state=torch.zeros(3, 3),
        max_episode_steps=2, backend=backend,
    )  # fmt: skip
    vector.reset(seed=0)
    snap = vector.get_state()
    first = [vector.step(np.zeros((3, 1), np.float32))[0].copy() for _ in range(5)]  # autoresets sample the space
    vector.set_state(snap)
    assert all(
        np.array_equal(a, b) for a, b in zip(first, [vector.step(np.zeros((3, 1), np.float32))[0] for _ in range(5)])
    )


def test_partial_resets_draw_only_for_the_masked_envs(backend):
    data = torch.arange(300.0).reshape(100, 3)
    calls = []

    def encode(model, observations):
        calls.append(observations.shape[0])
        return observations.clone()

    def step(model, state, action):
        done = torch.zeros(state.shape[0], dtype=torch.bool)
        done[1] = True
        return {"state": state + 1000, "observation": state + 1000, "terminated": done}

    def run():
        env = WorldModelVectorEnv(
            None,
            4,
            gym.spaces.Box(-1e6, 1e6, (3,), np.float32),
            ACT1,
            transition_fn=step,
            start_data=data,
            encode_fn=encode,
            backend=backend,
        )
        obs, info = env.reset(seed=7)
        out = [obs.copy()]
        for _ in range(3):
            out.append(env.step(np.zeros((4, 1), np.float32))[0].copy())
        return np.stack(out)

    first = run()
    assert calls == [4, 1]  # the full reset, then one call for env 1's partial reset
    assert np.array_equal(first, run())
    # env 1 restarted from data at step 2; the others kept stepping
    assert first[2, 1, 0] < 300 and first[2, 0, 0] >= 1000
