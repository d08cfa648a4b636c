"""Ensembles of dynamics models: member selection, uncertainty, penalty, halting.

The options of both envs (``members=E`` turns them on):

* ``members=E``: the model's outputs (state, observation, reward, flags, and
  an optional ``"std"`` or ``"log_var"`` beside the observation in a mapping
  result) carry a leading member axis of size ``E``, before the batch axis in
  the vector env. A list of ``E`` member modules is called one by one and
  their outputs stacked (:class:`StackedEnsemble`).
* ``member``: which member's prediction is the step's: ``"random"`` (a member
  per env per step, MBPO's TS-1), ``"episode"`` (one per env per episode,
  PETS's TS-∞), ``"mean"`` (the members' mean), or an index. Draws come from
  the env's ``torch.Generator``, so a seed reproduces them and snapshots
  replay them (the episode members are part of a snapshot).
* With a ``"std"`` (or ``"log_var"``, ``std = exp(log_var / 2)``) head, the
  observation is sampled from the chosen member's Gaussian, ``μ + σ·ε`` with
  ``ε`` from the env's generator; ``member="mean"`` takes the mean of the
  members' means. A result without a state of its own, or whose state is
  its observation (the same object: ``{"state": mu, "observation": mu,
  "std": sigma}``), takes the (sampled) observation as its next state, as
  MBPO and PETS feed a sampled prediction back.
* ``uncertainty`` per env, from the members' means ``μ_i`` and deviations ``σ_i``
  (flattened per env):

  - ``"max_std"``: ``max_i ||σ_i||₂`` (MOPO, Yu et al. 2020; as OfflineRL-Kit
    computes it); needs a std head;
  - ``"disagreement"``: ``max_{i<j} ||μ_i − μ_j||₂`` (MOReL, Kidambi et al. 2020);
  - ``"std_of_means"``: ``||std_i(μ_i)||₂``, the norm of the per-dimension
    standard deviation of the members' means (population std).

  It is reported as ``info["uncertainty"]`` (a float; ``(num_envs,)`` float32
  in the vector env), with ``info["member"]`` (the chosen index, ``-1`` for
  the mean).
* ``penalty=λ``: the reward becomes ``reward − λ·u`` (MOPO).
* ``halt_threshold=τ``, ``halt_reward=r``: where ``u > τ`` the step is
  ``terminated`` and its reward is ``r`` (MOReL's HALT state).
  :func:`halt_threshold_from_data` computes ``τ`` from data.

``"mean"`` takes the mean of rewards and terminates where more than half the
members do.

A model that can compute one member per env declares a keyword-only
``member_index`` parameter: with ``member="random"``, ``"episode"`` or an
index (and no ``uncertainty``), the members are drawn first and it gets
them as a tensor (see :func:`member_index_holder`), computing ``1/E`` of the
full ensemble's work; the draws are the same, so it gives the same
trajectories as the full form.

Example:
    >>> import gymnasium as gym, numpy as np, torch
    >>> from wmenv import WorldModelEnv
    >>> def members(m, s, a):  # 3 members: their next states differ by 0, 1, 2
    ...     nxt = s + a + torch.arange(3.0).reshape(3, 1)
    ...     return {"observation": nxt, "reward": nxt[:, 0]}
    >>> env = WorldModelEnv(None, gym.spaces.Box(-99, 99, (1,)), gym.spaces.Box(-1, 1, (1,)),
    ...     transition_fn=members, initial_state=torch.zeros(1), members=3, member="mean",
    ...     uncertainty="disagreement")
    >>> _ = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(np.ones(1, np.float32))
    >>> float(obs[0]), reward, info["uncertainty"], info["member"]
    (2.0, 2.0, 2.0, -1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from . import _backend, adapters
from .tree import leaves, map_paths
from .vocabulary import OBSERVATION_KEYS, STATE_KEYS

_torch: Any = _backend.torch

__all__ = ["MEMBER_MODES", "UNCERTAINTIES", "EnsembleOptions", "StackedEnsemble", "halt_threshold_from_data"]

MEMBER_MODES = ("random", "episode", "mean")
UNCERTAINTIES = ("max_std", "disagreement", "std_of_means")
_STATE_KEYS, _OBS_KEYS = STATE_KEYS, OBSERVATION_KEYS


def _number(value, name) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


class EnsembleOptions:
    """The checked ensemble options of an env (``None`` when ``members`` is unset)."""

    def __init__(self, members, member, uncertainty, penalty, halt_threshold, halt_reward):
        if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
            raise ValueError(f"members must be a positive int (the size of the member axis), got {members!r}")
        self.members = int(members)
        if isinstance(member, (int, np.integer)) and not isinstance(member, bool):
            if not 0 <= member < self.members:
                raise ValueError(f"member must be in [0, {self.members - 1}] for members={self.members}, got {member}")
            member = int(member)
        elif member not in MEMBER_MODES:
            raise ValueError(f"member must be one of {', '.join(map(repr, MEMBER_MODES))} or an index, got {member!r}")
        self.member = member
        if uncertainty is not None and uncertainty not in UNCERTAINTIES:
            raise ValueError(
                f"uncertainty must be None or one of {', '.join(map(repr, UNCERTAINTIES))}, got {uncertainty!r}"
            )
        self.penalty = _number(penalty, "penalty")
        self.halt_threshold = None if halt_threshold is None else _number(halt_threshold, "halt_threshold")
        self.halt_reward = _number(halt_reward, "halt_reward")
        if uncertainty is None and (self.penalty != 0.0 or self.halt_threshold is not None):
            uncertainty = "disagreement"  # penalty and halting need a measure: MOReL's, which needs no std head
        self.uncertainty = uncertainty

    @classmethod
    def build(cls, members, member, uncertainty, penalty, halt_threshold, halt_reward) -> Optional[EnsembleOptions]:
        """The options as given to the constructor, checked, or ``None`` without ``members``."""
        if members is None:
            if uncertainty is not None or penalty not in (0, 0.0) or halt_threshold is not None:
                raise ValueError("uncertainty, penalty and halt_threshold need members=E (an ensemble model)")
            return None
        return cls(members, member, uncertainty, penalty, halt_threshold, halt_reward)


class StackedEnsemble:
    """``E`` member modules as one ensemble: each is called with the same
    ``(state, action)`` and their outputs are stacked leaf by leaf on a new
    leading member axis (a loop; one call per member).

    Example:
        >>> import torch
        >>> ens = StackedEnsemble([lambda s, a: s + 1, lambda s, a: s + 2])
        >>> ens(torch.zeros(2), None).tolist()
        [[1.0, 1.0], [2.0, 2.0]]
    """

    def __init__(self, modules):
        self.modules = list(modules)
        if not self.modules or not all(callable(m) for m in self.modules):
            raise ValueError("an ensemble given as a list needs at least one callable member")

    def __call__(self, state, action):
        """Calls every member and stacks their outputs along a leading member axis."""
        return _stack([m(state, action) for m in self.modules])

    def close(self):
        """Calls each member's ``close()`` where it has one."""
        for m in self.modules:
            close = getattr(m, "close", None)
            if callable(close):
                close()


