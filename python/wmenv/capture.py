"""Whole-step capture for the vector env: ``capture=True``.

With ``output="torch"`` and the model's state on CUDA, the step's model call
and the result's bookkeeping (the counters' increment, the result's forms,
casts and zeros, the time limit, the ownership copies) are recorded once as a
CUDA graph and replayed every step: one launch for the whole model step
instead of one per op, which is what dominates small and medium models on a
GPU (RSSM cells, MLP dynamics).

What a replay needs from outside the graph, each step:

- the step's inputs copied into the graph's own buffers (each state leaf,
  the action, the counters): the env's state may have changed in between
  (a partial reset, ``set_state``, a snapshot restored);
- the results cloned out of the graph's buffers, since the next replay
  writes into them again and what a step hands out never changes later
  (the ownership rule): observations, rewards, flags, counters, the state;
- what is decided per step, outside the graph as in the uncaptured device
  route: the ended mask and its one synchronisation, and the resets of the
  autoreset mode (their shapes depend on which envs ended).

The first :data:`WARMUP_STEPS` steps run uncaptured (lazy initialisation,
``check``'s first look); the next one runs the step once more on the
capture's side stream (CUDA's warm-up, its results thrown away), records it
and replays it. A rebuild of the env's route (``max_episode_steps`` or
``info_model_state`` changed, unpickling, the state's device) records again.

**What a graph cannot follow.** The model's Python runs at recording, not at
replays: a model whose step must synchronise (``.item()``, ``bool`` of a
tensor, ``.cpu()``, printing a tensor), branches on tensor values in Python,
or keeps Python-side state cannot be captured, and the recording raises
:class:`CaptureError` naming the cause (the env then steps uncaptured). A
state or action whose shape, dtype or device differs from the recorded one
raises :class:`CaptureError` too, as does a state leaf that is not a tensor.
Non-tensor values the model puts in ``info`` are the recorded step's. Random
draws from torch's default CUDA generator are fresh at each replay (CUDA
graphs advance its offset), not the draws an uncaptured step would make.
Options whose work is host-side per step (ensembles' member draws, progress
reports, the global-RNG redirect, reward models, action chunks) and
``grad=True`` (a graph keeps no autograd graph) are refused when the env is
built, as are adapters that take the env's ``generator``.

Where nothing can be captured (the state on the CPU, or no CUDA), the env
warns once, at its first step, and steps uncaptured: the same code runs on a
laptop and on a GPU machine.

Example:
    >>> import gymnasium as gym, torch
    >>> from wmenv import WorldModelVectorEnv
    >>> env = WorldModelVectorEnv(None, 4, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
    ...     transition_fn=lambda m, s, a: (s + a, s + a, (s + a)[:, 0]), initial_state=torch.zeros(4, 1),
    ...     output="torch", capture=True)
    >>> env.capture
    True
"""

from __future__ import annotations

import warnings
from typing import Any

from . import _backend
from ._tensors import first_leaf
from .adapters import takes_generator, transition_target
from .route import prepare_action
from .torch_route import TorchBatch
from .tree import leaves, map_leaves

_torch: Any = _backend.torch

__all__ = [
    "WARMUP_STEPS",
    "CaptureError",
    "CapturedBatch",
    "CudaGraph",
    "PendingCapture",
    "capturable",
    "check_capture",
]

WARMUP_STEPS = 2  # uncaptured steps before the recording

# options whose per-step work is host-side: a graph would replay the recorded step's
_HOST_SIDE = (
    ("members", "an ensemble draws its members on the host each step"),
    ("progress", "progress reports time each model call on the host"),
    ("global_rng", "the global-RNG redirect swaps generator states on the host each call"),
    ("reward_model", "a reward model's layer keeps host-side state between steps"),
    ("chunk", "action chunks reduce each call's steps in Python"),
)


class CaptureError(RuntimeError):
    """The step cannot be recorded as a CUDA graph, or no longer matches the recorded one."""


