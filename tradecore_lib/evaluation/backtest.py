"""Deterministic backtest of a policy over a frame with the training env's engine and fees.

The frame is walked once, in order: one :class:`~tradecore_lib.env.TradingEnv` with the run's
env settings plus ``random_start=False`` and ``episode_length=None``, so each episode runs to
the end of a data segment (the next gap longer than ``max_gap_minutes``) or to the RiskGuard's
kill switch, and the next episode starts at the next valid bar. Each episode starts flat with
the env's ``initial_cash``; the equity curve chains them (an episode's returns apply to the
equity the previous one ended with), so the curve reads as one account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tradecore_lib.env import EnvConfig, Fill, load_env_config, make_env

Action = Any
Policy = Callable[[np.ndarray], tuple[Action, np.ndarray | None]]
"""Maps one observation (``(W * C + A,)`` float32) to an env action and, when the policy has
them, the probabilities of the target-position choices (``(len(positions),)``)."""

BACKTEST_OVERRIDES = {"random_start": False, "episode_length": None}


@dataclass
class Trajectory:
    """What one backtest played, bar by bar (arrays of length T = decisions played).

    Money is in the chained account's quote currency (see the module docstring).

    Attributes:
        decision_ts_ms: (T,) open time (epoch ms) of the bar after whose close each decision
            was made; the order fills at the next bar's open.
        ts_ms: (T,) open time of the bar each step played.
        equity: (T,) equity at the played bar's close.
        position_qty: (T,) signed base quantity held at that close.
        fees: (T,) fees paid on that bar.
        target: (T,) target position in [-1, 1] the decision asked for.
        probs: (T, P) probabilities of the target choices, or None.
        actions: the decisions as given to the env.
        initial_equity: equity before the first decision.
        trade_pnls: net PnL of each round trip (entry to flat or flip; a position still open at
            an episode's end is marked at that bar's close).
        traded_notional: sum of |qty * price| over every fill.
        kill_switch_hits: episodes ended by the RiskGuard.
    """

    decision_ts_ms: np.ndarray
    ts_ms: np.ndarray
    equity: np.ndarray
    position_qty: np.ndarray
    fees: np.ndarray
    target: np.ndarray
    probs: np.ndarray | None
    actions: list[Action]
    initial_equity: float
    trade_pnls: list[float] = field(default_factory=list)
    traded_notional: float = 0.0
    kill_switch_hits: int = 0


def backtest(frame: pd.DataFrame, env_settings: dict[str, Any], policy: Policy,
             seed: int = 0) -> Trajectory:
    """Walk ``frame`` once with ``policy`` (see the module docstring)."""
    settings = {**env_settings, **BACKTEST_OVERRIDES}
    env = make_env(frame, settings)
    initial = float(env.cfg.initial_cash)
    ts = env.data.ts_ms
    close = env.data.close
    decision_bars: list[int] = []
    bars: list[int] = []
    equity: list[float] = []
    qty: list[float] = []
    fees: list[float] = []
    targets: list[float] = []
    probs: list[np.ndarray] = []
    actions: list[Action] = []
    trade_pnls: list[float] = []
    notional = 0.0
    kills = 0
    chained = initial
    last_bar = -1
    obs, info = env.reset(seed=seed)
    while info["bar"] >= last_bar:  # sequential starts wrap to the first bar at the end
        scale = chained / initial
        done = False
        while not done:
            decision_bars.append(env.bar)
            action, p = policy(obs)
            obs, _, terminated, truncated, info = env.step(action)
            actions.append(action)
            if p is not None:
                probs.append(p)
            bars.append(info["bar"])
            equity.append(info["equity"] * scale)
            qty.append(info["position_qty"] * scale)
            fees.append(info["fees"] * scale)
            targets.append(info["target_position"])
            done = terminated or truncated
        kills += int(terminated)
        episode_fills = list(env.engine.fills)
        trade_pnls.extend(p * scale for p in round_trip_pnls(episode_fills, close[info["bar"]]))
        notional += scale * sum(abs(f.qty * f.price) for f in episode_fills)
        chained = equity[-1]
        last_bar = info["bar"]
        obs, info = env.reset()
    return Trajectory(
        decision_ts_ms=ts[np.asarray(decision_bars)], ts_ms=ts[np.asarray(bars)],
        equity=np.asarray(equity), position_qty=np.asarray(qty), fees=np.asarray(fees),
        target=np.asarray(targets), probs=np.stack(probs) if probs else None, actions=actions,
        initial_equity=initial, trade_pnls=trade_pnls, traded_notional=notional,
        kill_switch_hits=kills,
    )


def round_trip_pnls(fills: list[Fill], mark_price: float) -> list[float]:
    """Net PnL (quote currency, fees included) of each round trip in one episode's fills.

    A trip opens when the position leaves flat and closes when it returns to flat; a fill
    that flips the position closes one trip and opens the next (its fee split by quantity).
    A position open after the last fill is marked at ``mark_price``.
    """
    pnls: list[float] = []
    qty = 0.0
    pnl = 0.0
    for fill in fills:
        remaining = fill.qty
        fee_per_unit = fill.fee / abs(fill.qty)
        if qty != 0.0 and (qty > 0.0) != (remaining > 0.0):
            closing = -qty if abs(remaining) >= abs(qty) else remaining
            pnl -= closing * fill.price + abs(closing) * fee_per_unit
            qty += closing
            remaining -= closing
            if abs(qty) <= 1e-12 * abs(closing):
                qty = 0.0
                pnls.append(pnl)
                pnl = 0.0
        if remaining != 0.0:
            pnl -= remaining * fill.price + abs(remaining) * fee_per_unit
            qty += remaining
    if qty != 0.0:
        pnls.append(pnl + qty * mark_price)
    return pnls


def constant_action(cfg: EnvConfig, target: float) -> Action:
    """The env action asking for ``target`` every bar (nudges, if any, keep the stops)."""
    if cfg.action_mode == "continuous":
        return np.array([target, 0.0, 0.0] if cfg.nudge else [target], dtype=np.float32)
    if target not in cfg.positions:
        raise ValueError(f"env preset {cfg.name!r} has no position {target} in {cfg.positions}")
    index = list(cfg.positions).index(target)
    return np.array([index, 1, 1]) if cfg.nudge else index


def random_policy(cfg: EnvConfig, seed: int) -> Policy:
    """Uniformly random actions of ``cfg``'s action space from a generator seeded ``seed``."""
    rng = np.random.default_rng(seed)
    n_positions = len(cfg.positions)

    def act(obs: np.ndarray) -> tuple[Action, None]:
        if cfg.action_mode == "continuous":
            return rng.uniform(-1.0, 1.0, size=3 if cfg.nudge else 1).astype(np.float32), None
        if cfg.nudge:
            return np.array([rng.integers(n_positions), rng.integers(3), rng.integers(3)]), None
        return int(rng.integers(n_positions)), None

    return act


def baseline_policies(env_settings: dict[str, Any], seed: int) -> dict[str, Policy]:
    """Buy-and-hold (the largest long target every bar), always flat, and seeded random."""
    cfg = load_env_config({**env_settings, **BACKTEST_OVERRIDES})
    long_target = max(cfg.positions) if cfg.action_mode == "discrete" else 1.0
    long_action = constant_action(cfg, long_target)
    flat_action = constant_action(cfg, 0.0)
    return {
        "buy_and_hold": lambda obs: (long_action, None),
        "flat": lambda obs: (flat_action, None),
        "random": random_policy(cfg, seed),
    }
