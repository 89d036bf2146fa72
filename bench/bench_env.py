"""Env-steps per second of the trading env against its peers, measured in one run.

Rows:
  (a) TradingEnv, one env stepped in a Python loop (the single env),
  (b) TradeVecEnv with N envs (default 256) in one vectorized call, with and without reading
      every info as SB3's PPO does each step,
  (c) SB3's DummyVecEnv over N single TradingEnvs (what TradeVecEnv replaces),
  (d) gym-anytrading's StocksEnv on the same closes, window 64 (observation 64 x 2), alone
      and behind DummyVecEnv.

Our envs use the ``extended`` preset's observation on a synthetic month with ``--features``
numpy feature columns (window 64 x (5 + features) + 7 account values).

gym-anytrading is not a project dependency: ``make bench`` installs it (``--no-deps``; its
own dependencies are already in the project venv) into ``.venv/bench-peers`` and runs this
file with that folder on ``PYTHONPATH``. Without it, its rows are skipped.

Targets (issue 5): TradeVecEnv >= 5x gym-anytrading's StocksEnv, single env > 100k steps/s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import tests_path  # noqa: F401
from stable_baselines3.common.vec_env import DummyVecEnv

from tests.frames import synthetic_frame
from tradecore_lib.env import MarketData, load_env_config, make_env, make_vec_env


def _rate(step: Callable[[], int], seconds: float) -> float:
    """Env-steps per second of repeated ``step()`` calls (each returns env-steps done)."""
    for _ in range(20):  # warm-up
        step()
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            done += step()
    return done / elapsed


def bench_single(data: MarketData, cfg, seconds: float) -> float:
    env = make_env(data, cfg, seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 3, 4096).tolist()
    nudge = [[a, 1, 1] for a in actions]
    return _gym_rate(env, nudge if cfg.nudge else actions, seconds)


def _gym_rate(env, actions: list, seconds: float) -> float:
    """Env-steps per second of one gymnasium env cycling through 4096 ``actions``."""
    k = 0

    def step() -> int:
        nonlocal k
        _, _, term, trunc, _ = env.step(actions[k & 4095])
        k += 1
        if term or trunc:
            env.reset()
        return 1

    return _rate(step, seconds)


def _actions_for(cfg, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 3, (64, n))
    if cfg.nudge:
        return [np.stack([p, np.ones(n, int), np.ones(n, int)], axis=1) for p in pos]
    return list(pos)


def bench_vec(data: MarketData, cfg, n: int, seconds: float, read_infos: bool) -> float:
    venv = make_vec_env(data, n, cfg, seed=0)
    venv.reset()
    acts = _actions_for(cfg, n)
    k = 0

    def step() -> int:
        nonlocal k
        _, _, _, infos = venv.step(acts[k & 63])
        k += 1
        if read_infos:  # what PPO's _update_info_buffer does every step
            for info in infos:
                info.get("episode")
                info.get("is_success")
        return n

    return _rate(step, seconds)


def bench_dummy(data: MarketData, cfg, n: int, seconds: float) -> float:
    venv = DummyVecEnv([lambda: make_env(data, cfg) for _ in range(n)])
    venv.seed(0)
    venv.reset()
    acts = _actions_for(cfg, n)
    k = 0

    def step() -> int:
        nonlocal k
        venv.step(acts[k & 63])
        k += 1
        return n

    return _rate(step, seconds / 2)


def _anytrading_env(close: np.ndarray, window: int):
    import pandas as pd
    from gym_anytrading.envs import StocksEnv

    df = pd.DataFrame({"Close": close})
    return StocksEnv(df=df, window_size=window, frame_bound=(window, len(df)))


def bench_anytrading(close: np.ndarray, window: int, seconds: float) -> float:
    env = _anytrading_env(close, window)
    env.reset(seed=0)
    return _gym_rate(env, np.random.default_rng(0).integers(0, 2, 4096).tolist(), seconds)


def bench_anytrading_dummy(close: np.ndarray, window: int, n: int, seconds: float) -> float:
    venv = DummyVecEnv([lambda: _anytrading_env(close, window) for _ in range(n)])
    venv.seed(0)
    venv.reset()
    acts = list(np.random.default_rng(0).integers(0, 2, (64, n)))
    k = 0

    def step() -> int:
        nonlocal k
        venv.step(acts[k & 63])
        k += 1
        return n

    return _rate(step, seconds / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-envs", type=int, default=256)
    parser.add_argument("--features", type=int, default=12,
                        help="numpy feature columns in the frame (extended-like observation)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per row")
    parser.add_argument("--preset", default="extended")
    args = parser.parse_args()

    frame = synthetic_frame(n_features=args.features)
    cfg = load_env_config(args.preset)
    data = MarketData.from_frame(frame, cfg)
    obs_dim = cfg.window * data.n_columns + cfg.account_size
    print(f"frame: {len(frame)} bars, preset {cfg.name!r}, observation {cfg.window} x "
          f"{data.n_columns} + {cfg.account_size} = {obs_dim} float32, N = {args.n_envs}")

    rows: list[tuple[str, float]] = []
    rows.append(("TradingEnv (single env)", bench_single(data, cfg, args.seconds)))
    rows.append((f"TradeVecEnv x{args.n_envs}",
                 bench_vec(data, cfg, args.n_envs, args.seconds, read_infos=False)))
    rows.append((f"TradeVecEnv x{args.n_envs} + read every info",
                 bench_vec(data, cfg, args.n_envs, args.seconds, read_infos=True)))
    rows.append((f"DummyVecEnv x{args.n_envs} of TradingEnv",
                 bench_dummy(data, cfg, args.n_envs, args.seconds)))
    try:
        import gym_anytrading  # noqa: F401
    except ImportError:
        print("gym-anytrading not importable: its rows are skipped (see the module docstring)")
        anytrading = None
    else:
        close = frame["close"].to_numpy()
        anytrading = bench_anytrading(close, cfg.window, args.seconds)
        rows.append(("gym-anytrading StocksEnv (64 x 2 obs)", anytrading))
        rows.append((f"DummyVecEnv x{args.n_envs} of StocksEnv",
                     bench_anytrading_dummy(close, cfg.window, args.n_envs, args.seconds)))

    base = anytrading
    print()
    print(f"{'env':<44} {'env-steps/s':>14} {'vs gym-anytrading':>18}")
    for name, rate in rows:
        ratio = f"{rate / base:17.2f}x" if base else f"{'-':>18}"
        print(f"{name:<44} {rate:>14,.0f} {ratio}")
    vec = rows[1][1]
    print()
    print(f"TradeVecEnv / DummyVecEnv of TradingEnv: {vec / rows[3][1]:.1f}x")
    print(f"single env: {rows[0][1]:,.0f} env-steps/s (target > 100,000)")
    if base:
        print(f"TradeVecEnv / gym-anytrading: {vec / base:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
