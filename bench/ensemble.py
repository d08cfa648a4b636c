"""A 7-member Gaussian ensemble stepped by wmenv, by mbrl-lib's ModelEnv and raw.

The model is MBPO's default for small tasks: 7 members, each an MLP of 4
hidden layers of 200 (ReLU) from (observation 3 + action 1) to the mean and
log-variance of (Δobservation, reward), log-variance soft-clamped as mbrl-lib
does; the next observation is the observation plus a sample of the chosen
member's Gaussian. A random member per env per step (MBPO's TS-1). In the
same run, interleaved rounds, best of ``--rounds``, env-steps per second:

* ``raw_all``: the raw loop computing all 7 members for every env, then one
  member's Gaussian per env, sampled (what ``members=7`` asks the model for);
* ``wmenv_all``: WorldModelVectorEnv with ``members=7, member="random"`` on
  that model: one call for all members, the chosen member sampled with the
  env's generator; uncertainty could be had at no extra model cost;
* ``raw_one``: the raw loop computing only each env's chosen member (the
  ensemble's weights applied per member group: 1/7 of the work);
* ``wmenv_one``: WorldModelVectorEnv on the same model's ``member_index``
  form (the env draws the members, the model computes only those);
* ``mbrl_raw``: that model's ``sample()`` alone, ModelEnv's own floor;
* ``mbrl_lib``: mbrl-lib's ``ModelEnv`` over its own ``GaussianMLP`` of the
  same size with ``propagation_method="random_model"`` (which also computes
  each env's member only), ``sample=True``. Its random_model needs a batch
  that is a multiple of 7, so it runs at the multiple of 7 just below ``n``
  (252 for 256, 4095 for 4096); per env-step that changes nothing that matters.

mbrl-lib is not a dependency and never copied here. PyPI's ``mbrl`` 0.2.0 pins
``gymnasium==0.26.3``, so install it beside the project without its pins,
into a folder of its own, and point ``--mbrl-site`` (or ``PYTHONPATH``) at it::

    pip install --no-deps --target /tmp/mbrl-site mbrl==0.2.0 omegaconf hydra-core \\
        antlr4-python3-runtime==4.9.3 termcolor pyyaml
    python bench/ensemble.py --mbrl-site /tmp/mbrl-site

Without it the script says so and reports ``null`` for mbrl_lib. The last
line is one JSON object for n = 256 (the first ``--num-envs``): keys ``n``,
``wmenv``, ``raw`` (the like-for-like one-member-per-env figures: wmenv_one
and raw_one, as mbrl-lib computes one member per env) and ``mbrl_lib``, plus
the all-member figures.

    python bench/ensemble.py [--num-envs 256 4096] [--rounds 3] [--steps 20] [--mbrl-site DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wmenv import WorldModelVectorEnv

E, OBS_DIM, ACT_DIM, HIDDEN, LAYERS = 7, 3, 1, 200, 4
OBS = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (ACT_DIM,), np.float32)


class Ensemble(nn.Module):
    """E Gaussian MLP members in batched weights ``(E, in, out)``.

    ``forward(state, action)`` gives every member's prediction (a leading
    member axis); with ``member_index`` (a ``(N,)`` int64 tensor) only each
    env's member is computed: envs are grouped by member into an
    ``(E, max_group, in)`` batch, so the work is about ``N`` rows, not ``E*N``.
    """

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        sizes = [OBS_DIM + ACT_DIM] + [HIDDEN] * LAYERS + [2 * (OBS_DIM + 1)]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(E, i, o) / np.sqrt(i)) for i, o in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(E, 1, o)) for o in sizes[1:])
        self.max_logvar = nn.Parameter(torch.full((OBS_DIM + 1,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((OBS_DIM + 1,), -10.0))

    def _net(self, x):  # (E, M, in) -> mean, logvar (E, M, OBS_DIM + 1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.relu(x)
        mean, logvar = x.chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def forward(self, state, action, *, member_index=None):
        x = torch.cat([state, action], dim=-1)
        n = x.shape[0]
        if member_index is None:
            mean, logvar = self._net(x.unsqueeze(0).expand(E, n, -1))
            base = state.unsqueeze(0)
        else:
            order = torch.argsort(member_index, stable=True)
            members = member_index[order]
            counts = torch.bincount(member_index, minlength=E)
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(n, device=x.device) - starts[members]
            grouped = x.new_zeros(E, int(counts.max()), x.shape[1])
            grouped[members, slot] = x[order]
            g_mean, g_logvar = self._net(grouped)
            mean = torch.empty(n, OBS_DIM + 1, device=x.device)
            logvar = torch.empty_like(mean)
            mean[order], logvar[order] = g_mean[members, slot], g_logvar[members, slot]
            base = state
        return {
            "observation": base + mean[..., :OBS_DIM],
            "log_var": logvar[..., :OBS_DIM],
            "reward": mean[..., OBS_DIM],
        }


def make_mbrl(site):
    """mbrl-lib's ModelEnv over its GaussianMLP, or ``(None, reason)``."""
    if site:
        sys.path.insert(0, site)
    try:
        import mbrl.models as models
    except Exception as exc:  # any failure to import is reported, not raised
        return None, f"{type(exc).__name__}: {exc}"
    net = models.GaussianMLP(
        OBS_DIM + ACT_DIM,
        OBS_DIM + 1,
        "cpu",
        num_layers=LAYERS,
        ensemble_size=E,
        hid_size=HIDDEN,
        propagation_method="random_model",
    )
    model = models.OneDTransitionRewardModel(net, target_is_delta=True, normalize=False, learned_rewards=True)

    class Spaces:
        observation_space, action_space = OBS, ACT

    env = models.ModelEnv(
        Spaces(), model, termination_fn=lambda a, o: torch.zeros(o.shape[0], 1, dtype=torch.bool), generator=None
    )
    return env, None


