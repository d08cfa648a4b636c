# Type stub of the compiled wmenv._core; signatures identical to wmenv._core_py.
from typing import Any, Callable, Optional

import numpy as np

OBSERVATION_KEYS: tuple[str, ...]

def set_torch(module: Any) -> None: ...
def to_numpy(x: Any) -> np.ndarray: ...
def conform_observation(
    obs: Any,
    spec: Any,
    path: str = "observation",
    protect: bool = False,
    cast_hook: Optional[Callable[[str, np.ndarray, Any], Any]] = None,
) -> Any: ...
def secure_observation(items: tuple, index: int) -> tuple: ...
def matches_structure(x: Any, spec: Any) -> bool: ...
def as_reward(x: Any) -> float: ...
def as_flag(x: Any, name: str) -> bool: ...
def normalize_step(
    result: Any,
    state: Any,
    action: Any,
    obs_spec: Any,
    reward_fn: Optional[Callable[[Any, Any, Any], Any]],
    terminal_fn: Optional[Callable[[Any, Any, Any], Any]],
    elapsed_steps: int,
    info_model_state: bool,
    protect: bool = False,
    cast_hook: Optional[Callable[[str, np.ndarray, Any], Any]] = None,
) -> tuple[Any, Any, float, bool, bool, dict]: ...
def normalize_reset(
    result: Any,
    obs_spec: Any,
    default_state: Any,
    default_obs: Any,
    protect: bool = False,
    cast_hook: Optional[Callable[[str, np.ndarray, Any], Any]] = None,
) -> tuple[Any, Any, dict]: ...
def convert_action(action: Any, spec: Any) -> Any: ...
def as_batch(x: Any, num_envs: int, dtype: Any, name: str) -> np.ndarray: ...
def normalize_step_batch(
    result: Any,
    state: Any,
    action: Any,
    obs_spec: Any,
    reward_fn: Optional[Callable[[Any, Any, Any], Any]],
    terminal_fn: Optional[Callable[[Any, Any, Any], Any]],
    num_envs: int,
    protect: bool = False,
    cast_hook: Optional[Callable[[str, np.ndarray, Any], Any]] = None,
) -> tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray, dict]: ...
def run_step(plan: tuple, state: Any, action: Any, elapsed_steps: int) -> tuple[Any, Any, float, bool, bool, dict]: ...
def run_step_batch(
    plan: tuple, state: Any, action: Any, elapsed: np.ndarray
) -> tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray, dict, np.ndarray, np.ndarray]: ...
def parse_step(result: Any, state: Any) -> tuple[Any, Any, Any, Any, Any, Any]: ...
def count_steps(
    elapsed: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, max_episode_steps: Optional[int]
) -> tuple[np.ndarray, np.ndarray]: ...
