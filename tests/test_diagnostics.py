"""Models that are wrong say so: checker-friendly defaults, warnings with the
fix, integral actions, batched models, frames, wmenv.check and the CLI."""

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import wmenv
from wmenv import WorldModelVectorEnv, WorldModelWarning
from wmenv import torchwm as twm

from models import Dynamics

BOX4 = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT1 = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
IMAGE = gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)


def test_default_env_passes_gymnasiums_check_env(make_env):
    env = make_env(Dynamics(), BOX4, ACT1, max_episode_steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    env.reset(seed=0)
    info = env.step(np.zeros(1, np.float32))[4]
    assert "model_state" not in info and isinstance(env.state, torch.Tensor)


# TorchWM's own tests (tests/test_world_model_env.py), against wmenv.torchwm.


class CountingWorldModel:
    def reset(self, seed=None, options=None):
        return {"count": 0}, np.array([0.0, 0.0], dtype=np.float32), {"seed": seed}

    def step(self, state, action):
        count = state["count"] + 1
        action_value = float(np.asarray(action)[0])
        return {
            "state": {"count": count},
            "observation": np.array([count, action_value], dtype=np.float32),
            "reward": count + action_value,
            "terminated": count >= 2,
            "info": {"action_shape": np.asarray(action).shape},
        }


def test_torchwm_module_keeps_torchwm_defaults(backend):
    env = twm.WorldModelEnv(
        CountingWorldModel(),
        observation_space=gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
        max_episode_steps=3,
        torch_actions=False,
        backend=backend,
    )
    obs, info = env.reset(seed=7)
    assert np.array_equal(obs, [0.0, 0.0]) and info == {"seed": 7} and env.state == {"count": 0}
    obs, reward, terminated, truncated, info = env.step(np.array([0.5], dtype=np.float32))
    assert np.array_equal(obs, [1.0, 0.5]) and reward == 1.5 and terminated is False and truncated is False
    assert info["action_shape"] == (1,) and info["model_state"] == {"count": 1} and info["elapsed_steps"] == 1
    _, _, terminated, truncated, _ = env.step(np.array([0.0], dtype=np.float32))
    assert terminated is True and truncated is False
    made = twm.make_world_model_env(
        CountingWorldModel(),
        observation_space=env.observation_space,
        action_space=env.action_space,
        seed=3,
        torch_actions=False,
    )
    assert isinstance(made, twm.WorldModelEnv) and made.info_model_state
    # TorchWM seeds both spaces with the seed itself
    a = gym.spaces.Box(-1, 1, (1,), np.float32)
    a.seed(3)
    assert np.array_equal(made.action_space.sample(), a.sample())


def test_torchwm_action_transform_and_dict_tuple_reset(backend):
    env = twm.WorldModelEnv(
        object(),
        observation_space=gym.spaces.Dict({"latent": gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)}),
        action_space=gym.spaces.Discrete(3),
        reset_fn=lambda model, seed, options: ({"latent": np.array([0.0], dtype=np.float32)}, {"episode": 0}),
        transition_fn=lambda model, state, action: (
            {"latent": np.array([float(action)], dtype=np.float32)},
            2.0,
            False,
            False,
            {"model_state": {"latent": np.array([float(action)], dtype=np.float32)}},
        ),
        action_transform_fn=lambda model, action: int(action),
        backend=backend,
    )
    obs, info = env.reset()
    assert info == {"episode": 0}
    obs, reward, *_, info = env.step(2)
    assert np.array_equal(obs["latent"], [2.0]) and reward == 2.0
    assert np.array_equal(info["model_state"]["latent"], [2.0])


# Warnings, once per env, with the fix in the message.


def image_env(make_env, image):
    return make_env(
        None,
        IMAGE,
        gym.spaces.Discrete(2),
        transition_fn=lambda m, s, a: (s, image()),
        initial_state=0,
        initial_observation=np.zeros((3, 16, 16), np.uint8),
    )