def timed(step, steps):
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def runners(n, mbrl_env, steps_per_round):
    model = Ensemble().eval()
    rng = np.random.default_rng(0)
    start = rng.uniform(-1, 1, (n, OBS_DIM)).astype(np.float32)
    action_np = rng.uniform(-2, 2, (n, ACT_DIM)).astype(np.float32)
    action_t = torch.from_numpy(action_np)
    gen = torch.Generator().manual_seed(0)
    rows = torch.arange(n)
    out = {}

    def raw_all_loop():
        state = torch.from_numpy(start)

        def step():
            nonlocal state
            with torch.no_grad():
                pred = model(state, action_t)
                chosen = torch.randint(0, E, (n,), generator=gen)
                mu, lv = pred["observation"][chosen, rows], pred["log_var"][chosen, rows]
                state = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=gen)
                state.numpy(), pred["reward"][chosen, rows].numpy()

        return step

    def raw_one_loop():
        state = torch.from_numpy(start)

        def step():
            nonlocal state
            with torch.no_grad():
                chosen = torch.randint(0, E, (n,), generator=gen)
                pred = model(state, action_t, member_index=chosen)
                mu, lv = pred["observation"], pred["log_var"]
                state = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=gen)
                state.numpy(), pred["reward"].numpy()

        return step

    def wmenv_loop(world_model, transition_fn=None):
        env = WorldModelVectorEnv(
            world_model, n, OBS, ACT, transition_fn=transition_fn, members=E, member="random",
            initial_state=torch.from_numpy(start), seed=0,
        )  # fmt: skip
        env.reset(seed=0)
        return lambda: env.step(action_np)

    out["raw_all"] = raw_all_loop()
    # a transition without member_index: the model computes every member
    out["wmenv_all"] = wmenv_loop(None, lambda m, state, action: model(state, action))
    out["raw_one"] = raw_one_loop()
    out["wmenv_one"] = wmenv_loop(model)  # its forward declares member_index
    if mbrl_env is not None:
        m = n - n % E
        state = mbrl_env.reset(start[:m], return_as_np=True)
        act = action_np[:m]

        def mbrl_step():
            nonlocal state
            _, _, _, state = mbrl_env.step(act, state, sample=True)

        out["mbrl_lib"] = (mbrl_step, m)
        model_state = mbrl_env.reset(start[:m], return_as_np=True)
        act_t, mgen = torch.from_numpy(act), torch.Generator().manual_seed(0)

        def mbrl_raw_step():  # its model's sample() alone: ModelEnv's own floor
            nonlocal model_state
            with torch.no_grad():
                _, _, _, model_state = mbrl_env.dynamics_model.sample(act_t, model_state, deterministic=False, rng=mgen)

        out["mbrl_raw"] = (mbrl_raw_step, m)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--mbrl-site", default=None, help="a folder holding mbrl-lib (pip install --target)")
    args = parser.parse_args(argv)
    mbrl_env, why = make_mbrl(args.mbrl_site)
    if mbrl_env is None:
        print(f"mbrl-lib could not be imported ({why}); its column is null. See this script's docstring.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; env-steps per second, best of {args.rounds}")
    header = f"{'n':>6} {'raw_all':>10} {'wmenv_all':>10} {'raw_one':>10} {'wmenv_one':>10} {'mbrl_raw':>10}"
    print(header + f" {'mbrl_lib':>10}   wmenv_one/raw_one  wmenv_all/raw_all  mbrl_lib/mbrl_raw  wmenv_one/mbrl_lib")
    results = []
    for n in args.num_envs:
        loops = runners(n, mbrl_env, args.steps)
        best = {k: 0.0 for k in loops}
        for _ in range(args.rounds):
            for name, loop in loops.items():
                step, count = loop if isinstance(loop, tuple) else (loop, n)
                best[name] = max(best[name], count / timed(step, args.steps))
        mbrl_rate, mbrl_raw = best.get("mbrl_lib"), best.get("mbrl_raw")
        row = {
            "n": n,
            "wmenv": round(best["wmenv_one"]),
            "raw": round(best["raw_one"]),
            "mbrl_lib": None if mbrl_rate is None else round(mbrl_rate),
            "wmenv_all": round(best["wmenv_all"]),
            "raw_all": round(best["raw_all"]),
            "mbrl_raw": None if mbrl_raw is None else round(mbrl_raw),
        }
        results.append(row)
        vs_mbrl = "n/a" if mbrl_rate is None else f"{best['wmenv_one'] / mbrl_rate:.2f}x"
        own = "n/a" if mbrl_rate is None else f"{mbrl_rate / mbrl_raw:.2f}x"
        print(
            f"{n:>6} {best['raw_all']:>10,.0f} {best['wmenv_all']:>10,.0f} {best['raw_one']:>10,.0f} "
            f"{best['wmenv_one']:>10,.0f} {'null' if mbrl_raw is None else f'{mbrl_raw:,.0f}':>10} "
            f"{'null' if mbrl_rate is None else f'{mbrl_rate:,.0f}':>10}"
            f"   {best['wmenv_one'] / best['raw_one']:>17.2f}x {best['wmenv_all'] / best['raw_all']:>17.2f}x"
            f"  {own:>17} {vs_mbrl:>19}"
        )
    print(json.dumps(results[0]))


if __name__ == "__main__":
    main()