def _stack(items):
    first = items[0]
    if isinstance(first, Mapping):
        return {k: _stack([item[k] for item in items]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_stack([item[i] for item in items]) for i in range(len(first)))
    if first is None:
        return None
    return _torch.stack([_tensor(x) for x in items])


def _tensor(x, like=None):
    if isinstance(x, _torch.Tensor):
        return x
    device = None if like is None else like.device
    return _torch.as_tensor(np.asarray(x), device=device)


def _map(tree, fn, path):
    return map_paths(lambda leaf, p: None if leaf is None else fn(leaf, p), tree, path)


def _flat_leaves(tree):
    return [leaf for leaf in leaves(tree) if leaf is not None]


def member_index_holder(world_model, transition_fn, options: Optional[EnsembleOptions], num_envs, generator):
    """The index tensor for a model that computes only the chosen members.

    A transition (``transition_fn``, or the model's method or ``forward``)
    declaring a keyword-only parameter ``member_index`` gets the chosen
    member of each env (a ``(num_envs,)`` int64 tensor, ``()`` for the single
    env, on the generator's device; the same tensor every step, its values
    rewritten) and returns one prediction per env, with no member axis: the
    efficient form of ``member="random"``, ``"episode"`` or an index (each
    env computes one member, not all ``E``; mbrl-lib's propagation indices).
    ``"mean"`` and ``uncertainty`` need all members, so they call it without
    ``member_index`` (which then needs a default). ``None`` when the
    indexed form is not in use.
    """
    if options is None:
        return None
    param = adapters.keyword_only(adapters.transition_target(world_model, transition_fn), "member_index")
    if param is None:
        return None
    if options.member == "mean" or options.uncertainty is not None:
        if param.default is param.empty:
            need = 'member="mean"' if options.member == "mean" else f"uncertainty={options.uncertainty!r}"
            raise ValueError(
                f"{need} needs every member's prediction, but the transition's member_index parameter has no "
                "default: give it one (None: compute all members)"
            )
        return None
    if _torch is None:
        raise ValueError("a member_index transition gets a torch tensor of member indices: it needs torch")
    device = generator.device if generator is not None else "cpu"
    return _torch.zeros(() if num_envs is None else (num_envs,), dtype=_torch.int64, device=device)


class EnsembleStep:
    """A transition whose outputs carry a member axis, reduced to one
    prediction per env (see the module's docstring). Wraps the env's
    transition caller; the env then reads its result as any other."""

    def __init__(
        self,
        transition,
        options: EnsembleOptions,
        generator,
        parse_step,
        num_envs: Optional[int],
        threshold=None,
        member_index=None,
    ):
        self.member_index = member_index  # the indexed form's index tensor (member_index_holder)
        self.threshold = threshold  # terminated_threshold: members' termination probabilities
        self.transition = transition
        self.options = options
        self.generator = generator
        self.parse_step = parse_step
        self.num_envs = num_envs  # None: the single env (no batch axis)
        self.episode = None  # "episode" members, one per env (a (n,) int64 tensor)

    # the episode members, drawn at resets
    def new_episode(self, mask=None, seeds=None) -> None:
        if self.options.member != "episode":
            return
        n = 1 if self.num_envs is None else self.num_envs
        if seeds is not None:  # per-env seeds: each env's member from its own seed, wherever it sits
            gens = [_torch.Generator().manual_seed(s) for s in seeds]
            drawn = _torch.cat([_torch.randint(0, self.options.members, (1,), generator=g) for g in gens])
        else:
            drawn = self._draw(n)
        if self.episode is None or mask is None:
            self.episode = drawn
        else:
            where = _torch.from_numpy(np.asarray(mask)).to(drawn.device)
            self.episode = _torch.where(where, drawn, self.episode.to(drawn.device))

    def _draw(self, n):
        gen = self.generator
        if gen is None:
            return _torch.randint(0, self.options.members, (n,))
        return _torch.randint(0, self.options.members, (n,), generator=gen, device=gen.device)

    def _members(self, n):
        """The chosen member of each of ``n`` envs (``None``: the mean)."""
        choice = self.options.member
        if choice == "mean":
            return None
        if choice == "random":
            return self._draw(n)
        if choice == "episode":
            if self.episode is None:
                self.new_episode()
            return self.episode
        return _torch.full((n,), choice, dtype=_torch.int64)

    def _indexed(self, state, action):
        """The indexed form: the members are chosen first, and the model
        computes only those (its outputs carry no member axis)."""
        vector = self.num_envs is not None
        n = self.num_envs if vector else 1
        chosen = self._members(n)
        holder = self.member_index
        holder.copy_(chosen.reshape(holder.shape).to(holder.device))
        result = self.transition(state, action)
        std = log_var = None
        if isinstance(result, Mapping):
            std, log_var = result.get("std"), result.get("log_var")
        has_state = not isinstance(result, Mapping) or any(k in result for k in _STATE_KEYS)
        next_state, obs, reward, terminated, truncated, info = self.parse_step(result, state)
        if isinstance(result, Mapping) and not any(k in result for k in _OBS_KEYS):
            obs = next_state
        from_log_var = log_var is not None and std is None
        if from_log_var:
            std = _map(log_var, lambda x, p: _torch.exp(0.5 * _tensor(x)), "log_var")
        new_obs = obs
        if std is not None:
            std_t = _map(std, lambda x, p: _tensor(x), "std")
            mu = _map(obs, lambda x, p: _tensor(x), "observation")
            _check_std(std_t, mu, signs=not from_log_var)  # perf: exp() is never negative
            new_obs = _map_pair(mu, std_t, self._sample)
        new_state = next_state if has_state and next_state is not obs else new_obs
        if terminated is not None and self.threshold is not None:
            terminated = _tensor(terminated).float() >= self.threshold
        info = {} if info is None else dict(info)
        return _reduced(new_state, new_obs, info, chosen, n, vector, reward, terminated, truncated)

    def __call__(self, state, action):
        if self.member_index is not None:
            return self._indexed(state, action)
        result = self.transition(state, action)
        std = log_var = None
        if isinstance(result, Mapping):
            std, log_var = result.get("std"), result.get("log_var")
        has_state = not isinstance(result, Mapping) or any(k in result for k in _STATE_KEYS)
        next_state, obs, reward, terminated, truncated, info = self.parse_step(result, state)
        if isinstance(result, Mapping) and not any(k in result for k in _OBS_KEYS):
            obs = next_state  # a mapping without an observation: its state stands in, as the env reads it
        e = self.options.members
        vector = self.num_envs is not None
        n = self.num_envs if vector else 1
        lead = (e, n) if vector else (e,)

        def members_axis(x, path):
            t = _tensor(x)
            if tuple(t.shape[: len(lead)]) != lead:
                want = f"({e}, {n}, ...)" if vector else f"({e}, ...)"
                raise ValueError(
                    f"with members={e}, {path} must have a leading member axis: shape {want}, got {tuple(t.shape)}"
                )
            return t

        obs_m = _map(obs, members_axis, "observation")
        if log_var is not None and std is None:
            std = _map(log_var, lambda x, p: _torch.exp(0.5 * members_axis(x, p)), "log_var")
        std_m = None
        if std is not None:
            std_m = _map(std, members_axis, "std")
            _check_std(std_m, obs_m, signs=True)
        chosen = self._members(n)
        if chosen is not None:
            chosen = chosen.to(_flat_leaves(obs_m)[0].device)
        u = None if self.options.uncertainty is None else self._uncertainty(obs_m, std_m)

        def pick(x):  # (E, n, ...) or (E, ...) -> (n, ...) or (...)
            if chosen is None:
                return x.float().mean(0).to(x.dtype) if x.dtype.is_floating_point else x.float().mean(0)
            if vector:
                return x[chosen, _torch.arange(n, device=x.device)]
            return x[chosen[0]]

        new_obs = _map(obs_m, lambda x, p: pick(x), "observation")
        if std_m is not None and chosen is not None:
            new_obs = _map_pair(new_obs, _map(std_m, lambda x, p: pick(x), "std"), self._sample)
        if has_state and next_state is not obs:
            new_state = _map(next_state, lambda x, p: pick(members_axis(x, p)), "state")
        else:
            new_state = new_obs
        new_reward = None if reward is None else self._pick_flag_or_reward(members_axis(reward, "reward"), pick)
        new_term = None
        if terminated is not None:
            t = members_axis(terminated, "terminated")
            if self.threshold is not None:  # probabilities: the chosen member's, or the members' mean
                new_term = (t.float().mean(0) if chosen is None else pick(t).float()) >= self.threshold
            else:
                new_term = (t.float().mean(0) > 0.5) if chosen is None else pick(t).bool()
        info = {} if info is None else dict(info)
        if u is not None:
            if self.options.penalty:
                base = new_reward if new_reward is not None else _torch.zeros(n if vector else (), device=u.device)
                new_reward = base.reshape(u.shape if vector else ()).float() - self.options.penalty * (
                    u if vector else u.reshape(())
                )
            if self.options.halt_threshold is not None:
                halt = u > self.options.halt_threshold
                if not vector:
                    halt = halt.reshape(())
                base_term = new_term if new_term is not None else _torch.zeros_like(halt)
                new_term = base_term.reshape(halt.shape).bool() | halt
                base = new_reward if new_reward is not None else _torch.zeros(halt.shape, device=halt.device)
                new_reward = _torch.where(
                    halt, _torch.full_like(base.float(), self.options.halt_reward), base.reshape(halt.shape).float()
                )
            values = u.detach().cpu().numpy().astype(np.float32)
            info["uncertainty"] = values if vector else float(values.reshape(-1)[0])
        return _reduced(new_state, new_obs, info, chosen, n, vector, new_reward, new_term, truncated)

    @staticmethod
    def _pick_flag_or_reward(x, pick):
        return pick(x)

    def _sample(self, mu, sigma):
        gen = self.generator
        if gen is not None and gen.device == mu.device:
            noise = _torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
        else:
            noise = _torch.randn(mu.shape, generator=gen, dtype=mu.dtype).to(mu.device)
        return mu + sigma.to(mu.dtype) * noise

    def _uncertainty(self, obs_m, std_m):
        """``(n,)`` uncertainty per env (``(1,)`` for the single env)."""
        e = self.options.members
        n = 1 if self.num_envs is None else self.num_envs
        mus = [leaf.float().reshape(e, n, -1) for leaf in _flat_leaves(obs_m)]
        mu = _torch.cat(mus, dim=-1)  # (E, n, d)
        kind = self.options.uncertainty
        if kind == "max_std":
            if std_m is None:
                raise ValueError('uncertainty="max_std" needs a "std" or "log_var" entry beside the observation')
            sigma = _torch.cat([leaf.float().reshape(e, n, -1) for leaf in _flat_leaves(std_m)], dim=-1)
            return sigma.norm(dim=-1).max(dim=0).values
        if kind == "disagreement":
            if e == 1:
                return _torch.zeros(n, device=mu.device)
            diff = mu.unsqueeze(0) - mu.unsqueeze(1)  # (E, E, n, d)
            return diff.norm(dim=-1).amax(dim=(0, 1))
        return mu.std(dim=0, unbiased=False).norm(dim=-1)

    def state(self):
        return None if self.episode is None else self.episode.clone()

    def restore(self, episode) -> None:
        self.episode = None if episode is None else episode.clone()


def _check_std(std, obs, signs: bool) -> None:
    """A std head has the observation's shapes (leaf by leaf) and, where ``signs``, no negative entry."""
    for s_leaf, o_leaf in zip(_flat_leaves(std), _flat_leaves(obs)):
        if s_leaf.shape != o_leaf.shape:
            raise ValueError(f"std must have the observation's shape {tuple(o_leaf.shape)}, got {tuple(s_leaf.shape)}")
        if signs and bool((s_leaf < 0).any()):
            raise ValueError("std must be non-negative; a log_var head gives std = exp(log_var / 2)")


def _reduced(state, obs, info, chosen, n, vector, reward, terminated, truncated) -> dict:
    """The one prediction per env as a mapping result, ``info["member"]`` the chosen members (-1: the mean)."""
    members = np.full(n, -1, np.int64) if chosen is None else chosen.detach().cpu().numpy().astype(np.int64).reshape(n)
    info["member"] = members if vector else int(members[0])
    out = {"state": state, "observation": obs, "info": info}
    if reward is not None:
        out["reward"] = reward
    if terminated is not None:
        out["terminated"] = terminated
    if truncated is not None and truncated is not False:
        out["truncated"] = truncated
    return out


def _map_pair(a, b, fn):
    if isinstance(a, Mapping):
        return {k: _map_pair(a[k], b[k], fn) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(_map_pair(x, y, fn) for x, y in zip(a, b))
    return fn(a, b)


def halt_threshold_from_data(uncertainties, *, scale: Optional[float] = None, quantile: Optional[float] = None):
    """MOReL's halting threshold from the uncertainty measured on a dataset's
    transitions: ``scale`` times the largest (MOReL: a multiple of the maximum
    disagreement over the dataset), or the ``quantile`` (in [0, 1]) of them.

    Example:
        >>> halt_threshold_from_data([0.1, 0.4, 0.2], scale=2.0)
        0.8
        >>> round(halt_threshold_from_data([0.1, 0.4, 0.2], quantile=0.5), 3)
        0.2
    """
    values = np.asarray(
        uncertainties.detach().cpu().numpy()
        if _torch is not None and isinstance(uncertainties, _torch.Tensor)
        else uncertainties,
        np.float64,
    ).reshape(-1)
    if not values.size:
        raise ValueError("halt_threshold_from_data needs at least one uncertainty value")
    if (scale is None) == (quantile is None):
        raise ValueError("give exactly one of scale= or quantile=")
    if scale is not None:
        return float(_number(scale, "scale") * values.max())
    q = _number(quantile, "quantile")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile!r}")
    return float(np.quantile(values, q))