def test_float_image_for_a_uint8_space_warns_once_per_env(make_env):
    env = image_env(make_env, lambda: torch.rand(3, 16, 16))
    env.reset(seed=0)
    with pytest.warns(
        WorldModelWarning,
        match=r"float32 with values in \[.*\] but the observation space's dtype is "
        r"uint8: casting loses information \(an image in \[0, 1\]",
    ):
        env.step(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.step(1)  # said once
    other = image_env(make_env, lambda: torch.rand(3, 16, 16))
    other.reset(seed=0)
    with pytest.warns(WorldModelWarning):
        other.step(1)  # once per env


def test_exact_casts_do_not_warn(make_env):
    env = image_env(make_env, lambda: torch.full((3, 16, 16), 7.0))
    env.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert env.step(1)[0][0, 0, 0] == 7


@pytest.mark.parametrize(
    "result", [{"obs_pred": np.zeros(4, np.float32), "reward": 1.0}, {"mean": 0, "std": 1, "stoch": 2, "deter": 3}]
)
def test_unknown_mapping_keys_warn(make_env, result):
    env = make_env(None, BOX4, ACT1, transition_fn=lambda m, s, a: result, initial_state=np.zeros(4, np.float32))
    env.reset(seed=0)
    with pytest.warns(WorldModelWarning, match="does not recognise.*Accepted observation keys: observation, obs"):
        env.step(np.zeros(1, np.float32))


# Integral actions.


@pytest.mark.parametrize(
    "space, action",
    [
        (gym.spaces.Discrete(3), 2.5),
        (gym.spaces.Discrete(3), "1"),
        (gym.spaces.Discrete(3), torch.tensor(1.5)),
        (gym.spaces.Discrete(3), None),
        (gym.spaces.MultiDiscrete([3, 3]), [1.0, 0.5]),
        (gym.spaces.MultiBinary(2), np.array([0.0, np.nan])),
        (gym.spaces.Discrete(3), float("inf")),
    ],
    ids=repr,
)
@pytest.mark.parametrize("torch_actions", [True, False])
def test_integer_spaces_need_integral_actions(make_env, space, action, torch_actions):
    env = make_env(
        None,
        BOX4,
        space,
        transition_fn=lambda m, s, a: (s, s),
        initial_state=np.zeros(4, np.float32),
        torch_actions=torch_actions,
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"is not an integer, as {type(space).__name__}"):
        env.step(action)


@pytest.mark.parametrize("action", [2.0, np.float32(1.0), torch.tensor(2.0), True, np.int8(1)], ids=repr)
def test_integral_values_of_other_types_are_accepted(make_env, action):
    env = make_env(
        None, BOX4, gym.spaces.Discrete(3), transition_fn=lambda m, s, a: (s, s), initial_state=np.zeros(4, np.float32)
    )
    env.reset(seed=0)
    env.step(action)


def test_vector_env_needs_integral_actions(backend):
    env = WorldModelVectorEnv(
        None,
        2,
        BOX4,
        gym.spaces.Discrete(3),
        transition_fn=lambda m, s, a: (s, s),
        initial_state=torch.zeros(2, 4),
        backend=backend,
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match="is not an integer"):
        env.step(np.array([1.0, 0.5]))
    env.step(np.array([1.0, 2.0]))


# Models that always carry a batch dimension.


class BatchOfOne:
    def __init__(self):
        self.actions = []

    def reset(self, seed=None, options=None):
        state = torch.zeros(1, 4)
        return state, state

    def step(self, state, action):
        self.actions.append(action)
        nxt = state + action.sum()
        return {"state": nxt, "observation": nxt, "reward": nxt.sum(-1), "terminated": nxt[:, 0] > 10}


def test_batched_model_adds_and_removes_a_batch_of_one(make_env):
    model = BatchOfOne()
    env = make_env(model, BOX4, ACT1, batched_model=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,)
    obs, reward, terminated, truncated, _ = env.step(np.array([0.5], np.float32))
    assert obs.shape == (4,) and reward == 2.0 and terminated is False
    assert model.actions[0].shape == (1, 1) and env.state.shape == (1, 4)
    with pytest.raises(ValueError, match=r"got \(1, 4\): a leading batch of one; pass batched_model=True"):
        make_env(BatchOfOne(), BOX4, ACT1).reset(seed=0)


# Frames.


@pytest.mark.parametrize(
    "image, expected",
    [
        (torch.zeros(3, 16, 16, dtype=torch.uint8), (16, 16, 3)),
        (torch.full((1, 16, 16), 0.5), (16, 16, 3)),
        (torch.full((3, 16, 16), 2.0), (3, 16, 16)),  # not image-like: as it is
        (torch.zeros(16, 16, 3, dtype=torch.uint8), (16, 16, 3)),
    ],
)
def test_default_render_of_channels_first_images(make_env, image, expected):
    dtype = np.uint8 if image.dtype == torch.uint8 else np.float32
    space = gym.spaces.Box(0, 255, tuple(image.shape), dtype)
    env = make_env(
        None,
        space,
        ACT1,
        transition_fn=lambda m, s, a: (s, s),
        initial_state=image,
        initial_observation=image,
        render_mode="rgb_array",
    )
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == expected
    if expected[-1] == 3 and len(expected) == 3:
        assert frame.dtype == np.uint8


# wmenv.check and the CLI.


def test_check_reports_a_good_env(make_env):
    report = wmenv.check(make_env(Dynamics(), BOX4, ACT1, max_episode_steps=20), steps=20)
    text = str(report)
    assert report.ok, text
    for phrase in (
        "reset: a 2-tuple",
        "observation from 'observation'",
        "reward from 'reward'",
        "determinism: the same seed",
        "agree",
        "gymnasium check_env: passed",
        "us (model included)",
    ):
        assert phrase in text


def test_check_fails_on_lossy_casts_and_randomness(make_env):
    assert not wmenv.check(image_env(make_env, lambda: torch.rand(3, 16, 16)), steps=5).ok
    noisy = make_env(None, BOX4, ACT1, transition_fn=lambda m, s, a: (s, torch.rand(4)), initial_state=torch.zeros(4))
    report = wmenv.check(noisy, steps=5)
    assert not report.ok and "determinism" in str(report) and "torch.Generator" in str(report)


def good_env():
    return wmenv.WorldModelEnv(Dynamics(), BOX4, ACT1, max_episode_steps=10)


def bad_env():
    return wmenv.WorldModelEnv(
        None, BOX4, ACT1, transition_fn=lambda m, s, a: (s, torch.rand(4)), initial_state=torch.zeros(4)
    )


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "wmenv", *args],
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).parent),
    )


