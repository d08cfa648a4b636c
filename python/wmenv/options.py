"""The constructor options both envs take, checked and kept once.

:data:`SHARED_OPTIONS` is the one list of the keyword options that
``WorldModelEnv`` and ``WorldModelVectorEnv`` share (their signatures, the
pickled state and ``check``'s rebuilds follow it); :class:`Options` validates
and keeps them (``_store_options``) and owns the two that may change after
construction, ``info_model_state`` and ``max_episode_steps``.
"""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym
import numpy as np

from . import _backend, _staging
from .chunks import calls_for, check_chunk
from .diagnostics import Notes
from .ensemble import EnsembleOptions, StackedEnsemble
from .output import TorchOutput, check_output
from .progress import check_progress
from .transitions import check_success_threshold, check_threshold

_torch: Any = _backend.torch

__all__ = ["OPTION_DOCS", "SHARED_OPTIONS", "Options", "document_options", "model_device", "new_generator"]


SHARED_OPTIONS = (
    "initial_observation",
    "initial_state",
    "reset_fn",
    "transition_fn",
    "reward_fn",
    "terminal_fn",
    "render_fn",
    "action_transform_fn",
    "max_episode_steps",
    "render_mode",
    "device",
    "torch_actions",
    "info_model_state",
    "grad",
    "backend",
    "batched_model",
    "start_data",
    "encode_fn",
    "start_context",
    "output",
    "members",
    "member",
    "uncertainty",
    "penalty",
    "halt_threshold",
    "halt_reward",
    "terminated_threshold",
    "global_rng",
    "reward_model",
    "success_threshold",
    "relative_reward",
    "progress",
    "chunk",
    "chunk_reward",
    "chunk_frames",
)


OPTION_DOCS = """\
initial_observation: observation of the default reset.
initial_state: state of the default reset and of reset results
    without one.
reset_fn: ``(world_model, seed, options)`` → a reset result.
transition_fn: ``(world_model, state, action)`` → a step result.
reward_fn: ``(world_model, next_state, observation, action)`` → reward,
    used when the step result carries none.
terminal_fn: like ``reward_fn``, for termination.
render_fn: ``(world_model, state, last_observation)`` → a frame.
action_transform_fn: ``(world_model, action)`` → what the model gets.
max_episode_steps: truncate after this many steps.
render_mode: ``None`` or ``"rgb_array"``.
device: torch device actions are placed on.
torch_actions: hand actions to the model as torch tensors.
info_model_state: put the next state in ``info["model_state"]`` (off
    by default: Gymnasium's ``check_env`` cannot compare tensors in
    ``info``; the state is ``env.state``).
grad: run the model with autograd on (for differentiable rollouts).
backend: ``"native"`` or ``"python"``; default ``wmenv.backend()``.
start_data: real observations to start episodes from (an array or
    tensor ``(N, ...)``, a sequence or replay buffer with ``len`` and
    indexing, or ``{"observations": ..., "actions": ...}``): each
    reset draws an index from the env's generator and starts from
    ``encode_fn``'s state (see :class:`wmenv.planning.StartData`).
encode_fn: ``(world_model, observations, actions)`` → start state;
    default: the observation is the state.
start_context: hand ``encode_fn`` windows of this many consecutive
    real observations (and actions) ending at the start (burn-in).
output: ``"numpy"`` (default) or ``"torch"``: observations, reward and
    flags as tensors on the model's device, no host copy (see
    :mod:`wmenv.output`).
batched_model: the model always works on batches: it gets actions
    with a leading batch of one, and that batch is removed from the
    observation it returns (reward and flags hold one element either
    way; the state stays batched).
members: the model is an ensemble of this many members: its outputs
    carry a leading member axis (see :mod:`wmenv.ensemble`); a list
    of member modules is stacked into one.
member: ``"random"``, ``"episode"``, ``"mean"`` or an index: which
    member's prediction each step takes.
uncertainty: ``"max_std"``, ``"disagreement"`` or ``"std_of_means"``,
    reported as ``info["uncertainty"]``.
penalty: MOPO's λ: the reward becomes ``reward - λ * uncertainty``.
halt_threshold: MOReL's τ: an uncertainty above it terminates the
    step with ``halt_reward`` as its reward.
halt_reward: the reward of a halted step.
terminated_threshold: read a termination head that gives a
    probability as ``terminated = p >= terminated_threshold``
    (without it, a float flag that is neither 0 nor 1 is an error).
global_rng: swap the env's generator into torch's global one around
    each model and adapter call, so a model that calls
    ``torch.randn`` without a generator reproduces under a seed and
    replays from snapshots (see :mod:`wmenv.transitions`; a few µs
    per call).
reward_model: a callable or module scoring the generated
    observations; its score is the reward (the model's own goes to
    ``info["model_reward"]``).
success_threshold: a score at or above it sets ``terminated`` and
    ``info["success"]``.
relative_reward: the reward is the difference of successive scores
    (the first step's against its reset observation's score; one more
    reward-model call per reset); the score goes to ``info["score"]``.
progress: a callable called after each model call with a
    :class:`~wmenv.progress.ModelCall` (seconds, frames), or ``True``
    for a tqdm bar: for models that take seconds per call.
chunk: one model call generates this many steps: actions are
    ``(chunk, *action_shape)`` (see :mod:`wmenv.chunks`).
chunk_reward: ``"sum"``, ``"last"`` or a callable of the chunk's rewards.
chunk_frames: observations are the chunk's frames (else the last).
"""
"""The shared options' entries of both envs' ``Args:`` (Google style), written once."""

