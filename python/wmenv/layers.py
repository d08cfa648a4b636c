"""The layers around the model's call, compiled once per env.

:func:`compile_layers` binds the adapters to the model (and to the env's
generator where they ask for it) and stacks, innermost first, what the
options ask for around the transition: the global-RNG redirect, action
chunks (one call, ``chunk`` steps, reduced to one env step), the ensemble or
the termination threshold, the reward model, and progress reporting
(outermost, so a call's seconds include every layer). It also builds the
start-data sampler with its encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _backend, adapters
from .chunks import ChunkStep
from .ensemble import EnsembleStep, member_index_holder
from .options import model_device
from .planning import StartData
from .progress import Progress
from .transitions import GlobalRNG, RewardModel, TerminationThreshold
from .tree import map_leaves

_torch: Any = _backend.torch

__all__ = ["as_generated", "as_model_input", "compile_layers"]


def compile_layers(env, core):
    """Binds ``env``'s adapters (``env._reset_call``, ``_reward``, ``_terminal``,
    ``_render``, ``_transform``) and sets its layered ``_transition`` with the
    layers it keeps (``_ensemble``, ``_reward_layer``, ``_progress``) and its
    start-data sampler (``_start``)."""
    wm = env.world_model
    gen = env._generator
    member_index = member_index_holder(wm, env.transition_fn, env._ensemble_options, env._snapshot_envs(), gen)
    keywords = None if member_index is None else {"member_index": member_index}
    env._transition = adapters.transition_caller(wm, env.transition_fn, gen, keywords)
    env._reset_call = adapters.reset_caller(wm, env.reset_fn, gen)
    env._reward = None if env.reward_fn is None else adapters.bind_leading(env.reward_fn, (wm,), 3, gen)
    env._terminal = None if env.terminal_fn is None else adapters.bind_leading(env.terminal_fn, (wm,), 3, gen)
    env._render = None if env.render_fn is None else adapters.bind_leading(env.render_fn, (wm,), 2, gen)
    env._transform = (
        None if env.action_transform_fn is None else adapters.bind_leading(env.action_transform_fn, (wm,), 1, gen)
    )
    wrap = (lambda fn: fn) if not env.global_rng else GlobalRNG(gen).wrap
    if env.global_rng:  # the model's torch.randn draws come from the env's generator
        env._transition, env._reset_call = wrap(env._transition), wrap(env._reset_call)
        env._reward, env._terminal, env._render = wrap(env._reward), wrap(env._terminal), wrap(env._render)
        env._transform = wrap(env._transform)
    if env._chunk:  # one call generates chunk steps: reduce them to one env step
        env._transition = ChunkStep(
            env._transition,
            env._chunk,
            env.chunk_reward,
            env.chunk_frames,
            core.parse_step,
            batched=env._snapshot_envs() is not None or env._batch_of_one,
            vector=env._snapshot_envs() is not None,
            frame_space=env._given_spaces[0],
        )
    env._ensemble = None
    threshold = env.terminated_threshold
    if env._ensemble_options is not None:
        envs = env._snapshot_envs()
        env._ensemble = EnsembleStep(
            env._transition, env._ensemble_options, gen, core.parse_step, envs, threshold, member_index
        )
        env._ensemble.restore(env.__dict__.pop("_ensemble_episode", None))
        env._transition = env._ensemble
    elif threshold is not None:
        env._transition = TerminationThreshold(env._transition, threshold, core.parse_step)
    env._reward_layer = None
    if env.reward_model is not None:  # scores what the (reduced) model generated
        env._reward_layer = env._transition = RewardModel(
            env._transition,
            wrap(env.reward_model),
            env.success_threshold,
            core.parse_step,
            env._snapshot_envs() is not None,
            env.relative_reward,
            as_generated(env, wm),
            (env._chunk, env.chunk_reward) if env._chunk and env.chunk_frames else None,
        )
        env._reward_layer.base = env.__dict__.pop("_reward_base", None)
    if getattr(env, "_progress", None) is not None:
        env._progress.close()
    env._progress = None
    if env.progress is not None:  # outermost: a call's seconds include every layer
        frames = (env._snapshot_envs() or 1) * (env._chunk or 1)
        env._progress = env._transition = Progress(env._transition, env.progress, frames)
    env._start = None
    if env.start_data is not None:
        encode = (
            as_model_input(model_device(wm, env.device) if env._tensor_model() else None)
            if env.encode_fn is None
            else adapters.bind_leading(env.encode_fn, (wm,), 2, gen)
        )
        env._start = StartData(env.start_data, wrap(encode), env.start_context)


def as_model_input(device):
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


def as_generated(env, wm):
    """The env's observations in the form the model generates them (for
    scoring reset observations): tensors on the model's device for a
    torch model, with the batch of one a ``batched_model`` works on."""
    device = model_device(wm, env.device) if env._tensor_model() else None
    batch_of_one = env._batch_of_one

    def leaf(obs):
        if isinstance(obs, np.ndarray):
            if batch_of_one:
                obs = obs[None]
            return obs if device is None else _torch.as_tensor(obs, device=device)
        if _torch is not None and isinstance(obs, _torch.Tensor):
            return obs[None] if batch_of_one else obs
        return obs

    return lambda obs: map_leaves(leaf, obs)