def test_cli_check_exit_codes_and_help():
    good = run_cli("check", "test_diagnostics:good_env", "--steps", "5")
    assert good.returncode == 0 and "wmenv check: ok" in good.stdout, good.stderr
    bad = run_cli("check", "test_diagnostics:bad_env", "--steps", "5")
    assert bad.returncode == 1 and "FAIL determinism" in bad.stdout, bad.stderr
    for out in (run_cli("--help").stdout, run_cli().stdout):
        assert "demo" in out and "quickstart" in out and "check" in out


def test_sb3_adapter_reports_episode_statistics(backend):
    from wmenv.sb3 import WorldModelVecEnv

    venv = WorldModelVecEnv.from_model(
        None,
        2,
        BOX4,
        ACT1,
        transition_fn=lambda m, s, a: (s, s, torch.ones(2)),
        initial_state=torch.zeros(2, 4),
        max_episode_steps=3,
        backend=backend,
    )
    venv.reset()
    infos = []
    for _ in range(3):
        _, _, dones, infos = venv.step(np.zeros((2, 1), np.float32))
    assert dones.all() and infos[0]["episode"]["r"] == 3.0 and infos[1]["episode"]["l"] == 3


def test_check_reports_the_step_of_an_env_that_already_stepped(make_env):
    env = make_env(
        None,
        gym.spaces.Box(-1e3, 1e3, (2,), np.float32),
        gym.spaces.Box(-1, 1, (2,), np.float32),
        transition_fn=lambda m, s, a: (s, s, 0.0),
        initial_state=np.zeros(2, np.float32),
        torch_actions=False,
    )
    env.reset(seed=0)
    env.step(np.zeros(2, np.float32))  # the one-call step is in use from here on
    lines = wmenv.check(env, steps=3).lines
    assert "step: a 3-tuple read as (next_state, obs, reward)" in lines
    assert env._plan is not None and env._plan[0] is env._transition  # left as it was


