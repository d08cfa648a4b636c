"""Small world models used across the tests."""

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:  # the wheel matrix runs the torch-free tests without torch
    torch = None


class Recorder:
    """A model whose step returns what a test gives it and records the calls."""

    def __init__(self, result=None, reset_result=None):
        self.result = result
        self.reset_result = reset_result
        self.calls = []

    def step(self, state, action):
        self.calls.append((state, action))
        return self.result(state, action) if callable(self.result) else self.result


if torch is not None:

    class Dynamics(nn.Module):
        """A small MLP: (state, action) -> next state, with reward and termination heads."""

        def __init__(self, obs_dim=4, act_dim=1, hidden=16):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(obs_dim + act_dim, hidden), nn.Tanh(), nn.Linear(hidden, obs_dim + 2))
            self.obs_dim = obs_dim

        def forward(self, state, action):
            out = self.net(torch.cat([state.reshape(-1), action.reshape(-1).float()]))
            next_state = torch.tanh(out[: self.obs_dim])
            return {
                "state": next_state,
                "observation": next_state,
                "reward": out[self.obs_dim],
                "terminated": out[self.obs_dim + 1] > 3.0,
            }

        def reset(self, seed=None, options=None):
            gen = torch.Generator().manual_seed(0 if seed is None else seed)
            state = torch.rand(self.obs_dim, generator=gen) * 0.1
            return state, state.clone()


def step_fn(model, state, action):
    """A module-level transition, picklable."""
    nxt = np.asarray(state, np.float32) + np.asarray(action, np.float32).sum()
    return nxt, nxt, float(nxt.sum())


class DLPackOnly:
    """An array from 'another framework': speaks DLPack, nothing else."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()
