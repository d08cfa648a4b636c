"""Ensembles: member selection, uncertainty, penalty and halting, in both envs."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from wmenv import WorldModelEnv, WorldModelVectorEnv, repeat_state
from wmenv.ensemble import halt_threshold_from_data

E, N, D = 4, 3, 2
OBS = gym.spaces.Box(-1e3, 1e3, (D,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (D,), np.float32)
OFFSETS = torch.tensor([0.0, 1.0, 2.0, 4.0]).reshape(E, 1, 1)


class Gaussian(torch.nn.Module):
    """E members: member i predicts state + action + offset_i, with std (i+1)/10."""

    def __init__(self, std=True, batch=True):
        super().__init__()
        self.std, self.batch = std, batch

    def forward(self, state, action):
        offsets = OFFSETS if self.batch else OFFSETS.reshape(E, 1)
        mu = state.unsqueeze(0) + action.unsqueeze(0) + offsets
        out = {"observation": mu, "reward": mu[..., 0]}
        if self.std:
            out["std"] = (
                (torch.arange(E, dtype=torch.float32) + 1).reshape((E,) + (1,) * (mu.dim() - 1))
                / 10
                * (torch.ones_like(mu))
            )
        return out


def vector(backend, **kwargs):
    kwargs.setdefault("initial_state", torch.zeros(N, D))
    return WorldModelVectorEnv(Gaussian(), N, OBS, ACT, backend=backend, members=E, **kwargs)


def single(backend, **kwargs):
    kwargs.setdefault("initial_state", torch.zeros(D))
    return WorldModelEnv(Gaussian(batch=False), OBS, ACT, backend=backend, members=E, **kwargs)


ONES = np.ones((N, D), np.float32)


def test_random_member_per_env_per_step_matches_a_hand_draw(backend):
    env = vector(backend)
    env.reset(seed=3)
    obs, reward, _, _, info = env.step(ONES)
    g = torch.Generator().manual_seed(3)
    members = torch.randint(0, E, (N,), generator=g)
    noise = torch.randn((N, D), generator=g)
    mu = 1.0 + OFFSETS[members, 0]  # (N, 1)
    sigma = (members.float() + 1).reshape(N, 1) / 10
    assert info["member"].tolist() == members.tolist()
    np.testing.assert_allclose(obs, (mu + sigma * noise).numpy(), rtol=1e-6)
    np.testing.assert_allclose(reward, mu[:, 0].numpy(), rtol=1e-6)


def test_a_fixed_member_and_the_mean(backend):
    env = vector(backend, member=2)
    env.reset(seed=0)
    obs, reward, _, _, info = env.step(ONES)
    assert info["member"].tolist() == [2, 2, 2]
    mean = vector(backend, member="mean")
    mean.reset(seed=0)
    obs, reward, _, _, info = mean.step(ONES)
    assert info["member"].tolist() == [-1, -1, -1]
    np.testing.assert_allclose(obs, np.full((N, D), 1.0 + 7.0 / 4), rtol=1e-6)  # no sampling: the mean of means
    np.testing.assert_allclose(reward, np.full(N, 1.0 + 7.0 / 4), rtol=1e-6)


def test_a_state_that_is_the_observation_follows_the_sample(backend):
    """A state given as the observation itself takes the sampled observation,
    as a result without a state does; a state of its own is the member's."""
    model = Gaussian()
    for same in (True, False):

        def transition(m, s, a, same=same):
            out = model(s, a)
            out["state"] = out["observation"] if same else out["observation"].clone()
            return out

        env = WorldModelVectorEnv(
            None, N, OBS, ACT, backend=backend, members=E, member=2, transition_fn=transition,
            initial_state=torch.zeros(N, D),
        )  # fmt: skip
        env.reset(seed=0)
        obs = env.step(ONES)[0]
        assert not np.allclose(obs, 3.0)  # sampled: sigma is 0.3
        want = obs if same else np.full((N, D), 3.0, np.float32)  # member 2's mean: 0 + 1 + 2
        np.testing.assert_allclose(env.state.numpy(), want, rtol=1e-6)


