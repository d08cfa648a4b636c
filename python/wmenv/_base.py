"""What WorldModelEnv and WorldModelVectorEnv share: :class:`WorldModelBase`.

It validates and keeps the constructor options both envs take
(:data:`SHARED_OPTIONS`, one list for both signatures, ``check``'s rebuilds
and pickling), compiles the adapters and the layers around the model's call
once (:meth:`WorldModelBase._compile`), and owns snapshots, offloading, the
generator and the reset's parsing. The front ends add only what differs: the
spaces, the step and the reset of one env or of a batch.
"""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym
import numpy as np

from . import _backend, _spaces, _staging, adapters
from .chunks import ChunkStep, calls_for, check_chunk, chunk_space, repeat_frames
from .diagnostics import Notes
from .ensemble import EnsembleOptions, EnsembleStep, StackedEnsemble, member_index_holder
from .groups import to_device
from .output import TorchOutput, TorchResults, check_output, results_for
from .planning import Snapshot, StartData, deep_copy
from .progress import Progress, check_progress
from .transitions import GlobalRNG, RewardModel, TerminationThreshold, check_success_threshold, check_threshold
from .vocabulary import RENDER_KEYS

__all__ = ["SHARED_OPTIONS", "WorldModelBase", "as_frame"]

_torch: Any = _backend.torch
if _torch is not None:
    _is_grad_enabled = _torch.is_grad_enabled
    _set_grad_enabled = _torch._C._set_grad_enabled
else:  # pragma: no cover - exercised where torch is absent
    _is_grad_enabled = None
    _set_grad_enabled = None

_RENDER_KEYS = RENDER_KEYS
_NOT_RESET = object()


def _check_space(space, name):
    if not isinstance(space, gym.spaces.Space):
        raise TypeError(f"{name} must be a gymnasium.spaces.Space, got {type(space).__name__}")


def _check_max_episode_steps(value):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"max_episode_steps must be None or a positive int, got {value!r}")


_COUNTER_LIMIT = 2**62  # far beyond any episode; leaves room to count on without overflow


def _check_counters(elapsed, num_envs) -> None:
    """A snapshot's step counter(s): non-negative whole numbers below 2**62,
    one per env for the vector env."""
    if num_envs is None:
        if isinstance(elapsed, bool) or not isinstance(elapsed, (int, np.integer)) or not 0 <= elapsed < _COUNTER_LIMIT:
            raise ValueError(f"the snapshot's step counter must be an int in [0, 2**62), got {elapsed!r}")
        return
    values = elapsed.cpu().numpy() if _torch is not None and isinstance(elapsed, _torch.Tensor) else elapsed
    if not isinstance(values, np.ndarray) or values.shape != (num_envs,) or values.dtype != np.int64:
        raise ValueError(
            f"the snapshot's step counters must be a ({num_envs},) int64 array, got {type(values).__name__} "
            f"{getattr(values, 'shape', '')} {getattr(values, 'dtype', '')}".rstrip()
        )
    if num_envs and not (0 <= int(values.min()) and int(values.max()) < _COUNTER_LIMIT):
        raise ValueError("the snapshot's step counters must lie in [0, 2**62)")


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


def _model_device(world_model, device):
    if device is not None:
        return _torch.device(device)
    if _torch is not None and isinstance(world_model, _torch.nn.Module):
        for tensor in world_model.parameters():
            return tensor.device
        for tensor in world_model.buffers():
            return tensor.device
    return _torch.device("cpu")


def _new_generator(world_model, device):
    """The env's own generator, on the model's device, seeded at random
    (Gymnasium's convention for an env nobody seeded); ``None`` without torch."""
    if _torch is None:
        return None
    generator = _torch.Generator(device=_model_device(world_model, device))
    generator.manual_seed(int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return generator


def _as_model_input(device):
    """The default ``encode_fn``: the observation is the state, as a tensor on
    the model's device for a torch model (``device``), as it is otherwise."""
    if device is None:
        return lambda observations, actions: observations

    def encode(observations, actions):
        if isinstance(observations, np.ndarray):
            return _torch.as_tensor(observations, device=device)
        if isinstance(observations, _torch.Tensor) and observations.device != device:
            return observations.to(device)
        return observations

    return encode


def as_frame(x, batch_dims: int = 0):
    """An image-like array with its channels first (``uint8``, or floats in
    [0, 1]; 1 or 3 channels) as an ``(..., H, W, 3)`` ``uint8`` frame, the
    layout Gymnasium's ``rgb_array`` expects; anything else unchanged.

    Example:
        >>> import numpy as np
        >>> as_frame(np.zeros((3, 64, 48), np.float32)).shape
        (64, 48, 3)
    """
    if not isinstance(x, np.ndarray) or x.ndim != 3 + batch_dims:
        return x
    channels, height, width = x.shape[batch_dims:]
    if channels not in (1, 3) or width in (1, 3, 4):  # (H, W, C) already, or not an image
        return x
    if x.dtype == np.uint8:
        frame = x
    elif x.dtype.kind == "f" and x.size and 0.0 <= float(np.nanmin(x)) and float(np.nanmax(x)) <= 1.0:
        frame = np.rint(np.nan_to_num(x) * 255.0).astype(np.uint8)
    else:
        return x
    frame = np.moveaxis(frame, batch_dims, -1)
    if channels == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame)


