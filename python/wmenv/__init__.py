"""wmenv: a trained world model as a Gymnasium environment.

Example:
    >>> import wmenv
    >>> wmenv.backend() in ("native", "python")
    True
"""

import gymnasium as _gym

from ._backend import DEFAULT as _DEFAULT
from .capture import CaptureError
from .check import CheckReport, check
from .diagnostics import WorldModelWarning
from .env import WorldModelEnv, make_world_model_env
from .evaluation import Evaluation, evaluate
from .planning import Rollout, Snapshot, repeat_state
from .vector import WorldModelVectorEnv

__all__ = [
    "CaptureError",
    "CheckReport",
    "Evaluation",
    "Rollout",
    "Snapshot",
    "WorldModelEnv",
    "WorldModelVectorEnv",
    "WorldModelWarning",
    "backend",
    "check",
    "evaluate",
    "make_world_model_env",
    "repeat_state",
    "__version__",
]
__version__ = "0.1.0"


def backend() -> str:
    """The backend new envs use: ``"native"`` (the compiled ``wmenv._core``)
    or ``"python"`` (``wmenv._core_py``)."""
    return _DEFAULT


# gymnasium.make("wmenv/WorldModel-v0", world_model=..., observation_space=..., action_space=...)
if "wmenv/WorldModel-v0" not in _gym.registry:
    _gym.register(id="wmenv/WorldModel-v0", entry_point="wmenv.env:WorldModelEnv")
