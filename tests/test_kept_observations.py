"""A kept observation never changes: whatever the model does with its memory
(fresh tensors, one reused output buffer, in-place state updates, two
alternating buffers, views of the state), across steps, resets and
autoresets, snapshots, rollouts and both output modes, every observation a
user kept still equals a copy taken when it was returned."""

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wmenv import WorldModelEnv, WorldModelVectorEnv, repeat_state

N = 3
OBS = gym.spaces.Box(-1e6, 1e6, (3,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
BEHAVIOURS = ("fresh", "alias", "buffer", "inplace", "two", "view")
MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED)
EXAMPLES = max(20, int(os.environ.get("WMENV_HYPOTHESIS_EXAMPLES", "150")) // 3)


class Model:
    """A model with one memory behaviour; its observation is ``state + 1``.

    ``batch`` is ``None`` for the single env (shapes ``(3,)``), else the
    number of envs. Env 0 terminates every third call.
    """

    def __init__(self, kind, batch=N):
        self.kind, self.batch, self.calls = kind, batch, 0
        shape = (3,) if batch is None else (batch, 3)
        self.out = torch.zeros(shape)
        self.buffers = [torch.zeros(shape), torch.zeros(shape)]

    def reset(self, seed=None, options=None):
        state = torch.zeros((3,) if self.batch is None else (self.batch, 3))
        return state, state  # the observation is the state: an in-place model writes into it next

    def step(self, state, action):
        self.calls += 1
        if self.batch is None:
            reward, terminated = float(self.calls), self.calls % 3 == 0
        else:
            reward = torch.full((self.batch,), float(self.calls))
            terminated = torch.zeros(self.batch, dtype=torch.bool)
            terminated[0] = self.calls % 3 == 0
        kind = self.kind
        if kind == "fresh":
            nxt = state + 1
            next_state, obs = nxt, nxt * 1.0
        elif kind == "alias":
            nxt = state + 1
            next_state, obs = nxt, nxt
        elif kind == "buffer":
            torch.add(state, 1, out=self.out)
            next_state, obs = self.out.clone(), self.out
        elif kind == "inplace":
            state.add_(1)
            next_state, obs = state, state
        elif kind == "two":
            buffer = self.buffers[self.calls % 2]
            torch.add(state, 1, out=buffer)
            next_state, obs = buffer.clone(), buffer
        else:  # "view": state and observation are two halves of one tensor
            both = torch.cat([state + 1, state + 1], dim=-1)
            next_state, obs = both[..., :3], both[..., 3:]
        return {"state": next_state, "observation": obs, "reward": reward, "terminated": terminated}


class Kept:
    """Every observation handed out, beside a copy taken at once."""

    def __init__(self):
        self.items = []

    def keep(self, obs):
        if isinstance(obs, torch.Tensor):
            self.items.append((obs, obs.clone()))
        elif isinstance(obs, np.ndarray) and obs.dtype == object:
            for item in obs:
                if item is not None:
                    self.keep(item)
        else:
            self.items.append((obs, np.array(obs, copy=True)))
        return obs

    def changed(self) -> list:
        bad = []
        for i, (obs, copy) in enumerate(self.items):
            same = torch.equal(obs, copy) if isinstance(obs, torch.Tensor) else np.array_equal(obs, copy)
            if not same:
                bad.append(i)
        return bad


def vector_env(kind, backend, mode=AutoresetMode.NEXT_STEP, output="numpy"):
    return WorldModelVectorEnv(
        Model(kind), N, OBS, ACT, backend=backend, autoreset_mode=mode, output=output, max_episode_steps=5
    )


def step_vector(env, kept):
    if env.autoreset_mode is AutoresetMode.DISABLED and env._autoreset.any():
        obs, _ = env.reset(options={"reset_mask": env._autoreset.copy()})
        kept.keep(obs)
    obs, _, _, _, info = env.step(np.zeros((N, 1), np.float32))
    kept.keep(obs)
    if "final_obs" in info:
        kept.keep(info["final_obs"])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
@pytest.mark.parametrize("kind", BEHAVIOURS)
def test_every_autoreset_mode_keeps_observations(backend, kind, mode):
    env, kept = vector_env(kind, backend, mode), Kept()
    kept.keep(env.reset(seed=0)[0])
    for _ in range(12):
        step_vector(env, kept)
    assert kept.changed() == []


def test_the_issues_buffer_writing_model_keeps_every_observation(backend):
    class Buffer:
        def __init__(self):
            self.out, self.calls = torch.zeros(2, 3), 0

        def step(self, s, a):
            self.calls += 1
            torch.add(s, 1, out=self.out)
            terminated = torch.tensor([self.calls == 2, False])
            return {
                "state": self.out.clone(),
                "observation": self.out,
                "reward": torch.zeros(2),
                "terminated": terminated,
            }

    env = WorldModelVectorEnv(Buffer(), 2, OBS, ACT, backend=backend, initial_state=torch.zeros(2, 3))
    env.reset(seed=0)
    kept = [env.step(np.zeros((2, 1), np.float32))[0] for _ in range(6)]
    assert [float(k[1, 0]) for k in kept] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


@pytest.mark.parametrize("kind", BEHAVIOURS)
def test_single_env_keeps_reset_and_step_observations(backend, kind):
    env = WorldModelEnv(Model(kind, batch=None), OBS, ACT, backend=backend)
    kept = Kept()
    for _ in range(3):
        kept.keep(env.reset(seed=0)[0])
        for _ in range(4):
            kept.keep(env.step(np.zeros(1, np.float32))[0])
    assert kept.changed() == []


def test_the_reset_observation_survives_an_in_place_model(backend):
    env = WorldModelEnv(Model("inplace", batch=None), OBS, ACT, backend=backend)
    first, _ = env.reset(seed=0)
    after, *_ = env.step(np.zeros(1, np.float32))
    assert first.tolist() == [0.0, 0.0, 0.0] and after.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("kind", ("inplace", "buffer", "two"))
def test_set_state_then_keep(backend, kind):
    for env in (
        WorldModelEnv(Model(kind, batch=None), OBS, ACT, backend=backend),
        vector_env(kind, backend),
    ):
        action = np.zeros(env.action_space.shape, np.float32)
        kept = Kept()
        kept.keep(env.reset(seed=0)[0])
        snap = env.get_state(copy=True)
        for _ in range(2):
            env.set_state(snap)
            for _ in range(3):
                kept.keep(env.step(action)[0])
        assert kept.changed() == []


@pytest.mark.parametrize("kind", BEHAVIOURS)
def test_rollout_observations_are_each_steps_own(backend, kind):
    env = vector_env(kind, backend)
    env.reset(seed=0)
    out = env.rollout(np.zeros((4, N, 1), np.float32), repeat_state(torch.zeros(3), N))
    assert out.observations[:, 1, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out.observations.shape == (4, N, 3)


def test_rollout_of_a_buffer_model_records_each_step(backend):
    class Buffer:
        def __init__(self):
            self.out = torch.zeros(2, 1)

        def step(self, s, a):
            torch.add(s, 1, out=self.out)
            return self.out.clone(), self.out, self.out[:, 0].clone()

    env = WorldModelVectorEnv(Buffer(), 2, gym.spaces.Box(-9, 9, (1,)), ACT, backend=backend)
    out = env.rollout(np.zeros((4, 2, 1), np.float32), torch.zeros(2, 1))
    assert out.rewards[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out.observations[:, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("kind", ("inplace", "buffer", "two", "alias"))
def test_torch_output_keeps_observations(backend, kind):
    single = WorldModelEnv(Model(kind, batch=None), OBS, ACT, backend=backend, output="torch")
    kept = Kept()
    kept.keep(single.reset(seed=0)[0])
    for _ in range(4):
        kept.keep(single.step(np.zeros(1, np.float32))[0])
    env = vector_env(kind, backend, output="torch")
    kept.keep(env.reset(seed=0)[0])
    for _ in range(8):
        kept.keep(env.step(np.zeros((N, 1), np.float32))[0])
    assert kept.changed() == []


def test_fresh_observations_cost_no_copy(backend):
    made = []

    class Fresh:
        def step(self, s, a):
            nxt = s + 1
            obs = nxt * 2
            made.append(obs.data_ptr())
            return nxt, obs, torch.zeros(N)

    env = WorldModelVectorEnv(Fresh(), N, OBS, ACT, backend=backend, initial_state=torch.zeros(N, 3))
    env.reset(seed=0)
    for _ in range(3):
        obs = env.step(np.zeros((N, 1), np.float32))[0]
        assert obs.__array_interface__["data"][0] == made[-1]


def test_stable_baselines3_rollout_collection_stores_true_observations(backend):
    pytest.importorskip("stable_baselines3")
    from wmenv.sb3 import WorldModelVecEnv

    class Buffer:
        def __init__(self):
            self.out, self.calls = torch.zeros(4, 3), 0

        def reset(self, seed=None, options=None):
            state = torch.zeros(4, 3)
            return state, state

        def step(self, s, a):
            self.calls += 1
            torch.add(s, 1, out=self.out)
            terminated = torch.zeros(4, dtype=torch.bool)
            terminated[self.calls % 4] = self.calls % 3 == 0
            return {
                "state": self.out.clone(),
                "observation": self.out,
                "reward": torch.ones(4),
                "terminated": terminated,
            }

    venv = WorldModelVecEnv.from_model(Buffer(), 4, OBS, ACT, backend=backend)
    # collect_rollouts keeps the last observation and copies it into its
    # buffer only after the next env.step, as SB3 does
    last, truth = venv.reset(), None
    truth = last.copy()
    wrong = 0
    for _ in range(20):
        new, _, _, infos = venv.step(np.zeros((4, 1), np.float32))
        stored = np.array(last)
        wrong += not np.array_equal(stored, truth)
        for info in infos:
            if "terminal_observation" in info:
                wrong += not np.isfinite(info["terminal_observation"]).all()
        last, truth = new, new.copy()
    assert wrong == 0


OPS = st.lists(st.sampled_from(["step", "step", "step", "reset", "partial", "snapshot", "rollout"]), max_size=14)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(BEHAVIOURS), mode=st.sampled_from(MODES), ops=OPS, output=st.sampled_from(["numpy", "torch"])
)
def test_property_no_kept_observation_ever_changes(backend, kind, mode, ops, output):
    if output == "torch" and mode is AutoresetMode.SAME_STEP:
        mode = AutoresetMode.NEXT_STEP  # torch output has no SAME_STEP
    env, kept = vector_env(kind, backend, mode, output), Kept()
    kept.keep(env.reset(seed=0)[0])
    snap = None
    for op in ops:
        if op == "step":
            step_vector(env, kept)
        elif op == "reset":
            kept.keep(env.reset()[0])
        elif op == "partial":
            mask = np.array([True, False, True])
            kept.keep(env.reset(options={"reset_mask": mask})[0])
        elif op == "snapshot":
            if snap is None:
                snap = env.get_state(copy=True)
            else:
                env.set_state(snap)
        else:
            if output == "numpy":
                out = env.rollout(np.zeros((3, N, 1), np.float32), repeat_state(torch.zeros(3), N))
                kept.keep(out.observations)
    step_vector(env, kept)
    assert kept.changed() == []
