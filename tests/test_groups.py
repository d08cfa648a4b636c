"""Group resets for GRPO, per-env seeds, and offloading."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from wmenv import WorldModelEnv, WorldModelVectorEnv

OBS = gym.spaces.Box(-1e3, 1e3, (2,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
DATA = np.arange(60, dtype=np.float32).reshape(30, 2)


def data_env(backend, n=6, **kwargs):
    return WorldModelVectorEnv(
        None, n, OBS, ACT, backend=backend, start_data=DATA, transition_fn=lambda m, s, a: (s + 1, s + 1), **kwargs
    )


def test_group_resets_share_one_start(backend):
    env = data_env(backend)
    obs, info = env.reset(seed=0, options={"group_size": 3})
    assert info["group"].tolist() == [0, 0, 0, 1, 1, 1]
    assert len(set(info["start_index"][:3])) == 1 and len(set(info["start_index"][3:])) == 1
    assert np.array_equal(obs[0], obs[1]) and np.array_equal(obs[1], obs[2])
    assert np.array_equal(obs[0], DATA[info["start_index"][0]])


def test_group_autoresets_share_a_start_among_the_envs_reset(backend):
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        env = data_env(backend, group_size=2, max_episode_steps=2, autoreset_mode=mode)
        env.reset(seed=1)
        for _ in range(3):
            obs = env.step(np.zeros((6, 2), np.float32))[0]
        assert np.array_equal(obs[0], obs[1]) and np.array_equal(obs[2], obs[3]) and np.array_equal(obs[4], obs[5])


def test_group_size_must_divide_num_envs(backend):
    with pytest.raises(ValueError, match=r"group_size=4 does not divide num_envs=6"):
        data_env(backend, group_size=4)
    env = data_env(backend)
    with pytest.raises(ValueError, match=r"group_size=5 does not divide num_envs=6"):
        env.reset(options={"group_size": 5})
    with pytest.raises(ValueError, match=r"group_size must be a positive int"):
        env.reset(options={"group_size": 0})


def test_groups_without_start_data_share_the_reset(backend):
    def reset(model, seed, options):
        state = torch.arange(8.0).reshape(4, 2)  # a different start per env, before grouping
        return state, state

    env = WorldModelVectorEnv(None, 4, OBS, ACT, backend=backend, reset_fn=reset, transition_fn=lambda m, s, a: (s, s))
    obs, info = env.reset(seed=0, options={"group_size": 2})
    assert obs[:, 0].tolist() == [0.0, 0.0, 4.0, 4.0] and env.state[:, 0].tolist() == [0.0, 0.0, 4.0, 4.0]


def test_per_env_seeds_give_the_same_start_wherever_the_env_sits(backend):
    env = data_env(backend)
    _, first = env.reset(seed=[11, 12, 13, 14, 15, 16])
    _, moved = env.reset(seed=[16, 15, 14, 13, 12, 11])
    assert first["start_index"].tolist() == moved["start_index"].tolist()[::-1]
    _, again = env.reset(seed=[11, 12, 13, 14, 15, 16])
    assert again["start_index"].tolist() == first["start_index"].tolist()
    with pytest.raises(ValueError, match=r"reset\(seed=\.\.\.\) takes one seed per env: 6 seeds, got 2"):
        env.reset(seed=[1, 2])


def test_per_env_seeds_fix_each_envs_episode_member(backend):
    class Members(torch.nn.Module):
        def forward(self, s, a):
            return {"observation": s.unsqueeze(0) + torch.arange(4.0).reshape(4, 1, 1)}

    env = WorldModelVectorEnv(
        Members(), 3, OBS, ACT, backend=backend, members=4, member="episode", initial_state=torch.zeros(3, 2)
    )
    env.reset(seed=[1, 2, 3])
    first = env.step(np.zeros((3, 2), np.float32))[4]["member"].tolist()
    env.reset(seed=[3, 2, 1])
    moved = env.step(np.zeros((3, 2), np.float32))[4]["member"].tolist()
    assert moved == first[::-1]


def test_offload_refuses_steps_until_onload(backend):
    model = torch.nn.Linear(2, 2)
    for env in (
        WorldModelVectorEnv(
            model,
            2,
            OBS,
            ACT,
            backend=backend,
            initial_state=torch.zeros(2, 2),
            transition_fn=lambda m, s, a: (s + a, s + a),
        ),
        WorldModelEnv(
            model, OBS, ACT, backend=backend, initial_state=torch.zeros(2), transition_fn=lambda m, s, a: (s + a, s + a)
        ),
    ):
        action = np.ones(env.action_space.shape, np.float32)
        env.reset(seed=0)
        env.step(action)
        env.offload()
        with pytest.raises(RuntimeError, match=r"the env is offloaded .*call onload\(\) before step\(\)"):
            env.step(action)
        env.onload()
        obs = env.step(action)[0]
        assert np.allclose(obs, 2.0)  # the state came back as it was


class Frames(torch.nn.Module):
    """A 'video' model: the frame brightens by the action; its own reward is -1."""

    def forward(self, state, action):
        nxt = state + action.mean(-1, keepdim=True)
        return {"state": nxt, "observation": nxt, "reward": -torch.ones(nxt.shape[:-1])}


def brightness(frames):
    return frames.mean(-1)


def test_a_reward_model_scores_the_generated_observations(backend):
    env = WorldModelVectorEnv(
        Frames(),
        3,
        OBS,
        ACT,
        backend=backend,
        reward_model=brightness,
        success_threshold=2.0,
        initial_state=torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.5, 1.5]]),
    )
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.full((3, 2), 0.5, np.float32))
    assert reward.tolist() == [0.5, 1.5, 2.0]
    assert terminated.tolist() == [False, False, True] and info["success"].tolist() == [False, False, True]
    assert torch.equal(info["model_reward"], -torch.ones(3))
    single = WorldModelEnv(
        Frames(),
        OBS,
        ACT,
        backend=backend,
        reward_model=brightness,
        success_threshold=0.4,
        initial_state=torch.zeros(2),
    )
    single.reset(seed=0)
    _, reward, terminated, _, info = single.step(np.full(2, 0.5, np.float32))
    assert reward == 0.5 and terminated is True and info["success"] is True


def test_reward_model_options_are_checked(backend):
    with pytest.raises(ValueError, match=r"success_threshold needs reward_model="):
        WorldModelEnv(Frames(), OBS, ACT, backend=backend, success_threshold=1.0)
    with pytest.raises(ValueError, match=r"reward_model must be a callable or module, got int"):
        WorldModelEnv(Frames(), OBS, ACT, backend=backend, reward_model=3)
    with pytest.raises(ValueError, match=r"success_threshold must be None or a number"):
        WorldModelEnv(Frames(), OBS, ACT, backend=backend, reward_model=brightness, success_threshold="high")


def test_relative_rewards_difference_successive_scores(backend):
    env = WorldModelVectorEnv(
        Frames(),
        3,
        OBS,
        ACT,
        backend=backend,
        reward_model=brightness,
        relative_reward=True,
        max_episode_steps=2,
        initial_state=torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]),
        initial_observation=np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], np.float32),
    )
    env.reset(seed=0)
    push = np.array([[0.5, 0.5], [1.0, 1.0], [-1.0, -1.0]], np.float32)
    _, reward, _, _, info = env.step(push)
    assert reward.dtype == np.float32 and reward.tolist() == [0.5, 1.0, -1.0]  # against the reset's scores
    assert info["score"].tolist() == [0.5, 2.0, 1.0]
    snap = env.get_state()
    _, reward, _, truncated, _ = env.step(push)
    assert reward.tolist() == [0.5, 1.0, -1.0] and truncated.all()
    env.set_state(snap)  # the previous scores come back with the snapshot
    assert env.step(push)[1].tolist() == [0.5, 1.0, -1.0]
    # the autoreset step: the reset envs' new baseline is their reset observation's score
    _, reward, *_ = env.step(push)
    assert reward.tolist() == [0.0, 0.0, 0.0]
    assert env.step(push)[1].tolist() == [0.5, 1.0, -1.0]
    with pytest.raises(ValueError, match=r"rollout starts from a state"):
        env.rollout(np.zeros((2, 3, 2), np.float32), torch.zeros(3, 2))
    single = WorldModelEnv(
        Frames(), OBS, ACT, backend=backend, reward_model=brightness, relative_reward=True,
        initial_state=torch.ones(2), initial_observation=np.ones(2, np.float32),
    )  # fmt: skip
    single.reset(seed=0)
    rewards = [single.step(np.full(2, 0.25, np.float32))[1] for _ in range(3)]
    assert rewards == [0.25, 0.25, 0.25] and all(type(r) is float for r in rewards)
    single.reset(seed=0)
    assert single.step(np.full(2, -0.5, np.float32))[1] == -0.5  # the reset rebased it


def test_relative_reward_needs_a_reward_model(backend):
    with pytest.raises(ValueError, match=r"relative_reward=True needs reward_model="):
        WorldModelEnv(Frames(), OBS, ACT, backend=backend, relative_reward=True)
    with pytest.raises(TypeError, match=r"relative_reward must be True or False"):
        WorldModelEnv(Frames(), OBS, ACT, backend=backend, reward_model=brightness, relative_reward="yes")


# Action chunks.

T = 4


class Video(torch.nn.Module):
    """Generates T frames per call from a chunk of T actions; ends where x >= 3."""

    def forward(self, state, action):
        frames = state.unsqueeze(-2) + torch.cumsum(action, -2)
        return {
            "state": frames[..., -1, :],
            "observation": frames,
            "reward": frames[..., 0],
            "terminated": frames[..., 0] >= 3,
        }


def chunked(backend, n=2, **kwargs):
    kwargs.setdefault("initial_state", torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    return WorldModelVectorEnv(
        Video(), n, OBS, gym.spaces.Box(-1, 1, (2,), np.float32), backend=backend, chunk=T, **kwargs
    )


def single_chunked(backend, **kwargs):
    return WorldModelEnv(Video(), OBS, gym.spaces.Box(-1, 1, (2,), np.float32), backend=backend, chunk=T, **kwargs)


def test_chunk_spaces_and_one_call_per_chunk(backend):
    env = chunked(backend)
    assert env.single_action_space.shape == (T, 2) and env.single_observation_space.shape == (T, 2)
    assert env.action_space.shape == (2, T, 2) and env.observation_space.shape == (2, T, 2)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.full((2, T, 2), 0.5, np.float32))
    assert obs.shape == (2, T, 2) and obs[0, :, 0].tolist() == [0.5, 1.0, 1.5, 2.0]
    assert reward.tolist() == [5.0, 9.0] and terminated.tolist() == [False, True]
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.full((2, T, 2), 1.0, np.float32))
    assert info["chunk_length"].tolist() == [3, 2]  # x reached 3.0 at frames 3 and 2
    assert obs[0, :, 0].tolist() == [1.0, 2.0, 3.0, 3.0] and obs[1, :, 0].tolist() == [2.0, 3.0, 3.0, 3.0]
    assert reward.tolist() == [6.0, 5.0] and terminated.tolist() == [True, True]  # later frames count nothing


def test_chunk_rewards_last_and_callable(backend):
    last = chunked(backend, chunk_reward="last")
    last.reset(seed=0)
    assert last.step(np.full((2, T, 2), 1.0, np.float32))[1].tolist() == [3.0, 3.0]
    peak = chunked(backend, chunk_reward=lambda r: r.max(-1).values)
    peak.reset(seed=0)
    assert peak.step(np.full((2, T, 2), 0.5, np.float32))[1].tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match=r"chunk_reward must be 'sum', 'last' or a callable"):
        chunked(backend, chunk_reward="mean")
    with pytest.raises(ValueError, match=r"chunk must be None or a positive int"):
        WorldModelVectorEnv(Video(), 2, OBS, ACT, backend=backend, chunk=0)


def test_chunk_time_limits_count_env_steps(backend):
    env = chunked(backend, max_episode_steps=10, initial_state=torch.full((2, 2), -100.0))
    env.reset(seed=0)
    truncated = [env.step(np.zeros((2, T, 2), np.float32))[3].tolist() for _ in range(3)]
    assert truncated == [[False, False], [False, False], [True, True]]  # 10 steps: three chunks of 4


def test_single_env_chunks_pass_gymnasium_checks(backend):
    from gymnasium.utils.env_checker import check_env

    env = single_chunked(backend, chunk_frames=False, initial_state=torch.zeros(2))
    assert env.observation_space.shape == (2,) and env.action_space.shape == (T, 2)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.full((T, 2), 1.0, np.float32))
    assert obs.tolist() == [3.0, 3.0] and reward == 6.0 and terminated is True and info["chunk_length"] == 3
    check_env(env, skip_render_check=True)


class LastFrame(torch.nn.Module):
    """A chunk model that returns only the chunk's last frame, of T features."""

    def forward(self, state, action):
        frames = state.unsqueeze(-2) + torch.cumsum(action, -2)
        return {"state": frames[..., -1, :], "reward": frames[..., 0], "terminated": frames[..., 0] >= 2.5}


