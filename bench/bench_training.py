"""PPO training throughput: SB3 PPO on TradeVecEnv vs SB3 PPO on gym-anytrading (DummyVecEnv).

Same network (MLP 64-64, tanh), same PPO settings and the same number of gradient steps per
update: every configuration collects 8192 transitions per rollout and trains 4 epochs of
256-transition minibatches. Peers:

* ``anytrading x8``: gym-anytrading's StocksEnv (window 64, observation 64 x 2) in SB3's
  ``DummyVecEnv``, 8 envs x 1024 steps per rollout (the usual way to run it);
* ``tradecore x8``: ``TradeVecEnv``, 8 envs x 1024 steps (like for like);
* ``tradecore x256``: ``TradeVecEnv``, 256 envs x 32 steps (the same rollout size, batched);
* ``tradecore x512``: ``TradeVecEnv``, 512 envs x 16 steps (how far batching carries).

TradeVecEnv observes more (window 64 x 8 columns + account = 517 floats vs 128), so its
first layer is larger. Printed per configuration: env steps/s of ``learn()``, of rollout
collection alone (policy forward + env step), of the bare env stepping random actions, and
where ``learn()`` time goes (env, policy forward, PPO update).

gym-anytrading is not a project dependency: ``make bench`` installs it (``--no-deps``) into its
own folder, ``.venv/bench-peers``, and runs this file with that folder on ``PYTHONPATH``::

    make bench    # or, once installed:
    PYTHONPATH=.venv/bench-peers .venv/bin/python bench/bench_training.py
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import numpy as np
import tests_path  # noqa: F401
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from tests.lakes import synthetic_lake
from tradecore_lib.env import make_vec_env
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.train.data import load_frame

ROLLOUT = 8192
ITERATIONS = 3
PPO_KW = {"batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4, "gamma": 0.99,
          "policy_kwargs": {"net_arch": [64, 64], "activation_fn": torch.nn.Tanh},
          "seed": 0, "device": "cpu", "verbose": 0}


def tradecore_env(frame, n_envs: int) -> VecEnv:
    settings = {"preset": "default", "exclude_column": WARMUP_COLUMN}
    return VecMonitor(make_vec_env(frame, n_envs, settings, seed=0))


def anytrading_env(frame, n_envs: int) -> VecEnv:
    import pandas as pd
    from gym_anytrading.envs import StocksEnv

    df = pd.DataFrame({"Open": frame["open"], "High": frame["high"], "Low": frame["low"],
                       "Close": frame["close"], "Volume": frame["volume"]})
    return VecMonitor(DummyVecEnv(
        [lambda: StocksEnv(df=df, window_size=64, frame_bound=(64, len(df)))] * n_envs))


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


def measure(make: Callable[[], VecEnv], n_envs: int) -> dict[str, float]:
    torch.set_num_threads(1)
    env = make()
    model = PPO("MlpPolicy", env, n_steps=ROLLOUT // n_envs, **PPO_KW)
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
        "obs": float(np.prod(env.observation_space.shape)),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lake, market = synthetic_lake(f"{tmp}/lake", months=1)
        frame = load_frame(lake, market, [market.first_month], market.feature_preset).frame
    try:
        import gym_anytrading  # noqa: F401
    except ImportError:
        raise SystemExit("gym-anytrading is not importable: run this with "
                         "bench/.venv-anytrading/bin/python (see the module docstring)") from None
    # Warm torch up (first-call allocations, kernel selection) so no configuration pays it.
    PPO("MlpPolicy", tradecore_env(frame, 8), n_steps=64, **{**PPO_KW, "batch_size": 64}
        ).learn(1024)
    rows = {
        "anytrading x8": measure(lambda: anytrading_env(frame, 8), 8),
        "tradecore x8": measure(lambda: tradecore_env(frame, 8), 8),
        "tradecore x256": measure(lambda: tradecore_env(frame, 256), 256),
        "tradecore x512": measure(lambda: tradecore_env(frame, 512), 512),
    }
    peer = rows["anytrading x8"]
    print(f"PPO on {len(frame)} one-minute bars, rollout {ROLLOUT} transitions, {ITERATIONS} "
          f"iterations, batch 256 x 4 epochs, MLP 64-64, 1 torch thread")
    print(f"{'config':16} {'obs':>5} {'learn/s':>9} {'x peer':>7} {'rollout/s':>10} "
          f"{'x peer':>7} {'env/s':>10} {'env%':>5} {'policy%':>8} {'update%':>8}")
    for name, r in rows.items():
        print(f"{name:16} {r['obs']:5.0f} {r['learn']:9.0f} {r['learn'] / peer['learn']:6.2f}x "
              f"{r['rollout']:10.0f} {r['rollout'] / peer['rollout']:6.2f}x {r['env']:10.0f} "
              f"{100 * r['env_share']:4.0f}% {100 * r['policy_share']:7.0f}% "
              f"{100 * r['update_share']:7.0f}%")
    print("targets (issue 6): rollout collection >= 10x, learn() >= 1.3x the peer")


if __name__ == "__main__":
    main()
