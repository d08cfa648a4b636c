"""What WorldModelEnv and WorldModelVectorEnv share: :class:`WorldModelBase`.

It compiles, once, what a step must not redo (:meth:`WorldModelBase._compile`:
the backend's functions, the result kind, the layers around the model's call,
the route) and owns the autograd switch, the action's graph rule, the
generator and the reset's parsing. Its parts live in their own modules: the
shared constructor options (:mod:`wmenv.options`, :data:`SHARED_OPTIONS`),
snapshots, pickling and offloading (:mod:`wmenv._snapshots`), the layers
(:mod:`wmenv.layers`), the render rule (:mod:`wmenv.render`), the routes
(:mod:`wmenv.route`) and result kinds (:mod:`wmenv.output`). The front ends add
only what differs: the spaces, the step and the reset of one env or of a batch.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from . import _backend, _spaces, _staging
from ._snapshots import Snapshots
from .chunks import chunk_space, repeat_frames
from .layers import compile_layers
from .options import SHARED_OPTIONS, Options
from .output import TorchResults, results_for
from .render import as_frame, render_frame

__all__ = ["SHARED_OPTIONS", "WorldModelBase", "as_frame"]

_torch: Any = _backend.torch
if _torch is not None:
    _is_grad_enabled = _torch.is_grad_enabled
    _set_grad_enabled = _torch._C._set_grad_enabled
else:  # pragma: no cover - exercised where torch is absent
    _is_grad_enabled = None
    _set_grad_enabled = None

_NOT_RESET = object()


class AutogradOff:
    """The envs' one autograd switch: ``with env._autograd_off:`` turns
    autograd off for the block when the env runs its model without it (every
    env but ``grad=True`` ones) and turns it back on afterwards, also when the
    block raises; nested blocks leave it to the outermost."""

    __slots__ = ("active", "_turned_off")

    def __init__(self, active: bool):
        self.active = bool(active)
        self._turned_off: list = []  # one entry per open block: whether it turned autograd off

    def __enter__(self):
        off = self.active and _is_grad_enabled is not None and _is_grad_enabled()
        if off:
            _set_grad_enabled(False)
        self._turned_off.append(off)
        return self

    def __exit__(self, *exc):
        if self._turned_off.pop():
            _set_grad_enabled(True)
        return False


class WorldModelBase(Options, Snapshots):
    """What WorldModelEnv and WorldModelVectorEnv share: the adapters,
    compiled once (and again after unpickling), and the backend's functions."""

    _COMPILED = (
        "_convert_action",
        "_normalize_step",
        "_normalize_step_batch",
        "_normalize_reset",
        "_parse_step",
        "_matches",
        "_count_steps",
        "_to_numpy",
        "_obs_spec",
        "_action_spec",
        "_transition",
        "_reset_call",
        "_reward",
        "_terminal",
        "_render",
        "_transform",
        "_cast_hook",
        "_start",
        "_run_step",
        "_run_step_batch",
        "_secure",
        "_ensemble",
        "_reward_layer",
        "_progress",
        "_plan",
        "_autograd_off",
        "_torch_results",
        "_results",
        "_route",
    )
    _discrete = None  # a vector env's Discrete action range, checked per env
    _reward_layer: Any
    _np_random: Any  # Gymnasium's, seeded by _seed
    _np_random_seed: Any

    def _compile(self):
        """Inspects adapters and precompiles spaces: everything a step must not redo."""
        core = _backend.load(self.backend)
        self._convert_action = core.convert_action
        self._normalize_step = core.normalize_step
        self._normalize_step_batch = core.normalize_step_batch
        self._normalize_reset = core.normalize_reset
        self._parse_step = core.parse_step
        self._matches = core.matches_structure
        self._count_steps = core.count_steps
        self._run_step = core.run_step
        self._run_step_batch = core.run_step_batch
        self._secure = core.secure_observation
        self._to_numpy = core.conform_observation
        self._torch_results = None if self._torch_out is None else TorchResults(self._torch_out)
        self._results = results_for(self)
        self._compile_specs()
        compile_layers(self, core)
        self._no_grad = not self.grad
        self._autograd_off = AutogradOff(self._no_grad)
        self._cast_hook = self._notes.on_cast
        self._build_plan()

    def _compile_specs(self):  # pragma: no cover - each env defines it
        raise NotImplementedError

    def _chunked(self, observation_space, action_space):
        """The spaces of one env step: with ``chunk=T``, actions are ``T``
        steps' worth and observations the chunk's ``T`` frames (or the last)."""
        if not self._chunk:
            return observation_space, action_space
        obs = chunk_space(observation_space, self._chunk) if self.chunk_frames else observation_space
        return obs, chunk_space(action_space, self._chunk)

    def _frame(self, obs, batch_dims: int):
        """The frame of :func:`wmenv.render.render_frame`, the one render rule of both envs."""
        return render_frame(self, obs, batch_dims)

    def _action_for_model(self, action, spec):
        """``convert_action``'s result; with ``output="torch"`` and
        ``grad=True``, a tensor action that requires grad comes through with
        its graph instead (reshaped and cast as the conversion would), so an
        actor's loss reaches its parameters through the model."""
        converted = self._convert_action(action, spec)
        if not (self._keep_graph and converted is not action and isinstance(action, _torch.Tensor)):
            return converted
        if not action.requires_grad or not isinstance(converted, _torch.Tensor):
            return converted
        kept = action if action.shape == converted.shape else action.reshape(converted.shape)
        if kept.dtype != converted.dtype or kept.device != converted.device:
            kept = kept.to(device=converted.device, dtype=converted.dtype)
        return kept

    def _rebase_reward(self, obs, mask=None) -> None:
        """``relative_reward``: the reset observations' scores are the next step's baseline."""
        if self._reward_layer is not None and self._reward_layer.relative:
            self._reward_layer.rebase(obs, mask)

    def _seed(self, seed: int) -> None:
        """Seeds the NumPy RNG, the generator and the spaces (``seed``, ``seed + 1``, ...)."""
        self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        if self._generator is not None:
            self._generator.manual_seed(seed)
        for i, space in enumerate(self._seeded_spaces()):
            space.seed(seed + i)

    def _seeded_spaces(self) -> tuple:  # pragma: no cover - each env defines it
        raise NotImplementedError

    def _build_plan(self):
        """The single env's one-call step, where its options allow one."""
        self._plan = None

    @property
    def generator(self):
        """The env's ``torch.Generator`` (on the model's device): seeded by
        ``reset(seed=...)`` and handed to adapters and model methods that
        declare a keyword-only ``generator`` parameter."""
        return self._generator

    def _close_model(self):
        if getattr(self, "_progress", None) is not None:
            self._progress.close()
        if self._closed:
            return
        self._closed = True
        close = getattr(self.world_model, "close", None)
        if callable(close):
            close()

    def _note_state_device(self, state):
        """Results come through host staging once the state is on a device."""
        self._stage = self._on_device or _staging.contains_device_tensor(state)

    @property
    def _stage(self) -> bool:
        """Whether results reach the host through staging (the model runs on a device)."""
        return self._staging

    @_stage.setter
    def _stage(self, value) -> None:
        value = bool(value)
        if value == self.__dict__.get("_staging"):
            return
        self._staging = value
        if "_results" in self.__dict__:  # compiled already: the result kind and the route follow
            self._results = results_for(self)
            self._build_plan()

    def _start_result(self):
        """A reset result drawn from ``start_data`` (nothing else keeps its parts)."""
        # a batched model gets its start as a batch of one, as it gets everything else
        state, obs, indices = self._start.draw(1, self._generator, self.np_random, batched=self._batch_of_one)
        if self._chunk and self.chunk_frames:  # the real frame, repeated over the chunk
            obs = repeat_frames(obs, self._chunk, 1 if self._batch_of_one else 0)
        return (state, obs, {"start_index": indices[0]})

    def _reset_result(self, seed, options):
        """Runs the reset (or the default one) and parses it into ``(state, obs, info)``,
        sampling the observation space when no observation is known."""
        if "state" in options:  # start from a given state; the reset adapter is not called
            state = options["state"]
            result = (state, options.get("observation", state), None)
        elif self._start is not None:
            result = self._start_result()
        elif self._reset_call is None:
            result = (self.initial_state, self.initial_observation, None)
        else:
            result = self._reset_call(seed, options)
            if not self._notes.checked_keys["reset"]:
                self._notes.check_keys("reset", result)
        held = [result]
        del result  # the result kind holds the only reference (what else shares the observation is copied)
        state, obs, info = self._results.reset(self, held)
        if self._batch_of_one and obs is not None:
            obs = _spaces.first_of_batch(obs)
        if obs is None:
            obs = self._results.sample(self)
            if state is None:
                state = obs
        return state, obs, info
