"""What real world models need: global-RNG models that reproduce, start data
that grows and respects episode ends, probability-valued terminations,
batched models with start data, planning without observations, and the
model's info in the SB3 adapter."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import wmenv
from wmenv import WorldModelEnv, WorldModelVectorEnv, repeat_state

OBS = gym.spaces.Box(-1e3, 1e3, (2,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


class GlobalRandom(torch.nn.Module):
    """Samples from torch's global RNG, as Dreamer's RSSM and DIAMOND do."""

    def forward(self, state, action):
        nxt = state + action + 0.1 * torch.randn(state.shape)
        return nxt, nxt, float(nxt.sum())

    def reset(self, seed=None, options=None):
        start = torch.randn(2)
        return start, start


def test_global_rng_models_reproduce_and_replay(backend):
    def trajectory(env, seed):
        out = [env.reset(seed=seed)[0].copy()]
        out += [env.step(np.zeros(2, np.float32))[0].copy() for _ in range(4)]
        return out

    env = WorldModelEnv(GlobalRandom(), OBS, ACT, backend=backend, global_rng=True)
    first = trajectory(env, 3)
    torch.randn(100)  # the global stream moves on; the env does not care
    assert all(np.array_equal(a, b) for a, b in zip(first, trajectory(env, 3)))
    env.reset(seed=1)
    env.step(np.zeros(2, np.float32))
    snap = env.get_state(copy=True)
    before = torch.random.get_rng_state()
    one = [env.step(np.zeros(2, np.float32))[0].copy() for _ in range(3)]
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is left as it was
    env.set_state(snap)
    two = [env.step(np.zeros(2, np.float32))[0].copy() for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
    check_env(WorldModelEnv(GlobalRandom(), OBS, ACT, backend=backend, global_rng=True), skip_render_check=True)


def test_check_recommends_global_rng(backend):
    report = wmenv.check(WorldModelEnv(GlobalRandom(), OBS, ACT, backend=backend), steps=5)
    text = str(report)
    assert not report.ok and "global_rng=True" in text
    assert "gave different trajectories" not in text.split("determinism")[1].split("\n")[1]  # no knock-on failure
    assert "not compared (the model is not deterministic)" in text or "backends" not in text
    assert wmenv.check(WorldModelEnv(GlobalRandom(), OBS, ACT, backend=backend, global_rng=True), steps=5).ok


def test_a_probability_termination_is_refused_with_the_fix(backend):
    def step(m, s, a):
        return {"state": s, "observation": s, "terminated": torch.sigmoid(torch.tensor(-4.6))}

    env = WorldModelEnv(None, OBS, ACT, backend=backend, transition_fn=step, initial_state=torch.zeros(2))
    env.reset(seed=0)
    with pytest.raises(
        ValueError, match=r"terminated is 0\.0\d+, a float that is neither 0 nor 1.*terminated_threshold"
    ):
        env.step(np.zeros(2, np.float32))
    vec = WorldModelVectorEnv(
        None,
        3,
        OBS,
        ACT,
        backend=backend,
        initial_state=torch.zeros(3, 2),
        transition_fn=lambda m, s, a: (s, s, torch.zeros(3), torch.tensor([0.0, 0.3, 1.0]), False, None),
    )
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"terminated of env 1 is 0\.3"):
        vec.step(np.zeros((3, 2), np.float32))


def test_terminated_threshold_reads_probabilities(backend):
    probabilities = torch.tensor([0.01, 0.6, 0.5])
    env = WorldModelVectorEnv(
        None,
        3,
        OBS,
        ACT,
        backend=backend,
        terminated_threshold=0.5,
        initial_state=torch.zeros(3, 2),
        transition_fn=lambda m, s, a: {"state": s, "observation": s, "terminated": probabilities},
    )
    env.reset(seed=0)
    assert env.step(np.zeros((3, 2), np.float32))[2].tolist() == [False, True, True]
    single = WorldModelEnv(
        None,
        OBS,
        ACT,
        backend=backend,
        terminated_threshold=0.9,
        initial_state=torch.zeros(2),
        transition_fn=lambda m, s, a: (s, s, 1.0, torch.tensor(0.8), False, {"k": 1}),
    )
    single.reset(seed=0)
    _, reward, terminated, _, info = single.step(np.zeros(2, np.float32))
    assert terminated is False and reward == 1.0 and info["k"] == 1
    for bad in (0, 1.5, "0.5", True):
        with pytest.raises(ValueError, match=r"terminated_threshold must be None or a number in \(0, 1\]"):
            WorldModelEnv(None, OBS, ACT, backend=backend, terminated_threshold=bad, transition_fn=lambda m, s, a: s)


def test_batched_model_with_start_data(backend):
    frames = np.random.default_rng(0).random((10, 3, 8, 8)).astype(np.float32)
    seen = []

    def encode(m, observations, actions):
        seen.append(tuple(observations.shape))
        return torch.as_tensor(observations).mean(dim=(2, 3))  # (1, 3): the state stays batched

    env = WorldModelEnv(
        None,
        gym.spaces.Box(0, 1, (3, 8, 8), np.float32),
        ACT,
        backend=backend,
        batched_model=True,
        start_data=frames,
        encode_fn=encode,
        transition_fn=lambda m, s, a: (s, torch.zeros(1, 3, 8, 8)),
    )
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 8, 8) and seen == [(1, 3, 8, 8)] and env.state.shape == (1, 3)
    assert np.array_equal(obs, frames[info["start_index"]])
    assert env.step(np.zeros(2, np.float32))[0].shape == (3, 8, 8)


def test_start_data_that_grows_yields_new_starts(backend):
    buffer = [np.zeros(2, np.float32)]
    env = WorldModelEnv(
        None, OBS, ACT, backend=backend, start_data=buffer, transition_fn=lambda m, s, a: (s, s), torch_actions=False
    )
    env.reset(seed=0)
    buffer.extend(np.full(2, float(i), np.float32) for i in range(1, 50))
    starts = {env.reset()[1]["start_index"] for _ in range(40)}
    assert max(starts) > 0 and len(starts) > 5


def test_numpy_start_data_reaches_a_torch_model_as_tensors(backend):
    got = []

    class Model(torch.nn.Module):
        def forward(self, state, action):
            got.append(type(state))
            return state + action, state + action

    env = WorldModelVectorEnv(Model(), 2, OBS, ACT, backend=backend, start_data=np.zeros((5, 2), np.float32))
    env.reset(seed=0)
    env.step(np.zeros((2, 2), np.float32))
    assert got == [torch.Tensor]


def test_start_windows_never_cross_an_episode_end(backend):
    observations = np.arange(20, dtype=np.float32).reshape(10, 2)
    dones = np.zeros(10, bool)
    dones[[2, 6]] = True  # episodes 0-2, 3-6, 7-9
    windows = []

    def encode(m, obs, actions):
        windows.append(obs[:, :, 0].tolist())
        return torch.as_tensor(obs[:, -1])

    env = WorldModelVectorEnv(
        None,
        4,
        OBS,
        ACT,
        backend=backend,
        start_data={"observations": observations, "dones": dones},
        start_context=3,
        encode_fn=encode,
        transition_fn=lambda m, s, a: (s, s),
    )
    for seed in range(10):
        env.reset(seed=seed)
    allowed = [[0, 2, 4], [6, 8, 10], [8, 10, 12], [14, 16, 18]]  # the windows inside one episode
    assert all(w in allowed for batch in windows for w in batch)


def test_encode_fn_may_give_the_start_observation(backend):
    env = WorldModelEnv(
        None,
        OBS,
        ACT,
        backend=backend,
        start_data=np.ones((5, 4), np.float32),
        encode_fn=lambda m, obs, a: {"state": torch.as_tensor(obs), "observation": np.full(2, 7, np.float32)},
        transition_fn=lambda m, s, a: (s, s[:2]),
    )
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [7.0, 7.0] and env.state.shape == (4,)


def test_autoresets_from_start_data_report_start_index(backend):
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        env = WorldModelVectorEnv(
            None,
            3,
            OBS,
            ACT,
            backend=backend,
            autoreset_mode=mode,
            max_episode_steps=1,
            start_data=np.arange(20, dtype=np.float32).reshape(10, 2),
            transition_fn=lambda m, s, a: (s, s),
        )
        env.reset(seed=0)
        infos = [env.step(np.zeros((3, 2), np.float32))[4] for _ in range(2)]
        reset_info = next(i for i in infos if "start_index" in i)
        assert reset_info["start_index"].shape == (3,) and (reset_info["start_index"] >= 0).all()
        assert reset_info["_start_index"].all()


def test_rollout_without_observations(backend):
    env = WorldModelVectorEnv(
        None,
        3,
        OBS,
        ACT,
        backend=backend,
        initial_state=torch.zeros(3, 2),
        transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]),
    )
    out = env.rollout(np.ones((4, 3, 2), np.float32), repeat_state(torch.zeros(2), 3), observations=False)
    assert out.observations is None and out.returns.tolist() == [10.0, 10.0, 10.0]
    assert out.final_state.shape == (3, 2) and out.terminated.shape == (4, 3)


def test_repeat_state_of_a_batched_state():
    assert repeat_state(torch.zeros(1, 4), 3, batched=True).shape == (3, 4)
    assert repeat_state({"h": np.zeros((1, 2))}, 2, batched=True)["h"].shape == (2, 2)
    with pytest.raises(ValueError, match="a leading batch of one, got shape"):
        repeat_state(torch.zeros(2, 4), 3, batched=True)


def test_sb3_adapter_keeps_the_models_info(backend):
    pytest.importorskip("stable_baselines3")
    from wmenv.sb3 import WorldModelVecEnv

    def step(m, s, a):
        return {"state": s, "observation": s, "info": {"decoded": s * 2, "tag": "x"}}

    venv = WorldModelVecEnv.from_model(
        None, 2, OBS, ACT, backend=backend, transition_fn=step, initial_state=torch.ones(2, 2)
    )
    venv.reset()
    _, _, _, infos = venv.step(np.zeros((2, 2), np.float32))
    assert infos[1]["tag"] == "x" and torch.equal(infos[1]["decoded"], torch.full((2,), 2.0))


# wmenv.check on vector envs, and the CLI.


def test_check_on_a_vector_env(backend):
    env = WorldModelVectorEnv(
        None,
        4,
        OBS,
        ACT,
        backend=backend,
        initial_state=torch.zeros(4, 2),
        max_episode_steps=3,
        transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]),
    )
    report = wmenv.check(env, steps=6)
    text = str(report)
    assert report.ok, text
    assert "num_envs: 4" in text and "step: a 3-tuple read as (next_state, obs, reward)" in text
    assert "model call: transition_fn(world_model, state, action)" in text and "env-steps/s" in text


def test_check_on_torch_mode_and_disabled_autoresets(backend):
    """Torch mode is checked as its NumPy twin and compared with it; a DISABLED
    vector env has its ended envs reset by mask, as its users do."""
    from gymnasium.vector import AutoresetMode

    def step(m, s, a):
        nxt = s + a
        return {"state": nxt, "reward": nxt[..., 0], "terminated": nxt[..., 0] > 1.5}

    single = WorldModelEnv(
        torch.nn.Identity(), OBS, ACT, backend=backend, output="torch", transition_fn=step,
        initial_state=torch.zeros(2), max_episode_steps=3,
    )  # fmt: skip
    for env in (
        single,
        WorldModelVectorEnv(
            torch.nn.Identity(),
            4,
            OBS,
            ACT,
            backend=backend,
            output="torch",
            transition_fn=step,
            initial_state=torch.zeros(4, 2),
            max_episode_steps=3,
        ),  # fmt: skip
        WorldModelVectorEnv(
            None,
            4,
            OBS,
            ACT,
            backend=backend,
            autoreset_mode=AutoresetMode.DISABLED,
            transition_fn=step,
            initial_state=torch.zeros(4, 2),
            max_episode_steps=3,
        ),  # fmt: skip
    ):
        report = wmenv.check(env, steps=12)
        text = str(report)
        assert report.ok, text
        if env.output == "torch":
            assert "checked as the same env with output='numpy'" in text
            assert "output: torch and numpy gave the same trajectory" in text
    assert "gymnasium check_env: passed" in str(wmenv.check(single, steps=6))
    noisy = WorldModelEnv(
        None, OBS, ACT, backend=backend, output="torch", initial_state=torch.zeros(2),
        transition_fn=lambda m, s, a: (s, torch.rand(2)),
    )  # fmt: skip
    text = str(wmenv.check(noisy, steps=4))
    assert "FAIL determinism" in text and "output: torch not compared" in text


def test_check_tells_a_tuple_observation_from_a_step(backend):
    """A Tuple space's reset observation is a tuple: check still counts its episodes."""
    space = gym.spaces.Tuple((OBS, gym.spaces.Box(-1e3, 1e3, (1,), np.float64)))

    def step(m, s, a):
        return {"state": s + 1, "observation": (s + 1, (s + 1)[:1].double()), "reward": float(s[0])}

    for vector in (False, True):
        kwargs = dict(backend=backend, transition_fn=step, max_episode_steps=3)
        if vector:
            kwargs["transition_fn"] = lambda m, s, a: (s + 1, (s + 1, (s + 1)[:, :1].double()))
            env = WorldModelVectorEnv(
                None, 2, space, ACT, initial_state=torch.zeros(2, 2),
                initial_observation=(torch.zeros(2, 2), torch.zeros(2, 1, dtype=torch.float64)), **kwargs,
            )  # fmt: skip
        else:
            env = WorldModelEnv(
                None, space, ACT, initial_state=torch.zeros(2),
                initial_observation=(torch.zeros(2), torch.zeros(1, dtype=torch.float64)), **kwargs,
            )  # fmt: skip
        text = str(wmenv.check(env, steps=9))
        assert "wmenv check: ok" in text, text
        assert "observations outside the observation space: 0 of" in text
        assert "episodes ended in 9" in text and "mean length 3.0 steps" in text


