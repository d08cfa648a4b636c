"""Differentiable imagination: actions with a graph through step, and rollout(policy, state, horizon)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from wmenv import WorldModelEnv, WorldModelVectorEnv

N = 6
OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


class Dynamics(nn.Module):
    """A differentiable model: the state moves with the action; the reward is -||state - goal||²."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.mix = nn.Linear(2, 3)
        self.goal = torch.tensor([0.5, -0.5, 0.25])

    def forward(self, state, action):
        nxt = state + 0.3 * torch.tanh(self.mix(action))
        return {"state": nxt, "observation": nxt, "reward": -((nxt - self.goal) ** 2).sum(-1)}


def policy_net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2), nn.Tanh())


def test_a_step_keeps_the_actions_graph_with_grad_true(backend):
    policy = policy_net()
    env = WorldModelVectorEnv(
        Dynamics(), N, OBS, ACT, backend=backend, output="torch", grad=True, initial_state=torch.zeros(N, 3)
    )
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(policy(obs))
    assert reward.requires_grad and obs.requires_grad
    reward.sum().backward()
    grads = [p.grad for p in policy.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    single = WorldModelEnv(
        Dynamics(), OBS, ACT, backend=backend, output="torch", grad=True, initial_state=torch.zeros(3)
    )
    obs, _ = single.reset(seed=0)
    _, reward, *_ = single.step(policy(obs))
    assert reward.shape == () and reward.requires_grad


def test_without_grad_nothing_carries_a_graph(backend):
    policy = policy_net()
    env = WorldModelVectorEnv(Dynamics(), N, OBS, ACT, backend=backend, output="torch", initial_state=torch.zeros(N, 3))
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(policy(obs))
    assert not reward.requires_grad and not obs.requires_grad


def test_an_imagined_return_trains_the_policy(backend):
    policy = policy_net()
    env = WorldModelVectorEnv(
        Dynamics(), N, OBS, ACT, backend=backend, output="torch", grad=True, initial_state=torch.zeros(N, 3)
    )
    env.reset(seed=0)
    optimiser = torch.optim.Adam(policy.parameters(), lr=0.05)
    start = torch.zeros(N, 3)
    returns = []
    for _ in range(40):
        out = env.rollout(policy, start, horizon=5, discount=0.99)
        assert out.observations.shape == (5, N, 3) and out.rewards.shape == (5, N) and out.returns.shape == (N,)
        loss = -out.returns.mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        returns.append(float(out.returns.mean().detach()))
    assert returns[-1] > returns[0] + 0.5, returns  # backpropagated through the model into the policy
    assert env.elapsed_steps.tolist() == [0] * N  # the env's own position is untouched


def test_policy_rollouts_mask_rewards_after_termination(backend):
    def step(model, state, action):
        nxt = state + 1.0
        return {"state": nxt, "observation": nxt, "reward": nxt[:, 0], "terminated": nxt[:, 0] >= 2}

    for output in ("torch", "numpy"):
        env = WorldModelVectorEnv(
            None, 2, gym.spaces.Box(-9, 9, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32),
            transition_fn=step, backend=backend, output=output, initial_state=torch.zeros(2, 1),
        )  # fmt: skip
        out = env.rollout(lambda s: torch.zeros(2, 1), torch.tensor([[0.0], [5.0]]), horizon=4)
        rewards = out.rewards.tolist() if output == "numpy" else out.rewards.detach().tolist()
        assert rewards == [[1.0, 6.0], [2.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
        assert np.asarray(out.terminated).tolist() == [[False, True], [True, True], [True, True], [True, True]]
        assert float(out.returns[0]) == 3.0 and float(out.returns[1]) == 6.0


def test_a_policy_rollout_takes_its_horizon_as_the_third_argument(backend):
    env = WorldModelVectorEnv(Dynamics(), N, OBS, ACT, backend=backend, output="torch", initial_state=torch.zeros(N, 3))
    policy = policy_net()
    positional = env.rollout(policy, torch.zeros(N, 3), 4)
    keyword = env.rollout(policy, torch.zeros(N, 3), horizon=4)
    assert positional.rewards.shape == (4, N)
    assert torch.equal(positional.rewards, keyword.rewards)
    discounted = env.rollout(policy, torch.zeros(N, 3), 0.5, horizon=4)  # a float third is still the discount
    weights = torch.tensor([1.0, 0.5, 0.25, 0.125]).unsqueeze(1)
    assert torch.allclose(discounted.returns, (keyword.rewards * weights).sum(0))


def test_policy_rollout_arguments_are_checked(backend):
    env = WorldModelVectorEnv(Dynamics(), N, OBS, ACT, backend=backend, output="torch", initial_state=torch.zeros(N, 3))
    with pytest.raises(ValueError, match=r"needs horizon= a positive int"):
        env.rollout(policy_net(), torch.zeros(N, 3))
    with pytest.raises(TypeError, match=r"horizon= is for a policy rollout"):
        env.rollout(np.zeros((2, N, 2), np.float32), torch.zeros(N, 3), horizon=2)


@pytest.mark.parametrize("output", ["numpy", "torch"])
def test_a_tensor_action_reaches_the_model_detached_without_grad(backend, output):
    seen = []

    def step(model, state, action):
        seen.append(action)
        return state + action.sum(), state + action.sum(), 0.0

    env = WorldModelEnv(
        None, gym.spaces.Box(-9, 9, (2,), np.float32), ACT, transition_fn=step, backend=backend, output=output,
        initial_state=torch.zeros(2),
    )  # fmt: skip
    env.reset(seed=0)
    action = torch.full((2,), 0.5, requires_grad=True)
    env.step(action)
    assert isinstance(seen[0], torch.Tensor) and not seen[0].requires_grad
    assert torch.equal(seen[0], action.detach())