def test_a_last_frame_as_long_as_the_chunk_is_not_read_as_frames(backend):
    # a frame of T features: only the axis count tells a last frame from a chunk of frames
    frame = gym.spaces.Box(-9, 9, (T,), np.float32)
    act = gym.spaces.Box(-1, 1, (T,), np.float32)
    env = WorldModelVectorEnv(
        LastFrame(), 2, frame, act, backend=backend, chunk=T, chunk_frames=False, initial_state=torch.zeros(2, T)
    )
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.ones((2, T, T), np.float32))
    assert obs.shape == (2, T) and obs[0].tolist() == [4.0] * T  # the model's one frame, as it is: not a slice of it
    assert reward.tolist() == [6.0, 6.0] and terminated.all() and info["chunk_length"].tolist() == [3, 3]
    frames = WorldModelVectorEnv(LastFrame(), 2, frame, act, backend=backend, chunk=T, initial_state=torch.zeros(2, T))
    frames.reset(seed=0)
    with pytest.raises(ValueError, match=r"chunk's 4 frames, shape \(2, 4, 4\), but the model returned one frame"):
        frames.step(np.ones((2, T, T), np.float32))
    with pytest.raises(ValueError, match=r"chunk_frames=False"):
        frames.step(np.ones((2, T, T), np.float32))


