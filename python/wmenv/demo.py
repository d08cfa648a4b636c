"""``wmenv demo``: learn CartPole's dynamics, train a policy in imagination, test it for real.

1. Collect transitions from the real ``CartPole-v1`` (random policy at first).
2. Train a small PyTorch world model: next-state, reward and termination heads.
3. Wrap it in a :class:`~wmenv.WorldModelVectorEnv` (through the SB3 adapter)
   and train a Stable-Baselines3 PPO policy purely in imagination.
4. Optionally repeat (Dyna style): collect with the policy, retrain, train on.
5. Evaluate on the real ``CartPole-v1`` and print a table.

Offline, CPU only, about 40 s on two cores::

    wmenv demo [--seed 0] [--rounds 2] [--steps 60000] [--plot curves.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)


def _require(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        sys.exit(f"wmenv demo needs {module}: pip install 'wmenv[{extra}]'")


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int, width: int = 30):
        self.label, self.total, self.width = label, max(int(total), 1), width
        self.start = time.perf_counter()
        self.last = -1.0
        self.live = sys.stderr.isatty()  # redrawn in a terminal; one final line in a log

    def update(self, done: int, note: str = "", force: bool = False):
        """Redraws the bar at ``done`` steps (at most every tenth of a second unless ``force``)."""
        now = time.perf_counter()
        if not force and (not self.live or now - self.last < 0.1):
            return
        self.last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * self.width) + "-" * (self.width - int(frac * self.width))
        sys.stderr.write(f"\r  {self.label:<22} [{bar}] {frac:4.0%} {now - self.start:5.1f}s {note:<28}")
        sys.stderr.flush()

    def close(self, note: str = ""):
        """Draws the bar full and ends its line."""
        self.update(self.total, note, force=True)
        sys.stderr.write("\n")


@dataclass
class Transitions:
    """Real experience: (obs, action, next_obs, terminated) and episode starts."""

    obs: list = field(default_factory=list)
    action: list = field(default_factory=list)
    next_obs: list = field(default_factory=list)
    terminated: list = field(default_factory=list)
    starts: list = field(default_factory=list)

    def arrays(self):
        """The collected transitions as NumPy arrays."""
        return (
            np.asarray(self.obs, np.float32),
            np.asarray(self.action, np.int64),
            np.asarray(self.next_obs, np.float32),
            np.asarray(self.terminated, np.float32),
        )

    def __len__(self):
        return len(self.obs)


def collect(data: Transitions, steps: int, seed: int, policy=None, epsilon: float = 0.0):
    """Steps the real CartPole-v1 ``steps`` times; ``policy(obs) -> action`` or random."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    data.starts.append(obs)
    bar = Progress("collecting real steps", steps)
    episodes = 0
    for t in range(steps):
        if policy is None or rng.random() < epsilon:
            action = int(rng.integers(2))
        else:
            action = int(policy(obs))
        next_obs, _, terminated, truncated, _ = env.step(action)
        data.obs.append(obs)
        data.action.append(action)
        data.next_obs.append(next_obs)
        data.terminated.append(float(terminated))
        obs = next_obs
        if terminated or truncated:
            episodes += 1
            obs, _ = env.reset()
            data.starts.append(obs)
        bar.update(t + 1, f"{episodes} episodes")
    bar.close(f"{episodes} episodes, {len(data)} in all")
    env.close()


