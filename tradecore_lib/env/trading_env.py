"""TradingEnv: one gymnasium environment over a candles + features frame.

Each step plays one bar: the action chosen after bar ``t`` closed fills at bar ``t + 1``'s
open (see :mod:`tradecore_lib.env.execution`), the reward is computed at bar ``t + 1``'s
close (:mod:`tradecore_lib.env.reward`) and the observation is the window ending at bar
``t + 1`` plus the account vector (:mod:`tradecore_lib.env.spaces`).

``terminated`` is the RiskGuard's kill switch (drawdown >= ``max_drawdown`` or equity <= 0);
``truncated`` is the end of the episode (``episode_length`` decisions, or the end of the data
segment before the next gap longer than ``max_gap_minutes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from tradecore_lib.env.config import EnvConfig, load_env_config
from tradecore_lib.env.execution import Account, ExecutionEngine
from tradecore_lib.env.observation import MarketData
from tradecore_lib.env.reward import RewardFn
from tradecore_lib.env.risk import RiskGuard
from tradecore_lib.env.spaces import (
    START_BLOCK,
    account_vector,
    action_space,
    draw_start_block,
    observation_space,
)

INFO_KEYS = (
    "reward_pnl", "reward_fee", "reward_drawdown", "target_position", "risk_units",
    "stop_distance", "take_profit_distance", "market_fee", "limit_fee", "stop_fee", "fees",
    "equity", "cash", "position_qty", "position_value", "drawdown", "bar",
)
"""Keys of every step's info. Fees and money are quote currency, ``position_qty`` base
currency, ``stop_distance``/``take_profit_distance``/``drawdown`` fractions (0.01 = 1 %),
``target_position`` the signed target fraction in [-1, 1], ``risk_units`` the loss at the stop
in units of ``risk_pct * equity``, ``bar`` the frame row just played."""


class TradingEnv(gym.Env):
    """A single trading environment (see the module docstring for the step semantics).

    Args:
        data: the frame (``ts``, OHLCV, numeric feature columns) or prepared :class:`MarketData`.
        preset: env preset name in ``configs/env/``, a mapping, or an :class:`EnvConfig`.
    """

    metadata = {"render_modes": []}

    def __init__(self, data: pd.DataFrame | MarketData,
                 preset: str | Mapping[str, Any] | EnvConfig = "default") -> None:
        super().__init__()
        self.cfg = cfg = load_env_config(preset)
        self.data = data if isinstance(data, MarketData) else MarketData.from_frame(data, cfg)
        self.observation_space = observation_space(cfg, self.data.n_columns)
        self.action_space = action_space(cfg)
        self.risk = RiskGuard(cfg)
        self.engine = ExecutionEngine(cfg, self.risk)
        self.reward_fn = RewardFn(cfg)
        self._wc = cfg.window * self.data.n_columns
        self._positions = [float(p) for p in cfg.positions]
        self._discrete = cfg.action_mode == "discrete"
        self._sl_lo, self._sl_hi = (float(v) for v in cfg.stop_loss_bounds_bps)
        self._tp_lo, self._tp_hi = (float(v) for v in cfg.take_profit_bounds_bps)
        self._step_bps = float(cfg.nudge_step_bps)
        self._block: np.ndarray | None = None
        self._block_pos = START_BLOCK
        self._next_bar = int(self.data.starts[0])
        self.account = Account.fresh(cfg)
        self._t = -1
        self._end = -1

    # -- episode --------------------------------------------------------------------------
    def _next_start(self) -> int:
        starts = self.data.starts
        if self.cfg.random_start:
            if self._block is None or self._block_pos >= START_BLOCK:
                self._block = draw_start_block(self.np_random, len(starts))
                self._block_pos = 0
            start = int(starts[self._block[self._block_pos]])
            self._block_pos += 1
            return start
        k = int(np.searchsorted(starts, self._next_bar))
        return int(starts[k if k < len(starts) else 0])

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``seed`` re-seeds the start draws (and sequential mode restarts
        at the first valid bar); ``options={"start": bar}`` forces a start bar (a valid one)."""
        super().reset(seed=seed)
        if seed is not None:
            self._block = None
            self._next_bar = int(self.data.starts[0])
        elif self._t >= 0:
            self._next_bar = self._t
        if options and "start" in options:
            start = int(options["start"])
            if start not in set(self.data.starts.tolist()):
                raise ValueError(f"options['start']={start} is not a valid episode start")
        else:
            start = self._next_start()
        self._t = start
        self._end = int(self.data.episode_end[start])
        self.account = Account.fresh(self.cfg)
        self.engine.fills = []
        return self._observation(), {"equity": self.account.equity, "bar": start}

    # -- step -----------------------------------------------------------------------------
    def _decode(self, action: Any) -> float:
        """Target fraction of ``action``; applies its nudges to the account's stop distances."""
        a = self.account
        if self._discrete:
            if self.cfg.nudge:
                act = np.asarray(action).reshape(-1)
                target = self._positions[int(act[0])]
                d_sl, d_tp = float(int(act[1]) - 1), float(int(act[2]) - 1)
            else:
                return self._positions[int(action)]
        else:
            act = np.asarray(action, dtype=np.float32).reshape(-1).astype(np.float64)
            target = min(max(float(act[0]), -1.0), 1.0)
            if not self.cfg.nudge:
                return target
            d_sl = min(max(float(act[1]), -1.0), 1.0)
            d_tp = min(max(float(act[2]), -1.0), 1.0)
        a.sl_bps = min(max(a.sl_bps + d_sl * self._step_bps, self._sl_lo), self._sl_hi)
        if a.tp_bps > 0.0:
            a.tp_bps = min(max(a.tp_bps + d_tp * self._step_bps, self._tp_lo), self._tp_hi)
        return target

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._t < 0:
            raise RuntimeError("call reset() before step()")
        if self._t >= self._end:
            raise RuntimeError("the episode is over; call reset()")
        a = self.account
        target = self._decode(action)
        i = self._t + 1
        d = self.data
        c = d.close_l[i]
        equity_prev = a.equity
        dd_prev = a.drawdown
        market_fee, stop_fee, limit_fee = self.engine.execute(
            a, target, d.open_l[i], d.high_l[i], d.low_l[i], c, i)
        fees = market_fee + stop_fee + limit_fee
        reward, r_pnl, r_fee, r_dd = self.reward_fn.terms(
            equity_prev, a.equity, fees, dd_prev, a.drawdown)
        self._t = i
        terminated = self.risk.killed(a.equity, a.drawdown)
        truncated = (not terminated) and i >= self._end
        sl = a.sl_bps / 10_000.0
        info = {
            "reward_pnl": r_pnl, "reward_fee": r_fee, "reward_drawdown": r_dd,
            "target_position": target,
            "risk_units": self.risk.risk_units(a.qty, c, sl, a.equity),
            "stop_distance": sl, "take_profit_distance": a.tp_bps / 10_000.0,
            "market_fee": market_fee, "limit_fee": limit_fee, "stop_fee": stop_fee,
            "fees": fees, "equity": a.equity, "cash": a.cash, "position_qty": a.qty,
            "position_value": a.qty * c, "drawdown": a.drawdown, "bar": i,
        }
        return self._observation(), reward, terminated, truncated, info

    def _observation(self) -> np.ndarray:
        """(W * C + A,) float32: the window ending at the current bar, then the account."""
        a = self.account
        t = self._t
        obs = np.empty(self._wc + self.cfg.account_size, dtype=np.float32)
        obs[: self._wc] = self.data.windows[t - self.cfg.window + 1]
        obs[self._wc:] = account_vector(
            self.cfg, a.qty, a.cash, a.entry, a.equity, self.data.close_l[t], a.drawdown,
            a.bars_in_pos, a.sl_bps, a.tp_bps)
        return obs

    @property
    def bar(self) -> int:
        """Frame row of the current bar (the last one observed)."""
        return self._t

    @property
    def episode_end(self) -> int:
        """Frame row of the last bar of the current episode."""
        return self._end