def test_check_says_how_the_model_is_called_and_what_drives_the_reset(backend):
    class ActionOnly(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(2) + x

    env = WorldModelEnv(ActionOnly(), OBS, ACT, backend=backend, start_data=np.zeros((4, 2), np.float32))
    text = str(wmenv.check(env, steps=3))
    assert "it declares one positional parameter, so it gets the action alone" in text
    assert "reset: start_data" in text


def test_check_flags_a_probability_head_in_a_vector_env(backend):
    env = WorldModelVectorEnv(
        None,
        2,
        OBS,
        ACT,
        backend=backend,
        initial_state=torch.zeros(2, 2),
        transition_fn=lambda m, s, a: (s, s, torch.zeros(2), torch.ones(2), False, None),
    )
    report = wmenv.check(env, steps=4)
    assert not report.ok and "terminated_threshold=0.5" in str(report)


def test_cli_takes_a_file_path_and_fails_in_one_line(tmp_path):
    import subprocess
    import sys

    factory = tmp_path / "factory.py"
    factory.write_text(
        "import gymnasium as gym, numpy as np, torch, wmenv\n"
        "def make():\n"
        "    return wmenv.WorldModelVectorEnv(None, 2, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),\n"
        "        transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]), initial_state=torch.zeros(2, 1))\n"
    )

    import os

    path = os.pathsep.join([os.path.dirname(os.path.dirname(wmenv.__file__)), os.environ.get("PYTHONPATH", "")])

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "wmenv", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": path},
        )

    good = run("check", f"{factory}:make", "--steps", "3")
    assert good.returncode == 0 and "wmenv check: ok" in good.stdout, good.stderr
    for target, says in (
        ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
        (f"{factory}:missing", "has no callable 'missing'"),
        (f"{tmp_path}/absent.py:make", "no such file"),
    ):
        bad = run("check", target)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr
    ev = run("evaluate", f"{factory}:make", "--real-env", "Pendulum-v1")
    assert ev.returncode != 0 or "open-loop" in ev.stdout