def _is_tensor(x) -> bool:
    return _torch is not None and isinstance(x, _torch.Tensor)


def check_capture(capture, env) -> bool:
    """``capture`` as a bool, refused (``ValueError``) with options a graph
    cannot replay."""
    if not isinstance(capture, bool):
        raise TypeError(f"capture must be True or False, got {capture!r}")
    if not capture:
        return False
    if env.output != "torch":
        raise ValueError(
            'capture=True records the step as a CUDA graph of tensors: it needs output="torch" (NumPy mode\'s '
            "results leave the device every step)"
        )
    if env.grad:
        raise ValueError("capture=True replays a step without autograd: it cannot be combined with grad=True")
    for name, why in _HOST_SIDE:
        value = getattr(env, name)
        if value is not None and value is not False:
            raise ValueError(f"capture=True cannot be combined with {name}=: {why}, which a graph would not redo")
    adapters = [transition_target(env.world_model, env.transition_fn), env.reward_fn, env.terminal_fn]
    if any(fn is not None and takes_generator(fn) for fn in adapters):
        raise ValueError(
            "capture=True cannot replay draws from the env's generator (an adapter declares generator=): draw "
            "from torch's default generator, whose CUDA draws a graph replays fresh, or build without capture"
        )
    return True


def capturable(device) -> bool:
    """Whether a step on ``device`` can be recorded as a CUDA graph."""
    return device is not None and device.type == "cuda" and _torch.cuda.is_available()


class CudaGraph:
    """One step's CUDA graph, recorded on its own side stream."""

    def __init__(self, device):
        self.device = device
        self.graph = _torch.cuda.CUDAGraph()
        self.stream = _torch.cuda.Stream(device=device)

    def warm_up(self, body) -> None:
        """Runs ``body`` once on the side stream, outside the graph (CUDA's
        rule before a capture: lazy initialisation and workspaces happen here)."""
        current = _torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with _torch.cuda.stream(self.stream):
            body()
        current.wait_stream(self.stream)

    def record(self, body):
        """Records ``body``'s work (executing none of it) and returns its outputs, the graph's buffers."""
        with _torch.cuda.graph(self.graph, stream=self.stream):
            return body()

    def replay(self) -> None:
        """Runs the recorded work again, writing into the same buffers."""
        self.graph.replay()


new_graph = CudaGraph  # what records a step on a device (tests stand in another)


def state_device(env):
    """The device of the env's state (its first tensor leaf), or ``None``."""
    leaf = first_leaf(env._state)
    return None if leaf is None else leaf.device


class PendingCapture:
    """``capture=True``'s route until the first step, when the state's device
    is known; it decides then: the captured route where the state is on
    CUDA, else (with a warning) ``inner``, the route without capture."""

    __slots__ = ("inner",)

    def __init__(self, inner):
        self.inner = inner

    def step(self, env, actions):
        """Chooses the route for good, then steps through it."""
        device = state_device(env)
        if capturable(device):
            env._route = CapturedBatch()
        else:
            where = "has no tensors" if device is None else f"is on {device}"
            warnings.warn(
                f"capture=True records CUDA work only and this env's state {where}: it steps uncaptured",
                RuntimeWarning,
                stacklevel=3,
            )
            env._route = self.inner
        return env._route.step(env, actions)

    def reset_counters(self, env, mask) -> None:
        """The uncaptured route's (both keep their counters alike)."""
        self.inner.reset_counters(env, mask)

    def rollout_advance(self, env):
        """The uncaptured route's: a rollout is not captured."""
        return self.inner.rollout_advance(env)


def _fresh(x):
    return x.clone() if _is_tensor(x) else x


def _describe(x) -> str:
    if not _is_tensor(x):
        return type(x).__name__
    return f"{tuple(x.shape)} {x.dtype} on {x.device}"