def test_episode_members_hold_for_an_episode(backend):
    env = vector(backend, member="episode", max_episode_steps=3)
    env.reset(seed=1)
    seen = [env.step(ONES)[4]["member"].tolist() for _ in range(3)]
    assert seen[0] == seen[1] == seen[2]
    g = torch.Generator().manual_seed(1)
    assert seen[0] == torch.randint(0, E, (N,), generator=g).tolist()
    one = single(backend, member="episode")
    one.reset(seed=5)
    first = {one.step(np.ones(D, np.float32))[4]["member"] for _ in range(4)}
    assert len(first) == 1


@pytest.mark.parametrize("measure", ["max_std", "disagreement", "std_of_means"])
def test_uncertainty_formulas_against_numpy(backend, measure):
    env = vector(backend, member="mean", uncertainty=measure)
    env.reset(seed=0)
    info = env.step(ONES)[4]
    mu = (1.0 + OFFSETS.expand(E, N, D)).numpy()
    sigma = ((np.arange(E) + 1) / 10).reshape(E, 1, 1) * np.ones((E, N, D))
    if measure == "max_std":
        want = np.linalg.norm(sigma, axis=-1).max(axis=0)
    elif measure == "disagreement":
        want = np.max([np.linalg.norm(mu[i] - mu[j], axis=-1) for i in range(E) for j in range(E)], axis=0)
    else:
        want = np.linalg.norm(mu.std(axis=0), axis=-1)
    assert info["uncertainty"].dtype == np.float32 and info["uncertainty"].shape == (N,)
    np.testing.assert_allclose(info["uncertainty"], want, rtol=1e-5)
    one = single(backend, member="mean", uncertainty=measure)
    one.reset(seed=0)
    u = one.step(np.ones(D, np.float32))[4]["uncertainty"]
    assert isinstance(u, float) and u == pytest.approx(float(want[0]), rel=1e-5)


def test_penalty_and_halting(backend):
    env = vector(backend, member=0, uncertainty="disagreement", penalty=0.5)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(ONES)
    u = 4.0 * np.sqrt(D)  # members 0 and 3 differ by 4 in every dimension
    np.testing.assert_allclose(info["uncertainty"], u, rtol=1e-5)
    np.testing.assert_allclose(reward, 1.0 - 0.5 * u, rtol=1e-5)
    assert not terminated.any()
    halted = vector(backend, member=0, uncertainty="disagreement", halt_threshold=1.0, halt_reward=-7.0)
    halted.reset(seed=0)
    _, reward, terminated, _, _ = halted.step(ONES)
    assert terminated.all() and reward.tolist() == [-7.0] * N
    calm = vector(backend, member=0, uncertainty="disagreement", halt_threshold=100.0, halt_reward=-7.0)
    calm.reset(seed=0)
    assert not calm.step(ONES)[2].any()


def test_halting_autoresets_in_every_mode(backend):
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        env = vector(backend, member=0, uncertainty="disagreement", halt_threshold=1.0, autoreset_mode=mode)
        env.reset(seed=0)
        first = env.step(ONES)
        second = env.step(ONES)
        if mode is AutoresetMode.NEXT_STEP:
            assert first[2].all() and not second[2].any() and second[4]["elapsed_steps"].tolist() == [0] * N
        else:
            assert first[2].all() and "final_obs" in first[4] and env.elapsed_steps.tolist() == [0] * N


def test_seeds_and_snapshots_replay_bit_for_bit(backend):
    def run(env, seed):
        env.reset(seed=seed)
        return [env.step(ONES)[0].copy() for _ in range(5)]

    a, b = vector(backend), vector(backend)
    assert all(np.array_equal(x, y) for x, y in zip(run(a, 7), run(b, 7)))
    for member in ("random", "episode"):
        env = vector(backend, member=member)
        env.reset(seed=2)
        env.step(ONES)
        snap = env.get_state(copy=True)
        first = [env.step(ONES) for _ in range(3)]
        env.set_state(snap)
        again = [env.step(ONES) for _ in range(3)]
        for x, y in zip(first, again):
            assert np.array_equal(x[0], y[0]) and x[4]["member"].tolist() == y[4]["member"].tolist()


def test_rollout_propagates_each_candidate_through_its_member(backend):
    env = vector(backend, member="episode", uncertainty="disagreement")
    env.reset(seed=0)
    out = env.rollout(np.ones((4, N, D), np.float32), repeat_state(torch.zeros(D), N))
    assert out.observations.shape == (4, N, D) and np.isfinite(out.returns).all()