# wmenv.evaluate: the model against real data.


def test_evaluate_the_demo_model_against_real_cartpole(backend, tmp_path):
    from wmenv import demo
    from wmenv.evaluation import collect

    torch.manual_seed(0)
    model = demo.build_model(torch, hidden=64)
    transitions = demo.Transitions()
    demo.collect(transitions, 2000, 0)
    demo.train_model(torch, model, transitions, 3, 0)
    real = collect(gym.make("CartPole-v1"), episodes=15, seed=1)
    env = WorldModelVectorEnv(model, 32, demo.OBS_SPACE, gym.spaces.Discrete(2), backend=backend)
    result = wmenv.evaluate(env, real, horizon=8)
    mse = result.observation_mse
    assert result.starts > 32 and mse.shape == (8,) and np.isfinite(mse).all()
    assert mse[-1] > mse[0] * 2  # open-loop error grows with the horizon
    assert result.reward_mae.shape == (8,) and np.isfinite(result.reward_mae).all()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "ev.png").exists() is False and result.plot(str(tmp_path / "ev.png"))
    assert (tmp_path / "ev.png").stat().st_size > 1000
    single = WorldModelEnv(
        model,
        demo.OBS_SPACE,
        gym.spaces.Discrete(2),
        backend=backend,
        batched_model=True,
        reset_fn=lambda m: (torch.zeros(1, 4), torch.zeros(1, 4)),
    )
    one = wmenv.evaluate(single, real, horizon=8, max_starts=20)
    assert np.isfinite(one.observation_mse).all()