class CapturedBatch(TorchBatch):
    """The device route with the model step recorded once and replayed.

    perf: per step, one copy into the graph per state leaf, the action and
    the counters; the replay; one clone per result leaf; then the device
    route's ended mask and its one synchronisation."""

    __slots__ = ("graph", "inputs", "outputs", "steps")

    def __init__(self):
        self.graph = None
        self.inputs = None  # (state leaves, action, counters): the graph's input buffers
        self.outputs = None  # what the recorded step returned: the graph's output buffers
        self.steps = 0  # uncaptured steps taken

    def advance(self, env, actions):
        """The device route's model step: uncaptured while warming up, then
        the graph's replay, its results cloned out of the graph's buffers."""
        if self.graph is None and self.steps < WARMUP_STEPS:
            self.steps += 1
            return super().advance(env, actions)
        action = prepare_action(env, actions)
        if self.graph is None:
            self._record(env, action)
        else:
            self._load(env, action)
        self.graph.replay()
        state, obs, reward, terminated, truncated, info, can_end, elapsed = self.outputs
        return (
            map_leaves(_fresh, state),
            map_leaves(_fresh, obs),
            reward.clone(),
            terminated.clone(),
            truncated.clone(),
            map_leaves(_fresh, info),
            can_end,
            elapsed.clone(),
        )

    def _record(self, env, action) -> None:
        """The graph of this env's step, recorded from its current state and ``action``."""
        for i, leaf in enumerate(leaves(env._state)):
            if not _is_tensor(leaf):
                env._route = TorchBatch()  # the env steps uncaptured from now on
                raise CaptureError(
                    f"capture=True needs every state leaf to be a tensor on the device; leaf {i} is a "
                    f"{type(leaf).__name__}. The env now steps uncaptured; build it with capture=False to say so"
                )
        state = map_leaves(_fresh, env._state)
        self.inputs = (leaves(state), action.clone(), env._elapsed.clone())
        counters = self.inputs[2]
        results = env._results

        def body():
            elapsed = counters + 1
            return (*results.step_batch(env, state, self.inputs[1], elapsed), elapsed)

        graph = new_graph(state_device(env))
        try:
            graph.warm_up(body)
            self.outputs = graph.record(body)
        except CaptureError:
            raise
        except Exception as exc:
            env._route = TorchBatch()  # the env steps uncaptured from now on
            raise CaptureError(
                f"capture=True could not record this env's step as a CUDA graph ({type(exc).__name__}: {exc}). A "
                "captured step must be the same tensor work every step: no synchronisation in the model (.item(), "
                "bool of a tensor, .cpu(), printing a tensor), no Python branch on tensor values, no shape that "
                "changes. The env now steps uncaptured; build it with capture=False to say so"
            ) from exc
        self.graph = graph
        self._load(env, action)  # the warm-up may have written into the inputs (an in-place model)

    def _load(self, env, action) -> None:
        """Copies this step's state, action and counters into the graph's input buffers."""
        state_in, action_in, counters_in = self.inputs
        now = leaves(env._state)
        if len(now) != len(state_in):
            raise CaptureError(
                f"the state has {len(now)} leaves; the captured step was recorded with {len(state_in)}: a graph "
                "replays one structure (build the env with capture=False for states that change it)"
            )
        for i, (new, static) in enumerate(zip(now, state_in)):
            _check_same(new, static, f"state leaf {i}")
            if new is not static:
                static.copy_(new)
        _check_same(action, action_in, "the action")
        action_in.copy_(action)
        counters_in.copy_(env._elapsed)


def _check_same(new, static, what) -> None:
    if not _is_tensor(new) or new.shape != static.shape or new.dtype != static.dtype or new.device != static.device:
        raise CaptureError(
            f"{what} is {_describe(new)}; the captured step was recorded with {_describe(static)}: a graph replays "
            "fixed shapes, dtypes and devices (build the env with capture=False for steps that change them)"
        )