def test_a_list_of_members_is_stacked(backend):
    members = [lambda s, a, i=i: {"observation": s + a + i, "reward": (s + a + i)[..., 0]} for i in range(3)]
    env = WorldModelVectorEnv(
        members,
        N,
        OBS,
        ACT,
        backend=backend,
        members=3,
        member="mean",
        uncertainty="disagreement",
        initial_state=torch.zeros(N, D),
    )
    env.reset(seed=0)
    obs, _, _, _, info = env.step(ONES)
    np.testing.assert_allclose(obs, 2.0) and np.testing.assert_allclose(info["uncertainty"], 2.0 * np.sqrt(D))


def test_checkers_pass_on_an_ensemble_env(backend):
    env = single(backend, uncertainty="max_std", penalty=0.1)
    check_env(env, skip_render_check=True)
    sb3 = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3.check_env(single(backend, member="episode"), warn=True)


class Indexed(torch.nn.Module):
    """Gaussian's members, computing only the member each env was given."""

    def forward(self, state, action, *, member_index=None):
        full = Gaussian(batch=state.dim() == 2)(state, action)
        if member_index is None:
            return full
        if state.dim() == 1:
            return {k: v[member_index] for k, v in full.items()}
        rows = torch.arange(state.shape[0])
        return {k: v[member_index, rows] for k, v in full.items()}


@pytest.mark.parametrize("member", ["random", "episode", 3])
def test_a_member_index_model_computes_only_the_chosen_members(backend, member):
    seen = []

    class Spy(Indexed):
        def forward(self, state, action, *, member_index=None):
            seen.append(None if member_index is None else member_index.clone())
            return super().forward(state, action, member_index=member_index)

    for make, model in ((vector, Spy()), (single, Spy())):
        full = make(backend, member=member, seed=3)
        indexed = (
            WorldModelVectorEnv(model, N, OBS, ACT, backend=backend, members=E, member=member, seed=3,
                                initial_state=torch.zeros(N, D))
            if make is vector
            else WorldModelEnv(model, OBS, ACT, backend=backend, members=E, member=member, seed=3,
                               initial_state=torch.zeros(D))
        )  # fmt: skip
        action = ONES if make is vector else ONES[0]
        for env in (full, indexed):
            env.reset(seed=3)
        for _ in range(4):  # the same draws, the same Gaussian samples: the same trajectory
            a, b = full.step(action), indexed.step(action)
            np.testing.assert_array_equal(a[0], b[0])
            assert np.array_equal(a[1], b[1]) and np.array_equal(a[4]["member"], b[4]["member"])
        assert seen and all(i is not None and i.dtype == torch.int64 for i in seen)
        assert seen[-1].shape == ((N,) if make is vector else ())
        seen.clear()


def test_member_index_is_not_given_where_every_member_is_needed(backend):
    env = WorldModelVectorEnv(
        Indexed(), N, OBS, ACT, backend=backend, members=E, member="mean", initial_state=torch.zeros(N, D)
    )
    env.reset(seed=0)
    obs = env.step(ONES)[0]
    np.testing.assert_allclose(obs, 1.0 + OFFSETS.mean().item(), rtol=1e-6)

    class NoDefault(torch.nn.Module):
        def forward(self, state, action, *, member_index):
            return Indexed()(state, action, member_index=member_index)

    with pytest.raises(ValueError, match=r"uncertainty='disagreement' needs every member's prediction"):
        WorldModelEnv(NoDefault(), OBS, ACT, backend=backend, members=E, uncertainty="disagreement")
    with pytest.raises(ValueError, match=r'member="mean" needs every member\'s prediction'):
        WorldModelEnv(NoDefault(), OBS, ACT, backend=backend, members=E, member="mean")


