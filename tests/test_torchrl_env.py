"""wmenv.torchrl.TorchRLEnv: a TorchRL EnvBase over WorldModelVectorEnv(output="torch")."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

pytest.importorskip("torchrl")
from torchrl.envs.utils import check_env_specs

from wmenv import WorldModelVectorEnv
from wmenv.torchrl import TorchRLEnv

N = 4
OBS = gym.spaces.Box(-9.0, 9.0, (2,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def drift(model, state, action):
    nxt = torch.clamp(state + 0.5 * action, -9, 9)
    return {"state": nxt, "observation": nxt, "reward": -nxt.abs().sum(1), "terminated": nxt.abs().amax(1) >= 8}


def make(backend, **kwargs):
    kwargs.setdefault("max_episode_steps", 5)
    return TorchRLEnv.from_model(
        None,
        N,
        OBS,
        ACT,
        transition_fn=drift,
        initial_state=torch.ones(N, 2),
        initial_observation=torch.ones(N, 2),
        backend=backend,
        **kwargs,
    )


def test_specs_pass_torchrl_checks(backend):
    env = make(backend)
    check_env_specs(env, seed=0)
    assert env.batch_size == torch.Size([N])
    assert env.observation_spec["observation"].shape == (N, 2)
    assert env.action_spec.shape == (N, 2) and env.reward_spec.shape == (N, 1)
    assert env.full_done_spec["done"].shape == (N, 1) and env.full_done_spec["done"].dtype == torch.bool


def test_rollout_steps_every_env_in_one_model_call(backend):
    calls = []

    def counted(model, state, action):
        calls.append(state.shape)
        return drift(model, state, action)

    env = TorchRLEnv.from_model(
        None, N, OBS, ACT, transition_fn=counted, initial_state=torch.zeros(N, 2), backend=backend
    )
    td = env.rollout(6, policy=lambda td: td.set("action", torch.full((N, 2), 0.5)), break_when_any_done=False)
    assert td.batch_size == torch.Size([N, 6]) and calls == [(N, 2)] * 6
    assert torch.allclose(td["next", "observation"][:, -1], torch.full((N, 2), 1.5))
    assert td["next", "reward"].dtype == torch.float32 and td["next", "reward"].shape == (N, 6, 1)


def test_partial_resets_follow_the_reset_mask(backend):
    env = make(backend, max_episode_steps=None)
    td = env.reset()
    action = torch.zeros(N, 2)
    action[0] = 1.0
    for _ in range(3):
        td = env.step(td.set("action", action))["next"]
    assert torch.allclose(td["observation"][0], torch.full((2,), 2.5))
    reset = torch.zeros(N, 1, dtype=torch.bool)
    reset[0] = True
    from tensordict import TensorDict

    out = env.reset(TensorDict({"_reset": reset}, batch_size=[N]))
    assert torch.allclose(out["observation"][0], torch.ones(2))  # only env 0 restarted
    assert not out["done"].any()


def test_time_limits_and_terminations_become_torchrl_flags(backend):
    env = make(backend, max_episode_steps=3)
    td = env.rollout(3, policy=lambda td: td.set("action", torch.zeros(N, 2)), break_when_any_done=False)
    truncated = td["next", "truncated"][:, :, 0]
    assert truncated[:, 2].all() and not truncated[:, :2].any()
    assert torch.equal(td["next", "done"], td["next", "truncated"] | td["next", "terminated"])


def test_discrete_actions_and_dict_observations(backend):
    space = gym.spaces.Dict({"pos": OBS, "speed": gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)})

    def step(model, state, action):
        nxt = state + (action.float().unsqueeze(1) - 1.0)
        return nxt, {"pos": nxt, "speed": nxt[:, :1]}, nxt[:, 0]

    env = TorchRLEnv.from_model(
        None,
        N,
        space,
        gym.spaces.Discrete(3),
        transition_fn=step,
        initial_state=torch.zeros(N, 2),
        initial_observation={"pos": torch.zeros(N, 2), "speed": torch.zeros(N, 1)},
        backend=backend,
    )
    check_env_specs(env, seed=0)
    td = env.reset()
    td = env.step(td.set("action", torch.tensor([0, 1, 2, 2])))["next"]
    assert td["pos"][:, 0].tolist() == [-1.0, 0.0, 1.0, 1.0] and td["speed"].shape == (N, 1)


def test_the_vector_env_must_be_torch_mode(backend):
    with pytest.raises(ValueError, match=r'output="torch"'):
        TorchRLEnv(WorldModelVectorEnv(None, N, OBS, ACT, transition_fn=drift, backend=backend))
    with pytest.raises(TypeError, match=r"must be a WorldModelVectorEnv"):
        TorchRLEnv(gym.make("CartPole-v1"))
    with pytest.raises(TypeError, match=r"sets output itself"):
        TorchRLEnv.from_model(None, N, OBS, ACT, transition_fn=drift, output="numpy")
    env = WorldModelVectorEnv(
        None, N, OBS, ACT, transition_fn=drift, backend=backend, output="torch", autoreset_mode=AutoresetMode.DISABLED
    )
    assert TorchRLEnv(env).env is env


def test_a_next_step_vector_env_works_too(backend):
    env = TorchRLEnv(
        WorldModelVectorEnv(
            None, N, OBS, ACT, transition_fn=drift, backend=backend, output="torch", max_episode_steps=2,
            initial_state=torch.ones(N, 2), initial_observation=torch.ones(N, 2),
        )
    )  # fmt: skip
    check_env_specs(env, seed=0)
    td = env.rollout(5, policy=lambda td: td.set("action", torch.zeros(N, 2)), break_when_any_done=False)
    # TorchRL resets the truncated envs through "_reset"; the vector env does not reset them a second time
    assert td["next", "truncated"][:, :, 0].tolist() == [[False, True, False, True, False]] * N
    assert torch.equal(td["observation"][:, 2], torch.ones(N, 2))


def test_a_collector_and_ppo_loss_train_on_it(backend):
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torch import nn
    from torchrl import collectors

    # torchrl >= 0.12 names it Collector; older releases SyncDataCollector
    Collector = getattr(collectors, "Collector", None) or collectors.SyncDataCollector
    from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    torch.manual_seed(0)
    env = make(backend, max_episode_steps=8)
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 4), NormalParamExtractor()),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    value = ValueOperator(nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1)), in_keys=["observation"])
    collector = Collector(env, actor, frames_per_batch=N * 16, total_frames=N * 16 * 30)
    advantage = GAE(gamma=0.9, lmbda=0.95, value_network=value)
    loss = ClipPPOLoss(actor, value, entropy_coeff=0.0)
    optimiser = torch.optim.Adam(loss.parameters(), lr=3e-3)
    rewards = []
    for data in collector:
        rewards.append(data["next", "reward"].mean().item())
        with torch.no_grad():
            advantage(data)
        flat = data.reshape(-1)
        for _ in range(4):
            out = loss(flat)
            total = out["loss_objective"] + out["loss_critic"]
            optimiser.zero_grad()
            total.backward()
            optimiser.step()
    collector.shutdown()
    # the start is (1, 1); the best policy drives both coordinates to 0 (reward 0)
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 0.3, rewards