def build_model(torch, hidden: int = 128):
    """The demo's CartPole world model: an MLP from (state, action) to next state, reward and termination."""
    nn = torch.nn

    class CartPoleWorldModel(nn.Module):  # type: ignore[name-defined]
        """(state, action) -> next state (as a normalised delta), reward, termination.

        Batched: ``state`` (n, 4) float, ``action`` (n,) int64. Called by the
        vector env as the transition; its reset draws real episode starts.
        """

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
            self.delta = nn.Linear(hidden, 4)
            self.reward = nn.Linear(hidden, 1)
            self.done = nn.Sequential(nn.Linear(4, hidden), nn.SiLU(), nn.Linear(hidden, 1))
            for name in ("obs_mean", "obs_std", "delta_mean", "delta_std"):
                self.register_buffer(name, torch.zeros(4) if "mean" in name else torch.ones(4))
            self.register_buffer("starts", torch.zeros(1, 4))
            self.generator = torch.Generator().manual_seed(0)

        def heads(self, state, action):
            x = (state - self.obs_mean) / self.obs_std
            a = torch.nn.functional.one_hot(action.long().reshape(-1), 2).float()
            h = self.body(torch.cat([x, a], dim=-1))
            next_state = state + self.delta(h) * self.delta_std + self.delta_mean
            done_logit = self.done((next_state - self.obs_mean) / self.obs_std).squeeze(-1)
            return next_state, self.reward(h).squeeze(-1), done_logit

        def forward(self, state, action):
            next_state, reward, done_logit = self.heads(state, action)
            return {"state": next_state, "observation": next_state, "reward": reward, "terminated": done_logit > 0}

        def reset(self, seed=None, options=None):
            if seed is not None:
                self.generator.manual_seed(seed)
            n = len(options["reset_mask"])
            idx = torch.randint(len(self.starts), (n,), generator=self.generator)
            state = self.starts[idx].clone()
            return state, state

    return CartPoleWorldModel()