_MARKER = "{shared options}"


def document_options(cls):
    """Puts :data:`OPTION_DOCS` where ``cls``'s docstring says ``{shared options}``."""
    doc = cls.__doc__ or ""
    for line in doc.splitlines():
        if line.strip() == _MARKER:
            indent = line[: len(line) - len(line.lstrip())]
            text = "".join(indent + entry if entry.strip() else entry for entry in OPTION_DOCS.splitlines(True))
            cls.__doc__ = doc.replace(line + "\n", text)
            return cls
    raise ValueError(f"{cls.__name__}'s docstring has no {_MARKER} line")


def _check_space(space, name):
    if not isinstance(space, gym.spaces.Space):
        raise TypeError(f"{name} must be a gymnasium.spaces.Space, got {type(space).__name__}")


def _check_max_episode_steps(value):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"max_episode_steps must be None or a positive int, got {value!r}")


def model_device(world_model, device):
    """The model's torch device: ``device`` if given, else its first parameter's or buffer's, else the CPU."""
    if device is not None:
        return _torch.device(device)
    if _torch is not None and isinstance(world_model, _torch.nn.Module):
        for tensor in world_model.parameters():
            return tensor.device
        for tensor in world_model.buffers():
            return tensor.device
    return _torch.device("cpu")


def new_generator(world_model, device):
    """The env's own generator, on the model's device, seeded at random
    (Gymnasium's convention for an env nobody seeded); ``None`` without torch."""
    if _torch is None:
        return None
    generator = _torch.Generator(device=model_device(world_model, device))
    generator.manual_seed(int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return generator


class Options:
    """Validates and keeps the shared constructor options."""

    _build_plan: Any  # the env's (WorldModelBase's front ends)

    def _store_options(self, world_model, observation_space, action_space, options):
        """Validates and keeps the constructor arguments both envs share."""
        _check_space(observation_space, "observation_space")
        _check_space(action_space, "action_space")
        render_mode = options["render_mode"]
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self._ensemble_options = EnsembleOptions.build(
            options["members"],
            options["member"],
            options["uncertainty"],
            options["penalty"],
            options["halt_threshold"],
            options["halt_reward"],
        )
        if self._ensemble_options is not None and isinstance(world_model, (list, tuple)):
            world_model = StackedEnsemble(world_model)  # one call per member, outputs stacked
        self.world_model = world_model
        self._given_spaces = (observation_space, action_space)  # before chunk=... derives the env's own
        for name in SHARED_OPTIONS:
            setattr(self, name, options[name])
        self.torch_actions = bool(self.torch_actions)
        self.grad = bool(self.grad)
        self.global_rng = bool(self.global_rng)
        self.terminated_threshold = check_threshold(self.terminated_threshold)
        self._chunk = check_chunk(self.chunk, self.chunk_reward)
        self.chunk_frames = bool(self.chunk_frames)
        if self._chunk is not None and self._ensemble_options is not None:
            raise ValueError(
                "chunk= and members= cannot be combined: an ensemble's member axis and a chunk's time axis "
                "would both sit on every result; pick the member inside a transition_fn instead"
            )
        self.success_threshold = check_success_threshold(self.success_threshold)
        if self.success_threshold is not None and self.reward_model is None:
            raise ValueError("success_threshold needs reward_model= (it thresholds the reward model's score)")
        if not isinstance(self.relative_reward, (bool, np.bool_)):
            raise TypeError(f"relative_reward must be True or False, got {self.relative_reward!r}")
        self.relative_reward = bool(self.relative_reward)
        self.progress = check_progress(self.progress)
        if self.relative_reward and self.reward_model is None:
            raise ValueError("relative_reward=True needs reward_model= (it differences the reward model's scores)")
        if self.reward_model is not None and not callable(self.reward_model):
            raise ValueError(f"reward_model must be a callable or module, got {type(self.reward_model).__name__}")
        self.batched_model = bool(self.batched_model)
        self._notes = Notes()
        self._generator = new_generator(world_model, self.device)
        self.backend = _backend.DEFAULT if self.backend is None else self.backend
        self._closed = False
        self._offloaded = None  # the device offload() moved the model from
        # Results come back from a device through one synchronisation per step
        # when the model runs there: known from `device`, or seen in a reset's state.
        self._on_device = _torch is not None and self.device is not None and _torch.device(self.device).type != "cpu"
        self._stage = self._on_device
        self._stager = _staging.HostStager()
        self.output = check_output(self.output)
        self._torch_out = None
        if self.output == "torch":
            known = self.device is not None or isinstance(world_model, _torch.nn.Module)
            self._torch_out = TorchOutput(model_device(world_model, self.device) if known else None, self.grad)
        # output="torch" with grad=True: a tensor action's graph reaches the model (differentiable imagination)
        self._keep_graph = self._torch_out is not None and self.grad
        # Actions reach an accelerator through pinned memory and a non-blocking copy.
        self._action_device = _torch.device(self.device) if self._on_device and self.torch_actions else None

    @property
    def info_model_state(self) -> bool:
        """Whether ``info["model_state"]`` carries the next state."""
        return self._info_model_state

    @info_model_state.setter
    def info_model_state(self, value) -> None:
        self._info_model_state = bool(value)
        if "_plan" in self.__dict__:
            self._build_plan()

    @property
    def max_episode_steps(self) -> Optional[int]:
        """Steps after which an episode is truncated (``None``: never)."""
        return self._max_episode_steps

    @max_episode_steps.setter
    def max_episode_steps(self, value) -> None:
        _check_max_episode_steps(value)
        self._max_episode_steps = None if value is None else int(value)
        if "_plan" in self.__dict__:
            self._build_plan()

    @property
    def _step_limit(self) -> Optional[int]:
        """The time limit in model calls (chunks of ``chunk`` steps each)."""
        return calls_for(self._max_episode_steps, getattr(self, "_chunk", None))

    def _tensor_model(self) -> bool:
        """Whether the model is a torch one (a module, or a device was named)."""
        if _torch is None:
            return False
        if getattr(self, "device", None) is not None or isinstance(self.world_model, _torch.nn.Module):
            return True
        modules = getattr(self.world_model, "modules", None)  # a StackedEnsemble of modules
        return isinstance(modules, list) and any(isinstance(m, _torch.nn.Module) for m in modules)
