"""PPO training throughput: SB3 PPO on TradeVecEnv vs SB3 PPO on gym-anytrading (DummyVecEnv).

Same PPO settings and the same number of gradient steps per update in every configuration:
each collects 8192 transitions per rollout and trains 4 epochs of 256-transition minibatches
(128 gradient steps), policy and value MLPs 64-64 tanh, one torch thread. Peer:

* ``anytrading x8``: gym-anytrading's StocksEnv (window 64, observation 64 x 2) in SB3's
  ``DummyVecEnv``, 8 envs x 1024 steps per rollout (the usual way to run it), SB3's
  ``MlpPolicy``.

TradeCore rows, each at 256 envs x 32 steps and 512 envs x 16 steps (the same rollout, batched):

* ``mlp``: SB3's ``MlpPolicy`` on ``TradeVecEnv`` + VecMonitor (the rows of earlier runs);
* ``temporal``: the same with the temporal features extractor
  (:class:`tradecore_lib.train.extractors.TemporalPatches`, 4-bar patches x 16 channels);
* ``train temporal``: what the training entry point builds (``make_training_env`` +
  ``new_model``): TradeVecEnv -> VecMonitor -> TradeVecNormalize (observations and rewards
  normalized: work the peer does not do), TradeRolloutBuffer, the temporal extractor and
  fused Adam.

Two observations: ``default`` features (64 x 7 + 5 = 453 floats, the rows of earlier runs)
and ``extended`` features (64 x 13 + 5 = 837, what cpu-default trains on for the Kraken
markets). TradeVecEnv observes more than the peer (128 floats), so its first layer is larger.
Printed per configuration: env steps/s of ``learn()``, of rollout collection alone (policy
forward + env step + buffer), of the bare env stepping random actions, and where ``learn()``
time goes (env, policy forward, PPO update), the update's milliseconds per gradient step and
the ``ceiling``: the ratio to the peer that ``learn()`` would reach with rollout collection
for free, at these gradient steps. Each figure is the best of ``--repeat`` rounds that visit
every configuration in turn.

gym-anytrading is not a project dependency: ``make bench`` installs it (``--no-deps``) into its
own folder, ``.venv/bench-peers``, and runs this file with that folder on ``PYTHONPATH``::

    make bench    # or, once installed:
    PYTHONPATH=.venv/bench-peers .venv/bin/python bench/bench_training.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import tests_path  # noqa: F401
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from tests.lakes import write_synthetic_months
from tradecore_lib.env import make_vec_env
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.train.config import load_train_config
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.extractors import policy_kwargs
from tradecore_lib.train.ppo_train import make_training_env, new_model

ROLLOUT = 8192
ITERATIONS = 3
EPOCHS = 4
PPO_KW = {"batch_size": 256, "n_epochs": EPOCHS, "learning_rate": 3e-4, "gamma": 0.99,
          "seed": 0, "device": "cpu", "verbose": 0}
NET = {"net_arch": [64, 64], "activation_fn": torch.nn.Tanh}
TEMPORAL = {"patch_bars": 4, "channels": 16}

ModelFactory = Callable[[], tuple[PPO, Callable[[], VecEnv]]]


def month_frame(feature_preset: str) -> pd.DataFrame:
    """The first synthetic month of ``synthetic_btc_usd`` with ``feature_preset``'s features."""
    market = get_market("synthetic_btc_usd").model_copy(update={"feature_preset": feature_preset})
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(f"{tmp}/lake")
        write_synthetic_months(lake, market, [market.first_month])
        return load_frame(lake, market, [market.first_month], feature_preset).frame


def tradecore_env(frame: pd.DataFrame, n_envs: int) -> VecEnv:
    settings = {"preset": "default", "exclude_column": WARMUP_COLUMN}
    return VecMonitor(make_vec_env(frame, n_envs, settings, seed=0))


def anytrading_env(frame: pd.DataFrame, n_envs: int) -> VecEnv:
    from gym_anytrading.envs import StocksEnv

    df = pd.DataFrame({"Open": frame["open"], "High": frame["high"], "Low": frame["low"],
                       "Close": frame["close"], "Volume": frame["volume"]})
    return VecMonitor(DummyVecEnv(
        [lambda: StocksEnv(df=df, window_size=64, frame_bound=(64, len(df)))] * n_envs))


def sb3_model(make: Callable[[], VecEnv], n_envs: int, extractor: str) -> ModelFactory:
    """SB3 PPO on ``make()`` with ``extractor`` (mlp: SB3's own flatten)."""
    def build() -> tuple[PPO, Callable[[], VecEnv]]:
        env = make()
        kwargs = dict(NET)
        if extractor == "temporal":
            kwargs.update(policy_kwargs("temporal", window=64, account_size=5, **TEMPORAL))
        return PPO("MlpPolicy", env, n_steps=ROLLOUT // n_envs, policy_kwargs=kwargs,
                   **PPO_KW), make
    return build