@pytest.mark.parametrize(
    "reset, says",
    [
        (lambda m: (np.zeros(2, np.float32), {"a": 1}), "read as (obs, info): its second item is a mapping and"),
        (lambda m: (np.zeros(5, np.float32), {"a": 1}), "read as (state, obs): its first item does not match"),
        (lambda m: (np.zeros(5, np.float32), np.zeros(2, np.float32)), "read as (state, obs): its second item is not"),
    ],
)
def test_check_says_which_two_tuple_reset_form_it_read(make_env, reset, says):
    space = gym.spaces.Dict({"a": gym.spaces.Discrete(3)}) if "first item does not" in says else None
    env = make_env(
        None,
        space or gym.spaces.Box(-1e3, 1e3, (2,), np.float32),
        gym.spaces.Box(-1, 1, (2,), np.float32),
        reset_fn=reset,
        transition_fn=lambda m, s, a: (s, {"a": 1} if space else s[:2], 0.0),
        torch_actions=False,
    )
    line = next(line for line in wmenv.check(env, steps=2).lines if line.startswith("reset: "))
    assert says in line


def test_vector_render_gives_numpy_frames_in_torch_mode(backend):
    image = gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)
    frames = []
    for output in ("numpy", "torch"):
        env = WorldModelVectorEnv(
            None,
            2,
            gym.spaces.Dict({"image": image}),
            gym.spaces.Box(-1, 1, (1,), np.float32),
            backend=backend,
            output=output,
            render_mode="rgb_array",
            initial_state=torch.zeros(2, 1),
            initial_observation={"image": torch.full((2, 3, 8, 8), 7, dtype=torch.uint8)},
            transition_fn=lambda m, s, a: (s, {"image": torch.zeros(2, 3, 8, 8, dtype=torch.uint8)}),
        )
        env.reset(seed=0)
        frames.append(env.render())
    for frame in frames:
        assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.shape == (2, 8, 8, 3)
    assert np.array_equal(frames[0], frames[1])


def test_same_step_final_obs_of_list_observations(backend):
    from gymnasium.vector import AutoresetMode

    from wmenv.autoreset import env_slice as _env_slice

    assert _env_slice([np.arange(4).reshape(2, 2), np.zeros((2, 1))], 1)[0].tolist() == [2, 3]
    env = WorldModelVectorEnv(
        None,
        2,
        None or gym.spaces.Box(-9, 9, (1,), np.float32),
        gym.spaces.Box(-1, 1, (1,), np.float32),
        backend=backend,
        autoreset_mode=AutoresetMode.SAME_STEP,
        initial_state=torch.zeros(2, 1),
        transition_fn=lambda m, s, a: {"state": s + 1, "observation": s + 1, "terminated": torch.tensor([True, False])},
    )
    env.reset(seed=0)
    info = env.step(np.zeros((2, 1), np.float32))[4]
    assert info["final_obs"][0].tolist() == [1.0] and info["_final_obs"].tolist() == [True, False]
