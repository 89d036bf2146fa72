"""The rules of trading written once more, plainly, for one account in Python floats.

This is the oracle of the property tests (``tests/lib/test_env_oracle.py``): it is not used by
TradeCore. It follows the rules as :mod:`tradecore_lib.env.kernels` documents them, written
from that description and not from the kernel's code, so a rule implemented wrongly in the
kernel shows as a difference. The market data (causal normalization, episode bounds) comes
from :class:`~tradecore_lib.env.MarketData`, which is not a trading rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tradecore_lib.env import EnvConfig, MarketData


@dataclass
class Fill:
    bar: int
    kind: str
    qty: float
    price: float
    fee: float


@dataclass
class Step:
    """What one played bar gave: reward terms, the account after it, its fills."""

    bar: int
    reward: float
    reward_pnl: float
    reward_fee: float
    reward_drawdown: float
    terminated: bool
    end: bool
    target: float
    fees: float
    equity: float
    cash: float
    qty: float
    drawdown: float
    stop_distance: float
    take_profit_distance: float
    fills: list[Fill] = field(default_factory=list)


class Account:
    """One account under ``cfg``'s rules (see the module docstring)."""

    def __init__(self, cfg: EnvConfig, flatten_at_end: bool = False) -> None:
        self.cfg = cfg
        self.flatten = flatten_at_end
        self.cash = self.equity = self.peak = float(cfg.initial_cash)
        self.sl_bps = float(cfg.stop_loss_bps)
        self.tp_bps = float(cfg.take_profit_bps)
        self.qty = 0.0
        self.entry = 0.0
        self.held = 0.0
        self.drawdown = 0.0
        self.bars = 0.0

    def play(self, bar: int, target: float, d_sl: float, d_tp: float, o: float, h: float,
             lo: float, c: float, end: bool) -> Step:
        cfg = self.cfg
        if cfg.nudge:
            lo_sl, hi_sl = cfg.stop_loss_bounds_bps
            self.sl_bps = min(max(self.sl_bps + d_sl * cfg.nudge_step_bps, lo_sl), hi_sl)
            if self.tp_bps > 0:
                lo_tp, hi_tp = cfg.take_profit_bounds_bps
                self.tp_bps = min(max(self.tp_bps + d_tp * cfg.nudge_step_bps, lo_tp), hi_tp)
        slip = cfg.slippage_bps / 10_000.0
        sl = self.sl_bps / 10_000.0
        tp = self.tp_bps / 10_000.0
        equity_before = self.equity
        drawdown_before = self.drawdown
        fills: list[Fill] = []
        fees = 0.0

        # 1. the rebalance at the open, sized by the RiskGuard on the last close's equity
        if abs(target - self.held) > cfg.rebalance_threshold:
            leverage = min(cfg.risk_pct / sl, cfg.max_leverage)
            wanted = target * leverage * equity_before / o
            change = wanted - self.qty
            if change != 0.0:
                price = min(o * (1 + slip), h) if change > 0 else max(o * (1 - slip), lo)
                fee = abs(change) * price * cfg.taker_fee
                self.cash -= change * price + fee
                fees += fee
                fills.append(Fill(bar, "market", change, price, fee))
                if wanted == 0.0:
                    self.entry, self.bars = 0.0, 0.0
                elif self.qty == 0.0 or (self.qty > 0) != (wanted > 0):
                    self.entry, self.bars = price, 0.0
                elif abs(wanted) > abs(self.qty):
                    self.entry = (self.entry * self.qty + price * change) / wanted
                self.qty = wanted
            self.held = target

        # 2. intrabar stop-loss, then take-profit
        exit_price = exit_kind = None
        if self.qty > 0:
            stop, limit = self.entry * (1 - sl), self.entry * (1 + tp)
            if lo <= stop:
                exit_price, exit_kind = max(min(o, stop) * (1 - slip), lo), "stop"
            elif tp > 0 and h >= limit:
                exit_price, exit_kind = max(o, limit), "take_profit"
        elif self.qty < 0:
            stop, limit = self.entry * (1 + sl), self.entry * (1 - tp)
            if h >= stop:
                exit_price, exit_kind = min(max(o, stop) * (1 + slip), h), "stop"
            elif tp > 0 and lo <= limit:
                exit_price, exit_kind = min(o, limit), "take_profit"
        if exit_kind is not None:
            rate = cfg.taker_fee if exit_kind == "stop" else cfg.maker_fee
            fee = abs(self.qty) * exit_price * rate
            self.cash += self.qty * exit_price - fee
            fees += fee
            fills.append(Fill(bar, exit_kind, -self.qty, exit_price, fee))
            self.qty = self.entry = self.held = 0.0

        # 3. mark to market, kill switch
        self.equity = self.cash + self.qty * c
        self.peak = max(self.peak, self.equity)
        self.drawdown = 1 - self.equity / self.peak
        terminated = self.equity <= 0 or self.drawdown >= cfg.max_drawdown
        if self.flatten and (terminated or end) and self.qty != 0.0:
            fills.append(Fill(bar, "kill_switch" if terminated else "end", -self.qty, c, 0.0))
            self.cash = self.equity
            self.qty = self.entry = self.held = 0.0
        self.bars = self.bars + 1 if self.qty != 0.0 else 0.0

        base = max(equity_before, 1e-9)
        r_pnl = cfg.reward_scale * (self.equity - equity_before + fees) / base
        r_fee = -cfg.fee_coef * cfg.reward_scale * fees / base
        r_dd = -cfg.drawdown_coef * cfg.reward_scale * max(self.drawdown - drawdown_before, 0)
        return Step(bar, r_pnl + r_fee + r_dd, r_pnl, r_fee, r_dd, terminated, end, target,
                    fees, self.equity, self.cash, self.qty, self.drawdown, sl, tp, fills)

    def vector(self, close: float) -> list[float]:
        """The account part of the observation (clipped), see tradecore_lib.env.spaces."""
        cfg = self.cfg
        eq = max(self.equity, 1e-9)
        values = [self.qty * close / eq, self.cash / eq, self.qty * (close - self.entry) / eq,
                  self.drawdown, self.bars / cfg.time_scale_bars]
        if cfg.nudge:
            values += [self.sl_bps / 100.0, self.tp_bps / 100.0]
        return [min(max(v, -cfg.obs_clip), cfg.obs_clip) for v in values]


