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
    borrow: float
    funding: float
    equity: float
    cash: float
    qty: float
    drawdown: float
    stop_distance: float
    take_profit_distance: float
    kill_switch: bool
    guardrail: bool
    fills: list[Fill] = field(default_factory=list)


class Account:
    """One account under ``cfg``'s rules (see the module docstring); ``buy_and_hold``: the
    passive all-equity account (no stops, no kill switch, no guardrails)."""

    def __init__(self, cfg: EnvConfig, bar_minutes: float = 1.0,
                 buy_and_hold: bool = False) -> None:
        self.cfg = cfg
        self.passive = buy_and_hold
        self.borrow_per_bar = cfg.borrow_rate_annual * bar_minutes / (365 * 24 * 60)
        self.cash = self.equity = self.peak = float(cfg.initial_cash)
        self.sl_bps = float(cfg.stop_loss_bps)
        self.tp_bps = float(cfg.take_profit_bps)
        self.qty = 0.0
        self.entry = 0.0
        self.held = 0.0
        self.drawdown = 0.0
        self.bars = 0.0
        self.halted: str | None = None  # None, "for good" or "for the day"
        self.pending: str | None = None  # the kind of the exit due at the next open
        self.day: int | None = None
        self.day_start = self.equity
        self.fees_paid = 0.0
        self.gross_peak = self.equity
        self.max_gross_drawdown = 0.0
        self.borrow_paid = self.funding_paid = 0.0
        self.kills = self.guards = 0
        self.sharpe_a = self.sharpe_b = 0.0
        self.steps = 0

    def _fill(self, fills: list[Fill], bar: int, kind: str, qty: float, price: float,
              rate: float) -> float:
        fee = abs(qty) * price * rate
        self.cash -= qty * price + fee
        fills.append(Fill(bar, kind, qty, price, fee))
        return fee

    def play(self, bar: int, target: float, d_sl: float, d_tp: float, o: float, h: float,
             lo: float, c: float, end: bool, day: int = 0, funding_charge: float = 0.0) -> Step:
        cfg = self.cfg
        slip = cfg.slippage_bps / 10_000.0
        equity_before = self.equity
        fills: list[Fill] = []
        fees = 0.0
        terminated = False
        if day != self.day:  # a new UTC day
            self.day = day
            self.day_start = equity_before
            if self.halted == "for the day":
                self.halted = None
        if cfg.nudge and self.pending is None and self.halted is None:
            lo_sl, hi_sl = cfg.stop_loss_bounds_bps
            self.sl_bps = min(max(self.sl_bps + d_sl * cfg.nudge_step_bps, lo_sl), hi_sl)
            if self.tp_bps > 0:
                lo_tp, hi_tp = cfg.take_profit_bounds_bps
                self.tp_bps = min(max(self.tp_bps + d_tp * cfg.nudge_step_bps, lo_tp), hi_tp)
        sl = self.sl_bps / 10_000.0
        tp = self.tp_bps / 10_000.0

        if self.pending is not None:
            # the breach exit at this open, a taker market order
            price = o * (1 - slip) if self.qty > 0 else o * (1 + slip)
            fees += self._fill(fills, bar, self.pending, -self.qty, price, cfg.taker_fee)
            self.qty = self.entry = self.held = 0.0
            terminated = True
        elif self.halted is None:
            # 1. the rebalance at the open
            if abs(target - self.held) > cfg.rebalance_threshold:
                if self.passive:  # the whole equity pays for the position and its fee
                    price = o * (1 + slip) if target > 0 else o * (1 - slip)
                    wanted = target * equity_before / (price * (1 + cfg.taker_fee))
                else:  # the RiskGuard: risk_pct of equity lost at the stop, leverage capped
                    leverage = min(cfg.risk_pct / sl, cfg.max_leverage)
                    wanted = target * leverage * equity_before / o
                change = wanted - self.qty
                if change != 0.0:
                    price = o * (1 + slip) if change > 0 else o * (1 - slip)
                    fees += self._fill(fills, bar, "market", change, price, cfg.taker_fee)
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
            if not self.passive and self.qty > 0:
                stop, limit = self.entry * (1 - sl), self.entry * (1 + tp)
                if lo <= stop:
                    exit_price, exit_kind = min(o, stop) * (1 - slip), "stop"
                elif tp > 0 and h >= limit:
                    exit_price, exit_kind = max(o, limit), "take_profit"
            elif not self.passive and self.qty < 0:
                stop, limit = self.entry * (1 + sl), self.entry * (1 - tp)
                if h >= stop:
                    exit_price, exit_kind = max(o, stop) * (1 + slip), "stop"
                elif tp > 0 and lo <= limit:
                    exit_price, exit_kind = min(o, limit), "take_profit"
            if exit_kind is not None:
                rate = cfg.taker_fee if exit_kind == "stop" else cfg.maker_fee
                fees += self._fill(fills, bar, exit_kind, -self.qty, exit_price, rate)
                self.qty = self.entry = self.held = 0.0
        self.pending = None

        # 3. holding costs, mark to market
        borrow = -self.qty * c * self.borrow_per_bar if self.qty < 0 else 0.0
        funding = self.qty * c * funding_charge
        self.cash -= borrow + funding
        self.borrow_paid += borrow
        self.funding_paid += funding
        self.equity = self.cash + self.qty * c
        peak_before = self.peak
        self.peak = max(self.peak, self.equity)
        self.drawdown = 1 - self.equity / self.peak

        # 4. kill switch and guardrails
        kill = guard = False
        if not self.passive and self.halted is None and not terminated:
            breach = None
            if self.equity <= 0 or self.drawdown >= cfg.max_drawdown:
                breach, self.halted, kill = "kill_switch", "for good", True
            elif cfg.max_total_loss and self.equity <= cfg.initial_cash * (
                    1 - cfg.max_total_loss):
                breach, self.halted, guard = "guardrail", "for good", True
            elif cfg.daily_loss_limit and self.equity <= self.day_start * (
                    1 - cfg.daily_loss_limit):
                breach, self.halted, guard = "guardrail", "for the day", True
            if breach is not None:
                self.kills += kill
                self.guards += guard
                if self.qty != 0.0 and not end:
                    self.pending = breach
                else:
                    terminated = True

        # 5. the end of the episode or segment: closed at the close, charged
        if end and self.qty != 0.0:
            price = c * (1 - slip) if self.qty > 0 else c * (1 + slip)
            fees += self._fill(fills, bar, "end", -self.qty, price, cfg.taker_fee)
            self.qty = self.entry = self.held = 0.0
            self.equity = self.cash  # the bar's mark is the one after this fill
            self.peak = max(peak_before, self.equity)
            self.drawdown = 1 - self.equity / self.peak
        self.bars = self.bars + 1 if self.qty != 0.0 else 0.0

        # 6. reward
        base = max(equity_before, 1e-9)
        r_pnl = cfg.reward_scale * (self.equity - equity_before + fees) / base
        r_fee = -cfg.fee_coef * cfg.reward_scale * fees / base
        self.fees_paid += fees
        gross = self.equity + self.fees_paid
        self.gross_peak = max(self.gross_peak, gross)
        gross_drawdown = 1 - gross / self.gross_peak
        r_dd = -cfg.drawdown_coef * cfg.reward_scale * max(
            gross_drawdown - self.max_gross_drawdown, 0)
        self.max_gross_drawdown = max(self.max_gross_drawdown, gross_drawdown)
        reward = r_pnl + r_fee + r_dd
        if cfg.reward == "differential_sharpe":
            ret = (self.equity - equity_before) / base
            a, b = self.sharpe_a, self.sharpe_b
            reward = 0.0
            self.steps += 1
            if b - a * a > 0 and self.steps * cfg.sharpe_eta > 1:  # moments warmed up
                reward = (b * (ret - a) - 0.5 * a * (ret * ret - b)) / (b - a * a) ** 1.5
            self.sharpe_a = a + cfg.sharpe_eta * (ret - a)
            self.sharpe_b = b + cfg.sharpe_eta * (ret * ret - b)
        return Step(bar, reward, r_pnl, r_fee, r_dd, terminated, end, target, fees, borrow,
                    funding, self.equity, self.cash, self.qty, self.drawdown, sl, tp, kill,
                    guard, fills)

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