def training_model(frame: pd.DataFrame, n_envs: int) -> ModelFactory:
    """The training entry point's env and model, with the bench's PPO settings."""
    overrides = {
        "n_envs": n_envs, "torch_threads": 1, "seed": 0,
        "env_overrides": {"episode_length": 1440},
        "ppo": {"n_steps": ROLLOUT // n_envs, "batch_size": 256, "n_epochs": 4,
                "learning_rate": 3e-4, "gamma": 0.99, "ent_coef": 0.0, "net_arch": [64, 64],
                "activation": "tanh", "fused_adam": True,
                "policy": {"extractor": "temporal", **TEMPORAL}},
        "total_timesteps": ROLLOUT * ITERATIONS, "checkpoint_every_steps": ROLLOUT,
    }
    cfg = load_train_config("cpu-smoke", overrides)

    def build() -> tuple[PPO, Callable[[], VecEnv]]:
        venv, _ = make_training_env(cfg, frame)
        return new_model(cfg, venv, "cpu"), lambda: make_training_env(cfg, frame)[0]
    return build


def env_steps_per_s(venv: VecEnv, seconds: float = 2.0) -> float:
    """Bare env stepping with random actions (no policy)."""
    venv.reset()
    rng = np.random.default_rng(0)
    n = venv.num_envs
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(64):
            venv.step(rng.integers(0, venv.action_space.n, size=n))
        steps += 64 * n
    return steps / (time.perf_counter() - start)


def measure(build: ModelFactory) -> dict[str, float]:
    torch.set_num_threads(1)
    model, make = build()
    start = time.perf_counter()
    model.learn(ROLLOUT * ITERATIONS)
    learn_s = time.perf_counter() - start
    # Rollout collection alone, as learn() does it (policy forward + env step + buffer).
    _, callback = model._setup_learn(ROLLOUT * ITERATIONS, reset_num_timesteps=True)
    callback.on_training_start(locals(), globals())
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    rollout_s = time.perf_counter() - start
    env_rate = env_steps_per_s(make())
    steps = ROLLOUT * ITERATIONS
    env_s = steps / env_rate
    return {
        "learn": steps / learn_s, "rollout": steps / rollout_s, "env": env_rate,
        "env_share": env_s / learn_s, "policy_share": max(rollout_s - env_s, 0.0) / learn_s,
        "update_share": max(learn_s - rollout_s, 0.0) / learn_s,
        "obs": float(np.prod(model.observation_space.shape)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds over every configuration; each figure is its best")
    args = parser.parse_args()
    try:
        import gym_anytrading  # noqa: F401
    except ImportError:
        raise SystemExit("gym-anytrading is not importable: run this with "
                         "PYTHONPATH=.venv/bench-peers (see the module docstring)") from None
    frames = {"default": month_frame("default"), "extended": month_frame("extended")}
    peer_frame = frames["default"]
    # Warm torch up (first-call allocations, kernel selection) so no configuration pays it.
    PPO("MlpPolicy", tradecore_env(peer_frame, 8), n_steps=64,
        **{**PPO_KW, "batch_size": 64}).learn(1024)
    configs: dict[str, ModelFactory] = {
        "anytrading x8": sb3_model(lambda: anytrading_env(peer_frame, 8), 8, "mlp")}
    for features, frame in frames.items():
        for n in (256, 512):
            for extractor in ("mlp", "temporal"):
                configs[f"{features} {extractor} x{n}"] = sb3_model(
                    lambda frame=frame, n=n: tradecore_env(frame, n), n, extractor)
            configs[f"{features} train temporal x{n}"] = training_model(frame, n)
    rows: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for name, build in configs.items():
            result = measure(build)
            if name not in rows or result["learn"] > rows[name]["learn"]:
                rows[name] = result
    peer = rows["anytrading x8"]
    print(f"PPO on {len(peer_frame)} one-minute bars, rollout {ROLLOUT} transitions, "
          f"{ITERATIONS} iterations, batch 256 x 4 epochs, MLP 64-64, 1 torch thread, best of "
          f"{args.repeat}")
    print(f"{'config':28} {'obs':>5} {'learn/s':>9} {'x peer':>7} {'rollout/s':>10} "
          f"{'x peer':>7} {'env/s':>10} {'env%':>5} {'policy%':>8} {'update%':>8} "
          f"{'ms/grad':>8} {'ceiling':>8}")
    steps = ROLLOUT * ITERATIONS
    gradient_steps = ITERATIONS * EPOCHS * ROLLOUT // PPO_KW["batch_size"]
    for name, r in rows.items():
        # the PPO update's time per gradient step, and the x peer learn() would reach if
        # rollout collection cost nothing (the same gradient steps bound it)
        update_s = steps / r["learn"] * r["update_share"]
        print(f"{name:28} {r['obs']:5.0f} {r['learn']:9.0f} {r['learn'] / peer['learn']:6.2f}x "
              f"{r['rollout']:10.0f} {r['rollout'] / peer['rollout']:6.2f}x {r['env']:10.0f} "
              f"{100 * r['env_share']:4.0f}% {100 * r['policy_share']:7.0f}% "
              f"{100 * r['update_share']:7.0f}% {1e3 * update_s / gradient_steps:8.2f} "
              f"{steps / peer['learn'] / update_s:7.2f}x")
    print("targets (issue 15): learn() >= 3x the peer with the temporal extractor, rollout "
          "collection >= 15x; 'ceiling' is the most learn() can reach at these gradient steps "
          "with a free rollout (the peer's own update runs at SB3's per-step floor)")


if __name__ == "__main__":
    main()