def test_check_reports_the_ensemble_form_and_measure(backend):
    import wmenv

    lines = wmenv.check(single(backend, uncertainty="max_std", penalty=0.1, halt_threshold=50.0), steps=4).lines
    assert "ensemble: 4 members on a leading member axis; mean and std heads" in "\n".join(lines)
    assert "uncertainty: max_std, max_i ||std_i|| (MOPO); penalty 0.1; halt above 50 with reward 0" in lines
    lines = wmenv.check(vector(backend, member="episode"), steps=4).lines
    assert any(x.startswith("ensemble: 4 members on a leading member axis, before the batch axis") for x in lines)
    assert any(x.endswith("member: episode") for x in lines) and not any(x.startswith("uncertainty:") for x in lines)
    env = WorldModelVectorEnv(
        Gaussian(std=False), N, OBS, ACT, backend=backend, members=E, member=2, initial_state=torch.zeros(N, D)
    )
    text = "\n".join(wmenv.check(env, steps=3).lines)
    assert "mean heads only (deterministic members); member: index 2" in text
    env = WorldModelVectorEnv(Indexed(), N, OBS, ACT, backend=backend, members=E, initial_state=torch.zeros(N, D))
    text = "\n".join(wmenv.check(env, steps=3).lines)
    assert "ensemble: 4 members each env's chosen member computed alone (member_index; no member axis)" in text


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"members": 0}, ValueError, r"members must be a positive int"),
        ({"members": E, "member": "best"}, ValueError, r"member must be one of 'random', 'episode', 'mean'"),
        ({"members": E, "member": E}, ValueError, r"member must be in \[0, 3\]"),
        ({"members": E, "uncertainty": "entropy"}, ValueError, r"uncertainty must be None or one of"),
        ({"members": E, "halt_threshold": "high"}, ValueError, r"halt_threshold must be a number, got 'high'"),
        ({"members": E, "penalty": float("nan")}, ValueError, r"penalty must be a finite number"),
        ({"uncertainty": "max_std"}, ValueError, r"need members=E"),
    ],
)
def test_bad_options_are_refused(backend, kwargs, error, message):
    with pytest.raises(error, match=message):
        WorldModelVectorEnv(Gaussian(), N, OBS, ACT, backend=backend, initial_state=torch.zeros(N, D), **kwargs)


def test_bad_model_outputs_say_what_is_wrong(backend):
    env = WorldModelVectorEnv(Gaussian(), N, OBS, ACT, backend=backend, members=E + 1, initial_state=torch.zeros(N, D))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"with members=5, observation must have a leading member axis: shape \(5, 3"):
        env.step(ONES)

    class BadStd(Gaussian):
        def __init__(self, std):
            super().__init__()
            self.bad = std

        def forward(self, state, action):
            out = super().forward(state, action)
            out["std"] = self.bad
            return out

    for bad, message in (
        (torch.ones(E, N, 5), r"std must have the observation's shape \(4, 3, 2\), got \(4, 3, 5\)"),
        (-torch.ones(E, N, D), r"std must be non-negative"),
    ):
        env = WorldModelVectorEnv(BadStd(bad), N, OBS, ACT, backend=backend, members=E, initial_state=torch.zeros(N, D))
        env.reset(seed=0)
        with pytest.raises(ValueError, match=message):
            env.step(ONES)
    nostd = WorldModelVectorEnv(
        Gaussian(std=False),
        N,
        OBS,
        ACT,
        backend=backend,
        members=E,
        uncertainty="max_std",
        initial_state=torch.zeros(N, D),
    )
    nostd.reset(seed=0)
    with pytest.raises(ValueError, match=r'uncertainty="max_std" needs a "std" or "log_var" entry'):
        nostd.step(ONES)


def test_log_var_heads(backend):
    class LogVar(Gaussian):
        def forward(self, state, action):
            out = super().forward(state, action)
            out["log_var"] = 2 * torch.log(out.pop("std"))
            return out

    env = WorldModelVectorEnv(
        LogVar(), N, OBS, ACT, backend=backend, members=E, uncertainty="max_std", initial_state=torch.zeros(N, D)
    )
    env.reset(seed=0)
    np.testing.assert_allclose(env.step(ONES)[4]["uncertainty"], 0.4 * np.sqrt(D), rtol=1e-5)


def test_halt_threshold_from_data():
    assert halt_threshold_from_data(torch.tensor([0.5, 2.0]), scale=1.5) == 3.0
    assert halt_threshold_from_data(np.arange(11.0), quantile=0.9) == pytest.approx(9.0)
    with pytest.raises(ValueError, match="exactly one of"):
        halt_threshold_from_data([1.0])
    with pytest.raises(ValueError, match=r"quantile must be in \[0, 1\]"):
        halt_threshold_from_data([1.0], quantile=2)
