"""The public API and the constructor checks."""

import gymnasium as gym
import numpy as np
import pytest

import wmenv
from wmenv import WorldModelEnv, make_world_model_env

from conftest import ACT1, BOX2, needs_torch, torch
from models import Recorder


def test_public_names():
    assert {"WorldModelEnv", "make_world_model_env", "backend"} <= set(wmenv.__all__)
    assert wmenv.backend() in ("native", "python")


@pytest.mark.parametrize("which", ["observation_space", "action_space"])
def test_spaces_must_be_gymnasium_spaces(make_env, which):
    kwargs = {"observation_space": BOX2, "action_space": ACT1, which: (2,)}
    with pytest.raises(TypeError, match=f"{which} must be a gymnasium.spaces.Space, got tuple"):
        make_env(Recorder(), kwargs["observation_space"], kwargs["action_space"])


def test_metadata(make_env):
    env = make_env(Recorder(), BOX2, ACT1)
    assert env.metadata == {"render_modes": ["rgb_array"], "render_fps": 30}


def test_render_mode_is_validated(make_env):
    assert make_env(Recorder(), BOX2, ACT1, render_mode="rgb_array").render_mode == "rgb_array"
    with pytest.raises(ValueError, match="render_mode must be None or one of \\['rgb_array'\\], got 'human'"):
        make_env(Recorder(), BOX2, ACT1, render_mode="human")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_max_episode_steps_is_validated(make_env, bad):
    with pytest.raises(ValueError, match="max_episode_steps must be None or a positive int"):
        make_env(Recorder(), BOX2, ACT1, max_episode_steps=bad)


def test_max_episode_steps_accepts_numpy_int(make_env):
    assert make_env(Recorder(), BOX2, ACT1, max_episode_steps=np.int64(5)).max_episode_steps == 5


def test_seed_seeds_spaces_and_generator(make_env):
    fresh = lambda: (gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (1,)))
    a = make_env(Recorder(), *fresh(), seed=7)
    b = make_env(Recorder(), *fresh(), seed=7)
    assert np.array_equal(a.action_space.sample(), b.action_space.sample())
    assert np.array_equal(a.observation_space.sample(), b.observation_space.sample())
    assert a.np_random.random() == b.np_random.random()


def test_reset_seed_reseeds_and_passes_empty_options(make_env):
    seen = []
    env = make_env(Recorder(), BOX2, ACT1, reset_fn=lambda m, seed, options: seen.append((seed, options)))
    first, _ = env.reset(seed=3)
    sample_after_first = env.action_space.sample()
    second, _ = env.reset(seed=3)
    assert np.array_equal(first, second)
    assert np.array_equal(sample_after_first, env.action_space.sample())
    assert seen == [(3, {}), (3, {})]
    env.reset(options={"level": 2})
    assert seen[-1] == (None, {"level": 2})


def test_state_is_the_model_state(make_env):
    model = Recorder(result=lambda s, a: ("next-state", np.zeros(2, np.float32)))
    env = make_env(model, BOX2, ACT1, initial_state="start", torch_actions=False)
    env.reset()
    assert env.state == "start"
    env.step(np.zeros(1, np.float32))
    assert env.state == "next-state"


@needs_torch
def test_render_uses_render_fn(make_env):
    seen = []

    def render_fn(model, state, last_obs):
        seen.append((state, last_obs))
        return torch.zeros(2, 2, 3, dtype=torch.uint8)

    env = make_env(
        Recorder(),
        BOX2,
        ACT1,
        render_fn=render_fn,
        render_mode="rgb_array",
        initial_state="s0",
        initial_observation=np.ones(2, np.float32),
    )
    env.reset()
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (2, 2, 3) and frame.dtype == np.uint8
    assert seen[0][0] == "s0" and np.array_equal(seen[0][1], np.ones(2))


@needs_torch
@pytest.mark.parametrize("key", ["image", "pixels", "rgb"])
def test_render_picks_image_entries_of_mapping_observations(make_env, key):
    space = gym.spaces.Dict({key: gym.spaces.Box(0, 255, (2, 2, 3), np.uint8), "v": BOX2})
    obs = {key: torch.full((2, 2, 3), 9, dtype=torch.uint8), "v": torch.zeros(2)}
    env = make_env(Recorder(), space, ACT1, initial_observation=obs)
    env.reset()
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.shape == (2, 2, 3) and (frame == 9).all()


@needs_torch
def test_render_falls_back_to_the_observation(make_env):
    env = make_env(Recorder(), BOX2, ACT1, initial_observation=torch.ones(2))
    env.reset()
    frame = env.render()
    assert isinstance(frame, np.ndarray) and np.array_equal(frame, np.ones(2, np.float32))


def test_close_calls_model_close_once(make_env):
    class Closable(Recorder):
        closed = 0

        def close(self):
            self.closed += 1

    model = Closable()
    env = make_env(model, BOX2, ACT1)
    env.close()
    env.close()
    assert model.closed == 1


def test_close_without_model_close(make_env):
    make_env(Recorder(), BOX2, ACT1).close()


def test_make_world_model_env(backend):
    env = make_world_model_env(Recorder(), observation_space=BOX2, action_space=ACT1, backend=backend)
    assert isinstance(env, WorldModelEnv) and env.backend == backend
    with pytest.raises(TypeError):
        make_world_model_env(Recorder(), observation_space=BOX2)


def test_unknown_backend_argument():
    with pytest.raises(ValueError, match="backend must be one of 'native', 'python', got 'cuda'"):
        WorldModelEnv(Recorder(), BOX2, ACT1, backend="cuda")


def test_both_signatures_take_exactly_the_shared_options():
    """SHARED_OPTIONS is the one list: both constructors take each of its
    options, with the same default, plus only their own."""
    import inspect

    from wmenv import WorldModelEnv, WorldModelVectorEnv
    from wmenv.options import SHARED_OPTIONS

    single = inspect.signature(WorldModelEnv.__init__).parameters
    vector = inspect.signature(WorldModelVectorEnv.__init__).parameters

    def keyword_only(params):
        return {n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    own_single, own_vector = {"seed"}, {"seed", "autoreset_mode", "batch_axes", "group_size", "capture"}
    assert set(keyword_only(single)) == set(SHARED_OPTIONS) | own_single
    assert set(keyword_only(vector)) == set(SHARED_OPTIONS) | own_vector
    assert len(set(SHARED_OPTIONS)) == len(SHARED_OPTIONS)
    for name in SHARED_OPTIONS:
        assert keyword_only(single)[name] == keyword_only(vector)[name], name


def test_the_shared_options_are_documented_once_for_both_envs():
    import inspect

    from wmenv import WorldModelEnv, WorldModelVectorEnv
    from wmenv.options import OPTION_DOCS, SHARED_OPTIONS

    documented = [line.split(":")[0] for line in OPTION_DOCS.splitlines() if line and not line.startswith(" ")]
    assert sorted(documented) == sorted(SHARED_OPTIONS)
    for cls in (WorldModelEnv, WorldModelVectorEnv):
        doc = inspect.cleandoc(cls.__doc__)  # Python 3.13 dedents docstrings itself: compare them dedented
        assert "{shared options}" not in doc
        for name in SHARED_OPTIONS:
            assert f"\n    {name}: " in doc, (cls.__name__, name)