def _play(account: Account, data: MarketData, bar: int, target: float, d_sl: float,
          d_tp: float, end: bool) -> Step:
    return account.play(bar, target, d_sl, d_tp, data.open[bar], data.high[bar], data.low[bar],
                        data.close[bar], end, int(data.day[bar]), float(data.funding[bar]))


def episode(data: MarketData, cfg: EnvConfig, start: int, actions: list) -> Episode:
    """Play ``actions`` from decision bar ``start`` until they run out or the episode ends."""
    account = Account(cfg, data.bar_minutes)
    end = int(data.episode_end[start])
    observations = [observation(data, cfg, start, account)]
    steps = []
    bar = start
    for action in actions:
        target, d_sl, d_tp = target_of(cfg, action)
        bar += 1
        step = _play(account, data, bar, target, d_sl, d_tp, bar >= end)
        steps.append(step)
        observations.append(observation(data, cfg, bar, account))
        if step.terminated or step.end:
            break
    return Episode(start, observations, steps)


def walk(data: MarketData, cfg: EnvConfig, decision_start: int, targets: np.ndarray | None,
         buy_and_hold: bool = False) -> tuple[list[int], list[Step], Account]:
    """The evaluation walk of one account: every bar of every segment from
    ``decision_start``; ``targets[k]`` is decided at the k-th walked bar (None with
    ``buy_and_hold``, long from before the first bar). Returns the walked bars, each bar's
    step and the account."""
    segments = []
    t = decision_start
    while True:
        starts = data.starts[data.starts >= t]
        if len(starts) == 0:
            break
        first, end = int(starts[0]), int(data.episode_end[starts[0]])
        segments.append((first, end))
        t = end + 1
    account = Account(cfg, data.bar_minutes, buy_and_hold)
    bars: list[int] = []
    steps: list[Step] = []
    last = segments[-1][1]
    for first, end in segments:
        for bar in range(first, end + 1):
            k = len(bars)
            bars.append(bar)
            if buy_and_hold:
                decided, is_end = 1.0, bar == last
            else:
                decided = float(targets[k - 1]) if bar > first else 0.0
                is_end = bar == end
            steps.append(_play(account, data, bar, decided, 0.0, 0.0, is_end))
    return bars, steps, account