def observation(data: MarketData, cfg: EnvConfig, bar: int, account: Account) -> np.ndarray:
    """The observation at decision bar ``bar``: its window, then the account vector."""
    window = data.values[bar - cfg.window + 1: bar + 1].reshape(-1)
    return np.concatenate([window, np.asarray(account.vector(data.close[bar]), np.float32)])


def target_of(cfg: EnvConfig, action) -> tuple[float, float, float]:
    """Target fraction and stop / take-profit nudges of one env action."""
    flat = np.asarray(action).reshape(-1)
    if cfg.action_mode == "discrete":
        target = float(cfg.positions[int(flat[0])])
        nudges = (float(int(flat[1]) - 1), float(int(flat[2]) - 1)) if cfg.nudge else (0, 0)
        return target, *nudges
    values = [min(max(float(np.float32(v)), -1.0), 1.0) for v in flat]
    return values[0], *(values[1:3] if cfg.nudge else (0.0, 0.0))


@dataclass
class Episode:
    """A training episode played by the reference: observations and steps."""

    start: int
    observations: list[np.ndarray]
    steps: list[Step]


def episode(data: MarketData, cfg: EnvConfig, start: int, actions: list) -> Episode:
    """Play ``actions`` from decision bar ``start`` until they run out or the episode ends."""
    account = Account(cfg)
    end = int(data.episode_end[start])
    observations = [observation(data, cfg, start, account)]
    steps = []
    bar = start
    for action in actions:
        target, d_sl, d_tp = target_of(cfg, action)
        bar += 1
        step = account.play(bar, target, d_sl, d_tp, data.open[bar], data.high[bar],
                            data.low[bar], data.close[bar], bar >= end)
        steps.append(step)
        observations.append(observation(data, cfg, bar, account))
        if step.terminated or step.end:
            break
    return Episode(start, observations, steps)


def walk(data: MarketData, cfg: EnvConfig, decision_start: int, targets: np.ndarray
         ) -> tuple[list[int], list[Step | None], Account]:
    """The evaluation walk of one account: every bar of every segment from
    ``decision_start``, the position closed at each segment's end, halted after the kill
    switch. ``targets[k]`` is decided at the k-th walked bar. Returns the walked bars, each
    bar's step (None while halted) and the account."""
    account = Account(cfg, flatten_at_end=True)
    bars: list[int] = []
    steps: list[Step | None] = []
    halted = False
    t = decision_start
    n = len(data.ts_ms)
    previous_end = -1
    while t < n:
        starts = data.starts[data.starts >= t]
        if len(starts) == 0:
            break
        first = int(starts[0])
        end = int(data.episode_end[first])
        for bar in range(first, end + 1):
            k = len(bars)
            bars.append(bar)
            if halted:
                steps.append(None)
                continue
            decided = float(targets[k - 1]) if bar > first else 0.0
            step = account.play(bar, decided, 0.0, 0.0, data.open[bar], data.high[bar],
                                data.low[bar], data.close[bar], bar == end)
            steps.append(step)
            halted = step.terminated
        assert end > previous_end
        previous_end = end
        t = end + 1
    return bars, steps, account