def test_evaluate_refuses_what_it_cannot_use(backend):
    env = WorldModelVectorEnv(None, 2, OBS, ACT, backend=backend, transition_fn=lambda m, s, a: (s, s))
    with pytest.raises(ValueError, match="evaluate needs data"):
        wmenv.evaluate(env)
    with pytest.raises(ValueError, match="lacks 'next_observations'"):
        wmenv.evaluate(env, {"observations": np.zeros((3, 2)), "actions": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="horizon must be a positive int"):
        wmenv.evaluate(env, {}, horizon=0)
    with pytest.raises(
        TypeError, match=r"must be a mapping of arrays .* got TimeLimit; a Gymnasium env goes in real_env="
    ):
        wmenv.evaluate(env, gym.make("Pendulum-v1"))
    with pytest.raises(TypeError, match=r"must be a mapping of arrays .* got list$"):
        wmenv.evaluate(env, [1, 2])


def test_check_reports_episode_lengths_of_a_single_env(backend):
    env = WorldModelEnv(
        None,
        OBS,
        ACT,
        backend=backend,
        initial_state=torch.zeros(2),
        max_episode_steps=4,
        transition_fn=lambda m, s, a: (s, s, 0.0),
    )
    assert "episodes ended in 8 steps: 2, mean length 4.0 steps" in str(wmenv.check(env, steps=8))
    always = WorldModelEnv(
        None,
        OBS,
        ACT,
        backend=backend,
        initial_state=torch.zeros(2),
        transition_fn=lambda m, s, a: (s, s, 0.0, True, False, None),
    )
    assert "every episode ends at its first step" in str(wmenv.check(always, steps=4))