def train_model(torch, model, data: Transitions, epochs: int, seed: int):
    """Fits the model on 90% of the data; returns held-out errors."""
    obs, action, next_obs, terminated = (torch.from_numpy(a) for a in data.arrays())
    delta = next_obs - obs
    with torch.no_grad():
        model.obs_mean.copy_(obs.mean(0))
        model.obs_std.copy_(obs.std(0) + 1e-6)
        model.delta_mean.copy_(delta.mean(0))
        model.delta_std.copy_(delta.std(0) + 1e-6)
        model.starts = torch.from_numpy(np.asarray(data.starts, np.float32))
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(obs), generator=gen)
    split = int(0.9 * len(obs))
    train, held = order[:split], order[split:]
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    positive = terminated[train].mean().clamp(min=1e-3)
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=(1 - positive) / positive)
    batch = 512
    steps_per_epoch = max(split // batch, 1)
    bar = Progress("training world model", epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        perm = train[torch.randperm(split, generator=gen)]
        for i in range(steps_per_epoch):
            idx = perm[i * batch : (i + 1) * batch]
            pred, reward, done_logit = model.heads(obs[idx], action[idx])
            loss = (((pred - next_obs[idx]) / model.delta_std) ** 2).mean()
            loss = loss + ((reward - 1.0) ** 2).mean() + 0.1 * bce(done_logit, terminated[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            bar.update(epoch * steps_per_epoch + i + 1, f"loss {loss.item():.4f}")
    model.eval()
    with torch.no_grad():
        pred, reward, done_logit = model.heads(obs[held], action[held])
        state_rmse = float(((pred - next_obs[held]) ** 2).mean().sqrt())
        scale = float((next_obs[held] - obs[held]).pow(2).mean().sqrt())
        done_acc = float(((done_logit > 0).float() == terminated[held]).float().mean())
        reward_mae = float((reward - 1.0).abs().mean())
    bar.close(f"held-out state RMSE {state_rmse:.5f}")
    return {"state_rmse": state_rmse, "delta_rms": scale, "termination_accuracy": done_acc, "reward_mae": reward_mae}


def evaluate_real(policy, episodes: int, seed: int):
    """Returns of ``policy(obs) -> action`` (or random) on the real CartPole-v1."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            action = int(rng.integers(2)) if policy is None else int(policy(obs))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return np.asarray(returns)


def imagined_rates(model, backends, num_envs: int, rounds: int = 5, seconds: float = 0.1) -> dict:
    """Imagined env-steps per second of the vector env with random actions,
    for each backend: interleaved rounds, the best of each, so that a busy
    moment of the machine cannot favour one backend."""
    from .vector import WorldModelVectorEnv

    envs = {}
    for name in backends:
        env = WorldModelVectorEnv(
            model, num_envs, OBS_SPACE, gym.spaces.Discrete(2), backend=name, max_episode_steps=500
        )
        env.reset(seed=0)
        envs[name] = env
    actions = np.random.default_rng(0).integers(0, 2, (64, num_envs))
    best = dict.fromkeys(envs, 0.0)
    for _ in range(rounds):
        for name, env in envs.items():
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                env.step(actions[count % 64])
                count += 1
            best[name] = max(best[name], count * num_envs / (time.perf_counter() - start))
    return best


def run(args) -> dict:
    """Runs the whole demo with the parsed ``args``: the figures it prints, as a dict."""
    torch = _require("torch", "demo")
    _require("stable_baselines3", "demo")
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from . import _backend
    from .sb3 import WorldModelVecEnv

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, args.threads))
    print(
        f"wmenv demo: CartPole-v1 learned, then solved in imagination (seed {args.seed}, "
        f"{args.rounds} round(s), backend {args.backend or _backend.DEFAULT})"
    )
    data = Transitions()
    model = build_model(torch)
    curves: dict[str, list] = {"imagined_steps": [], "imagined_return": [], "round_steps": [], "real_return": []}
    policy = agent = None

    class Curve(BaseCallback):
        """Records mean imagined episode return against imagined steps."""

        def __init__(self, bar):
            super().__init__()
            self.bar = bar
            self.returns = np.zeros(args.envs)
            self.finished = []
            self.start = 0

        def _on_training_start(self):
            self.start = self.num_timesteps  # cumulative across rounds

        def _on_step(self):
            rewards, dones = self.locals["rewards"], self.locals["dones"]
            self.returns += rewards
            for i in np.flatnonzero(dones):
                self.finished.append(self.returns[i])
                self.returns[i] = 0.0
            if len(self.finished) >= args.envs:
                curves["imagined_steps"].append(self.num_timesteps)
                curves["imagined_return"].append(float(np.mean(self.finished)))
                self.finished = []
            note = f"imagined return {curves['imagined_return'][-1]:.0f}" if curves["imagined_return"] else ""
            self.bar.update(self.num_timesteps - self.start, note)
            return True

    total_imagined = 0
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}")
        if r == 0:
            collect(data, args.real_steps, args.seed)
        else:
            collect(data, args.real_steps // 2, args.seed + r, policy=policy, epsilon=0.2)
        errors = train_model(torch, model, data, args.model_epochs, args.seed + r)
        print(
            f"  world model, held-out: next-state RMSE {errors['state_rmse']:.5f} "
            f"(one real step moves the state by {errors['delta_rms']:.4f} RMS), termination accuracy "
            f"{errors['termination_accuracy']:.3f}, reward MAE {errors['reward_mae']:.4f}"
        )
        venv = WorldModelVecEnv.from_model(
            model, args.envs, OBS_SPACE, gym.spaces.Discrete(2), max_episode_steps=500, backend=args.backend
        )
        venv.seed(args.seed + r)
        steps = args.steps if r == 0 else args.steps // 2
        if agent is None:
            agent = PPO(
                "MlpPolicy",
                venv,
                n_steps=32,
                batch_size=256,
                n_epochs=10,
                gamma=0.98,
                gae_lambda=0.8,
                learning_rate=1e-3,
                ent_coef=0.0,
                seed=args.seed,
                verbose=0,
                policy_kwargs={"net_arch": [64, 64]},
            )
        else:
            agent.set_env(venv)
        bar = Progress("PPO in imagination", steps)
        agent.learn(total_timesteps=steps, callback=Curve(bar), reset_num_timesteps=(r == 0))
        bar.close(f"{steps} imagined steps")
        total_imagined += steps

        def policy(obs, agent=agent):
            return agent.predict(obs, deterministic=True)[0]

        real = evaluate_real(policy, 5, 10_000 + r)
        curves["round_steps"].append(total_imagined)
        curves["real_return"].append(float(real.mean()))
        print(f"  real CartPole-v1 check (5 episodes): {real.mean():.1f}")

    from .evaluation import collect as collect_real
    from .evaluation import evaluate as evaluate_model
    from .vector import WorldModelVectorEnv

    # how far the learned model can be trusted: open-loop errors on fresh real episodes of the policy
    held_out = collect_real(gym.make("CartPole-v1"), lambda o: int(policy(o)), episodes=3, seed=30_000)
    model_error = evaluate_model(
        WorldModelVectorEnv(model, args.envs, OBS_SPACE, gym.spaces.Discrete(2), backend=args.backend),
        held_out,
        horizon=10,
        max_starts=512,
    )
    random_returns = evaluate_real(None, args.episodes, 20_000)
    policy_returns = evaluate_real(policy, args.episodes, 20_000)
    rates = imagined_rates(model, _backend.available(), args.envs)
    elapsed = time.perf_counter() - started

    print()
    print(f"Real CartPole-v1, {args.episodes} episodes (max return 500; solved at 195):")
    print(f"  {'policy':<36} {'mean return':>12} {'std':>8}")
    print(f"  {'random':<36} {random_returns.mean():>12.1f} {random_returns.std():>8.1f}")
    label = "PPO trained in imagination only"
    print(f"  {label:<36} {policy_returns.mean():>12.1f} {policy_returns.std():>8.1f}")
    print(f"Imagined env steps per second ({args.envs} envs, one model call per step):")
    for name, value in rates.items():
        print(f"  {name + ' backend':<36} {value:>12,.0f}")
    if len(rates) > 1 and max(rates.values()) < 1.05 * min(rates.values()):
        print("  (within noise of each other: at this size the model's own call is most of a step)")
    mse = model_error.observation_mse
    print(
        f"World model vs real (open-loop, {model_error.starts} starts): observation MSE "
        f"{mse[0]:.2g} after 1 step, {mse[4]:.2g} after 5, {mse[9]:.2g} after 10"
    )
    print(f"Real steps used: {len(data)}; imagined steps: {total_imagined}; wall time {elapsed:.0f}s")

    if args.plot:
        plot(curves, args.plot)
        print(f"Learning curves saved to {args.plot}")
        model_plot = args.plot[:-4] + "-model.png" if args.plot.endswith(".png") else args.plot + "-model.png"
        model_error.plot(model_plot)
        print(f"Model error against horizon saved to {model_plot}")
    return {
        "random": random_returns,
        "policy": policy_returns,
        "rates": rates,
        "elapsed": elapsed,
        "curves": curves,
        "real_steps": len(data),
        "model_error": model_error,
    }


def plot(curves: dict, path: str):
    """Writes the learning curves to ``path`` as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install matplotlib")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(curves["imagined_steps"], curves["imagined_return"], label="imagined episode return")
    ax.plot(curves["round_steps"], curves["real_return"], "o-", label="real CartPole-v1 return")
    ax.axhline(195, color="grey", linestyle="--", linewidth=1, label="solved (195)")
    ax.set_xlabel("imagined environment steps")
    ax.set_ylabel("return")
    ax.set_title("PPO trained in a learned CartPole world model")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    """The demo's command line."""
    p = argparse.ArgumentParser(prog="wmenv demo", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2, help="collect -> retrain -> train rounds (Dyna style)")
    p.add_argument("--steps", type=int, default=60_000, help="imagined PPO steps in the first round (half after)")
    p.add_argument("--real-steps", type=int, default=20_000, help="real steps collected in the first round")
    p.add_argument("--model-epochs", type=int, default=20)
    p.add_argument("--envs", type=int, default=16, help="imagined rollouts per model call")
    p.add_argument("--episodes", type=int, default=20, help="real evaluation episodes")
    p.add_argument("--backend", choices=("native", "python"), default=None)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="save learning curves (needs matplotlib)")
    return p


def main(argv=None) -> int:
    """Runs the demo from the command line; the exit status."""
    args = parser().parse_args(argv)
    run(args)
    return 0