def test_single_env_chunks_with_a_batched_model(backend):
    for chunk_frames, shape in ((True, (T, 2)), (False, (2,))):
        env = single_chunked(backend, chunk_frames=chunk_frames, batched_model=True, initial_state=torch.zeros(1, 2))
        obs, _ = env.reset(seed=0)
        assert obs.shape == shape
        obs, reward, terminated, _, info = env.step(np.full((T, 2), 1.0, np.float32))
        assert obs.shape == shape and reward == 6.0 and terminated is True and info["chunk_length"] == 3
        assert obs.reshape(-1, 2)[-1].tolist() == [3.0, 3.0]  # held at the terminating frame


def test_a_reward_model_may_score_each_frame_of_a_chunk(backend):
    def per_frame(frames):  # (..., T, 2) frames -> (..., T) scores
        return frames[..., 1]

    # env 0 runs x from 1 to 4 and terminates at its third frame (x >= 3); env 1 from 2, at its second
    for chunk_reward, expected in (("sum", [6.0, 5.0]), ("last", [3.0, 3.0]), (lambda s: s.max(-1).values, [3.0, 3.0])):
        env = chunked(backend, reward_model=per_frame, chunk_reward=chunk_reward)
        env.reset(seed=0)
        obs, reward, terminated, _, info = env.step(np.full((2, T, 2), 1.0, np.float32))
        assert reward.tolist() == expected, chunk_reward  # only the frames the chunk counted
        assert info["chunk_length"].tolist() == [3, 2] and terminated.tolist() == [True, True]
    env = chunked(backend, reward_model=per_frame, success_threshold=1.75, initial_state=torch.zeros(2, 2))
    env.reset(seed=0)
    actions = np.repeat(np.array([[[0.5, 0.5]], [[0.5, 0.0]]], np.float32), T, axis=1)
    obs, reward, terminated, _, info = env.step(actions)
    assert info["success"].tolist() == [True, False] and terminated.tolist() == [True, False]  # 2.0 >= 1.75 > 0
    assert reward.tolist() == [5.0, 0.0]
    whole = chunked(backend, reward_model=lambda frames: frames[..., 1].mean(-1))  # a score per chunk is kept as it is
    whole.reset(seed=0)
    assert whole.step(np.full((2, T, 2), 0.5, np.float32))[1].tolist() == [1.25, 2.25]
    single = single_chunked(backend, reward_model=per_frame, initial_state=torch.zeros(2))
    single.reset(seed=0)
    obs, reward, terminated, _, info = single.step(np.full((T, 2), 1.0, np.float32))
    assert reward == 6.0 and terminated is True and info["chunk_length"] == 3