class WorldModelBase:
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
        "_batch_plan",
        "_autograd_off",
        "_torch_results",
        "_results",
        "_route",
    )
    _discrete = None  # a vector env's Discrete action range, checked per env

    def _compile(self):
        """Inspects adapters and precompiles spaces: everything a step must not redo."""
        core = _backend.load(self.backend)
        wm = self.world_model
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
        gen = self._generator
        member_index = member_index_holder(wm, self.transition_fn, self._ensemble_options, self._snapshot_envs(), gen)
        keywords = None if member_index is None else {"member_index": member_index}
        self._transition = adapters.transition_caller(wm, self.transition_fn, gen, keywords)
        self._reset_call = adapters.reset_caller(wm, self.reset_fn, gen)
        self._reward = None if self.reward_fn is None else adapters.bind_leading(self.reward_fn, (wm,), 3, gen)
        self._terminal = None if self.terminal_fn is None else adapters.bind_leading(self.terminal_fn, (wm,), 3, gen)
        self._render = None if self.render_fn is None else adapters.bind_leading(self.render_fn, (wm,), 2, gen)
        self._transform = (
            None if self.action_transform_fn is None else adapters.bind_leading(self.action_transform_fn, (wm,), 1, gen)
        )
        wrap = (lambda fn: fn) if not self.global_rng else GlobalRNG(gen).wrap
        if self.global_rng:  # the model's torch.randn draws come from the env's generator
            self._transition, self._reset_call = wrap(self._transition), wrap(self._reset_call)
            self._reward, self._terminal, self._render = wrap(self._reward), wrap(self._terminal), wrap(self._render)
            self._transform = wrap(self._transform)
        if self._chunk:  # one call generates chunk steps: reduce them to one env step
            self._transition = ChunkStep(
                self._transition,
                self._chunk,
                self.chunk_reward,
                self.chunk_frames,
                core.parse_step,
                self._snapshot_envs() is not None,
            )
        self._ensemble = None
        threshold = self.terminated_threshold
        if self._ensemble_options is not None:
            envs = self._snapshot_envs()
            self._ensemble = EnsembleStep(
                self._transition, self._ensemble_options, gen, core.parse_step, envs, threshold, member_index
            )
            self._ensemble.restore(self.__dict__.pop("_ensemble_episode", None))
            self._transition = self._ensemble
        elif threshold is not None:
            self._transition = TerminationThreshold(self._transition, threshold, core.parse_step)
        self._reward_layer = None
        if self.reward_model is not None:  # scores what the (reduced) model generated
            self._reward_layer = self._transition = RewardModel(
                self._transition,
                wrap(self.reward_model),
                self.success_threshold,
                core.parse_step,
                self._snapshot_envs() is not None,
                self.relative_reward,
                self._as_generated(wm),
            )
            self._reward_layer.base = self.__dict__.pop("_reward_base", None)
        if getattr(self, "_progress", None) is not None:
            self._progress.close()
        self._progress = None
        if self.progress is not None:  # outermost: a call's seconds include every layer
            frames = (self._snapshot_envs() or 1) * (self._chunk or 1)
            self._progress = self._transition = Progress(self._transition, self.progress, frames)
        self._no_grad = not self.grad
        self._autograd_off = AutogradOff(self._no_grad)
        self._cast_hook = self._notes.on_cast
        self._start = None
        if self.start_data is not None:
            encode = (
                _as_model_input(_model_device(wm, self.device) if self._tensor_model() else None)
                if self.encode_fn is None
                else adapters.bind_leading(self.encode_fn, (wm,), 2, gen)
            )
            self._start = StartData(self.start_data, wrap(encode), self.start_context)
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

    def _as_generated(self, wm):
        """The env's observations in the form the model generates them (for
        scoring reset observations): tensors on the model's device for a
        torch model, with the batch of one a ``batched_model`` works on."""
        device = _model_device(wm, self.device) if self._tensor_model() else None
        batch_of_one = self._batch_of_one

        def convert(obs):
            if isinstance(obs, dict):
                return {k: convert(v) for k, v in obs.items()}
            if isinstance(obs, (tuple, list)):
                return type(obs)(convert(v) for v in obs)
            if isinstance(obs, np.ndarray):
                if batch_of_one:
                    obs = obs[None]
                return obs if device is None else _torch.as_tensor(obs, device=device)
            if _torch is not None and isinstance(obs, _torch.Tensor):
                return obs[None] if batch_of_one else obs
            return obs

        return convert

    def _frame(self, obs, batch_dims: int):
        """The one render rule of both envs: ``render_fn(model, state, obs)``'s
        frame, else the observation's ``image``/``pixels``/``rgb`` entry, else
        the observation, as NumPy in either output mode, images channels-last
        ``uint8`` (``batch_dims`` leading batch axes: 1 for the vector env).
        ``None`` before the first reset, unless ``render_fn`` draws one."""
        if self._render is not None:
            with self._autograd_off:
                frame = self._render(self._state, obs)
            return self._to_numpy(frame, None)
        if obs is None:
            return None
        if isinstance(obs, dict):
            for key in _RENDER_KEYS:
                if key in obs:
                    return as_frame(self._to_numpy(obs[key], None), batch_dims=batch_dims)
        return as_frame(self._to_numpy(obs, None), batch_dims=batch_dims)

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

    def _with_grad_off(self, fn, *args):
        """``fn(*args)`` under the env's autograd rule (no autograd unless ``grad=True``)."""
        with self._autograd_off:
            return fn(*args)

    def _rebase_reward(self, obs, mask=None) -> None:
        """``relative_reward``: the reset observations' scores are the next step's baseline."""
        if self._reward_layer is not None and self._reward_layer.relative:
            self._reward_layer.rebase(obs, mask)

    def _tensor_model(self) -> bool:
        """Whether the model is a torch one (a module, or a device was named)."""
        if _torch is None:
            return False
        if getattr(self, "device", None) is not None or isinstance(self.world_model, _torch.nn.Module):
            return True
        modules = getattr(self.world_model, "modules", None)  # a StackedEnsemble of modules
        return isinstance(modules, list) and any(isinstance(m, _torch.nn.Module) for m in modules)

    def _build_plan(self):
        """The single env's one-call step, where its options allow one."""
        self._plan = None

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

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.__dict__.get("_ensemble") is not None:
            state["_ensemble_episode"] = self._ensemble.state()
        layer = self.__dict__.get("_reward_layer")
        if layer is not None and layer.base is not None:
            state["_reward_base"] = layer.base.copy()
        for name in self._COMPILED:
            state.pop(name, None)
        generator = state.pop("_generator", None)
        state["_generator_state"] = None if generator is None else (str(generator.device), generator.get_state())
        return state

    def __setstate__(self, state):
        saved = state.pop("_generator_state", None)
        self.__dict__.update(state)
        self._generator = None
        if saved is not None:
            self._generator = _torch.Generator(device=saved[0])
            self._generator.set_state(saved[1])
        shared = self.__dict__.get("_all_true")
        if isinstance(shared, np.ndarray):  # one read-only array handed out in every info: read-only again
            shared.flags.writeable = False
        self._compile()

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
        self._generator = _new_generator(world_model, self.device)
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
            self._torch_out = TorchOutput(_model_device(world_model, self.device) if known else None, self.grad)
        # output="torch" with grad=True: a tensor action's graph reaches the model (differentiable imagination)
        self._keep_graph = self._torch_out is not None and self.grad
        # Actions reach an accelerator through pinned memory and a non-blocking copy.
        self._action_device = _torch.device(self.device) if self._on_device and self.torch_actions else None

    def _has_position(self) -> bool:  # pragma: no cover - each env defines it
        raise NotImplementedError

    def get_state(self, copy: bool = False) -> Snapshot:
        """A snapshot of the env's position: model state, last observation,
        step counter(s), the generator's and the NumPy RNG's state (and, for
        the vector env, the autoreset mask).

        By default the snapshot *holds references* to the model state and
        observation (cheap; right for models that return new tensors each
        step). ``copy=True`` clones every tensor and array in them, for models
        that update their state in place; such a snapshot is copied again
        each time it is restored, so it can be restored any number of times.

        Example:
            >>> import gymnasium as gym, numpy as np
            >>> from wmenv import WorldModelEnv
            >>> env = WorldModelEnv(None, gym.spaces.Box(-9, 9, (1,)), gym.spaces.Box(-1, 1, (1,)),
            ...                     transition_fn=lambda m, s, a: (s + a, s + a, 0.0),
            ...                     initial_state=np.zeros(1, np.float32), torch_actions=False)
            >>> _ = env.reset(seed=0)
            >>> snap = env.get_state()
            >>> first = env.step(np.ones(1, np.float32))[0]
            >>> env.set_state(snap)
            >>> bool((env.step(np.ones(1, np.float32))[0] == first).all())
            True
        """
        if not self._has_position():
            raise RuntimeError("Call reset() before get_state().")
        state, obs = self._state, self._obs
        if copy:
            state, obs = deep_copy(state), deep_copy(obs)
        return Snapshot(
            state=state,
            observation=obs,
            elapsed=np.copy(self._elapsed) if isinstance(self._elapsed, np.ndarray) else self._elapsed,
            generator_state=None if self._generator is None else self._generator.get_state(),
            np_random_state=deep_copy(self.np_random.bit_generator.state),  # type: ignore[attr-defined]
            autoreset=None if getattr(self, "_autoreset", None) is None else self._autoreset.copy(),
            copied=bool(copy),
            env=type(self).__name__,
            num_envs=self._snapshot_envs(),
            ensemble=None if self._ensemble is None else self._ensemble.state(),
            reward_base=None if self._reward_layer is None or self._reward_layer.base is None
            else self._reward_layer.base.copy(),
        )  # fmt: skip

    def _snapshot_envs(self) -> Optional[int]:  # pragma: no cover - each env defines it
        raise NotImplementedError

    def _check_snapshot(self, snapshot) -> None:
        """A snapshot of this kind of env and size, with counters it can go on from."""
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"set_state takes a snapshot from get_state(), got {type(snapshot).__name__}")
        mine, envs = type(self).__name__, self._snapshot_envs()
        if snapshot.env and (snapshot.env, snapshot.num_envs) != (mine, envs):
            theirs = snapshot.env + ("" if snapshot.num_envs is None else f" with num_envs={snapshot.num_envs}")
            raise ValueError(
                f"set_state got a snapshot of a {theirs}; this env is a {mine}"
                + ("" if envs is None else f" with num_envs={envs}")
            )
        _check_counters(snapshot.elapsed, envs)

    def set_state(self, snapshot: Snapshot) -> None:
        """Restores a :meth:`get_state` snapshot: the same actions then replay
        the same trajectory, bit for bit (the model's randomness included,
        when it draws from the ``generator`` the env hands it)."""
        self._check_snapshot(snapshot)
        state, obs = snapshot.state, snapshot.observation
        if snapshot.copied:
            state, obs = deep_copy(state), deep_copy(obs)
        self._state, self._obs = state, obs
        self._elapsed = np.copy(snapshot.elapsed) if isinstance(snapshot.elapsed, np.ndarray) else snapshot.elapsed
        if self._generator is not None and snapshot.generator_state is not None:
            self._generator.set_state(snapshot.generator_state)
        self.np_random.bit_generator.state = deep_copy(snapshot.np_random_state)  # type: ignore[attr-defined]
        if snapshot.autoreset is not None:
            self._autoreset = snapshot.autoreset.copy()
        if self._ensemble is not None:
            self._ensemble.restore(snapshot.ensemble)
        if self._reward_layer is not None and snapshot.reward_base is not None:
            self._reward_layer.base = snapshot.reward_base.copy()
        self._note_state_device(state)

    def offload(self, device="cpu") -> None:
        """Moves the model (an ``nn.Module``) and the state to ``device`` (the
        CPU), freeing the accelerator between collection and training;
        ``step`` refuses to run until :meth:`onload` brings them back."""
        if self._offloaded is not None or _torch is None:
            return
        home = _model_device(self.world_model, getattr(self, "device", None))
        if isinstance(self.world_model, _torch.nn.Module):
            self.world_model.to(device)
        self._state = to_device(self._state, device)
        self._offloaded = home

    def onload(self) -> None:
        """Moves the model and the state back to the device :meth:`offload` took them from."""
        home = self._offloaded
        if home is None:
            return
        if isinstance(self.world_model, _torch.nn.Module):
            self.world_model.to(home)
        self._state = to_device(self._state, home)
        self._offloaded = None

    def _refuse_offloaded(self):
        raise RuntimeError(
            f"the env is offloaded (offload() moved its model and state off {self._offloaded}): call onload() "
            "before step()"
        )

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

    def _staged_from(self, state, result, action):
        return _staging.staged_result(
            self._parse_step, result, state, action, self._reward, self._terminal, self._stager
        )

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

_SHARED_OPTIONS = SHARED_OPTIONS  # the name earlier modules used