def test_relative_rewards_over_chunks_difference_the_last_counted_frames(backend):
    def reset(model, seed, options):
        return torch.zeros(2, 2), torch.zeros(2, T, 2)

    env = chunked(backend, reward_model=lambda frames: frames[..., 1], relative_reward=True, reset_fn=reset)
    env.reset(seed=0)  # the reset's frames score 0
    assert env.step(np.full((2, T, 2), 0.25, np.float32))[1].tolist() == [1.0, 1.0]
    assert env.step(np.full((2, T, 2), 0.5, np.float32))[1].tolist() == [2.0, 2.0]


def test_chunks_and_ensembles_are_refused_together(backend):
    with pytest.raises(ValueError, match=r"chunk= and members= cannot be combined"):
        WorldModelVectorEnv(Video(), 2, OBS, ACT, backend=backend, chunk=T, members=2)
    with pytest.raises(ValueError, match=r"chunk= and members= cannot be combined"):
        WorldModelEnv(Video(), OBS, ACT, backend=backend, chunk=T, members=2)


# Progress for slow models.


def test_progress_reports_every_model_call(backend):
    calls = []
    env = WorldModelVectorEnv(
        Frames(), 3, OBS, ACT, backend=backend, chunk=4, progress=calls.append, initial_state=torch.zeros(3, 4, 2)
    )
    env.reset(seed=0)
    env.step(np.zeros((3, 4, 2), np.float32))
    env.step(np.zeros((3, 4, 2), np.float32))
    assert [(c.calls, c.frames, c.total_frames) for c in calls] == [(1, 12, 12), (2, 12, 24)]
    assert all(isinstance(c.seconds, float) and c.seconds >= 0 for c in calls)
    env.rollout(np.zeros((5, 3, 4, 2), np.float32), torch.zeros(3, 4, 2))  # a rollout's steps are calls too
    assert len(calls) == 7 and calls[-1].total_frames == 84
    single = WorldModelEnv(Frames(), OBS, ACT, backend=backend, progress=calls.append, initial_state=torch.zeros(2))
    single.reset(seed=0)
    single.step(np.zeros(2, np.float32))
    assert calls[-1][:1] == (1,) and calls[-1].frames == 1


def test_progress_bar_and_bad_progress(backend, capsys):
    pytest.importorskip("tqdm")
    env = WorldModelEnv(Frames(), OBS, ACT, backend=backend, progress=True, initial_state=torch.zeros(2))
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(2, np.float32))
    env.close()
    err = capsys.readouterr().err
    assert "world model" in err and "3frame" in err.replace(" ", "") and "s/call" in err
    with pytest.raises(TypeError, match=r"progress must be None, True \(a tqdm bar\) or a callable"):
        WorldModelEnv(Frames(), OBS, ACT, backend=backend, progress="bar")


def test_check_reports_seconds_per_call_and_frames_per_second(backend):
    import wmenv

    env = WorldModelVectorEnv(Frames(), 3, OBS, ACT, backend=backend, chunk=4, initial_state=torch.zeros(3, 4, 2))
    report = wmenv.check(env, steps=4)
    line = [x for x in report.lines if x.startswith("model calls:")]
    assert len(line) == 1 and "s per call" in line[0] and "frames/s (3 envs x 4 frames per call)" in line[0]
